package analyze

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// Replies are equal when content and tool calls are, whatever the tool calls' spacing; a
// divergence inside a multi-byte character starts its snippets at that character.
func TestReplyCompare(t *testing.T) {
	a := replyOf("ok", json.RawMessage(`[{"id": "c1", "type": "function"}]`))
	b := replyOf("ok", json.RawMessage(`[{"id":"c1","type":"function"}]`))
	if a != b || a.text() != `ok`+"\n"+`[{"id":"c1","type":"function"}]` {
		t.Errorf("tool calls compared by their spacing: %+v vs %+v", a, b)
	}
	if r := replyOf("ok", json.RawMessage(`null`)); r.tools != "" {
		t.Errorf("null tool calls: %+v", r)
	}
	if replyOf("ok", nil) == replyOf("ok", json.RawMessage(`[{"id":"c2"}]`)) {
		t.Error("a reply with tool calls equals one without")
	}

	x, y := "caf\u00e9 au lait", "caf\u00e8 au lait" // é and è share their first byte
	at := commonBytes(x, y)
	if at != 3 || snippet(x, at) != "\u00e9 au lait" || snippet(y, at) != "\u00e8 au lait" {
		t.Errorf("divergence at byte %d: %q / %q", at, snippet(x, at), snippet(y, at))
	}
	if n := commonTokens("the same start, then one way", "the same start, then another"); n == 0 {
		t.Error("no common tokens in a shared prefix")
	}
	long := strings.Repeat("\u00e9", 100) // 200 bytes
	if s := snippet(long, 0); !utf8.ValidString(s) || !strings.HasSuffix(s, "…") || len(s) > snippetBytes+len("…") {
		t.Errorf("long snippet %q", s)
	}
	if got := sharePct(399.0 / 400); got != "99.7" {
		t.Errorf("399 of 400 reads %s%%", got)
	}
	if got := sharePct(0.99999); got != "99.9" {
		t.Errorf("0.99999 reads %s%%, never 100", got)
	}
}
