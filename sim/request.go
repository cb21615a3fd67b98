package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// request is what the sim needs from a chat or legacy completion request body.
type request struct {
	Model        string
	Stream       bool
	MaxTokens    int // max_completion_tokens, else max_tokens; 0 = none
	MinTokens    int
	IgnoreEOS    bool
	IncludeUsage bool
	Segments     []string // the prompt: one segment per message (role + content), or the prompt text
	PromptTokens []uint32 // a completions prompt given as token ids
}

// badRequest is a client error answered with 400 and an OpenAI error body.
type badRequest struct {
	msg, param string
}

func (e *badRequest) Error() string { return e.msg }

func badf(param, format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...), param: param}
}

type wireRequest struct {
	Model               *string           `json:"model"`
	Stream              *bool             `json:"stream"`
	Messages            []json.RawMessage `json:"messages"`
	Prompt              json.RawMessage   `json:"prompt"`
	MaxTokens           *int              `json:"max_tokens"`
	MaxCompletionTokens *int              `json:"max_completion_tokens"`
	MinTokens           *int              `json:"min_tokens"`
	IgnoreEOS           *bool             `json:"ignore_eos"`
	StreamOptions       *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
}

type wireMessage struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls []struct {
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// parseRequest validates a request body for a chat (chat true) or legacy completion endpoint.
func parseRequest(body []byte, chat bool) (*request, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, badf("", "request body is empty: want a JSON object")
	}
	if body[0] != '{' {
		return nil, badf("", "request body is not a JSON object")
	}
	var w wireRequest
	if err := json.Unmarshal(body, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, badf(te.Field, "field %q has the wrong type: got JSON %s, want %s", te.Field, te.Value, goTypeName(te.Type.String()))
		}
		return nil, badf("", "request body is not valid JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	r := &request{}
	if w.Model != nil {
		r.Model = *w.Model
	}
	if w.Stream != nil {
		r.Stream = *w.Stream
	}
	if w.StreamOptions != nil && w.StreamOptions.IncludeUsage != nil {
		r.IncludeUsage = *w.StreamOptions.IncludeUsage
	}
	if w.IgnoreEOS != nil {
		r.IgnoreEOS = *w.IgnoreEOS
	}
	for _, f := range []struct {
		name string
		v    *int
		min  int
	}{{"max_tokens", w.MaxTokens, 1}, {"max_completion_tokens", w.MaxCompletionTokens, 1}, {"min_tokens", w.MinTokens, 0}} {
		if f.v != nil && *f.v < f.min {
			return nil, badf(f.name, "%s is %d: want at least %d", f.name, *f.v, f.min)
		}
	}
	switch {
	case w.MaxCompletionTokens != nil:
		r.MaxTokens = *w.MaxCompletionTokens
	case w.MaxTokens != nil:
		r.MaxTokens = *w.MaxTokens
	}
	if w.MinTokens != nil {
		r.MinTokens = *w.MinTokens
	}
	if r.MaxTokens > 0 && r.MinTokens > r.MaxTokens {
		return nil, badf("min_tokens", "min_tokens %d is more than max_tokens %d", r.MinTokens, r.MaxTokens)
	}
	if chat {
		if len(w.Messages) == 0 {
			return nil, badf("messages", "messages is missing or empty: want an array of messages")
		}
		r.Segments = make([]string, 0, len(w.Messages))
		for i, raw := range w.Messages {
			seg, err := renderMessage(raw)
			if err != nil {
				return nil, badf(fmt.Sprintf("messages[%d]", i), "messages[%d]: %v", i, err)
			}
			r.Segments = append(r.Segments, seg)
		}
		return r, nil
	}
	if err := r.parsePrompt(w.Prompt); err != nil {
		return nil, err
	}
	return r, nil
}

// renderMessage renders a message as the prompt text the cache hashes: role, newline, content
// (text parts joined), the tool calls' names and arguments, newline.
func renderMessage(raw json.RawMessage) (string, error) {
	var m wireMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return "", fmt.Errorf("field %q has the wrong type: got JSON %s", te.Field, te.Value)
		}
		return "", errors.New("not a JSON object")
	}
	if m.Role == "" {
		return "", errors.New("role is missing")
	}
	var b strings.Builder
	b.WriteString(m.Role)
	b.WriteByte('\n')
	content := bytes.TrimSpace(m.Content)
	switch {
	case len(content) == 0 || string(content) == "null":
	case content[0] == '"':
		var s string
		if err := json.Unmarshal(content, &s); err != nil {
			return "", errors.New("content is not a valid string")
		}
		b.WriteString(s)
	case content[0] == '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(content, &parts); err != nil {
			return "", errors.New("content is not a string or an array of content parts")
		}
		for _, p := range parts {
			b.WriteString(p.Text)
		}
	default:
		return "", errors.New("content is not a string or an array of content parts")
	}
	for _, tc := range m.ToolCalls {
		b.WriteString(tc.Function.Name)
		b.WriteString(tc.Function.Arguments)
	}
	b.WriteByte('\n')
	return b.String(), nil
}

// parsePrompt accepts a completions prompt: a string, an array of one string, or an array of
// token ids.
func (r *request) parsePrompt(p json.RawMessage) error {
	p = bytes.TrimSpace(p)
	if len(p) == 0 || string(p) == "null" {
		return badf("prompt", "prompt is missing: want a string")
	}
	var s string
	if err := json.Unmarshal(p, &s); err == nil {
		r.Segments = []string{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(p, &ss); err == nil {
		if len(ss) != 1 {
			return badf("prompt", "prompt has %d strings: the sim answers one prompt per request", len(ss))
		}
		r.Segments = ss
		return nil
	}
	var ids []uint32
	if err := json.Unmarshal(p, &ids); err == nil {
		r.PromptTokens = ids
		return nil
	}
	return badf("prompt", "prompt has the wrong type: want a string, an array of one string, or an array of token ids")
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case strings.Contains(t, "int"):
		return "an integer"
	case strings.Contains(t, "bool"):
		return "a boolean"
	case strings.Contains(t, "string"):
		return "a string"
	case strings.HasPrefix(t, "*struct"), strings.HasPrefix(t, "struct"):
		return "an object"
	}
	return t
}
