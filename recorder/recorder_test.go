package recorder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/tape"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

const chatPath = "/v1/chat/completions"

// The three-turn llama.cpp transcript is one conversation: each request echoes the reply
// before it, so turns 2 and 3 store only the new user message.
func TestLlamaCppThreeTurnConversation(t *testing.T) {
	var transcript []struct {
		Request     json.RawMessage `json:"request"`
		ResponseSSE string          `json:"response_sse"`
	}
	if err := json.Unmarshal(readFile(t, "llamacpp_three_turn_conversation.json"), &transcript); err != nil {
		t.Fatal(err)
	}
	s, _ := mustStore(t)
	r := mustNew(t, s, recorder.Config{Upstream: "http://llama", Mode: "reverse"})
	for i, tr := range transcript {
		r.Capture(exchange(t0.Add(time.Duration(i)*time.Second), chatPath, tr.Request, 200, "text/event-stream", []byte(tr.ResponseSSE)))
	}
	mustClose(t, r)

	convs := readAll(t, s)
	if len(convs) != 1 {
		t.Fatalf("got %d conversations, want 1", len(convs))
	}
	for _, c := range convs {
		if c.conv.Grouping != tape.GroupPrefix || len(c.turns) != 3 {
			t.Fatalf("conversation: grouping %q, %d turns; want prefix, 3", c.conv.Grouping, len(c.turns))
		}
		wantMatch := []tape.Grouping{tape.GroupSingle, tape.GroupPrefix, tape.GroupPrefix}
		wantKept := []int{0, 3, 5}
		for i, ti := range c.turns {
			tt := ti.turn
			if tt.Match != wantMatch[i] || tt.Request.Kept != wantKept[i] || len(tt.Request.Messages) != len(tt.Request.MessageMeta) {
				t.Errorf("turn %d: match %q kept %d (+%d messages, %d meta); want %q kept %d",
					i, tt.Match, tt.Request.Kept, len(tt.Request.Messages), len(tt.Request.MessageMeta), wantMatch[i], wantKept[i])
			}
			if i > 0 && len(tt.Request.Messages) != 1 {
				t.Errorf("turn %d stores %d messages, want only the new user message", i, len(tt.Request.Messages))
			}
			if !sameMessages(t, ti.msgs, transcript[i].Request) {
				t.Errorf("turn %d: rebuilt messages differ from the request", i)
			}
			if tt.Response.Content != "alph Anaнове Bool Pakistan Pakistan Pakistan Pakistan Pakistan Pakistan" {
				t.Errorf("turn %d content %q", i, tt.Response.Content)
			}
			if tt.Response.FinishReason != "length" || !tt.Response.Streamed || tt.Response.Events != 11 {
				t.Errorf("turn %d: finish %q streamed %v events %d", i, tt.Response.FinishReason, tt.Response.Streamed, tt.Response.Events)
			}
			if tt.Tokens.Source != tape.TokensServer || tt.Tokens.Completion != 10 {
				t.Errorf("turn %d tokens %+v", i, tt.Tokens)
			}
			if len(tt.Timing.Chunks) != 10 {
				t.Fatalf("turn %d: %d chunks, want 10", i, len(tt.Timing.Chunks))
			}
			// Event k arrived 10+k ms after Start, the request was sent at 1 ms.
			for k, ch := range tt.Timing.Chunks {
				if want := time.Duration(9+k) * time.Millisecond; ch.Offset != want || ch.Tokens != 1 {
					t.Errorf("turn %d chunk %d: offset %v tokens %d; want %v, 1", i, k, ch.Offset, ch.Tokens, want)
				}
			}
			for k, m := range tt.Request.MessageMeta {
				if m.Tokens <= 0 || m.Hash == 0 {
					t.Errorf("turn %d message %d meta %+v", i, k, m)
				}
			}
		}
	}
	st := r.Stats()
	if st.Seen != 3 || st.Recorded != 3 || st.NotRecorded != 0 || st.Errors != 0 || st.Open != 1 || st.QueueDepth != 0 {
		t.Errorf("stats %+v", st)
	}
	rec, err := s.Recording(r.Recording())
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Complete || !rec.Started.Equal(t0) || rec.Source != "record" || rec.Upstream != "http://llama" {
		t.Errorf("recording %+v", rec)
	}
}

