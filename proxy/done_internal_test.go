package proxy

import (
	"strings"
	"testing"
)

func TestEndsWithDone(t *testing.T) {
	for body, want := range map[string]bool{
		"data: {}\n\ndata: [DONE]\n\n": true,
		"data:[DONE]":                  true,
		"data: [DONE]  \r\n\r\n":       true,
		"[DONE]":                       false,
		"data: {}\n\n":                 false,
		"data: [DONE]\n\ndata: {}\n\n": false,
		"":                             false,
		"event: x\ndata: [DONE]x\n\n":  false,
	} {
		if got := endsWithDone([]byte(body)); got != want {
			t.Errorf("endsWithDone(%q) = %v, want %v", body, got, want)
		}
	}
}

// FuzzEndsWithDone: any body, no panic; true only when the last line is a [DONE] data line.
func FuzzEndsWithDone(f *testing.F) {
	f.Add([]byte("data: [DONE]\n\n"))
	f.Add([]byte("data: {}\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if endsWithDone(body) {
			s := strings.TrimRight(string(body), " \r\n")
			last := s[strings.LastIndexByte(s, '\n')+1:]
			if !strings.HasPrefix(last, "data:") || !strings.Contains(last, "[DONE]") {
				t.Errorf("endsWithDone(%q) with last line %q", body, last)
			}
		}
	})
}
