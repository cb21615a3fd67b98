package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/llmtape/llmtape/internal/jsonstr"
)

// ErrInvalidRequest is wrapped by every error that ParseRequest, Set and
// BuildRequest return for input that is not a usable request body.
var ErrInvalidRequest = errors.New("invalid request body")

// StreamOptions is the typed part of a request's "stream_options" object.
// Other members of the object are kept verbatim.
type StreamOptions struct {
	// IncludeUsage asks the server for a final chunk that carries usage.
	IncludeUsage bool
}

// Request is a chat-completion or legacy completion request body.
//
// The fields we use are typed. Every other member of the body is kept
// verbatim and in order, so Marshal rebuilds a body that is JSON-equal to the
// parsed one (unchanged members keep their exact bytes). The typed fields may
// be changed directly; Marshal writes the new values in place of the old
// ones. A nil pointer, a nil Messages or a nil Prompt removes the member; an
// empty Model or a false Stream is written only when the body had the member.
// Set and Delete change any member, typed or not.
type Request struct {
	// Model is the "model" member.
	Model string
	// Stream is the "stream" member.
	Stream bool
	// Messages holds each element of "messages" verbatim (chat completions);
	// nil for a body without messages (legacy completions).
	Messages []json.RawMessage
	// Prompt is the "prompt" member verbatim (legacy completions: a string
	// or an array); nil for chat.
	Prompt json.RawMessage
	// MaxTokens is "max_tokens"; nil when absent or null.
	MaxTokens *int
	// MaxCompletionTokens is "max_completion_tokens"; nil when absent or null.
	MaxCompletionTokens *int
	// MinTokens is vLLM's "min_tokens"; nil when absent or null.
	MinTokens *int
	// IgnoreEOS is vLLM's "ignore_eos"; nil when absent or null.
	IgnoreEOS *bool
	// StreamOptions is "stream_options"; nil when absent or null.
	StreamOptions *StreamOptions

	members []member // every member as last parsed or set, in order
	synced  typed    // the typed fields as they were when members was last in step
}

// typed is a comparable copy of Request's typed fields, except Messages and
// Prompt which are compared separately.
type typed struct {
	model               string
	stream              bool
	messages            []json.RawMessage
	prompt              json.RawMessage
	maxTokens           optInt
	maxCompletionTokens optInt
	minTokens           optInt
	ignoreEOS           optBool
	streamOptions       optBool // set: present; v: include_usage
}

type optInt struct {
	set bool
	v   int
}

type optBool struct {
	set bool
	v   bool
}

func intOpt(p *int) optInt {
	if p == nil {
		return optInt{}
	}
	return optInt{true, *p}
}

func boolOpt(p *bool) optBool {
	if p == nil {
		return optBool{}
	}
	return optBool{true, *p}
}

func soOpt(p *StreamOptions) optBool {
	if p == nil {
		return optBool{}
	}
	return optBool{true, p.IncludeUsage}
}

// typedKeys lists the members that have a typed field, in the order in which
// new ones are appended.
var typedKeys = [...]string{"model", "messages", "prompt", "stream", "stream_options",
	"max_tokens", "max_completion_tokens", "min_tokens", "ignore_eos"}

func isTyped(key string) bool {
	for _, k := range typedKeys {
		if k == key {
			return true
		}
	}
	return false
}

// ParseRequest parses a chat-completion or completion request body. It fails
// with an error wrapping ErrInvalidRequest when the body is not JSON, not an
// object, or when a typed member has the wrong type (model not a string,
// messages not an array of objects, max_tokens not an integer, ...). The body
// is copied: the Request does not refer to it afterwards.
func ParseRequest(body []byte) (*Request, error) {
	if !json.Valid(body) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidRequest, syntaxError(body))
	}
	body = bytes.Clone(body)
	ms, err := splitObject(body)
	if err != nil {
		return nil, fmt.Errorf("%w: body is %s, want a JSON object", ErrInvalidRequest, jsonstr.Kind(bytes.TrimSpace(body)))
	}
	r := &Request{members: ms}
	for _, m := range ms {
		if isTyped(m.key) {
			if err := r.setTyped(m.key, m.value); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
			}
		}
	}
	r.synced = r.snapshot()
	return r, nil
}

