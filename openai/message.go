package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/internal/jsonstr"
)

// FunctionCall is the function part of a tool call: its name and its
// arguments (JSON text, as the model wrote it).
type FunctionCall = struct{ Name, Arguments string }

// ToolCall is one tool call of an assistant message or of a stream delta.
// In a stream, deltas with the same Index belong to one call: the first
// carries ID, Type and Function.Name, the following ones pieces of
// Function.Arguments (see Accumulator).
type ToolCall struct {
	// Index is the call's position; in a message it is the array position.
	Index int
	// ID is the call id ("call_..."), referred to by the tool message.
	ID string
	// Type is "function".
	Type string
	// Function is the called function's name and arguments.
	Function FunctionCall
}

type toolCallJSON struct {
	Index    *int            `json:"index"`
	ID       json.RawMessage `json:"id"`
	Type     json.RawMessage `json:"type"`
	Function *struct {
		Name      json.RawMessage `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// UnmarshalJSON decodes an OpenAI tool call (or tool-call delta). Arguments
// given as a JSON object rather than a string are kept as their JSON text.
func (t *ToolCall) UnmarshalJSON(b []byte) error {
	var j toolCallJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*t = ToolCall{ID: looseString(j.ID), Type: looseString(j.Type)}
	if j.Index != nil {
		t.Index = *j.Index
	}
	if j.Function != nil {
		t.Function.Name = looseString(j.Function.Name)
		t.Function.Arguments = looseString(j.Function.Arguments)
	}
	return nil
}

// MarshalJSON encodes the tool call in its streamed form, with "index".
func (t ToolCall) MarshalJSON() ([]byte, error) {
	return t.appendJSON(nil, true), nil
}

func (t ToolCall) appendJSON(b []byte, withIndex bool) []byte {
	b = append(b, '{')
	if withIndex {
		b = append(b, `"index":`...)
		b = strconv.AppendInt(b, int64(t.Index), 10)
		b = append(b, ',')
	}
	if t.ID != "" {
		b = append(b, `"id":`...)
		b = jsonstr.Append(b, t.ID)
		b = append(b, ',')
	}
	if t.Type != "" {
		b = append(b, `"type":`...)
		b = jsonstr.Append(b, t.Type)
		b = append(b, ',')
	}
	b = append(b, `"function":{`...)
	if t.Function.Name != "" {
		b = append(b, `"name":`...)
		b = jsonstr.Append(b, t.Function.Name)
		b = append(b, ',')
	}
	b = append(b, `"arguments":`...)
	b = jsonstr.Append(b, t.Function.Arguments)
	return append(b, "}}"...)
}

// Message is the typed view of one chat message.
type Message struct {
	// Role is "system", "developer", "user", "assistant" or "tool".
	Role string
	// Content is the text of string content, or the text parts of array
	// content joined with "\n" (other parts, such as images, are left out).
	Content string
	// ToolCalls are an assistant message's tool calls, Index set to their
	// position.
	ToolCalls []ToolCall
	// ToolCallID is the call a tool message answers.
	ToolCallID string
	// Name is the optional participant name.
	Name string
}

// MarshalJSON encodes the message as a chat message: role, content (string,
// or null for an assistant message with tool calls only), name, tool_calls
// (without index) and tool_call_id.
func (m Message) MarshalJSON() ([]byte, error) {
	b := []byte(`{"role":`)
	b = jsonstr.Append(b, m.Role)
	b = append(b, `,"content":`...)
	if m.Content == "" && len(m.ToolCalls) > 0 {
		b = append(b, "null"...)
	} else {
		b = jsonstr.Append(b, m.Content)
	}
	if m.Name != "" {
		b = append(b, `,"name":`...)
		b = jsonstr.Append(b, m.Name)
	}
	if len(m.ToolCalls) > 0 {
		b = append(b, `,"tool_calls":[`...)
		for i, tc := range m.ToolCalls {
			if i > 0 {
				b = append(b, ',')
			}
			b = tc.appendJSON(b, false)
		}
		b = append(b, ']')
	}
	if m.ToolCallID != "" {
		b = append(b, `,"tool_call_id":`...)
		b = jsonstr.Append(b, m.ToolCallID)
	}
	return append(b, '}'), nil
}

type messageJSON struct {
	Role       json.RawMessage `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID json.RawMessage `json:"tool_call_id"`
	Name       json.RawMessage `json:"name"`
}

// ParseMessage parses one chat message. It fails when raw is not a JSON
// object or when role, content or tool_calls have the wrong type.
func ParseMessage(raw json.RawMessage) (Message, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Message{}, fmt.Errorf("parse message: want a JSON object, got %s", jsonstr.Kind(raw))
	}
	var j messageJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	var m Message
	var err error
	if m.Role, err = optString("role", j.Role); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	if m.Content, err = ContentText(j.Content); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	if m.ToolCallID, err = optString("tool_call_id", j.ToolCallID); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	if m.Name, err = optString("name", j.Name); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	if m.ToolCalls, err = parseToolCalls(j.ToolCalls); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	return m, nil
}

// parseToolCalls decodes a message's tool_calls array, numbering the calls
// by position.
func parseToolCalls(raw json.RawMessage) ([]ToolCall, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '[' {
		return nil, fmt.Errorf("tool_calls: want an array, got %s", jsonstr.Kind(raw))
	}
	var tcs []ToolCall
	if err := json.Unmarshal(raw, &tcs); err != nil {
		return nil, fmt.Errorf("tool_calls: %w", err)
	}
	for i := range tcs {
		tcs[i].Index = i
	}
	return tcs, nil
}

// optString decodes a string member; absent or null is "".
func optString(key string, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("%s: want a string, got %s", key, jsonstr.Kind(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return s, nil
}

// ContentText returns the text of message content: a string, null, or an
// array of parts whose "text" (or "refusal") members are joined with "\n".
// It is the one definition of a message's text: token counts, imports and
// previews all read it.
func ContentText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("content: %w", err)
		}
		return s, nil
	case '[':
		var parts []struct {
			Text    json.RawMessage `json:"text"`
			Refusal json.RawMessage `json:"refusal"`
		}
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", fmt.Errorf("content: want a string or an array of parts: %w", err)
		}
		var sb strings.Builder
		n := 0
		for _, p := range parts {
			t := p.Text
			if len(t) == 0 || t[0] != '"' {
				t = p.Refusal
			}
			if len(t) == 0 || t[0] != '"' {
				continue
			}
			var s string
			if json.Unmarshal(t, &s) != nil {
				continue
			}
			if n > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(s)
			n++
		}
		return sb.String(), nil
	}
	return "", fmt.Errorf("content: want a string or an array, got %s", jsonstr.Kind(raw))
}

// MessageText returns the text of a message for token counting: its role,
// name, content and each tool call's name and arguments, one per line. For
// a message that does not parse it returns raw as text.
func MessageText(raw json.RawMessage) string {
	m, err := ParseMessage(raw)
	if err != nil {
		return string(raw)
	}
	return m.Text()
}

// Text returns the message's text for token counting (see MessageText).
func (m *Message) Text() string {
	n := len(m.Role) + len(m.Name) + len(m.Content) + 2
	for _, tc := range m.ToolCalls {
		n += len(tc.Function.Name) + len(tc.Function.Arguments) + 2
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(m.Role)
	if m.Name != "" {
		sb.WriteByte('\n')
		sb.WriteString(m.Name)
	}
	sb.WriteByte('\n')
	sb.WriteString(m.Content)
	for _, tc := range m.ToolCalls {
		sb.WriteByte('\n')
		sb.WriteString(tc.Function.Name)
		sb.WriteByte('\n')
		sb.WriteString(tc.Function.Arguments)
	}
	return sb.String()
}

// MarshalToolCalls encodes calls as the "tool_calls" array of an assistant message, in the
// form the recorder stores in tape.Response.ToolCalls and the replayer echoes back: "id"
// (left out when empty), "type" ("function" when empty) and "function" with "name" and
// "arguments" always present, no "index", strings escaped as encoding/json does (so <, > and
// & become \u003c, \u003e and \u0026). Stored replies are compared to echoed ones byte for
// byte, so this form must not change; it differs on purpose from Message.MarshalJSON. No
// calls give nil.
func MarshalToolCalls(calls []ToolCall) json.RawMessage {
	if len(calls) == 0 {
		return nil
	}
	type fn struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	}
	type call struct {
		ID       string `json:"id,omitempty"`
		Type     string `json:"type"`
		Function fn     `json:"function"`
	}
	out := make([]call, len(calls))
	for i, c := range calls {
		typ := c.Type
		if typ == "" {
			typ = "function"
		}
		out[i] = call{ID: c.ID, Type: typ, Function: fn{Name: c.Function.Name, Arguments: c.Function.Arguments}}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil // unreachable: strings and structs always encode
	}
	return b
}