// Every kind of response becomes a turn with the right status, error class and content.
func TestResponseKinds(t *testing.T) {
	req := chatBody(msg("user", "hi"))
	partial := sseOf("one two three four", false)
	partial = partial[:len(partial)/2]
	tests := []struct {
		name      string
		x         *proxy.Exchange
		status    int
		class     errclass.Class
		content   string
		errSubstr string
		streamed  bool
		source    tape.TokenSource
	}{
		{name: "non-streamed llama.cpp", x: exchange(t0, chatPath, req, 200, "application/json; charset=utf-8", readFile(t, "llamacpp_chat_nostream.json")),
			status: 200, content: "alph zesificate successo status heutigenโgele", source: tape.TokensServer},
		{name: "streamed without usage", x: exchange(t0, chatPath, req, 200, "text/event-stream", sseOf("a b c", false)),
			status: 200, content: "a b c", streamed: true, source: tape.TokensCounted},
		{name: "upstream 500", x: exchange(t0, chatPath, req, 500, "application/json", readFile(t, "llamacpp_error_badjson.json")),
			status: 500, class: "http", errSubstr: "parse error", source: tape.TokensCounted},
		{name: "connection refused", x: func() *proxy.Exchange {
			x := exchange(t0, chatPath, req, 502, "application/json", []byte(`{"error":{"message":"upstream unreachable","type":"upstream_error"}}`))
			x.Err, x.ErrClass = "dial tcp 127.0.0.1:1: connect: connection refused", "connect"
			return x
		}(), status: 502, class: "connect", errSubstr: "unreachable", source: tape.TokensCounted},
		{name: "client gone mid-stream", x: func() *proxy.Exchange {
			x := exchange(t0, chatPath, req, 200, "text/event-stream", partial)
			x.ClientGone, x.Err, x.ErrClass = true, "write to client: broken pipe", "canceled"
			return x
		}(), status: 200, class: "canceled", content: "one", errSubstr: "broken pipe", streamed: true, source: tape.TokensCounted},
		{name: "client gone right after [DONE]", x: func() *proxy.Exchange {
			// Clients close as soon as they read [DONE]; the proxy may still be waiting for the
			// end of the upstream body. The response was whole: no error.
			x := exchange(t0, chatPath, req, 200, "text/event-stream", sseOf("one two", false))
			x.ClientGone, x.Err, x.ErrClass = true, "read upstream: context canceled", "canceled"
			return x
		}(), status: 200, content: "one two", streamed: true, source: tape.TokensCounted},
		{name: "legacy completion stream", x: exchange(t0, "/v1/completions", []byte(`{"model":"m","prompt":"Once","stream":true}`), 200, "text/event-stream", readFile(t, "llamacpp_completions_stream.sse")),
			status: 200, streamed: true, source: tape.TokensServer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := mustStore(t)
			r := mustNew(t, s, recorder.Config{})
			r.Capture(tc.x)
			mustClose(t, r)
			convs := readAll(t, s)
			if len(convs) != 1 {
				t.Fatalf("%d conversations", len(convs))
			}
			for _, c := range convs {
				resp := c.turns[0].turn.Response
				if resp.Status != tc.status || resp.ErrorClass != tc.class || resp.Streamed != tc.streamed {
					t.Errorf("status %d class %q streamed %v; want %d %q %v", resp.Status, resp.ErrorClass, resp.Streamed, tc.status, tc.class, tc.streamed)
				}
				if tc.content != "" && !strings.HasPrefix(resp.Content, tc.content) {
					t.Errorf("content %q, want prefix %q", resp.Content, tc.content)
				}
				if !strings.Contains(resp.Error, tc.errSubstr) {
					t.Errorf("error %q, want it to contain %q", resp.Error, tc.errSubstr)
				}
				if src := c.turns[0].turn.Tokens.Source; src != tc.source {
					t.Errorf("token source %q, want %q (%+v)", src, tc.source, c.turns[0].turn.Tokens)
				}
			}
		})
	}
}

