package openai

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/llmtape/llmtape/internal/jsonstr"
)

// This file holds ParseChunk's decoder: a hand-written JSON reader for the
// one shape of a stream chunk. Stream chunks are the hot path of replay (one
// per generated token), so it avoids reflection, decodes keys without
// allocating, keeps id/object/model strings from the previous chunk when they
// repeat, interns the common role, type and finish-reason values, and
// reuses the Choices and ToolCalls arrays. Unknown members are skipped but
// still checked to be valid JSON. A member given twice counts once: the last
// one wins, as with encoding/json into a map.

type jsonReader struct {
	b         []byte
	i         int
	scratch   []byte // decoded string with escapes; valid until the next str call
	inScratch bool   // the last str result points into scratch
}

var errSyntax = errors.New("invalid JSON")

func (p *jsonReader) fail(what string) error {
	if p.i >= len(p.b) {
		return fmt.Errorf("%w: unexpected end of data, want %s", errSyntax, what)
	}
	return fmt.Errorf("%w: unexpected %q at offset %d, want %s", errSyntax, p.b[p.i], p.i, what)
}

func (p *jsonReader) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (p *jsonReader) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *jsonReader) consume(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// null consumes a null literal if one comes next.
func (p *jsonReader) null() bool {
	if p.peek() == 'n' && len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// object reads an object, calling member for each key with the reader placed
// at the value; member must consume the value. The key is valid only during
// the call.
func (p *jsonReader) object(member func(key []byte) error) error {
	if !p.consume('{') {
		return p.fail("an object")
	}
	if p.consume('}') {
		return nil
	}
	for {
		if p.peek() != '"' {
			return p.fail("a member name")
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		if !p.consume(':') {
			return p.fail("':'")
		}
		// member may overwrite p.scratch, which key may point into: keys
		// with escapes are rare enough to copy.
		if p.inScratch {
			key = append([]byte(nil), key...)
		}
		p.ws()
		if err := member(key); err != nil {
			return err
		}
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return nil
		}
		return p.fail("',' or '}'")
	}
}

// array reads an array, calling elem for each element with the reader
// placed at it; elem must consume it.
func (p *jsonReader) array(elem func(i int) error) error {
	if !p.consume('[') {
		return p.fail("an array")
	}
	if p.consume(']') {
		return nil
	}
	for i := 0; ; i++ {
		p.ws()
		if err := elem(i); err != nil {
			return err
		}
		if p.consume(',') {
			continue
		}
		if p.consume(']') {
			return nil
		}
		return p.fail("',' or ']'")
	}
}

// str reads a string and returns its decoded bytes, which point into the
// input when the string has no escapes and is valid UTF-8, else into
// p.scratch. Invalid UTF-8 becomes U+FFFD, as with encoding/json.
func (p *jsonReader) str() ([]byte, error) {
	if p.peek() != '"' {
		return nil, p.fail("a string")
	}
	p.inScratch = false
	start := p.i + 1
	i := start
	for i < len(p.b) {
		c := p.b[i]
		if c == '"' {
			s := p.b[start:i]
			p.i = i + 1
			if !utf8.Valid(s) {
				p.scratch = appendValidUTF8(p.scratch[:0], s)
				p.inScratch = true
				return p.scratch, nil
			}
			return s, nil
		}
		if c == '\\' {
			p.inScratch = true
			return p.strSlow(start)
		}
		if c < 0x20 {
			p.i = i
			return nil, p.fail("a string character")
		}
		i++
	}
	p.i = i
	return nil, p.fail(`'"'`)
}

func appendValidUTF8(dst, s []byte) []byte {
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, s[:n]...)
		}
		s = s[n:]
	}
	return dst
}

