// Package synth materializes prompt text for turns that have no stored text: the prompts of
// imported Mooncake and Azure traces (tape.Synthetic: block ids and a length) and the messages
// of generated conversations.
//
// # Basics
//
// A Materializer holds a body of text (by default about 400 KB of The Count of Monte Cristo,
// embedded in the binary, see text/README.md) split into words, and the token count of every
// word under one tokenizer (tiktoken o200k_base by default). Block returns the text of one
// block: a short tag that spells the block id in one-token words, then a stretch of the text
// that starts at a word chosen by the id, topped up with one-token filler words so that the
// block has exactly the tokens asked for. Prompt concatenates the blocks of a tape.Synthetic;
// Messages wraps that prompt in one user message.
//
// Every block starts with a space and ends with a non-space character, so no tokenizer merge
// (BPE or its pre-tokenizing regular expression) crosses a block boundary: the token count of
// a prompt is the sum of its blocks' counts, and block k of a prompt starts at token
// k*BlockSize. Equal ids give byte-equal blocks; different ids give different blocks whenever
// the block is long enough to hold the id's tag (2 tokens for ids below 256, at most 9 for any
// 64-bit id). A shorter block of an id is, apart from its last few filler words, a prefix of
// the longer one.
//
// # Caveats
//
// Materialization does no tokenizing: the word counts are computed once by New (some
// 50 ms for the embedded text), after which Prompt only copies bytes. A Materializer is safe
// for concurrent use.
//
// The guarantees hold for the tokenizer the Materializer was made with. Under another
// tokenizer the text still has the same sharing structure, but not exact block lengths.
package synth
