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
