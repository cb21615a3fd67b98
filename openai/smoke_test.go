package openai_test

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/llmtape/llmtape/openai"
)

func TestSmoke(t *testing.T) {
	b, _ := os.ReadFile("testdata/llamacpp_chat_stream_usage.sse")
	d := openai.NewDecoder(bytes.NewReader(b))
	var acc openai.Accumulator
	var c openai.Chunk
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Done {
			continue
		}
		if err := openai.ParseChunk(ev.Data, &c); err != nil {
			t.Fatal(err)
		}
		acc.Add(&c)
	}
	t.Log(acc.Content(), acc.FinishReason(), acc.Usage())
	t.Log(openai.CountTokens("hello world"))
	r, err := openai.ParseRequest([]byte(`{"model":"x","messages":[{"role":"user","content":"hi"}],"temperature":0}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Set("max_tokens", 100)
	m, _ := r.Marshal()
	t.Log(string(m))
}