// script feeds a recorder a sequence of chat turns; each reply is given, each request is built
// by the test. It returns the stored conversations.
type step struct {
	msgs    []map[string]any
	reply   string
	status  int
	header  http.Header
	wantNew bool // the turn starts a new conversation
	match   tape.Grouping
	kept    int
}

func runSteps(t *testing.T, s *tape.Store, r *recorder.Recorder, steps []step, at time.Time) []*proxy.Exchange {
	t.Helper()
	var xs []*proxy.Exchange
	for i, st := range steps {
		status := st.status
		if status == 0 {
			status = 200
		}
		body := sseOf(st.reply, true)
		ctype := "text/event-stream"
		if status >= 400 {
			body, ctype = []byte(`{"error":{"message":"overloaded","type":"server_error"}}`), "application/json"
		}
		x := exchange(at.Add(time.Duration(i)*time.Second), chatPath, chatBody(st.msgs...), status, ctype, body)
		for k, v := range st.header {
			x.ReqHeader[k] = v
		}
		xs = append(xs, x)
		r.Capture(x)
	}
	return xs
}

// Stitching rules on hand-made exchanges.
func TestStitchRules(t *testing.T) {
	sys := msg("system", "You are terse.")
	u1, u2, u3 := msg("user", "one"), msg("user", "two"), msg("user", "three")
	a := func(s string) map[string]any { return msg("assistant", s) }
	tests := []struct {
		name  string
		steps []step
		convs int
	}{
		{name: "continue, fork on edit, regenerate", convs: 3, steps: []step{
			{msgs: []map[string]any{sys, u1}, reply: "R one", wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{sys, u1, a("R one"), u2}, reply: "R two", match: tape.GroupPrefix, kept: 3},
			{msgs: []map[string]any{sys, u1, a("R one"), u2, a("R two"), u3}, reply: "R three", match: tape.GroupPrefix, kept: 5},
			// Edit of the second user message: re-sends state after turn 0.
			{msgs: []map[string]any{sys, u1, a("R one"), msg("user", "two, edited")}, reply: "R two b", wantNew: true, match: tape.GroupFork, kept: 3},
			// Regenerate turn 2 of the original: re-sends its request, forks after turn 1.
			{msgs: []map[string]any{sys, u1, a("R one"), u2, a("R two"), u3}, reply: "R three b", wantNew: true, match: tape.GroupFork, kept: 5},
		}},
		{name: "whitespace in the echoed reply", convs: 1, steps: []step{
			{msgs: []map[string]any{u1}, reply: "alpha beta", wantNew: true, match: tape.GroupSingle},
			// The client trimmed and re-wrapped the reply: matched, but stored as sent.
			{msgs: []map[string]any{u1, a("  alpha\n beta\n"), u2}, reply: "gamma", match: tape.GroupPrefix, kept: 1},
			// The next turn echoes the client's own version of reply 1 and the exact reply 2.
			{msgs: []map[string]any{u1, a("  alpha\n beta\n"), u2, a("gamma"), u3}, reply: "delta", match: tape.GroupPrefix, kept: 4},
		}},
		{name: "session header wins over content", convs: 2, steps: []step{
			{msgs: []map[string]any{u1}, reply: "x", header: http.Header{"X-Session-Id": {"s1"}}, wantNew: true, match: tape.GroupSession},
			{msgs: []map[string]any{u2}, reply: "y", header: http.Header{"X-Session-Id": {"s1"}}, match: tape.GroupSession, kept: 0},
			{msgs: []map[string]any{u2, a("y"), u3}, reply: "z", header: http.Header{"X-Session-Id": {"s1"}}, match: tape.GroupSession, kept: 2},
			// Same content, other session: a new conversation.
			{msgs: []map[string]any{u1}, reply: "x", header: http.Header{"Helicone-Session-Id": {"s2"}}, wantNew: true, match: tape.GroupSession},
			{msgs: []map[string]any{u1, a("x"), u2}, reply: "x", header: http.Header{"X-Extra-Session": {"s2"}}, match: tape.GroupSession, kept: 2},
		}},
		{name: "retry after an error stays in the conversation", convs: 1, steps: []step{
			{msgs: []map[string]any{u1}, reply: "x", wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{u1, a("x"), u2}, status: 429, match: tape.GroupPrefix, kept: 2},
			{msgs: []map[string]any{u1, a("x"), u2}, reply: "y", match: tape.GroupPrefix, kept: 3},
			{msgs: []map[string]any{u1, a("x"), u2, a("y"), u3}, reply: "z", match: tape.GroupPrefix, kept: 4},
		}},
		{name: "retries that fail again stay in the conversation", convs: 1, steps: []step{
			{msgs: []map[string]any{u1}, reply: "x", wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{u1, a("x"), u2}, status: 503, match: tape.GroupPrefix, kept: 2},
			{msgs: []map[string]any{u1, a("x"), u2}, status: 502, match: tape.GroupPrefix, kept: 3},
			{msgs: []map[string]any{u1, a("x"), u2}, reply: "y", match: tape.GroupPrefix, kept: 3},
			{msgs: []map[string]any{u1, a("x"), u2, a("y"), u3}, reply: "z", match: tape.GroupPrefix, kept: 4},
		}},
		{name: "another question after an error continues the conversation", convs: 1, steps: []step{
			{msgs: []map[string]any{u1}, reply: "x", wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{u1, a("x"), u2}, status: 429, match: tape.GroupPrefix, kept: 2},
			{msgs: []map[string]any{u1, a("x"), u3}, reply: "y", match: tape.GroupPrefix, kept: 2},
			{msgs: []map[string]any{u1, a("x"), u3, a("y"), u2}, reply: "z", match: tape.GroupPrefix, kept: 4},
		}},
		{name: "the failed question kept and another added", convs: 1, steps: []step{
			{msgs: []map[string]any{u1}, reply: "x", wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{u1, a("x"), u2}, status: 500, match: tape.GroupPrefix, kept: 2},
			{msgs: []map[string]any{u1, a("x"), u2, u3}, reply: "y", match: tape.GroupPrefix, kept: 3},
		}},
		{name: "an empty reply echoed after an error is kept, not stored", convs: 1, steps: []step{
			{msgs: []map[string]any{u1}, reply: "x", wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{u1, a("x"), u2}, status: 429, match: tape.GroupPrefix, kept: 2},
			{msgs: []map[string]any{u1, a("x"), u2, a(""), u3}, reply: "y", match: tape.GroupPrefix, kept: 4},
		}},
		{name: "first-turn error then retry", convs: 1, steps: []step{
			{msgs: []map[string]any{sys, u1}, status: 503, wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{sys, u1}, reply: "x", match: tape.GroupPrefix, kept: 2},
			{msgs: []map[string]any{sys, u1, a("x"), u2}, reply: "y", match: tape.GroupPrefix, kept: 3},
		}},
		{name: "longest prefix wins", convs: 2, steps: []step{
			{msgs: []map[string]any{u1}, reply: "x", wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{u1, a("x"), u2}, reply: "y", match: tape.GroupPrefix, kept: 2},
			// A conversation whose only state is [u1, x] (the same first turn).
			{msgs: []map[string]any{u1}, reply: "x", wantNew: true, match: tape.GroupSingle},
			// Extends the first conversation's latest state (4 messages), not the other's (2).
			{msgs: []map[string]any{u1, a("x"), u2, a("y"), u3}, reply: "z", match: tape.GroupPrefix, kept: 4},
		}},
		{name: "tool calls", convs: 1, steps: []step{
			{msgs: []map[string]any{u1}, reply: "x", wantNew: true, match: tape.GroupSingle},
			{msgs: []map[string]any{u1, a("x"), {"role": "user", "content": []any{map[string]any{"type": "text", "text": "two"}}}}, reply: "y", match: tape.GroupPrefix, kept: 2},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := mustStore(t)
			r := mustNew(t, s, recorder.Config{SessionHeaders: []string{"X-Extra-Session"}})
			xs := runSteps(t, s, r, tc.steps, t0)
			mustClose(t, r)
			convs := readAll(t, s)
			if len(convs) != tc.convs {
				t.Errorf("%d conversations, want %d", len(convs), tc.convs)
			}
			// Find each step's turn by its start time.
			byStart := map[int64]*tape.Turn{}
			var msgsOf = map[int64][]json.RawMessage{}
			for _, c := range convs {
				for _, ti := range c.turns {
					byStart[ti.turn.Timing.Start.UnixNano()] = ti.turn
					msgsOf[ti.turn.Timing.Start.UnixNano()] = ti.msgs
				}
			}
			for i, st := range tc.steps {
				tt := byStart[xs[i].Start.UnixNano()]
				if tt == nil {
					t.Fatalf("step %d not stored", i)
				}
				if (tt.Index == 0) != st.wantNew || tt.Match != st.match || tt.Request.Kept != st.kept {
					t.Errorf("step %d: index %d match %q kept %d; want new=%v %q kept %d", i, tt.Index, tt.Match, tt.Request.Kept, st.wantNew, st.match, st.kept)
				}
				if !sameMessages(t, msgsOf[xs[i].Start.UnixNano()], xs[i].ReqBody) {
					t.Errorf("step %d: rebuilt messages differ from the request", i)
				}
			}
		})
	}
}