// strSlow decodes a string with escapes starting after its opening quote.
func (p *jsonReader) strSlow(start int) ([]byte, error) {
	out := p.scratch[:0]
	i := start
	for i < len(p.b) {
		c := p.b[i]
		switch {
		case c == '"':
			p.i = i + 1
			p.scratch = out
			return out, nil
		case c < 0x20:
			p.i = i
			return nil, p.fail("a string character")
		case c == '\\':
			if i+1 >= len(p.b) {
				p.i = len(p.b)
				return nil, p.fail("an escape")
			}
			e := p.b[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(p.b, i)
				if !ok {
					p.i = i
					return nil, p.fail("4 hex digits")
				}
				i += 4
				if utf16.IsSurrogate(r) {
					if r2, ok := hex4(p.b, i+2); ok && i+1 < len(p.b) && p.b[i] == '\\' && p.b[i+1] == 'u' {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							i += 6
							out = utf8.AppendRune(out, dec)
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				p.i = i - 1
				return nil, p.fail("an escape character")
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(p.b[i:])
			if r == utf8.RuneError && n == 1 {
				out = append(out, "\uFFFD"...)
			} else {
				out = append(out, p.b[i:i+n]...)
			}
			i += n
		}
	}
	p.i = i
	return nil, p.fail(`'"'`)
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number reads a number and returns its text.
func (p *jsonReader) number() ([]byte, error) {
	p.ws()
	start := p.i
	i := p.i
	b := p.b
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		p.i = i
		return nil, p.fail("a number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			p.i = i
			return nil, p.fail("a digit")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			p.i = i
			return nil, p.fail("a digit")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	p.i = i
	return b[start:i], nil
}

// optInt reads an integer that may be null (read as 0).
func (p *jsonReader) optInt(field string) (int, error) {
	if p.null() {
		return 0, nil
	}
	n, err := p.integer(field)
	return int(n), err
}

// integer reads a number that must be an integer (an integral float such as
// 3.0 is accepted).
func (p *jsonReader) integer(field string) (int64, error) {
	if p.peek() != '-' && (p.peek() < '0' || p.peek() > '9') {
		return 0, fmt.Errorf("%s: want an integer, got %s", field, jsonstr.Kind(p.b[p.i:]))
	}
	t, err := p.number()
	if err != nil {
		return 0, err
	}
	n := int64(0)
	neg := false
	d := t
	if d[0] == '-' {
		neg = true
		d = d[1:]
	}
	if len(d) <= 18 {
		ok := true
		for _, c := range d {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if ok {
			if neg {
				n = -n
			}
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil || f != float64(int64(f)) {
		return 0, fmt.Errorf("%s: want an integer, got %s", field, t)
	}
	return int64(f), nil
}

// skip reads and checks any value.
func (p *jsonReader) skip() error {
	return p.skipDepth(0)
}

const maxDepth = 10000

func (p *jsonReader) skipDepth(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested too deep", errSyntax)
	}
	switch c := p.peek(); c {
	case '{':
		return p.object(func([]byte) error { return p.skipDepth(depth + 1) })
	case '[':
		return p.array(func(int) error { return p.skipDepth(depth + 1) })
	case '"':
		_, err := p.str()
		return err
	case 't', 'f', 'n':
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
				p.i += len(lit)
				return nil
			}
		}
		return p.fail("a value")
	default:
		_, err := p.number()
		return err
	}
}

// raw reads any value and returns its text.
func (p *jsonReader) raw() ([]byte, error) {
	p.ws()
	start := p.i
	if err := p.skip(); err != nil {
		return nil, err
	}
	return p.b[start:p.i], nil
}

// optStr reads a string or null ("") and returns it as a Go string, reusing
// prev when the text is the same and interning well-known values.
func (p *jsonReader) optStr(field, prev string) (string, error) {
	if p.null() {
		return "", nil
	}
	if p.peek() != '"' {
		return "", fmt.Errorf("%s: want a string, got %s", field, jsonstr.Kind(p.b[p.i:]))
	}
	s, err := p.str()
	if err != nil {
		return "", err
	}
	if string(s) == prev {
		return prev, nil
	}
	switch string(s) {
	case "":
		return "", nil
	case "assistant":
		return "assistant", nil
	case "function":
		return "function", nil
	case "stop":
		return "stop", nil
	case "length":
		return "length", nil
	case "tool_calls":
		return "tool_calls", nil
	case "chat.completion.chunk":
		return "chat.completion.chunk", nil
	case "text_completion":
		return "text_completion", nil
	}
	return string(s), nil
}

// looseStr reads any value: a string as its text, null as "", anything
// else as its JSON text (for ids and names that some servers send as numbers).
func (p *jsonReader) looseStr(prev string) (string, error) {
	if c := p.peek(); c == '"' || c == 'n' {
		return p.optStr("", prev)
	}
	r, err := p.raw()
	if err != nil {
		return "", err
	}
	if string(r) == prev {
		return prev, nil
	}
	return string(r), nil
}

// decodeChunk decodes a chunk object into c, which holds the previous
// chunk (its strings are reused when they repeat).
func (p *jsonReader) decodeChunk(c *Chunk) error {
	prev := *c
	choices := c.Choices[:cap(c.Choices)]
	*c = Chunk{}
	return p.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "id":
			c.ID, err = p.looseStr(prev.ID)
		case "object":
			c.Object, err = p.looseStr(prev.Object)
		case "model":
			c.Model, err = p.looseStr(prev.Model)
		case "created":
			c.Created = 0
			if p.null() {
				return nil
			}
			if b := p.peek(); b != '-' && (b < '0' || b > '9') {
				return p.skip()
			}
			t, err := p.number()
			if err != nil {
				return err
			}
			if f, err := strconv.ParseFloat(string(t), 64); err == nil {
				c.Created = int64(f)
			}
			return nil
		case "choices":
			c.Choices, err = p.choices(choices)
		case "usage":
			c.Usage, err = p.usage()
		case "error":
			c.Error, err = p.errorValue()
		default:
			err = p.skip()
		}
		return err
	})
}

func (p *jsonReader) choices(buf []ChunkChoice) ([]ChunkChoice, error) {
	if p.null() {
		return buf[:0], nil
	}
	if p.peek() != '[' {
		return nil, fmt.Errorf("choices: want an array, got %s", jsonstr.Kind(p.b[p.i:]))
	}
	out := buf[:0]
	err := p.array(func(i int) error {
		if i < len(buf) {
			out = out[:i+1]
		} else {
			out = append(out, ChunkChoice{})
		}
		ch := &out[i]
		tcs := ch.Delta.ToolCalls[:0]
		*ch = ChunkChoice{}
		if p.null() {
			return nil
		}
		if p.peek() != '{' {
			return fmt.Errorf("choices[%d]: want an object, got %s", i, jsonstr.Kind(p.b[p.i:]))
		}
		return p.object(func(key []byte) error {
			var err error
			switch string(key) {
			case "index":
				ch.Index, err = p.optInt("index")
			case "delta":
				ch.Delta = Delta{}
				err = p.delta(&ch.Delta, tcs)
			case "text":
				ch.Text, err = p.optStr("text", "")
			case "finish_reason":
				ch.FinishReason, err = p.optStr("finish_reason", "")
			default:
				err = p.skip()
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (p *jsonReader) delta(d *Delta, tcs []ToolCall) error {
	if p.null() {
		return nil
	}
	if p.peek() != '{' {
		return fmt.Errorf("delta: want an object, got %s", jsonstr.Kind(p.b[p.i:]))
	}
	return p.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "role":
			d.Role, err = p.optStr("role", "")
		case "content":
			d.Content, err = p.optStr("content", "")
		case "reasoning_content":
			d.ReasoningContent, err = p.optStr("reasoning_content", "")
		case "reasoning":
			d.Reasoning, err = p.optStr("reasoning", "")
		case "tool_calls":
			d.ToolCalls, err = p.toolCalls(tcs)
		default:
			err = p.skip()
		}
		return err
	})
}

func (p *jsonReader) toolCalls(buf []ToolCall) ([]ToolCall, error) {
	if p.null() {
		return nil, nil
	}
	if p.peek() != '[' {
		return nil, fmt.Errorf("tool_calls: want an array, got %s", jsonstr.Kind(p.b[p.i:]))
	}
	out := buf[:0]
	err := p.array(func(i int) error {
		out = append(out, ToolCall{})
		tc := &out[i]
		if p.null() {
			return nil
		}
		if p.peek() != '{' {
			return fmt.Errorf("tool_calls[%d]: want an object, got %s", i, jsonstr.Kind(p.b[p.i:]))
		}
		return p.object(func(key []byte) error {
			var err error
			switch string(key) {
			case "index":
				tc.Index, err = p.optInt("tool_calls.index")
			case "id":
				tc.ID, err = p.looseStr("")
			case "type":
				tc.Type, err = p.looseStr("")
			case "function":
				tc.Function = FunctionCall{}
				if p.null() {
					return nil
				}
				if p.peek() != '{' {
					return fmt.Errorf("function: want an object, got %s", jsonstr.Kind(p.b[p.i:]))
				}
				err = p.object(func(key []byte) error {
					var err error
					switch string(key) {
					case "name":
						tc.Function.Name, err = p.looseStr("")
					case "arguments":
						tc.Function.Arguments, err = p.looseStr("")
					default:
						err = p.skip()
					}
					return err
				})
			default:
				err = p.skip()
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (p *jsonReader) usage() (*Usage, error) {
	if p.null() {
		return nil, nil
	}
	if p.peek() != '{' {
		return nil, fmt.Errorf("usage: want an object, got %s", jsonstr.Kind(p.b[p.i:]))
	}
	u := &Usage{}
	var details, hits *int
	err := p.object(func(key []byte) error {
		var field *int
		var name string
		switch string(key) {
		case "prompt_tokens":
			field, name = &u.PromptTokens, "usage.prompt_tokens"
		case "completion_tokens":
			field, name = &u.CompletionTokens, "usage.completion_tokens"
		case "total_tokens":
			field, name = &u.TotalTokens, "usage.total_tokens"
		case "prompt_cache_hit_tokens":
			if p.null() {
				hits = nil
				return nil
			}
			n, err := p.integer("usage.prompt_cache_hit_tokens")
			v := int(n)
			hits = &v
			return err
		case "prompt_tokens_details":
			details = nil
			if p.null() {
				return nil
			}
			if p.peek() != '{' {
				return fmt.Errorf("usage.prompt_tokens_details: want an object, got %s", jsonstr.Kind(p.b[p.i:]))
			}
			v := 0
			details = &v
			return p.object(func(key []byte) error {
				if string(key) != "cached_tokens" {
					return p.skip()
				}
				var err error
				v, err = p.optInt("usage.prompt_tokens_details.cached_tokens")
				return err
			})
		default:
			return p.skip()
		}
		var err error
		*field, err = p.optInt(name)
		return err
	})
	if err != nil {
		return nil, err
	}
	if details != nil {
		u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: *details}
	} else if hits != nil {
		u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: *hits}
	}
	return u, nil
}

// errorValue reads the "error" member: an object, a string, or null.
func (p *jsonReader) errorValue() (*APIError, error) {
	if p.null() {
		return nil, nil
	}
	r, err := p.raw()
	if err != nil {
		return nil, err
	}
	switch r[0] {
	case '{':
		e, err := parseErrorObject(r)
		if err != nil {
			return nil, fmt.Errorf("error: %w", err)
		}
		return e, nil
	case '"':
		return &APIError{Message: looseString(r)}, nil
	}
	return &APIError{Message: string(r)}, nil
}
