package openai_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/openai"
)

// transcript returns the llama.cpp streamed chat transcripts repeated to at
// least n bytes.
func transcript(tb testing.TB, n int) []byte {
	tb.Helper()
	var one []byte
	for _, f := range []string{"llamacpp_chat_stream.sse", "llamacpp_chat_stream_usage.sse", "llamacpp_completions_stream.sse"} {
		b, err := os.ReadFile("testdata/" + f)
		if err != nil {
			tb.Fatal(err)
		}
		one = append(one, b...)
	}
	return bytes.Repeat(one, n/len(one)+1)
}

// BenchmarkDecoder measures SSE framing alone on the llama.cpp transcripts
// repeated to 1 MiB. One op is a whole pass with a new Decoder, so allocs/op
// counts the decoder and its buffer (2), none per event; see
// BenchmarkDecoderEvent for the per-event figure.
func BenchmarkDecoder(b *testing.B) {
	data := transcript(b, 1<<20)
	events := 0
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		d := openai.NewDecoder(bytes.NewReader(data))
		events = 0
		for {
			_, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			events++
		}
	}
	b.ReportMetric(float64(events), "events/op")
}

func BenchmarkDecodeAndParse(b *testing.B) {
	data := transcript(b, 1<<20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var c openai.Chunk
	for b.Loop() {
		d := openai.NewDecoder(bytes.NewReader(data))
		for {
			ev, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if ev.Done {
				continue
			}
			if err := openai.ParseChunk(ev.Data, &c); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// cycle is an endless reader over data.
type cycle struct {
	data []byte
	off  int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkDecoderEvent decodes one event per op from an endless stream of
// the llama.cpp transcripts: allocs/op is the allocation per event.
func BenchmarkDecoderEvent(b *testing.B) {
	data := transcript(b, 64<<10)
	events := 0
	for d := openai.NewDecoder(bytes.NewReader(data)); ; events++ {
		if _, err := d.Next(); err != nil {
			break
		}
	}
	d := openai.NewDecoder(&cycle{data: data})
	if _, err := d.Next(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data) / events)) // mean bytes per event
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseChunk parses a typical content chunk into a reused Chunk.
func BenchmarkParseChunk(b *testing.B) {
	data := []byte(`{"choices":[{"finish_reason":null,"index":0,"delta":{"content":" successo"}}],"created":1795772441,"id":"chatcmpl-9MfAWR2AzOzcGXhXzUQFnHknExN8NJcL","model":"tiny-llama","system_fingerprint":"b0-unknown","object":"chat.completion.chunk"}`)
	var c openai.Chunk
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := openai.ParseChunk(data, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRequestMarshal parses and re-marshals the largest request
// of the three-turn llama.cpp conversation.
func BenchmarkParseRequestMarshal(b *testing.B) {
	conv, err := os.ReadFile("testdata/llamacpp_three_turn_conversation.json")
	if err != nil {
		b.Fatal(err)
	}
	var turns []struct {
		Request json.RawMessage `json:"request"`
	}
	if err := json.Unmarshal(conv, &turns); err != nil {
		b.Fatal(err)
	}
	body := turns[len(turns)-1].Request
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := openai.ParseRequest(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCountTokens(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)
	openai.CountTokens(text)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		openai.CountTokens(text)
	}
}
