package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/internal/jsonstr"
)

// PromptTokensDetails is usage's "prompt_tokens_details" object: how many
// prompt tokens the server took from its prefix cache.
type PromptTokensDetails = struct{ CachedTokens int }

// Usage is the token usage a server reports, in a response or in the final
// stream chunk (with stream_options.include_usage).
type Usage struct {
	// PromptTokens is "prompt_tokens": tokens in the prompt.
	PromptTokens int
	// CompletionTokens is "completion_tokens": tokens generated.
	CompletionTokens int
	// TotalTokens is "total_tokens".
	TotalTokens int
	// PromptTokensDetails is "prompt_tokens_details" (cached_tokens); nil
	// when the server did not send it. DeepSeek's top-level
	// "prompt_cache_hit_tokens" is read into it too.
	PromptTokensDetails *PromptTokensDetails
}

// Cached returns the number of cached prompt tokens, 0 when unknown. It is
// safe to call on a nil Usage.
func (u *Usage) Cached() int {
	if u == nil || u.PromptTokensDetails == nil {
		return 0
	}
	return u.PromptTokensDetails.CachedTokens
}

type usageJSON struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	PromptCacheHitTokens *int `json:"prompt_cache_hit_tokens"`
}

// UnmarshalJSON decodes OpenAI usage.
func (u *Usage) UnmarshalJSON(b []byte) error {
	var j usageJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*u = Usage{PromptTokens: j.PromptTokens, CompletionTokens: j.CompletionTokens, TotalTokens: j.TotalTokens}
	if j.PromptTokensDetails != nil {
		u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: j.PromptTokensDetails.CachedTokens}
	} else if j.PromptCacheHitTokens != nil {
		u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: *j.PromptCacheHitTokens}
	}
	return nil
}

// MarshalJSON encodes OpenAI usage (prompt_tokens_details only when set).
func (u Usage) MarshalJSON() ([]byte, error) {
	return u.appendJSON(nil), nil
}

