package recorder

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/proxy"
)

// FuzzParseExchange feeds the parser arbitrary request bodies, response bodies, statuses and
// read boundaries: it must not panic, and what it returns must be consistent.
func FuzzParseExchange(f *testing.F) {
	three, _ := os.ReadFile("testdata/llamacpp_three_turn_conversation.json")
	var tr []struct {
		Request     json.RawMessage `json:"request"`
		ResponseSSE string          `json:"response_sse"`
	}
	_ = json.Unmarshal(three, &tr)
	for _, e := range tr {
		f.Add([]byte(e.Request), []byte(e.ResponseSSE), 200, true, uint8(7))
	}
	nostream, _ := os.ReadFile("testdata/llamacpp_chat_nostream.json")
	bad, _ := os.ReadFile("testdata/llamacpp_error_badjson.json")
	compl, _ := os.ReadFile("testdata/llamacpp_completions_stream.sse")
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`), nostream, 200, false, uint8(0))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"metadata":{"session_id":1}}`), bad, 500, false, uint8(0))
	f.Add([]byte(`{"prompt":["a","b"],"stream":true}`), compl, 200, true, uint8(3))
	f.Add([]byte(`{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\": 1}"}}]}]}`), []byte("data: {\"error\":{\"message\":\"boom\"}}\n\n"), 200, true, uint8(1))
	f.Add([]byte(`not json`), []byte("data: [DONE]\r\n\r\n"), 0, true, uint8(2))

	p := &parser{cache: newInfoCache(1024), sessionHeaders: []string{"X-Session-Id"}, redact: redact.New(nil, []string{"X-Session-Id"})}
	f.Fuzz(func(t *testing.T, req, body []byte, status int, sse bool, split uint8) {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		x := &proxy.Exchange{
			Start: time.Unix(1, 0), Method: http.MethodPost, Path: "/v1/chat/completions",
			ReqHeader: http.Header{"X-Session-Id": {"s"}}, ReqBody: req, ReqSize: int64(len(req)),
			Sent: time.Millisecond, Status: status, RespHeader: http.Header{"Content-Type": {ct}}, Body: body,
		}
		// Reads of split+1 bytes each, then one past the end (a lying read must not hurt).
		step := int(split) + 1
		at := 2 * time.Millisecond
		for end := step; end < len(body)+step; end += step {
			x.Reads = append(x.Reads, proxy.Read{At: at, End: min(end, len(body)+3)})
			at += time.Millisecond
		}
		x.End = at
		out := p.parse(x)
		if out.msgs != nil && (len(out.meta) != len(out.msgs) || len(out.exact) != len(out.msgs) || len(out.chain) != len(out.msgs)+1) {
			t.Fatalf("inconsistent message data: %d msgs, %d meta, %d exact, %d chain", len(out.msgs), len(out.meta), len(out.exact), len(out.chain))
		}
		var last time.Duration = -1 << 62
		for _, c := range out.turn.Timing.Chunks {
			if c.Offset < last || c.Offset > x.End-x.Sent || c.Tokens < 0 {
				t.Fatalf("chunk %+v out of order or range (end %v)", c, x.End)
			}
			last = c.Offset
		}
		if out.state && out.msgs == nil {
			t.Fatal("a turn without messages cannot be continued")
		}
	})
}

// FuzzSessionFromBody must not panic on any parameter object.
func FuzzSessionFromBody(f *testing.F) {
	f.Add([]byte(`{"metadata":{"session_id":"x"}}`))
	f.Add([]byte(`{"metadata":"x","session_id":1.5e3}`))
	f.Add([]byte(`{"conversation_id":{"a":1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = sessionFromBody(b)
	})
}