// A conversation grouped by a session header keeps the header's name (not its value) for
// replay; one grouped by content keeps none.
func TestSessionHeaderName(t *testing.T) {
	s, _ := mustStore(t)
	r := mustNew(t, s, recorder.Config{SessionHeaders: []string{"X-Extra-Session"}})
	u1, u2 := msg("user", "one"), msg("user", "two")
	runSteps(t, s, r, []step{
		{msgs: []map[string]any{u1}, reply: "x", header: http.Header{"X-Session-Id": {"s1"}}},
		{msgs: []map[string]any{u1, msg("assistant", "x"), u2}, reply: "y", header: http.Header{"X-Session-Id": {"s1"}}},
		{msgs: []map[string]any{u2}, reply: "z", header: http.Header{"X-Extra-Session": {"s2"}}},
		{msgs: []map[string]any{msg("user", "three")}, reply: "w"},
	}, t0)
	mustClose(t, r)
	got := map[string]string{}
	for _, c := range readAll(t, s) {
		got[c.conv.Session] = c.conv.SessionHeader
	}
	want := map[string]string{"s1": "X-Session-Id", "s2": "X-Extra-Session", "": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("session headers by session %v, want %v", got, want)
	}
}

// A fork records its parent and the parent turn it branched from.
func TestForkParent(t *testing.T) {
	s, _ := mustStore(t)
	r := mustNew(t, s, recorder.Config{})
	u1, u2 := msg("user", "one"), msg("user", "two")
	runSteps(t, s, r, []step{
		{msgs: []map[string]any{u1}, reply: "x"},
		{msgs: []map[string]any{u1, msg("assistant", "x"), u2}, reply: "y"},
		{msgs: []map[string]any{u1, msg("assistant", "x"), msg("user", "other")}, reply: "z"},
	}, t0)
	mustClose(t, r)
	var parent, fork *tape.Conversation
	for _, c := range readAll(t, s) {
		if c.conv.Grouping == tape.GroupFork {
			fork = c.conv
		} else {
			parent = c.conv
		}
	}
	if fork == nil || parent == nil || fork.Parent != parent.ID || fork.ForkTurn != 0 || parent.Turns != 2 || fork.Turns != 1 {
		t.Fatalf("parent %+v fork %+v", parent, fork)
	}
}