func (u *Usage) appendJSON(b []byte) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
	if u.PromptTokensDetails != nil {
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, int64(u.PromptTokensDetails.CachedTokens), 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

// Delta is the message fragment that one stream chunk carries for a choice.
type Delta struct {
	// Role is set in the first chunk ("assistant").
	Role string `json:"role,omitempty"`
	// Content is a piece of the reply text.
	Content string `json:"content,omitempty"`
	// ReasoningContent is a piece of the reasoning text ("reasoning_content",
	// as sent by DeepSeek, vLLM and llama.cpp).
	ReasoningContent string `json:"reasoning_content,omitempty"`
	// Reasoning is a piece of the reasoning text under the name "reasoning"
	// (OpenRouter, newer vLLM).
	Reasoning string `json:"reasoning,omitempty"`
	// ToolCalls are tool-call fragments, to be assembled by Index.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ChunkChoice is one choice of a stream chunk.
type ChunkChoice struct {
	// Index is the choice's index (0 unless the request asked for n > 1).
	Index int `json:"index"`
	// Delta is the chat fragment.
	Delta Delta `json:"delta"`
	// Text is the legacy completions fragment.
	Text string `json:"text,omitempty"`
	// FinishReason is "stop", "length", "tool_calls", ... in the choice's
	// last chunk, "" before (null on the wire).
	FinishReason string `json:"finish_reason"`
}

// MarshalJSON encodes the choice as a stream chunk choice, with a null
// finish_reason while it is "".
func (c ChunkChoice) MarshalJSON() ([]byte, error) {
	type plain ChunkChoice
	var fr any
	if c.FinishReason != "" {
		fr = c.FinishReason
	}
	return json.Marshal(struct {
		plain
		FinishReason any `json:"finish_reason"`
	}{plain(c), fr})
}

// Chunk is one decoded stream event of a chat completion
// ("chat.completion.chunk") or a legacy completion ("text_completion").
type Chunk struct {
	// ID is the completion id, the same in every chunk of a stream.
	ID string `json:"id"`
	// Object is "chat.completion.chunk" or "text_completion".
	Object string `json:"object"`
	// Created is the Unix time in seconds the server gave the completion.
	Created int64 `json:"created"`
	// Model is the model name the server reports.
	Model string `json:"model"`
	// Choices hold the fragments, one per choice index.
	Choices []ChunkChoice `json:"choices"`
	// Usage is set in the chunk that reports usage (usually the last one,
	// with empty Choices).
	Usage *Usage `json:"usage,omitempty"`
	// Error is set when the event is an error object instead of a chunk
	// ({"error": {...}}), which servers send when they fail mid-stream.
	Error *APIError `json:"error,omitempty"`
}

// ErrNotChunk is wrapped by ParseChunk's error for data that is not a JSON
// object (including the [DONE] sentinel, which callers should check first
// with Event.Done).
var ErrNotChunk = errors.New("not a stream chunk")

// ParseChunk decodes an event's data into c, overwriting every field. It
// reuses c's Choices and their ToolCalls arrays, and the previous chunk's
// id, object and model strings when they repeat, so that one Chunk can serve
// a whole stream with about one allocation per chunk (its text). An error
// object ({"error": ...}) is not an error: it sets c.Error. Data that is
// not a JSON object (such as the [DONE] sentinel, which callers should check
// first with Event.Done) gives an error wrapping ErrNotChunk; on any error c
// is left zeroed except for its reusable arrays.
func ParseChunk(data []byte, c *Chunk) error {
	p := jsonReader{b: data}
	keep := c.Choices[:0]
	if p.peek() != '{' {
		*c = Chunk{Choices: keep}
		return fmt.Errorf("parse chunk: %w: data is %s", ErrNotChunk, jsonstr.Kind(p.b[p.i:]))
	}
	err := p.decodeChunk(c)
	if p.ws(); err == nil && p.i < len(p.b) {
		err = p.fail("the end of data")
	}
	if err != nil {
		*c = Chunk{Choices: keep}
		return fmt.Errorf("parse chunk: %w", err)
	}
	return nil
}

// looseInt returns an integer member, 0 when absent or not an integer.
func looseInt(raw json.RawMessage) int64 {
	var n int64
	if len(raw) > 0 && json.Unmarshal(raw, &n) == nil {
		return n
	}
	var f float64
	if len(raw) > 0 && json.Unmarshal(raw, &f) == nil {
		return int64(f)
	}
	return 0
}

// HasOutput reports whether the chunk carries output: content, reasoning,
// completion text or a tool-call fragment, in any choice. TTFT and ITL are
// measured on such chunks.
func (c *Chunk) HasOutput() bool {
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Delta.Content != "" || ch.Delta.ReasoningContent != "" || ch.Delta.Reasoning != "" ||
			ch.Text != "" || len(ch.Delta.ToolCalls) > 0 {
			return true
		}
	}
	return false
}

// OutputText returns the output text the chunk carries in its choices
// (content, reasoning, completion text and tool-call names and arguments),
// e.g. for counting its tokens.
func (c *Chunk) OutputText() string {
	var sb strings.Builder
	for i := range c.Choices {
		ch := &c.Choices[i]
		sb.WriteString(ch.Delta.ReasoningContent)
		if ch.Delta.ReasoningContent == "" {
			sb.WriteString(ch.Delta.Reasoning)
		}
		sb.WriteString(ch.Delta.Content)
		sb.WriteString(ch.Text)
		for _, tc := range ch.Delta.ToolCalls {
			sb.WriteString(tc.Function.Name)
			sb.WriteString(tc.Function.Arguments)
		}
	}
	return sb.String()
}

// OutputBytes returns len(c.OutputText()) without building the text: the output bytes the
// chunk carries, e.g. for sharing a stream's token count out over its events.
func (c *Chunk) OutputBytes() int {
	n := 0
	for i := range c.Choices {
		ch := &c.Choices[i]
		n += len(ch.Delta.Content) + len(ch.Delta.ReasoningContent) + len(ch.Text)
		if ch.Delta.ReasoningContent == "" {
			n += len(ch.Delta.Reasoning)
		}
		for _, tc := range ch.Delta.ToolCalls {
			n += len(tc.Function.Name) + len(tc.Function.Arguments)
		}
	}
	return n
}

// Accumulator assembles a streamed response from its chunks: the text,
// reasoning and tool calls of choice 0, the finish reason, the usage and
// the first error object. The zero value is ready to use. It is not safe
// for concurrent use.
type Accumulator struct {
	id, model, role string
	content         strings.Builder
	reasoning       strings.Builder
	toolCalls       []ToolCall
	finish          string
	usage           *Usage
	err             *APIError
	chunks          int
	outputChunks    int
}

// Add adds one chunk. It copies what it keeps, so c may be reused.
func (a *Accumulator) Add(c *Chunk) {
	a.chunks++
	if a.id == "" {
		a.id = c.ID
	}
	if a.model == "" {
		a.model = c.Model
	}
	if c.Error != nil && a.err == nil {
		e := *c.Error
		a.err = &e
	}
	if c.Usage != nil {
		u := *c.Usage
		if u.PromptTokensDetails != nil {
			d := *u.PromptTokensDetails
			u.PromptTokensDetails = &d
		}
		a.usage = &u
	}
	if c.HasOutput() {
		a.outputChunks++
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue
		}
		if ch.Delta.Role != "" && a.role == "" {
			a.role = ch.Delta.Role
		}
		a.content.WriteString(ch.Delta.Content)
		a.content.WriteString(ch.Text)
		// A server that sends both names sends the same text twice.
		if ch.Delta.ReasoningContent != "" {
			a.reasoning.WriteString(ch.Delta.ReasoningContent)
		} else {
			a.reasoning.WriteString(ch.Delta.Reasoning)
		}
		for _, tc := range ch.Delta.ToolCalls {
			a.addToolCall(tc)
		}
		if ch.FinishReason != "" {
			a.finish = ch.FinishReason
		}
	}
}

