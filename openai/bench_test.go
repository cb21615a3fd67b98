package openai_test

import (
	"bytes"
	"io"
	"os"
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
// repeated to 1 MiB. The Decoder is reused through Reset-free re-creation
// outside the timed loop is not possible, so one decoder is made per pass;
// allocs/op therefore counts the decoder and its buffer, not events.
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
