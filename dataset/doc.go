// Package dataset moves conversations between the store and the file formats of the field:
// it imports vLLM multi-turn benchmark conversations, ShareGPT, Mooncake traces and Azure LLM
// inference traces as ordinary recordings, exports recordings as vLLM conversations, ShareGPT,
// Mooncake JSONL or JSONL of request bodies, and generates synthetic conversations from vLLM's
// generation config.
//
// # Basics
//
// Parse reads an input into a Dataset: conversations and their turns, ready to be written, plus
// what was skipped and why. Dataset.Write puts it into a store in one transaction, so a
// failed import leaves nothing behind. Import does both. Generate builds a Dataset from a
// GenerateConfig. Export writes one recording in a format.
//
// Each format is a row of one table (Formats): a Decoder, an Encoder, or both, with its
// shape and help lines; ImportFormats, ExportFormats, ImportHelp and ExportHelp are read from
// it. The package reads no files: callers open inputs and pass readers (Parse) or bytes
// (GenerateOptions.Text, for which GenerateConfig.TextPaths resolves the config's
// text_files), and pass the writer that Export writes to.
//
// Text imports (vllm, sharegpt) store each turn's messages linearly, as the recorder does:
// a turn keeps the previous turn's messages and reply (Request.Kept) and adds only its new
// messages, so the store grows with a conversation's length, not with its square. Trace
// imports (mooncake, azure) store no text: each turn has a tape.Synthetic (block ids and a
// length) from which package synth materializes the prompt when it is needed.
//
// # Caveats
//
// Imported turns carry only the timing their format has: Mooncake and Azure arrivals and
// Mooncake's delay, no latency. vLLM and ShareGPT files have no timing at all; their turns all
// start at the recording's start.
//
// Parse reads the whole input into memory (the formats are JSON documents or need sorting by
// time); files of a few hundred MB are fine.
package dataset
