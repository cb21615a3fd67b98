package sim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/sim"
)

// FuzzHandler: any body on either completion endpoint gets 200 or a 400 with an OpenAI error
// body, never a panic.
func FuzzHandler(f *testing.F) {
	s, err := sim.New(sim.Config{Tokenizer: "approx", OutputLen: sim.LenRange{Min: 1, Max: 4}, CacheBlocks: 64, BlockSize: 2})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	for _, seed := range []string{
		`{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"max_tokens":3,"min_tokens":2}`,
		`{"prompt":[1,2,3],"stream":true}`,
		`{"prompt":"abc","ignore_eos":true,"max_tokens":5}`,
		`{"messages":[{"role":"tool","tool_call_id":"1","content":null}]}`,
		`{"messages":`, `[]`, `null`, ``,
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, body string, chat bool) {
		path := "/v1/completions"
		if chat {
			path = "/v1/chat/completions"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest:
			if _, ok := openai.ParseError(rec.Body.Bytes()); !ok {
				t.Fatalf("400 without an OpenAI error body: %q", rec.Body.String())
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