// syntaxError describes why b is not valid JSON.
func syntaxError(b []byte) string {
	if len(bytes.TrimSpace(b)) == 0 {
		return "empty body, want a JSON object"
	}
	var v any
	err := json.Unmarshal(b, &v)
	if err == nil {
		return "not valid JSON"
	}
	return "not valid JSON: " + err.Error()
}

// setTyped decodes the verbatim value v of the typed member key into its field.
func (r *Request) setTyped(key string, v json.RawMessage) error {
	null := string(v) == "null"
	switch key {
	case "model":
		if v[0] != '"' {
			return fmt.Errorf("model: want a string, got %s", jsonstr.Kind(v))
		}
		r.Model = decodeKey(v)
	case "stream":
		if null {
			r.Stream = false
			return nil
		}
		b, err := parseBool(key, v)
		if err != nil {
			return err
		}
		r.Stream = b
	case "messages":
		if null {
			r.Messages = nil
			return nil
		}
		elems, ok := splitArray(v)
		if !ok {
			return fmt.Errorf("messages: want an array, got %s", jsonstr.Kind(v))
		}
		for i, e := range elems {
			if e[0] != '{' {
				return fmt.Errorf("messages[%d]: want an object, got %s", i, jsonstr.Kind(e))
			}
		}
		r.Messages = elems
	case "prompt":
		if null {
			r.Prompt = nil
			return nil
		}
		if v[0] != '"' && v[0] != '[' {
			return fmt.Errorf("prompt: want a string or an array, got %s", jsonstr.Kind(v))
		}
		r.Prompt = v
	case "max_tokens", "max_completion_tokens", "min_tokens":
		var p *int
		if !null {
			n, err := parseInt(key, v)
			if err != nil {
				return err
			}
			p = &n
		}
		switch key {
		case "max_tokens":
			r.MaxTokens = p
		case "max_completion_tokens":
			r.MaxCompletionTokens = p
		default:
			r.MinTokens = p
		}
	case "ignore_eos":
		if null {
			r.IgnoreEOS = nil
			return nil
		}
		b, err := parseBool(key, v)
		if err != nil {
			return err
		}
		r.IgnoreEOS = &b
	case "stream_options":
		if null {
			r.StreamOptions = nil
			return nil
		}
		ms, err := splitObject(v)
		if err != nil {
			return fmt.Errorf("stream_options: want an object, got %s", jsonstr.Kind(v))
		}
		so := &StreamOptions{}
		for _, m := range ms {
			if m.key == "include_usage" && string(m.value) != "null" {
				b, err := parseBool("stream_options.include_usage", m.value)
				if err != nil {
					return err
				}
				so.IncludeUsage = b
			}
		}
		r.StreamOptions = so
	}
	return nil
}

func parseBool(key string, v []byte) (bool, error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%s: want a boolean, got %s", key, jsonstr.Kind(v))
}

func parseInt(key string, v []byte) (int, error) {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, fmt.Errorf("%s: want an integer, got %s", key, jsonstr.Kind(v))
	}
	if n, err := strconv.Atoi(string(v)); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f != float64(int64(f)) || f > 1<<53 || f < -(1<<53) {
		return 0, fmt.Errorf("%s: want an integer, got %s", key, v)
	}
	return int(f), nil
}

func (r *Request) snapshot() typed {
	return typed{
		model:               r.Model,
		stream:              r.Stream,
		messages:            r.Messages,
		prompt:              r.Prompt,
		maxTokens:           intOpt(r.MaxTokens),
		maxCompletionTokens: intOpt(r.MaxCompletionTokens),
		minTokens:           intOpt(r.MinTokens),
		ignoreEOS:           boolOpt(r.IgnoreEOS),
		streamOptions:       soOpt(r.StreamOptions),
	}
}