func (a *Accumulator) addToolCall(d ToolCall) {
	for i := range a.toolCalls {
		tc := &a.toolCalls[i]
		if tc.Index != d.Index {
			continue
		}
		if tc.ID == "" {
			tc.ID = d.ID
		}
		if tc.Type == "" {
			tc.Type = d.Type
		}
		if tc.Function.Name == "" {
			tc.Function.Name = d.Function.Name
		}
		tc.Function.Arguments += d.Function.Arguments
		return
	}
	a.toolCalls = append(a.toolCalls, d)
}

// Content returns the reply text (chat content or completion text).
func (a *Accumulator) Content() string { return a.content.String() }

// Reasoning returns the reasoning text (reasoning_content or reasoning).
func (a *Accumulator) Reasoning() string { return a.reasoning.String() }

// ToolCalls returns the assembled tool calls ordered by index, each with its
// arguments concatenated. The slice is a copy.
func (a *Accumulator) ToolCalls() []ToolCall {
	if len(a.toolCalls) == 0 {
		return nil
	}
	out := append([]ToolCall(nil), a.toolCalls...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// FinishReason returns the last finish reason seen, "" when none.
func (a *Accumulator) FinishReason() string { return a.finish }

// Usage returns the last usage seen, nil when the stream had none.
func (a *Accumulator) Usage() *Usage { return a.usage }

// Err returns the first error object seen in the stream, nil when none.
func (a *Accumulator) Err() *APIError { return a.err }

// ID returns the first chunk id seen.
func (a *Accumulator) ID() string { return a.id }

// Model returns the first model name seen.
func (a *Accumulator) Model() string { return a.model }

// Role returns the first role seen in a delta ("" when the server sent none).
func (a *Accumulator) Role() string { return a.role }

// Chunks returns how many chunks were added, and how many of them carried
// output (see Chunk.HasOutput).
func (a *Accumulator) Chunks() (all, withOutput int) { return a.chunks, a.outputChunks }

// ResponseMessage is the assistant message of a non-streamed chat response.
type ResponseMessage struct {
	// Role is "assistant".
	Role string `json:"role"`
	// Content is the reply text (text parts joined when it is an array).
	Content string `json:"content"`
	// ReasoningContent is the reasoning text under "reasoning_content".
	ReasoningContent string `json:"reasoning_content,omitempty"`
	// Reasoning is the reasoning text under "reasoning".
	Reasoning string `json:"reasoning,omitempty"`
	// ToolCalls are the tool calls, Index set to their position.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ResponseChoice is one choice of a non-streamed response.
type ResponseChoice struct {
	// Index is the choice's index.
	Index int `json:"index"`
	// Message is the chat reply.
	Message ResponseMessage `json:"message"`
	// Text is the legacy completion text.
	Text string `json:"text,omitempty"`
	// FinishReason is "stop", "length", "tool_calls", ...
	FinishReason string `json:"finish_reason"`
}

// Response is a non-streamed chat completion or legacy completion.
type Response struct {
	// ID is the completion id.
	ID string `json:"id"`
	// Object is "chat.completion" or "text_completion".
	Object string `json:"object"`
	// Created is the Unix time in seconds the server gave the completion.
	Created int64 `json:"created"`
	// Model is the model name the server reports.
	Model string `json:"model"`
	// Choices hold the replies.
	Choices []ResponseChoice `json:"choices"`
	// Usage is the token usage; nil when the server sent none.
	Usage *Usage `json:"usage,omitempty"`
}

type responseJSON struct {
	ID      json.RawMessage `json:"id"`
	Object  json.RawMessage `json:"object"`
	Created json.RawMessage `json:"created"`
	Model   json.RawMessage `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message *struct {
			Role             json.RawMessage `json:"role"`
			Content          json.RawMessage `json:"content"`
			ReasoningContent json.RawMessage `json:"reasoning_content"`
			Reasoning        json.RawMessage `json:"reasoning"`
			ToolCalls        json.RawMessage `json:"tool_calls"`
		} `json:"message"`
		Text         json.RawMessage `json:"text"`
		FinishReason json.RawMessage `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage `json:"usage"`
}

// ParseResponse decodes a non-streamed chat completion or completion. An
// error body gives an error wrapping its *APIError (use errors.As).
func ParseResponse(body []byte) (*Response, error) {
	if e, ok := ParseError(body); ok {
		return nil, fmt.Errorf("parse response: %w", e)
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("parse response: body is %s, want a JSON object", jsonstr.Kind(b))
	}
	var j responseJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("parse response: %w", err)
	}
	r := &Response{
		ID:      looseString(j.ID),
		Object:  looseString(j.Object),
		Created: looseInt(j.Created),
		Model:   looseString(j.Model),
		Usage:   j.Usage,
		Choices: make([]ResponseChoice, len(j.Choices)),
	}
	for i, c := range j.Choices {
		rc := &r.Choices[i]
		rc.Index = c.Index
		rc.Text = looseString(c.Text)
		rc.FinishReason = looseString(c.FinishReason)
		if m := c.Message; m != nil {
			rc.Message.Role = looseString(m.Role)
			text, err := ContentText(m.Content)
			if err != nil {
				return nil, fmt.Errorf("parse response: choices[%d].message: %w", i, err)
			}
			rc.Message.Content = text
			rc.Message.ReasoningContent = looseString(m.ReasoningContent)
			rc.Message.Reasoning = looseString(m.Reasoning)
			tcs, err := parseToolCalls(m.ToolCalls)
			if err != nil {
				return nil, fmt.Errorf("parse response: choices[%d].message: %w", i, err)
			}
			rc.Message.ToolCalls = tcs
		}
	}
	return r, nil
}

func (r *Response) first() *ResponseChoice {
	for i := range r.Choices {
		if r.Choices[i].Index == 0 {
			return &r.Choices[i]
		}
	}
	if len(r.Choices) > 0 {
		return &r.Choices[0]
	}
	return nil
}

// Content returns choice 0's reply text (message content or completion text).
func (r *Response) Content() string {
	if c := r.first(); c != nil {
		return c.Message.Content + c.Text
	}
	return ""
}

// Reasoning returns choice 0's reasoning text (reasoning_content or reasoning).
func (r *Response) Reasoning() string {
	if c := r.first(); c != nil {
		if c.Message.ReasoningContent != "" {
			return c.Message.ReasoningContent
		}
		return c.Message.Reasoning
	}
	return ""
}

// ToolCalls returns choice 0's tool calls.
func (r *Response) ToolCalls() []ToolCall {
	if c := r.first(); c != nil {
		return c.Message.ToolCalls
	}
	return nil
}

// FinishReason returns choice 0's finish reason.
func (r *Response) FinishReason() string {
	if c := r.first(); c != nil {
		return c.FinishReason
	}
	return ""
}
