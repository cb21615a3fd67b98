package openai

import (
	"bytes"
	"encoding/json"
)

// APIError is an OpenAI-style error object, as found in an error response body
// ({"error": {...}}) or inside a stream (a data event holding {"error": {...}}).
type APIError struct {
	// Message is the human-readable description of the error.
	Message string `json:"message"`
	// Type is the error class, e.g. "invalid_request_error" or "server_error".
	Type string `json:"type,omitempty"`
	// Code is kept verbatim: servers send a string ("context_length_exceeded"),
	// a number (llama.cpp sends the HTTP status) or null. Nil when absent.
	Code json.RawMessage `json:"code,omitempty"`
	// Param names the request field at fault; nil when absent or null.
	Param *string `json:"param,omitempty"`
}

// Error implements the error interface: the message, prefixed by the type
// when there is one.
func (e *APIError) Error() string {
	if e == nil {
		return "<nil>"
	}
	msg := e.Message
	if msg == "" {
		msg = "unknown error"
	}
	if e.Type != "" {
		return e.Type + ": " + msg
	}
	return msg
}

// CodeString returns Code as a string: the unquoted string, the number as
// written, or "" when Code is absent or null.
func (e *APIError) CodeString() string {
	if e == nil {
		return ""
	}
	c := bytes.TrimSpace(e.Code)
	if len(c) == 0 || string(c) == "null" {
		return ""
	}
	if c[0] == '"' {
		var s string
		if json.Unmarshal(c, &s) == nil {
			return s
		}
	}
	return string(c)
}

// ErrorBody is the OpenAI error response body: {"error": {...}}.
type ErrorBody struct {
	Error APIError `json:"error"`
}

// ParseError recognises an error body and returns its error object. It accepts
// the OpenAI shape {"error": {"message": ..., "type": ..., "code": ..., "param": ...}},
// the short shape {"error": "message"}, and vLLM's flat shape
// {"object": "error", "message": ..., "type": ..., "code": ...}. It reports
// false for anything else (including a body that is not JSON).
func ParseError(body []byte) (*APIError, bool) {
	var top struct {
		Error   json.RawMessage `json:"error"`
		Object  string          `json:"object"`
		Message *string         `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
		Param   *string         `json:"param"`
	}
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, false
	}
	errRaw := bytes.TrimSpace(top.Error)
	switch {
	case len(errRaw) > 0 && errRaw[0] == '{':
		e, err := parseErrorObject(errRaw)
		if err != nil {
			return nil, false
		}
		return e, true
	case len(errRaw) > 0 && errRaw[0] == '"':
		var msg string
		if json.Unmarshal(errRaw, &msg) != nil {
			return nil, false
		}
		return &APIError{Message: msg}, true
	case top.Object == "error" && top.Message != nil:
		return &APIError{Message: *top.Message, Type: top.Type, Code: nullToNil(top.Code), Param: top.Param}, true
	}
	return nil, false
}

// parseErrorObject decodes one error object. A message that is not a string
// (some servers nest objects) is kept as its JSON text.
func parseErrorObject(raw []byte) (*APIError, error) {
	var obj struct {
		Message json.RawMessage `json:"message"`
		Type    json.RawMessage `json:"type"`
		Code    json.RawMessage `json:"code"`
		Param   json.RawMessage `json:"param"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	e := &APIError{
		Message: looseString(obj.Message),
		Type:    looseString(obj.Type),
		Code:    nullToNil(obj.Code),
	}
	if p := bytes.TrimSpace(obj.Param); len(p) > 0 && string(p) != "null" {
		s := looseString(p)
		e.Param = &s
	}
	return e, nil
}

// looseString returns a JSON string's value, or the raw JSON text of any
// other value ("" for null or absent).
func looseString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

func nullToNil(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return append(json.RawMessage(nil), raw...)
}

// ErrorJSON returns an OpenAI-style error body:
// {"error":{"message":...,"type":...,"param":null,"code":...}}. code may be
// nil (null), a string, a number, or a json.RawMessage; a value that cannot
// be encoded becomes null.
func ErrorJSON(message, typ string, code any) []byte {
	var codeRaw json.RawMessage
	switch c := code.(type) {
	case nil:
	case json.RawMessage:
		if json.Valid(c) {
			codeRaw = c
		}
	default:
		if b, err := json.Marshal(c); err == nil {
			codeRaw = b
		}
	}
	if codeRaw == nil {
		codeRaw = json.RawMessage("null")
	}
	body := struct {
		Error struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Param   *string         `json:"param"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}{}
	body.Error.Message = message
	body.Error.Type = typ
	body.Error.Code = codeRaw
	b, err := json.Marshal(body)
	if err != nil {
		// Unreachable: every field is a plain string or valid raw JSON.
		return []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`)
	}
	return b
}
