package tape

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"io"
	"math/big"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/internal/jsonstr"
)

// ReplyMessage returns a turn's reply as the assistant message a client echoes back in its
// next request: {"role":"assistant","content":"..."}, with "tool_calls" when the reply has
// tool calls (and "content":null when it then has no text). The recorder compares the
// client's echoed message with it (JSONEqual) to decide Request.Kept.
func ReplyMessage(t *Turn) json.RawMessage {
	return replyMessage(t.Response.Content, t.Response.ToolCalls)
}

// replyMessage is the assistant message of a reply of content and tool calls.
func replyMessage(content string, toolCalls json.RawMessage) json.RawMessage {
	tc := bytes.TrimSpace(toolCalls)
	hasTools := len(tc) > 0 && !bytes.Equal(tc, []byte("null"))
	b := make([]byte, 0, len(content)+len(tc)+48)
	b = append(b, `{"role":"assistant","content":`...)
	if hasTools && content == "" {
		b = append(b, "null"...)
	} else {
		b = jsonstr.Append(b, content)
	}
	if hasTools {
		b = append(b, `,"tool_calls":`...)
		b = append(b, tc...)
	}
	b = append(b, '}')
	return b
}

// JSONEqual reports whether a and b are the same JSON value: object key order and
// insignificant white space are ignored, strings compare by their decoded text and numbers by
// their value (1, 1.0 and 1e0 are equal). Invalid JSON is equal only to identical bytes.
func JSONEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, ok := decodeJSON(a)
	if !ok {
		return false
	}
	vb, ok := decodeJSON(b)
	if !ok {
		return false
	}
	return jsonValueEqual(va, vb)
}

// MessageHash is the content hash of one message stored in MessageMeta.Hash: FNV-1a 64 of the
// message's canonical JSON (object keys sorted, no insignificant white space, strings
// re-escaped minimally, numbers as written). Messages that differ only in key order, white
// space or string escapes hash equally; numbers are compared as written (1 and 1.0 differ).
// raw that is not exactly one JSON value (invalid, empty, or with trailing data) is hashed as
// its bytes.
//
// Stored hashes depend on this function: its value for a given input must never change.
func MessageHash(raw json.RawMessage) uint64 {
	h := fnv.New64a()
	// Encoding straight into the hash spares a copy of the canonical form (a 50 MB message
	// is imported with a few times its size of memory, not ten).
	v, ok := decodeJSON(raw)
	if !ok {
		h.Write(raw)
		return h.Sum64()
	}
	e := json.NewEncoder(trimNewline{h})
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		h.Reset()
		h.Write(raw)
	}
	return h.Sum64()
}

// trimNewline writes what it is given without the newline that json.Encoder.Encode adds in
// its one Write, so that the hash is of the canonical form alone.
type trimNewline struct{ w io.Writer }

func (t trimNewline) Write(p []byte) (int, error) {
	if _, err := t.w.Write(bytes.TrimSuffix(p, []byte("\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// decodeJSON decodes raw keeping numbers as written; false when raw is not exactly one JSON
// value. Encoded again, the value has sorted object keys and no insignificant white space.
func decodeJSON(b []byte) (any, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	if len(bytes.TrimLeft(b[d.InputOffset():], " \t\r\n")) > 0 {
		return nil, false // trailing data
	}
	return v, true
}

func jsonValueEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !jsonValueEqual(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonValueEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		return numberEqual(string(x), string(y))
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	return false
}

// numberEqual compares two JSON numbers by value: exactly for plain decimals, as float64 for
// numbers with an exponent (which big.Rat would expand without bound).
func numberEqual(x, y string) bool {
	if strings.ContainsAny(x, "eE") || strings.ContainsAny(y, "eE") {
		fx, errx := strconv.ParseFloat(x, 64)
		fy, erry := strconv.ParseFloat(y, 64)
		return errx == nil && erry == nil && fx == fy
	}
	rx, okx := new(big.Rat).SetString(x)
	ry, oky := new(big.Rat).SetString(y)
	return okx && oky && rx.Cmp(ry) == 0
}
