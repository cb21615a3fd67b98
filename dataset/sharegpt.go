package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/llmtape/llmtape/tape"
)

// shareGPTRole maps a ShareGPT "from" to a chat role as vLLM's converter
// (benchmarks/multi_turn/convert_sharegpt_to_openai.py) does; "" for an unknown one.
func shareGPTRole(from string) string {
	switch from {
	case "human", "user":
		return "user"
	case "gpt", "bing", "chatgpt", "bard", "assistant":
		return "assistant"
	case "system":
		return "system"
	}
	return ""
}

// chatMessage builds the JSON of a plain chat message.
func chatMessage(role, content string) json.RawMessage {
	b, _ := json.Marshal(struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}{role, content})
	return b
}

// parseShareGPT reads [{"id", "conversations": [{"from", "value"}, …]}, …]. Messages from
// an unknown speaker and leading assistant messages (the tail of an earlier conversation)
// are skipped and reported, as are conversations left without a user message.
func parseShareGPT(data []byte, file string, cfg *Config) (*Dataset, error) {
	d := &Dataset{}
	start := cfg.now()
	d.Recording.Started, d.Recording.Ended = start, start
	seen := map[string]int{}
	err := jsonArray(data, file, `a JSON array of conversations {"id", "conversations"}`, func(i int, raw json.RawMessage, off int64) error {
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
		rawConv, ok := obj["conversations"]
		if !ok {
			return fail("", errors.New(`missing field "conversations", expected an array of {"from", "value"}`))
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(rawConv, &arr); err != nil {
			return fail("conversations", errors.New(`expected an array of {"from", "value"}`))
		}
		var msgs []message
		for k, m := range arr {
			field := fmt.Sprintf("conversations[%d]", k)
			mo, err := object(m)
			if err != nil {
				return fail(field, err)
			}
			var from, value string
			if err := json.Unmarshal(mo["from"], &from); err != nil {
				return fail(field+".from", fmt.Errorf("expected a string, got %s", kind(mo["from"])))
			}
			if err := json.Unmarshal(mo["value"], &value); err != nil {
				return fail(field+".value", fmt.Errorf("expected a string, got %s", kind(mo["value"])))
			}
			role := shareGPTRole(from)
			if role == "" {
				d.Skipped = append(d.Skipped, Skip{Element: elem + ": " + field, Reason: fmt.Sprintf("unknown speaker %q (want human, user, gpt, bing, chatgpt, bard or system)", from)})
				continue
			}
			if role == "assistant" && len(msgs) == 0 {
				d.Skipped = append(d.Skipped, Skip{Element: elem + ": " + field, Reason: "conversation starts with an assistant message"})
				continue
			}
			msgs = append(msgs, message{raw: chatMessage(role, value), role: role, content: value})
		}
		turns := textTurns(msgs, cfg.Model, start)
		if len(turns) == 0 {
			d.Skipped = append(d.Skipped, Skip{Element: elem, Reason: "no user message"})
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