func sameRaws(a, b []json.RawMessage) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// changed reports whether the typed field of key differs from its synced value.
func (r *Request) changed(key string) bool {
	s := &r.synced
	switch key {
	case "model":
		return r.Model != s.model
	case "stream":
		return r.Stream != s.stream
	case "messages":
		return !sameRaws(r.Messages, s.messages)
	case "prompt":
		return (r.Prompt == nil) != (s.prompt == nil) || !bytes.Equal(r.Prompt, s.prompt)
	case "max_tokens":
		return intOpt(r.MaxTokens) != s.maxTokens
	case "max_completion_tokens":
		return intOpt(r.MaxCompletionTokens) != s.maxCompletionTokens
	case "min_tokens":
		return intOpt(r.MinTokens) != s.minTokens
	case "ignore_eos":
		return boolOpt(r.IgnoreEOS) != s.ignoreEOS
	case "stream_options":
		return soOpt(r.StreamOptions) != s.streamOptions
	}
	return false
}

// encodeTyped returns the current value of a typed member, and whether the
// member is present. hadMember says whether the body has the member now; old
// is its current verbatim value (used to keep the other members of
// stream_options).
func (r *Request) encodeTyped(key string, hadMember bool, old json.RawMessage) (json.RawMessage, bool, error) {
	switch key {
	case "model":
		if r.Model == "" && !hadMember {
			return nil, false, nil
		}
		return quote(r.Model), true, nil
	case "stream":
		if !r.Stream && !hadMember {
			return nil, false, nil
		}
		return json.RawMessage(strconv.FormatBool(r.Stream)), true, nil
	case "messages":
		if r.Messages == nil {
			return nil, false, nil
		}
		var b bytes.Buffer
		b.WriteByte('[')
		for i, m := range r.Messages {
			if !json.Valid(m) {
				return nil, false, fmt.Errorf("messages[%d]: not valid JSON", i)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(m)
		}
		b.WriteByte(']')
		return b.Bytes(), true, nil
	case "prompt":
		if r.Prompt == nil {
			return nil, false, nil
		}
		if !json.Valid(r.Prompt) {
			return nil, false, errors.New("prompt: not valid JSON")
		}
		return r.Prompt, true, nil
	case "max_tokens", "max_completion_tokens", "min_tokens":
		p := r.MaxTokens
		if key == "max_completion_tokens" {
			p = r.MaxCompletionTokens
		} else if key == "min_tokens" {
			p = r.MinTokens
		}
		if p == nil {
			return nil, false, nil
		}
		return json.RawMessage(strconv.Itoa(*p)), true, nil
	case "ignore_eos":
		if r.IgnoreEOS == nil {
			return nil, false, nil
		}
		return json.RawMessage(strconv.FormatBool(*r.IgnoreEOS)), true, nil
	case "stream_options":
		if r.StreamOptions == nil {
			return nil, false, nil
		}
		iu := json.RawMessage(strconv.FormatBool(r.StreamOptions.IncludeUsage))
		var ms []member
		if hadMember {
			ms, _ = splitObject(old) // not an object (null): start afresh
		}
		found := false
		for i := range ms {
			if ms[i].key == "include_usage" {
				ms[i].value = iu
				found = true
			}
		}
		if !found {
			ms = append(ms, member{key: "include_usage", rawKey: quote("include_usage"), value: iu})
		}
		return appendObject(nil, ms, nil), true, nil
	}
	return nil, false, fmt.Errorf("%s: not a typed member", key)
}

// appendObject appends the members ms, except those for which skip reports
// true, as a JSON object.
func appendObject(dst []byte, ms []member, skip func(member) bool) []byte {
	dst = append(dst, '{')
	first := true
	for _, m := range ms {
		if skip != nil && skip(m) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, m.rawKey...)
		dst = append(dst, ':')
		dst = append(dst, m.value...)
	}
	return append(dst, '}')
}