// A conversation recorded before a restart continues after it, in its recording; a fork of it
// after the restart has it as parent.
func TestContinueAcrossRestart(t *testing.T) {
	s, _ := mustStore(t)
	u1, u2, u3 := msg("user", "one"), msg("user", "two"), msg("user", "three")
	a := func(s string) map[string]any { return msg("assistant", s) }

	r1 := mustNew(t, s, recorder.Config{})
	runSteps(t, s, r1, []step{
		{msgs: []map[string]any{u1}, reply: "x"},
		{msgs: []map[string]any{u1, a("x"), u2}, reply: "y"},
		{msgs: []map[string]any{u2}, reply: "q", header: http.Header{"X-Session-Id": {"sess"}}},
	}, t0)
	mustClose(t, r1)

	r2 := mustNew(t, s, recorder.Config{})
	if got := r2.Stats().Open; got != 2 {
		t.Errorf("open conversations after rebuild: %d, want 2", got)
	}
	runSteps(t, s, r2, []step{
		{msgs: []map[string]any{u1, a("x"), u2, a("y"), u3}, reply: "z"},
		{msgs: []map[string]any{u1, a("x"), msg("user", "edit")}, reply: "w"},
		{msgs: []map[string]any{msg("user", "more")}, reply: "r", header: http.Header{"X-Session-Id": {"sess"}}},
	}, t0.Add(time.Hour))
	mustClose(t, r2)

	convs := readAll(t, s)
	if len(convs) != 3 {
		t.Fatalf("%d conversations, want 3", len(convs))
	}
	for _, c := range convs {
		switch c.conv.Grouping {
		case tape.GroupSingle:
			if len(c.turns) != 3 || c.conv.Recording != r1.Recording() || c.turns[2].turn.Request.Kept != 4 {
				t.Errorf("continued conversation: %d turns, recording %d", len(c.turns), c.conv.Recording)
			}
		case tape.GroupFork:
			if c.conv.Recording != r2.Recording() || c.conv.ForkTurn != 0 || convs[c.conv.Parent] == nil {
				t.Errorf("fork %+v", c.conv)
			}
		case tape.GroupSession:
			if len(c.turns) != 2 {
				t.Errorf("session conversation has %d turns, want 2", len(c.turns))
			}
		}
	}
}

