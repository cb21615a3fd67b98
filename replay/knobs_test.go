package replay_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/replay"
)

func TestParseExtraBody(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: ` { "chat_template_kwargs" : {"enable_thinking": false} } `, want: `{"chat_template_kwargs":{"enable_thinking":false}}`},
		{in: `{}`, want: `{}`},
		{in: `{"max_tokens":7,"model":"m","seed":1}`, want: `{"max_tokens":7,"model":"m","seed":1}`},
		{in: ``, err: "want a JSON object"},
		{in: `null`, err: "want a JSON object"},
		{in: `"x"`, err: "want a JSON object"},
		{in: `{"a":1} {}`, err: "want a JSON object"},
		{in: `{"prompt":"x"}`, err: `"prompt" is set by the replayer`},
		{in: `{"messages":null}`, err: `"messages" is set by the replayer`},
		{in: `{"stream":true}`, err: `"stream" is set by the replayer`},
		{in: `{"ignore_eos":"yes"}`, err: "ignore_eos"},
	} {
		got, err := replay.ParseExtraBody(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseExtraBody(%q) = %s, %v; want error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || string(got) != tc.want):
			t.Errorf("ParseExtraBody(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseExtraBody: any input is either refused or a JSON object without the members the
// replayer owns; never a panic.
func FuzzParseExtraBody(f *testing.F) {
	for _, s := range []string{`{"chat_template_kwargs":{"enable_thinking":false}}`, `{"max_tokens":1}`, `[]`, `{"stream":1}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"\u0000":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := replay.ParseExtraBody(s)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(got, &m); err != nil || m == nil {
			t.Fatalf("ParseExtraBody(%q) = %s: not an object: %v", s, got, err)
		}
		for _, k := range []string{"messages", "prompt", "stream", "stream_options"} {
			if _, ok := m[k]; ok {
				t.Fatalf("ParseExtraBody(%q) kept %q", s, k)
			}
		}
	})
}

// TestClientsOneRequestEach: under the vLLM preset every conversation is sent whole, in turn
// order, and at most Clients requests are in flight (each client sends one at a time).
func TestClientsOneRequestEach(t *testing.T) {
	rs := makeStore(t, specs(7, 3, 0, 0))
	tg := newTarget(t, 0)
	rep := mustRun(t, rs.store, replay.Config{Target: tg.url, Clients: 3, ActiveConversations: 6, Think: replay.ThinkNone})
	if rep.Summary.Requests.Total != 21 || rep.Summary.Requests.Errors != 0 {
		t.Fatalf("requests %+v, want 21 without errors", rep.Summary.Requests)
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	last := map[string]int{} // messages of each conversation's previous request
	for _, r := range tg.reqs {
		first := string(r.messages[1]) // the first user message names the conversation
		if prev, ok := last[first]; ok && len(r.messages) != prev+2 {
			t.Errorf("conversation %.30s: %d messages after %d, want its turns in order", first, len(r.messages), prev)
		}
		last[first] = len(r.messages)
	}
	if len(last) != 7 {
		t.Errorf("%d conversations sent, want 7", len(last))
	}
	// In flight when a request arrived: the others that had arrived and not ended (the target
	// stamps a reply's end before its last write, so a client's next request comes after it).
	for i, r := range tg.reqs {
		open := 0
		for j, o := range tg.reqs {
			if j != i && o.at.Before(r.at) && o.end.After(r.at) {
				open++
			}
		}
		if open >= 3 {
			t.Errorf("request %d arrived with %d others in flight, want at most 2 (3 clients)", i, open)
		}
	}
}

// TestClientsComposeWithLimits: --max-requests stops the clients, and the run is whole (as
// without the preset); the conversations the clients hold are not sent on.
func TestClientsComposeWithLimits(t *testing.T) {
	rs := makeStore(t, specs(6, 3, 0, 0))
	tg := newTarget(t, 0)
	rep := mustRun(t, rs.store, replay.Config{Target: tg.url, Clients: 2, ActiveConversations: 4,
		Think: replay.ThinkNone, MaxRequests: 5, History: replay.HistoryLive})
	if rep.Summary.Requests.Total != 5 || len(tg.received()) != 5 || rep.Run.Partial {
		t.Errorf("%d requests (%d received), partial %v; want 5, not partial", rep.Summary.Requests.Total, len(tg.received()), rep.Run.Partial)
	}
}
