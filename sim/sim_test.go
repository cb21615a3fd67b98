package sim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
)

// MustStart starts a sim with cfg on a free port and closes it when the test ends.
var MustStart = simtest.MustStart

func post(t testing.TB, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("post %s: %v", url, err)
	}
	return resp
}

// chunk is the part of a stream event the tests look at.
type chunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		TotalTokens         int `json:"total_tokens"`
		PromptTokensDetails struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
	SentUnixNs int64 `json:"llmtape_sent_unix_ns"`
}

// readStream reads SSE events until [DONE] and returns the chunks.
func readStream(t testing.TB, r io.Reader) (chunks []chunk, done bool) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not a data line", line)
		}
		if data == "[DONE]" {
			return chunks, true
		}
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		chunks = append(chunks, c)
	}
	return chunks, false
}

func TestStreamChat(t *testing.T) {
	s := MustStart(t, sim.Config{Stamp: true, CacheBlocks: 64})
	resp := post(t, s.URL()+"/v1/chat/completions",
		`{"model":"m","messages":[{"role":"user","content":"hello there"}],"stream":true,"max_tokens":7,"stream_options":{"include_usage":true}}`)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	chunks, done := readStream(t, resp.Body)
	if !done {
		t.Fatal("no [DONE]")
	}
	if len(chunks) != 8 {
		t.Fatalf("got %d chunks, want 7 tokens + 1 final", len(chunks))
	}
	last := chunks[len(chunks)-1]
	if last.Usage == nil || last.Usage.CompletionTokens != 7 || last.Usage.PromptTokens == 0 {
		t.Fatalf("final usage %+v", last.Usage)
	}
	if fr := last.Choices[0].FinishReason; fr == nil || *fr != "length" {
		t.Fatalf("finish reason %v", fr)
	}
	for i, c := range chunks {
		if c.SentUnixNs == 0 {
			t.Fatalf("chunk %d has no stamp", i)
		}
	}
	// The client can read [DONE] before the handler has counted the request: Shutdown waits
	// for the handler to return.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Requests != 1 || st.Completed != 1 || st.CompletionTokens != 7 {
		t.Fatalf("stats %+v", st)
	}
}

func TestShutdownWaitsForStreams(t *testing.T) {
	s := MustStart(t, sim.Config{ITL: time.Millisecond})
	resp := post(t, s.URL()+"/v1/chat/completions",
		`{"messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":20}`)
	defer resp.Body.Close()
	errc := make(chan error, 1)
	go func() { errc <- s.Shutdown(context.Background()) }()
	body, _ := io.ReadAll(resp.Body)
	if !bytes.HasSuffix(body, []byte("data: [DONE]\n\n")) {
		t.Fatalf("stream cut by shutdown: %q", body)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// replyText posts one non-streamed chat request and returns the reply's text.
func replyText(t *testing.T, url, body string) string {
	t.Helper()
	resp := post(t, url+"/v1/chat/completions", body)
	defer resp.Body.Close()
	var r struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Choices) != 1 {
		t.Fatalf("status %d: decode reply: %v", resp.StatusCode, err)
	}
	return r.Choices[0].Message.Content
}

// The same prompt three times: without VaryOutput the same text; with it three different texts
// of the same length, and the same three texts again from a second server with the same seed.
func TestVaryOutput(t *testing.T) {
	const body = `{"messages":[{"role":"user","content":"say something"}]}`
	texts := func(cfg sim.Config) []string {
		s := MustStart(t, cfg)
		var out []string
		for range 3 {
			out = append(out, replyText(t, s.URL(), body))
		}
		return out
	}
	same := texts(sim.Config{Seed: 3, Tokenizer: "approx"})
	if same[0] != same[1] || same[1] != same[2] {
		t.Errorf("without VaryOutput: replies differ: %q", same)
	}
	varied := texts(sim.Config{Seed: 3, Tokenizer: "approx", VaryOutput: true})
	if varied[0] == varied[1] || varied[1] == varied[2] || varied[0] == varied[2] {
		t.Errorf("with VaryOutput: equal replies: %q", varied)
	}
	for i, v := range varied {
		if n, m := len(strings.Fields(v)), len(strings.Fields(same[0])); n != m {
			t.Errorf("reply %d has %d tokens with VaryOutput, %d without: the length must not change", i, n, m)
		}
	}
	again := texts(sim.Config{Seed: 3, Tokenizer: "approx", VaryOutput: true})
	if strings.Join(again, "|") != strings.Join(varied, "|") {
		t.Errorf("same seed, same request order: %q, then %q", varied, again)
	}
}

// A request's model is echoed as a JSON string, whatever it holds.
func TestModelEchoedAsJSON(t *testing.T) {
	s := MustStart(t, sim.Config{Tokenizer: "approx"})
	for _, model := range []string{`a"b\c`, "line\nbreak <&> é \u2028", "\x01"} {
		body, _ := json.Marshal(map[string]any{"model": model, "max_tokens": 2,
			"messages": []map[string]string{{"role": "user", "content": "hi"}}})
		resp := post(t, s.URL()+"/v1/chat/completions", string(body))
		var r struct {
			Model string `json:"model"`
		}
		err := json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || r.Model != model {
			t.Errorf("model %q: echoed %q, %v", model, r.Model, err)
		}
	}
}
