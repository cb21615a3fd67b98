package tape_test

import (
	"bytes"
	"encoding/json"
	"sort"
	"testing"

	"github.com/llmtape/llmtape/tape"
)

func TestJSONEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{`{"role":"user","content":"hi"}`, `{"content":"hi","role":"user"}`, true},
		{`{"a": [1, 2, {"b": null}]}`, "{\"a\":[1,2,{\"b\":null}]}\n", true},
		{`{"a":1}`, `{"a":1.0}`, true},
		{`{"a":1}`, `{"a":1e0}`, true},
		{`{"a":100}`, `{"a":1E2}`, true},
		{`12345678901234567890`, `12345678901234567891`, false},
		{`"\u00e9<>&"`, `"é<>&"`, true},
		{`"\ud83d\ude00"`, `"😀"`, true},
		{`{"a":1}`, `{"a":2}`, false},
		{`{"a":1}`, `{"a":1,"b":2}`, false},
		{`[1,2]`, `[2,1]`, false},
		{`{"a":"1"}`, `{"a":1}`, false},
		{`null`, `{}`, false},
		{`true`, `true`, true},
		{`{"a":1} x`, `{"a":1}`, false},
		{`{`, `{`, true}, // identical bytes
		{`{`, `{ `, false},
		{``, `null`, false},
	}
	for _, tt := range tests {
		if got := tape.JSONEqual([]byte(tt.a), []byte(tt.b)); got != tt.want {
			t.Errorf("JSONEqual(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := tape.JSONEqual([]byte(tt.b), []byte(tt.a)); got != tt.want {
			t.Errorf("JSONEqual(%s, %s) = %v, want %v (reversed)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestReplyMessage(t *testing.T) {
	tools := json.RawMessage(`[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]`)
	tests := []struct {
		name string
		resp tape.Response
		want string
	}{
		{"text", tape.Response{Content: "Hello <b>\"world\"</b>\n\u2028"}, `{"role":"assistant","content":"Hello <b>\"world\"</b>\n\u2028"}`},
		{"empty", tape.Response{}, `{"role":"assistant","content":""}`},
		{"tool calls", tape.Response{ToolCalls: tools}, `{"role":"assistant","content":null,"tool_calls":` + string(tools) + `}`},
		{"text and tool calls", tape.Response{Content: "x", ToolCalls: tools}, `{"role":"assistant","content":"x","tool_calls":` + string(tools) + `}`},
		{"null tool calls", tape.Response{Content: "x", ToolCalls: json.RawMessage(`null`)}, `{"role":"assistant","content":"x"}`},
		{"control and invalid utf-8", tape.Response{Content: "a\x01b\xffc\t"}, `{"role":"assistant","content":"a\u0001b\ufffdc\t"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tape.ReplyMessage(&tape.Turn{Response: tt.resp})
			if !json.Valid(got) {
				t.Fatalf("invalid JSON %s", got)
			}
			if !tape.JSONEqual(got, []byte(tt.want)) {
				t.Errorf("ReplyMessage = %s, want %s", got, tt.want)
			}
		})
	}
}

// FuzzJSONEqual: JSONEqual compares client-sent bodies; it must not panic, must find every
// valid value equal to itself and to its re-encoding, and be symmetric.
func FuzzJSONEqual(f *testing.F) {
	f.Add([]byte(`{"role":"user","content":"hi"}`), []byte(`{"content":"hi","role":"user"}`))
	f.Add([]byte(`[1,1.0,1e400,-0]`), []byte(`[1, 1, 1e400, 0]`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if tape.JSONEqual(a, b) != tape.JSONEqual(b, a) {
			t.Fatalf("not symmetric: %q %q", a, b)
		}
		var v any
		if json.Unmarshal(a, &v) == nil {
			if !tape.JSONEqual(a, a) {
				t.Fatalf("not equal to itself: %q", a)
			}
			// MessageHash ignores white space and key order.
			var ind bytes.Buffer
			if json.Indent(&ind, a, " ", "\t") == nil && tape.MessageHash(ind.Bytes()) != tape.MessageHash(a) {
				t.Fatalf("MessageHash differs after indenting %q", a)
			}
			if m, ok := v.(map[string]any); ok && len(m) > 1 {
				// Keys re-ordered (encoding/json sorts them; reverse them instead).
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				sort.Sort(sort.Reverse(sort.StringSlice(keys)))
				var dec map[string]json.RawMessage
				if json.Unmarshal(a, &dec) == nil && len(dec) == len(keys) {
					r := []byte("{")
					for i, k := range keys {
						if i > 0 {
							r = append(r, ',')
						}
						kb, _ := json.Marshal(k)
						r = append(append(append(r, kb...), ':'), dec[k]...)
					}
					r = append(r, '}')
					if tape.MessageHash(r) != tape.MessageHash(a) {
						t.Fatalf("MessageHash differs with keys reversed: %q vs %q", a, r)
					}
				}
			}
		}
		// ReplyMessage always gives valid JSON.
		if m := tape.ReplyMessage(&tape.Turn{Response: tape.Response{Content: string(a)}}); !json.Valid(m) {
			t.Fatalf("ReplyMessage(%q) = %s is not valid JSON", a, m)
		}
	})
}

// TestMessageHashPinned pins MessageHash: stored MessageMeta.Hash values depend on it, so a
// change here is a change of the store format.
func TestMessageHashPinned(t *testing.T) {
	tests := []struct {
		raw  string
		want uint64
	}{
		{`{"role":"user","content":"hi"}`, 0x9e6012d7d285137e},
		{` { "content": "hi",` + "\n" + `"role": "user" } `, 0x9e6012d7d285137e}, // key order, white space
		{`{"role":"user","content":"\u0068i"}`, 0x9e6012d7d285137e},              // escapes
		{`{"role":"assistant","content":"a <b> & \u00e9","n":1.50}`, 0x507ec6e6524f746b},
		{`{"role":"tool","tool_call_id":"c1","content":"{\"x\":1}"}`, 0x7d6e84e4bc0eb1b6},
		{`{"a":1}`, 0x9c3e82dd6fcae8b1},
		{`not json`, 0x5cf74153161a1a88},        // raw bytes
		{``, 0xcbf29ce484222325},                // FNV-1a offset basis
		{`{"a":1} {"b":2}`, 0xdd32f157332c8069}, // trailing data: raw bytes, not {"a":1}
	}
	for _, tt := range tests {
		if got := tape.MessageHash(json.RawMessage(tt.raw)); got != tt.want {
			t.Errorf("MessageHash(%q) = %#x, want %#x", tt.raw, got, tt.want)
		}
	}
	if tape.MessageHash(json.RawMessage(`{"a":1}`)) == tape.MessageHash(json.RawMessage(`{"a":1.0}`)) {
		t.Error("numbers must hash as written")
	}
}