// current returns the body's members with the typed fields' current values.
func (r *Request) current() ([]member, error) {
	out := make([]member, 0, len(r.members)+2)
	for i, m := range r.members {
		if !isTyped(m.key) || !r.changed(m.key) {
			out = append(out, m)
			continue
		}
		// A changed typed member: write its new value in place of its
		// last occurrence, and drop earlier duplicates.
		if r.hasLater(i, m.key) {
			continue
		}
		v, ok, err := r.encodeTyped(m.key, true, m.value)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, member{key: m.key, rawKey: m.rawKey, value: v})
		}
	}
	for _, key := range typedKeys {
		if r.has(key) || !r.changed(key) {
			continue
		}
		v, ok, err := r.encodeTyped(key, false, nil)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, member{key: key, rawKey: quote(key), value: v})
		}
	}
	return out, nil
}

func (r *Request) hasLater(i int, key string) bool {
	for _, m := range r.members[i+1:] {
		if m.key == key {
			return true
		}
	}
	return false
}

func (r *Request) has(key string) bool {
	for _, m := range r.members {
		if m.key == key {
			return true
		}
	}
	return false
}

// Marshal returns the request body. When nothing was changed it is JSON-equal
// to the parsed body (members in the same order, values byte for byte).
func (r *Request) Marshal() ([]byte, error) {
	ms, err := r.current()
	if err != nil {
		return nil, fmt.Errorf("marshal request: %w", err)
	}
	return appendObject(nil, ms, nil), nil
}

// Params returns the body as a JSON object without "messages" and "prompt":
// the request's parameters, as the store keeps them (a member that is null
// is kept). BuildRequest is its inverse.
func (r *Request) Params() (json.RawMessage, error) {
	ms, err := r.current()
	if err != nil {
		return nil, fmt.Errorf("request params: %w", err)
	}
	return appendObject(nil, ms, isBodyText), nil
}

// isBodyText reports whether m is body text that Params leaves out: messages
// or prompt, unless null (a null is kept so that BuildRequest gives it back).
func isBodyText(m member) bool {
	return (m.key == "messages" || m.key == "prompt") && string(m.value) != "null"
}

// Set sets or replaces the top-level member key (in place when it exists,
// appended otherwise) and keeps the typed fields in step. value is encoded
// with encoding/json; a json.RawMessage is taken verbatim and must be valid
// JSON. A value of the wrong type for a typed member (Set("model", 5)) is an
// error that leaves the request unchanged.
func (r *Request) Set(key string, value any) error {
	var raw json.RawMessage
	switch v := value.(type) {
	case json.RawMessage:
		raw = bytes.TrimSpace(v)
		if !json.Valid(raw) {
			return fmt.Errorf("set %s: %w: value is not valid JSON", key, ErrInvalidRequest)
		}
		raw = bytes.Clone(raw)
	default:
		b, err := json.Marshal(value)
		if err != nil {
			return fmt.Errorf("set %s: %w", key, err)
		}
		raw = b
	}
	// Bring the members in step with the typed fields first, so that a
	// direct change to a typed field is not lost.
	ms, err := r.current()
	if err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	if isTyped(key) {
		probe := *r
		if err := probe.setTyped(key, raw); err != nil {
			return fmt.Errorf("set %s: %w: %v", key, ErrInvalidRequest, err)
		}
		*r = probe
	}
	replaced := false
	out := ms[:0]
	for _, m := range ms {
		if m.key == key {
			if replaced {
				continue
			}
			m.value = raw
			replaced = true
		}
		out = append(out, m)
	}
	if !replaced {
		out = append(out, member{key: key, rawKey: quote(key), value: raw})
	}
	r.members = out
	r.synced = r.snapshot()
	return nil
}

