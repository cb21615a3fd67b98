package dataset

import (
	"context"
	"encoding/json"
	"fmt"
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
func parseShareGPT(ctx context.Context, data []byte, file string, cfg *Config) (*Dataset, error) {
	return parseConversations(ctx, data, file, cfg, "conversations", `{"from", "value"}`, "no user message",
		func(d *Dataset, elem string, arr []json.RawMessage, fail func(string, error) error) ([]message, error) {
			msgs := []message{}
			for k, m := range arr {
				field := fmt.Sprintf("conversations[%d]", k)
				mo, err := object(m)
				if err != nil {
					return nil, fail(field, err)
				}
				var from, value string
				if err := json.Unmarshal(mo["from"], &from); err != nil {
					return nil, fail(field+".from", fmt.Errorf("expected a string, got %s", kind(mo["from"])))
				}
				if err := json.Unmarshal(mo["value"], &value); err != nil {
					return nil, fail(field+".value", fmt.Errorf("expected a string, got %s", kind(mo["value"])))
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
			return msgs, nil
		})
}