// Secrets never reach the store: headers the rule calls secrets, headers named in
// Config.RedactHeaders, and the password of the upstream URL. Session headers stay, also one
// whose name the rule would catch when it is named in Config.SessionHeaders.
func TestRedactHeaders(t *testing.T) {
	s, path := mustStore(t)
	r := mustNew(t, s, recorder.Config{
		RedactHeaders:  []string{"X-Tenant"},
		SessionHeaders: []string{"X-Chat-Key"},
		Upstream:       "http://user:upstream-pw@127.0.0.1:8000",
	})
	x := exchange(t0, chatPath, chatBody(msg("user", "hi")), 200, "text/event-stream", sseOf("ok", true))
	x.ReqHeader.Set("Authorization", "Bearer sk-secret")
	x.ReqHeader.Set("Cookie", "a=b")
	x.ReqHeader.Set("X-Goog-Api-Key", "goog-secret")
	x.ReqHeader.Set("X-My-Token", "tok-secret")
	x.ReqHeader.Set("X-Tenant", "tenant-secret")
	x.ReqHeader.Set("X-Session-ID", "sess-kept")
	x.ReqHeader.Set("X-Chat-Key", "chat-kept")
	x.ReqHeader.Set("User-Agent", "test")
	x.RespHeader.Set("Set-Cookie", "c=d")
	r.Capture(x)
	mustClose(t, r)
	for _, c := range readAll(t, s) {
		tt := c.turns[0].turn
		for _, h := range []string{"Authorization", "Cookie", "X-Goog-Api-Key", "X-My-Token", "X-Tenant"} {
			if _, ok := tt.Request.Headers[h]; ok {
				t.Errorf("request header %s stored", h)
			}
		}
		if _, ok := tt.Response.Headers["Set-Cookie"]; ok {
			t.Error("Set-Cookie stored")
		}
		if tt.Request.Headers["User-Agent"] != "test" || tt.Request.Headers["X-Session-Id"] != "sess-kept" || tt.Request.Headers["X-Chat-Key"] != "chat-kept" {
			t.Errorf("headers %v", tt.Request.Headers)
		}
	}
	s.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"sk-secret", "goog-secret", "tok-secret", "tenant-secret", "upstream-pw"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("store file contains %q", secret)
		}
	}
}

