package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/openai"
)

// maxOutputTokens bounds max_tokens and min_tokens, as a real server's context length does.
const maxOutputTokens = 1 << 20

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

// parseRequest validates a request body for a chat (chat true) or legacy completion endpoint.
// openai.ParseRequest checks JSON and the types of the known fields; this adds what the sim
// needs to answer: messages or a prompt, a role per message, sensible token limits.
func parseRequest(body []byte, chat bool) (*request, error) {
	w, err := openai.ParseRequest(body)
	if err != nil {
		return nil, badf("", "%s", strings.TrimPrefix(err.Error(), openai.ErrInvalidRequest.Error()+": "))
	}
	r := &request{Model: w.Model, Stream: w.Stream}
	if w.StreamOptions != nil {
		r.IncludeUsage = w.StreamOptions.IncludeUsage
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
		if f.v != nil && *f.v > maxOutputTokens {
			return nil, badf(f.name, "%s is %d: the sim's limit is %d", f.name, *f.v, maxOutputTokens)
		}
	}
	r.MaxTokens = w.MaxOutputTokens()
	if w.MinTokens != nil {
		r.MinTokens = *w.MinTokens
	}
	if r.MaxTokens > 0 && r.MinTokens > r.MaxTokens {
		return nil, badf("min_tokens", "min_tokens %d is more than max_tokens %d", r.MinTokens, r.MaxTokens)
	}
	if !chat {
		if err := r.parsePrompt(w.Prompt); err != nil {
			return nil, err
		}
		return r, nil
	}
	if len(w.Messages) == 0 {
		return nil, badf("messages", "messages is missing or empty: want an array of messages")
	}
	r.Segments = make([]string, 0, len(w.Messages))
	for i, raw := range w.Messages {
		param := "messages[" + strconv.Itoa(i) + "]"
		m, err := openai.ParseMessage(raw)
		if err != nil {
			return nil, badf(param, "%s: %s", param, strings.TrimPrefix(err.Error(), "parse message: "))
		}
		if m.Role == "" {
			return nil, badf(param, "%s: role is missing", param)
		}
		// Each message is tokenized on its own, so a conversation's earlier messages give the
		// same tokens in every later turn (stable prefix blocks).
		r.Segments = append(r.Segments, m.Text())
	}
	return r, nil
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