// Delete removes the top-level member key (every occurrence) and zeroes its
// typed field, if it has one.
func (r *Request) Delete(key string) {
	if ms, err := r.current(); err == nil {
		r.members = ms
	}
	out := r.members[:0]
	for _, m := range r.members {
		if m.key != key {
			out = append(out, m)
		}
	}
	r.members = out
	switch key {
	case "model":
		r.Model = ""
	case "stream":
		r.Stream = false
	case "messages":
		r.Messages = nil
	case "prompt":
		r.Prompt = nil
	case "max_tokens":
		r.MaxTokens = nil
	case "max_completion_tokens":
		r.MaxCompletionTokens = nil
	case "min_tokens":
		r.MinTokens = nil
	case "ignore_eos":
		r.IgnoreEOS = nil
	case "stream_options":
		r.StreamOptions = nil
	}
	r.synced = r.snapshot()
}

// Get returns the verbatim value of the top-level member key (its current
// value for a typed member) and whether the body has it.
func (r *Request) Get(key string) (json.RawMessage, bool) {
	ms, err := r.current()
	if err != nil {
		ms = r.members
	}
	var v json.RawMessage
	found := false
	for _, m := range ms {
		if m.key == key {
			v, found = m.value, true
		}
	}
	return v, found
}

// Keys returns the top-level member names in order.
func (r *Request) Keys() []string {
	ms, err := r.current()
	if err != nil {
		ms = r.members
	}
	keys := make([]string, 0, len(ms))
	for _, m := range ms {
		keys = append(keys, m.key)
	}
	return keys
}

// MaxOutputTokens returns max_completion_tokens when set, else max_tokens
// when set, else 0.
func (r *Request) MaxOutputTokens() int {
	if r.MaxCompletionTokens != nil {
		return *r.MaxCompletionTokens
	}
	if r.MaxTokens != nil {
		return *r.MaxTokens
	}
	return 0
}

// BuildRequest is the inverse of Params: it returns the body made of the
// params object with "messages" (when messages is not nil) and "prompt" (when
// prompt is not nil) added after "model" (first when there is no model).
// Members of params named messages or prompt are replaced. nil or empty
// params stand for {}.
func BuildRequest(params json.RawMessage, messages []json.RawMessage, prompt json.RawMessage) ([]byte, error) {
	var ms []member
	if len(bytes.TrimSpace(params)) > 0 {
		if !json.Valid(params) {
			return nil, fmt.Errorf("build request: %w: params: %s", ErrInvalidRequest, syntaxError(params))
		}
		var err error
		ms, err = splitObject(params)
		if err != nil {
			return nil, fmt.Errorf("build request: %w: params is %s, want an object", ErrInvalidRequest, jsonstr.Kind(bytes.TrimSpace(params)))
		}
	}
	var add []member
	if messages != nil {
		n := 2
		for i, m := range messages {
			if !json.Valid(m) {
				return nil, fmt.Errorf("build request: %w: messages[%d]: not valid JSON", ErrInvalidRequest, i)
			}
			n += len(m) + 1
		}
		b := make([]byte, 0, n)
		b = append(b, '[')
		for i, m := range messages {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, bytes.TrimSpace(m)...)
		}
		b = append(b, ']')
		add = append(add, member{key: "messages", rawKey: []byte(`"messages"`), value: b})
	}
	if prompt != nil {
		p := bytes.TrimSpace(prompt)
		if !json.Valid(p) {
			return nil, fmt.Errorf("build request: %w: prompt: not valid JSON", ErrInvalidRequest)
		}
		add = append(add, member{key: "prompt", rawKey: []byte(`"prompt"`), value: p})
	}
	size := 2
	for _, m := range ms {
		size += len(m.rawKey) + len(m.value) + 2
	}
	for _, m := range add {
		size += len(m.rawKey) + len(m.value) + 2
	}
	out := make([]member, 0, len(ms)+len(add))
	at := 0
	for i, m := range ms {
		if m.key == "model" {
			at = i + 1
			break
		}
	}
	for i, m := range ms {
		if i == at {
			out = append(out, add...)
			add = nil
		}
		if messages != nil && m.key == "messages" || prompt != nil && m.key == "prompt" {
			continue
		}
		out = append(out, m)
	}
	out = append(out, add...)
	return appendObject(make([]byte, 0, size), out, nil), nil
}
