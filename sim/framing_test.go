package sim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/sim"
)

// keyOrder returns the object keys of a JSON document in document order, each with its path
// ("choices.0.delta.content"), leaving out the paths for which skip is true.
func keyOrder(t *testing.T, data []byte, skip func(path string) bool) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	var keys []string
	var walk func(prefix string) // reads one value
	walk = func(prefix string) {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				k, _ := dec.Token()
				p := prefix + k.(string)
				if !skip(p) {
					keys = append(keys, p)
				}
				walk(p + ".")
			}
			dec.Token()
		case json.Delim('['):
			i := 0
			for dec.More() {
				walk(prefix + string(rune('0'+i)) + ".")
				i++
			}
			dec.Token()
		}
	}
	walk("")
	return keys
}

// events splits an SSE body into its data payloads, checking the framing byte for byte:
// "data: <json>\n\n" per event and "data: [DONE]\n\n" last.
func events(t *testing.T, body []byte) [][]byte {
	t.Helper()
	if !bytes.HasSuffix(body, []byte("data: [DONE]\n\n")) {
		t.Fatalf("body does not end with the [DONE] event: %q", body[max(0, len(body)-60):])
	}
	parts := bytes.Split(bytes.TrimSuffix(body, []byte("\n\n")), []byte("\n\n"))
	var out [][]byte
	for _, p := range parts[:len(parts)-1] {
		d, ok := bytes.CutPrefix(p, []byte("data: {"))
		if !ok || bytes.ContainsRune(d, '\n') {
			t.Fatalf("event %q is not one data line holding an object", p)
		}
		out = append(out, p[len("data: "):])
	}
	return out
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFramingMatchesLlamaCpp: the sim's events and replies have llama.cpp's framing and field
// order (llama.cpp's "timings" left out; the sim adds usage.prompt_tokens_details).
func TestFramingMatchesLlamaCpp(t *testing.T) {
	s := MustStart(t, sim.Config{CacheBlocks: 16})
	noExtras := func(p string) bool {
		return strings.HasPrefix(p, "timings") || strings.HasPrefix(p, "usage.prompt_tokens_details")
	}
	tests := []struct {
		name, path, body, golden string
		stream                   bool
	}{
		{"chat stream", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":3,"stream_options":{"include_usage":true}}`,
			"testdata/llamacpp_chat_stream_usage.sse", true},
		{"completions stream", "/v1/completions", `{"prompt":"hi","stream":true,"max_tokens":3,"stream_options":{"include_usage":true}}`,
			"testdata/llamacpp_completions_stream.sse", true},
		{"chat", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`,
			"testdata/llamacpp_chat_nostream.json", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, s.URL()+tt.path, tt.body)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			golden := readFile(t, tt.golden)
			if !tt.stream {
				got, want := keyOrder(t, body, noExtras), keyOrder(t, golden, noExtras)
				if !slices.Equal(got, want) {
					t.Fatalf("keys\n got %v\nwant %v", got, want)
				}
				return
			}
			got, want := events(t, body), events(t, golden)
			// First token event, and the final event.
			for _, pair := range [][2][]byte{{got[0], want[0]}, {got[len(got)-1], want[len(want)-1]}} {
				g, w := keyOrder(t, pair[0], noExtras), keyOrder(t, pair[1], noExtras)
				if !slices.Equal(g, w) {
					t.Errorf("keys of %s\n got %v\nwant %v", pair[0], g, w)
				}
			}
		})
	}
}

// TestStampedEvents: with Stamp every event carries llmtape_sent_unix_ns, non-decreasing.
func TestStampedEvents(t *testing.T) {
	s := MustStart(t, sim.Config{Stamp: true, TokensPerChunk: 3})
	resp := post(t, s.URL()+"/v1/completions", `{"prompt":"hi","stream":true,"max_tokens":10}`)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	evs := events(t, body)
	if len(evs) != 4+1 {
		t.Fatalf("%d events, want 4 chunks of up to 3 tokens and the final one", len(evs))
	}
	var prev int64
	for _, e := range evs {
		var c struct {
			Sent int64 `json:"llmtape_sent_unix_ns"`
		}
		if err := json.Unmarshal(e, &c); err != nil || c.Sent < prev || c.Sent == 0 {
			t.Fatalf("event %s: stamp %d after %d (%v)", e, c.Sent, prev, err)
		}
		prev = c.Sent
	}
}
