package recorder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/tape"
)

// mustStore opens a fresh store in the test's temporary directory.
func mustStore(t testing.TB) (*tape.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// mustNew starts a recorder on s.
func mustNew(t testing.TB, s *tape.Store, cfg recorder.Config) *recorder.Recorder {
	t.Helper()
	r, err := recorder.New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// mustClose closes a recorder and fails the test on an error.
func mustClose(t testing.TB, r *recorder.Recorder) {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// splitEvents returns the byte offsets just past each SSE event's blank line.
func splitEvents(b []byte) []int {
	var ends []int
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\n' && b[i+1] == '\n' {
			ends = append(ends, i+2)
			i++
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(b) {
		ends = append(ends, len(b))
	}
	return ends
}

// exchange makes a captured exchange of a chat request answered with body. A streamed body
// arrives one event per read, 1 ms apart, starting 10 ms after the request was sent.
func exchange(start time.Time, path string, req []byte, status int, ctype string, body []byte) *proxy.Exchange {
	x := &proxy.Exchange{
		Start:      start,
		Method:     http.MethodPost,
		Host:       "127.0.0.1:8000",
		Path:       path,
		ReqHeader:  http.Header{"Content-Type": {"application/json"}},
		ReqBody:    req,
		ReqSize:    int64(len(req)),
		Sent:       time.Millisecond,
		Status:     status,
		RespHeader: http.Header{"Content-Type": {ctype}},
		HeadersAt:  5 * time.Millisecond,
		Body:       body,
	}
	at := 10 * time.Millisecond
	if ctype == "text/event-stream" {
		for _, end := range splitEvents(body) {
			x.Reads = append(x.Reads, proxy.Read{At: at, End: end})
			at += time.Millisecond
		}
	} else if len(body) > 0 {
		x.Reads = []proxy.Read{{At: at, End: len(body)}}
		at += time.Millisecond
	}
	x.End = at
	return x
}

// sseOf renders a streamed chat reply, one token-ish word per event, with usage at the end.
func sseOf(reply string, usage bool) []byte {
	var b bytes.Buffer
	words := bytes.Fields([]byte(reply))
	for i, w := range words {
		piece := string(w)
		if i > 0 {
			piece = " " + piece
		}
		c, _ := json.Marshal(map[string]any{
			"id": "x", "object": "chat.completion.chunk",
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": piece}, "finish_reason": nil}},
		})
		b.WriteString("data: ")
		b.Write(c)
		b.WriteString("\n\n")
	}
	last := map[string]any{"id": "x", "object": "chat.completion.chunk",
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}}
	if usage {
		last["usage"] = map[string]any{"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}
	}
	c, _ := json.Marshal(last)
	b.WriteString("data: ")
	b.Write(c)
	b.WriteString("\n\ndata: [DONE]\n\n")
	return b.Bytes()
}

// chatBody renders a streamed chat request body with the given messages.
func chatBody(msgs ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"model": "m", "stream": true, "messages": msgs})
	return b
}

func msg(role, content string) map[string]any {
	return map[string]any{"role": role, "content": content}
}

// turnInfo is a stored turn with its rebuilt message list.
type turnInfo struct {
	turn *tape.Turn
	msgs []json.RawMessage
}

// convInfo is a stored conversation with its turns.
type convInfo struct {
	conv  *tape.Conversation
	turns []turnInfo
}

// readAll returns every conversation of every recording in the store, by id.
func readAll(t testing.TB, s *tape.Store) map[uint64]*convInfo {
	t.Helper()
	out := map[uint64]*convInfo{}
	err := s.Recordings(func(rec *tape.Recording) error {
		return s.Conversations(rec.ID, func(c *tape.Conversation) error {
			ci := &convInfo{conv: c}
			out[c.ID] = ci
			return s.TurnMessages(c.ID, func(tt *tape.Turn, msgs []json.RawMessage) error {
				ci.turns = append(ci.turns, turnInfo{tt, msgs})
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readFile reads a testdata file.
func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameMessages reports whether a rebuilt message list is JSON-equal to the request's.
func sameMessages(t testing.TB, got []json.RawMessage, reqBody []byte) bool {
	t.Helper()
	var req struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(reqBody, &req); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(req.Messages) {
		return false
	}
	for i := range got {
		if !tape.JSONEqual(got[i], req.Messages[i]) {
			return false
		}
	}
	return true
}
