// Package openai is the OpenAI-compatible wire format that llmtape records
// and replays: request bodies, server-sent events, stream chunks, responses,
// error bodies, and token counting. It is pure: it does no I/O of its own
// beyond the io.Reader and io.Writer it is handed, and holds no policy.
//
// # Requests
//
// ParseRequest reads a chat-completion or legacy completion body. The
// fields llmtape uses are typed (Model, Stream, Messages, Prompt, the token
// limits, StreamOptions); every other member is kept verbatim and in order,
// so Marshal rebuilds a body JSON-equal to the one the client sent. Params
// gives the body without its messages and prompt; BuildRequest is its
// inverse.
//
// # Streams
//
// Decoder reads text/event-stream input by the WHATWG rules and hands out
// events without allocating per event (Reset reuses it for the next
// stream). Its events are valid only until the next call to Next: copy
// what you keep. ParseChunk decodes an event's data into a reusable Chunk
// with a hand-written decoder (about one allocation per chunk: its text),
// and Accumulator assembles the chunks of one response (text, reasoning,
// tool calls by index, finish reason, usage, an error sent mid-stream).
// WriteEvent and WriteDone write events.
//
//	dec := openai.NewDecoder(body)
//	var acc openai.Accumulator
//	var c openai.Chunk
//	for {
//		ev, err := dec.Next()
//		if err == io.EOF {
//			break
//		}
//		if err != nil {
//			return err
//		}
//		if ev.Done {
//			break
//		}
//		if err := openai.ParseChunk(ev.Data, &c); err != nil {
//			return err
//		}
//		acc.Add(&c)
//	}
//
// # Tokens
//
// CountTokens counts o200k_base tokens; Tokenizer gives other encodings.
// Codecs are built once, lazily, and are safe for concurrent use.
//
// # Caveats
//
// A Decoder dispatches an event that lacks its final blank line at the end
// of the input, where the WHATWG algorithm would drop it. Accumulator
// assembles choice 0 only. The Chunk passed to ParseChunk is overwritten,
// its arrays included: copy what must outlive the next call. Codecs from
// Tokenizer are shared; never change their error mode.
package openai
