package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/llmtape/llmtape/internal/jsonstr"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/tape"
)

// parseVLLM reads vLLM's multi-turn benchmark conversations:
// [{"id": "…", "messages": [{"role": "…", "content": "…"}, …]}, …]. System messages and
// conversations that end on a user message are kept.
func parseVLLM(ctx context.Context, data []byte, file string, cfg *Config) (*Dataset, error) {
	return parseConversations(ctx, data, file, cfg, "messages", `{"role", "content"}`, "only assistant messages, no request",
		func(d *Dataset, elem string, arr []json.RawMessage, fail func(string, error) error) ([]message, error) {
			if len(arr) == 0 {
				d.Skipped = append(d.Skipped, Skip{Element: elem, Reason: "no messages"})
				return nil, nil
			}
			msgs := make([]message, 0, len(arr))
			for k, m := range arr {
				msg, err := parseChatMessage(m)
				if err != nil {
					return nil, fail(fmt.Sprintf("messages[%d]", k), err)
				}
				msgs = append(msgs, msg)
			}
			return msgs, nil
		})
}

// elementParser turns the field array of one element of a conversations file into messages,
// adding to d.Skipped what it leaves out; fail places an error in the element's field.
type elementParser func(d *Dataset, elem string, arr []json.RawMessage, fail func(field string, err error) error) ([]message, error)

// parseConversations reads a JSON array of conversations {"id", field: [...]} (the vllm and
// sharegpt formats): element errors, ids (a repeated id is skipped, a missing one is the
// element's index) and turns are handled here; parse turns one element's field array into
// messages, adding to d.Skipped what it leaves out. An element without turns is skipped with
// the reason noTurns (unless parse returned no messages: it has said why).
func parseConversations(ctx context.Context, data []byte, file string, cfg *Config, field, fieldWant, noTurns string, parse elementParser) (*Dataset, error) {
	d := &Dataset{}
	start := cfg.now()
	d.Recording.Started, d.Recording.Ended = start, start
	seen := map[string]int{}
	want := fmt.Sprintf(`a JSON array of conversations {"id", %q}`, field)
	err := jsonArray(ctx, data, file, want, func(i int, raw json.RawMessage, off int64) error {
		elem := fmt.Sprintf("element %d", i)
		fail := func(field string, err error) error {
			return &InputError{File: file, Line: lineOf(data, off), Element: joinElem(elem, field), Err: err}
		}
		obj, err := object(raw)
		if err != nil {
			return fail("", err)
		}
		id, err := idString(obj["id"])
		if err != nil {
			return fail("id", err)
		}
		if id != "" {
			elem = fmt.Sprintf("element %d (id %q)", i, id)
			if j, dup := seen[id]; dup {
				d.Skipped = append(d.Skipped, Skip{Element: elem, Reason: fmt.Sprintf("id already used by element %d", j)})
				return nil
			}
			seen[id] = i
		}
		arr, err := fieldArray(obj, field, fieldWant, fail)
		if err != nil {
			return err
		}
		msgs, err := parse(d, elem, arr, fail)
		if err != nil || msgs == nil {
			return err
		}
		turns := textTurns(msgs, cfg.Model, start)
		if len(turns) == 0 {
			d.Skipped = append(d.Skipped, Skip{Element: elem, Reason: noTurns})
			return nil
		}
		if id == "" {
			id = strconv.Itoa(i)
		}
		d.Conversations = append(d.Conversations, Conversation{
			Conversation: tape.Conversation{Grouping: tape.GroupImport, Session: id},
			Turns:        turns,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// fieldArray returns the elements of an element's array field (of fieldWant objects).
func fieldArray(obj map[string]json.RawMessage, field, fieldWant string, fail func(string, error) error) ([]json.RawMessage, error) {
	rawArr, ok := obj[field]
	if !ok {
		return nil, fail("", fmt.Errorf("missing field %q, expected an array of %s", field, fieldWant))
	}
	// rawArr is valid JSON, a field of a valid object.
	rawArr = bytes.TrimSpace(rawArr)
	if len(rawArr) == 0 || rawArr[0] != '[' {
		return nil, fail(field, fmt.Errorf("expected an array of %s", fieldWant))
	}
	return elementsInPlace(rawArr), nil
}

// object decodes a JSON object into its fields, which are slices of raw when it is valid.
func object(raw json.RawMessage) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("expected an object, got %s", kind(raw))
	}
	if json.Valid(raw) {
		return fieldsInPlace(raw)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("expected an object: %v", err)
	}
	return obj, nil
}

// kind names the JSON type of raw for error messages, after any white space.
func kind(raw json.RawMessage) string { return jsonstr.Kind(bytes.TrimSpace(raw)) }

// idString reads a conversation id: a string or a number; missing or null gives "".
func idString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("expected a string, got %s", kind(raw))
}

// messageContent returns the text of a message's content by openai.ContentText, the one
// definition (parts joined with newlines), and says what an import expects when it is
// neither a string, an array of parts nor null.
func messageContent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	text, err := openai.ContentText(raw)
	if err == nil {
		return text, nil
	}
	if raw[0] == '[' {
		return "", errors.New(`content: expected a string or an array of parts {"type", "text"}`)
	}
	return "", fmt.Errorf("content: expected a string, an array of parts or null, got %s", kind(raw))
}

// parseChatMessage checks a chat message ({"role": string, "content": string, array of parts
// or null, …}) and keeps it compact.
func parseChatMessage(raw json.RawMessage) (message, error) {
	obj, err := object(raw)
	if err != nil {
		return message{}, err
	}
	rr, ok := obj["role"]
	if !ok {
		return message{}, errors.New(`missing field "role", expected a string`)
	}
	var m message
	if err := json.Unmarshal(rr, &m.role); err != nil {
		return message{}, fmt.Errorf("role: expected a string, got %s", kind(rr))
	}
	if m.role == "" {
		return message{}, errors.New("role: expected a non-empty string")
	}
	if m.content, err = messageContent(obj["content"]); err != nil {
		return message{}, err
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return message{}, fmt.Errorf("malformed JSON: %v", err)
	}
	m.raw = buf.Bytes()
	return m, nil
}