// A session header that is also redacted is a secret like any other: its value is stored
// neither as a header nor as the conversation's session id, and it groups nothing.
func TestRedactedSessionHeaderNamesNoConversation(t *testing.T) {
	s, path := mustStore(t)
	r := mustNew(t, s, recorder.Config{RedactHeaders: []string{"x-session-id"}})
	x := exchange(t0, chatPath, chatBody(msg("user", "hi")), 200, "text/event-stream", sseOf("ok", true))
	x.ReqHeader.Set("X-Session-ID", "sess-secret-value")
	r.Capture(x)
	mustClose(t, r)
	for _, c := range readAll(t, s) {
		if c.conv.Session != "" || c.conv.SessionHeader != "" {
			t.Errorf("conversation session %q from header %q, want none", c.conv.Session, c.conv.SessionHeader)
		}
	}
	s.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("sess-secret-value")) {
		t.Error("the store file holds the redacted session header's value")
	}
}

// Capture never blocks: a full queue and a closed recorder count exchanges as not recorded,
// other paths as ignored; every exchange is accounted for.
func TestCaptureAccounting(t *testing.T) {
	s, _ := mustStore(t)
	r := mustNew(t, s, recorder.Config{QueueSize: 1, Workers: 1})
	x := func() *proxy.Exchange {
		return exchange(t0, chatPath, chatBody(msg("user", "hi")), 200, "text/event-stream", sseOf("a b c d e f g h", true))
	}
	models := exchange(t0, "/v1/models", nil, 200, "application/json", []byte(`{}`))
	r.Capture(models) // the queue is empty: it is taken, and ignored
	const n = 2000
	for range n {
		r.Capture(x())
	}
	mustClose(t, r)
	r.Capture(x())
	st := r.Stats()
	if st.Seen != n+2 || st.Recorded+st.NotRecorded+st.Ignored != st.Seen || st.Ignored != 1 || st.Errors != 0 {
		t.Errorf("stats do not add up: %+v", st)
	}
	if st.NotRecorded < 2 {
		t.Errorf("a queue of 1 took %d of %d exchanges captured in a loop", st.Recorded, n)
	}
	if st.QueueDepth != 0 {
		t.Errorf("queue depth after close: %d", st.QueueDepth)
	}
}

