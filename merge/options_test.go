package merge

import (
	"encoding/json"
	"testing"

	"github.com/llmtape/llmtape/tape"
)

func TestWithRecording(t *testing.T) {
	for _, tc := range []struct {
		in   string
		id   uint64
		want string
	}{
		{`{"target":"x","recording":3}`, 7, `{"recording":7,"target":"x"}`},
		{`{"target":"x"}`, 7, `{"target":"x"}`},
		{`{"recording":3}`, 0, `{"recording":3}`},
		{`[1,2]`, 7, `[1,2]`},
		{`not json`, 7, `not json`},
		{``, 7, ``},
		{`null`, 7, `null`},
	} {
		got := withRecording(json.RawMessage(tc.in), tc.id)
		if string(got) != tc.want {
			t.Errorf("withRecording(%s, %d) = %s, want %s", tc.in, tc.id, got, tc.want)
		}
	}
}

// FuzzWithRecording: run options come from a store that another llmtape wrote; rewriting them
// never panics, and valid JSON stays valid.
func FuzzWithRecording(f *testing.F) {
	for _, s := range []string{`{"recording":1}`, `{"recording":"x","a":[1,{}]}`, `{}`, `[]`, `"s"`, `{"recording":1,"recording":2}`} {
		f.Add([]byte(s), uint64(5))
	}
	f.Fuzz(func(t *testing.T, in []byte, id uint64) {
		out := withRecording(in, id)
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("withRecording(%q) = %q: invalid JSON", in, out)
		}
		if !json.Valid(in) && !tape.JSONEqual(in, out) {
			t.Fatalf("invalid input changed: %q → %q", in, out)
		}
	})
}
