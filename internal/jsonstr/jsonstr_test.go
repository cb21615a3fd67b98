package jsonstr_test

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/llmtape/llmtape/internal/jsonstr"
)

func TestAppend(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{"a\"b\\c", `"a\"b\\c"`},
		{"\n\r\t\x00\x1f", `"\n\r\t\u0000\u001f"`},
		{"<tag> & é 😀", `"<tag> & é 😀"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"a\xffb", `"a\ufffdb"`},
	}
	for _, tt := range tests {
		if got := string(jsonstr.Append([]byte("x"), tt.in)); got != "x"+tt.want {
			t.Errorf("Append(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzAppend: any string gives valid JSON, which decodes to the string when it is valid UTF-8.
func FuzzAppend(f *testing.F) {
	f.Add("a\"\\\n\x00\u2028<>&\xff😀")
	f.Fuzz(func(t *testing.T, s string) {
		b := jsonstr.Append(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Append(%q) = %s: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("Append(%q) decodes to %q", s, back)
		}
	})
}

func TestKind(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "nothing"}, {`{"a":1}`, "an object"}, {"[1]", "an array"}, {`"s"`, "a string"},
		{"true", "a boolean"}, {"false", "a boolean"}, {"null", "null"}, {"-1.5", "a number"},
		{"x", "a number"}, {" {}", "a number"},
	} {
		if got := jsonstr.Kind([]byte(tt.in)); got != tt.want {
			t.Errorf("Kind(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