// Body session fields name a conversation too.
func TestBodySession(t *testing.T) {
	s, _ := mustStore(t)
	r := mustNew(t, s, recorder.Config{})
	for i, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"a"}],"metadata":{"session_id":"m1"}}`,
		`{"model":"m","messages":[{"role":"user","content":"b"}],"metadata":{"session_id":"m1"}}`,
		`{"model":"m","messages":[{"role":"user","content":"c"}],"session_id":42}`,
		`{"model":"m","messages":[{"role":"user","content":"d"}],"conversation_id":"42"}`,
	} {
		r.Capture(exchange(t0.Add(time.Duration(i)*time.Second), chatPath, []byte(body), 200, "text/event-stream", sseOf("x", true)))
	}
	mustClose(t, r)
	convs := readAll(t, s)
	if len(convs) != 2 {
		t.Fatalf("%d conversations, want 2", len(convs))
	}
	for _, c := range convs {
		if c.conv.Grouping != tape.GroupSession || len(c.turns) != 2 || (c.conv.Session != "m1" && c.conv.Session != "42") {
			t.Errorf("conversation %+v with %d turns", c.conv, len(c.turns))
		}
	}
}

// Many conversations that begin alike (same prompt, same reply): a burst of 100 at once, then
// 1,000 one after another. Every second turn continues one of them (never a fork), and when
// only one twin is open it is the right one.
func TestManyTwins(t *testing.T) {
	first := []map[string]any{msg("system", "sys"), msg("user", "same question")}
	second := func(i int) []map[string]any {
		return append(append([]map[string]any{}, first...), msg("assistant", "same answer"), msg("user", fmt.Sprint("follow-up ", i)))
	}
	s, _ := mustStore(t)
	r := mustNew(t, s, recorder.Config{})
	at := t0
	next := func() time.Time { at = at.Add(time.Second); return at }
	const burst, serial = 100, 1000
	for range burst {
		r.Capture(exchange(next(), chatPath, chatBody(first...), 200, "text/event-stream", sseOf("same answer", true)))
	}
	for i := range burst {
		r.Capture(exchange(next(), chatPath, chatBody(second(i)...), 200, "text/event-stream", sseOf("ok", true)))
	}
	for i := burst; i < burst+serial; i++ {
		r.Capture(exchange(next(), chatPath, chatBody(first...), 200, "text/event-stream", sseOf("same answer", true)))
		r.Capture(exchange(next(), chatPath, chatBody(second(i)...), 200, "text/event-stream", sseOf("ok", true)))
	}
	mustClose(t, r)
	convs := readAll(t, s)
	if len(convs) != burst+serial {
		t.Fatalf("%d conversations, want %d", len(convs), burst+serial)
	}
	for _, c := range convs {
		if len(c.turns) != 2 || c.conv.Grouping != tape.GroupPrefix || c.turns[1].turn.Match != tape.GroupPrefix {
			t.Fatalf("conversation %+v: %d turns", c.conv, len(c.turns))
		}
		// Serial conversations: turn 1 directly follows its own turn 0.
		if d := c.turns[1].turn.Timing.Start.Sub(c.turns[0].turn.Timing.Start); c.turns[0].turn.Timing.Start.After(t0.Add(2*burst*time.Second)) && d != time.Second {
			t.Errorf("conversation %d: serial follow-up %v after its first turn, want 1s", c.conv.ID, d)
		}
	}
}

// A running recorder writes its count of exchanges not recorded into the recording as it goes,
// so that a recording cut short (kill -9: no Close) still says how many it lacks.
func TestNotRecordedIsWrittenWhileRunning(t *testing.T) {
	s, _ := mustStore(t)
	r, err := recorder.New(s, recorder.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Captured before Start: not recorded.
	r.Capture(exchange(t0, chatPath, chatBody(msg("user", "early")), 200, "text/event-stream", sseOf("ok", true)))
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rec, err := s.Recording(r.Recording())
		if err != nil {
			t.Fatal(err)
		}
		if rec.NotRecorded == 1 && !rec.Complete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording while running: not_recorded %d complete %v, want 1 false", rec.NotRecorded, rec.Complete)
		}
		time.Sleep(20 * time.Millisecond) // polling the store: the write is due within a second
	}
	mustClose(t, r)
	if rec, err := s.Recording(r.Recording()); err != nil || rec.NotRecorded != 1 || rec.Complete {
		t.Errorf("after Close: %+v, %v", rec, err)
	}
}
