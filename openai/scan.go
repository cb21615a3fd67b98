package openai

import (
	"encoding/json"
	"errors"
	"strconv"
)

// This file holds a minimal scanner over JSON text that has already been
// checked with json.Valid: it splits objects into their members and arrays
// into their elements without decoding the values, so that values can be
// kept byte for byte.

// member is one top-level member of a JSON object, kept verbatim.
type member struct {
	key    string          // decoded key
	rawKey []byte          // the key as written, with its quotes
	value  json.RawMessage // the value as written, without surrounding space
}

var errNotObject = errors.New("not a JSON object")

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string that starts at b[i] ('"').
func skipString(b []byte, i int) int {
	i++
	for i < len(b) {
		switch b[i] {
		case '\\':
			i += 2
		case '"':
			return i + 1
		default:
			i++
		}
	}
	return len(b)
}

// skipValue returns the index just past the JSON value that starts at b[i].
// b must be valid JSON from i on.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// decodeKey returns the value of the JSON string raw (with quotes).
func decodeKey(raw []byte) string {
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				return s
			}
			break
		}
	}
	return string(inner)
}

// splitObject splits the valid JSON text b into its members. It fails when
// the value is not an object.
func splitObject(b []byte) ([]member, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errNotObject
	}
	i = skipSpace(b, i+1)
	var out []member
	if i < len(b) && b[i] == '}' {
		return out, nil
	}
	for i < len(b) {
		if b[i] != '"' {
			return nil, errNotObject
		}
		ke := skipString(b, i)
		rawKey := b[i:ke]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return nil, errNotObject
		}
		i = skipSpace(b, i+1)
		ve := skipValue(b, i)
		out = append(out, member{key: decodeKey(rawKey), rawKey: rawKey, value: b[i:ve]})
		i = skipSpace(b, ve)
		if i >= len(b) {
			break
		}
		if b[i] == '}' {
			return out, nil
		}
		if b[i] != ',' {
			return nil, errNotObject
		}
		i = skipSpace(b, i+1)
	}
	return nil, errNotObject
}

// splitArray splits the valid JSON array text b into its elements. ok is
// false when b is not an array.
func splitArray(b []byte) (elems []json.RawMessage, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	elems = []json.RawMessage{}
	if i < len(b) && b[i] == ']' {
		return elems, true
	}
	for i < len(b) {
		ve := skipValue(b, i)
		elems = append(elems, b[i:ve])
		i = skipSpace(b, ve)
		if i >= len(b) {
			break
		}
		if b[i] == ']' {
			return elems, true
		}
		if b[i] != ',' {
			return nil, false
		}
		i = skipSpace(b, i+1)
	}
	return nil, false
}

// quote returns s as a JSON string.
func quote(s string) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		return []byte(strconv.Quote(s))
	}
	return b
}
