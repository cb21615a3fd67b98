package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/tape"
)

func TestShowTable(t *testing.T) {
	path, chat := lsStore(t)
	id := strconv.FormatUint(chat.Conversation.ID, 10)
	code, out, errOut := lsExec("show", id, "--store", path)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	first := chat.Turns[0]
	_, userText := messagePreview(first.Request.Messages[1])
	for _, want := range []string{
		"conversation " + id, "turn 0", "turn 1", "system", "You are a helpful assistant.", "user",
		userText[:20], "reply", preview(first.Response.Content)[:20], "… 3 earlier messages",
		"ttft", "e2e", "tokens 100 in (0 cached)", "(server)", "think",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}

func TestShowJSON(t *testing.T) {
	path, chat := lsStore(t)
	code, out, errOut := lsExec("show", strconv.FormatUint(chat.Conversation.ID, 10), "--store", path, "--format", "json")
	if code != 0 {
		t.Fatalf("show --format json: exit %d: %s", code, errOut)
	}
	var got showOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show json: %v\n%s", err, out)
	}
	if got.ID != chat.Conversation.ID || len(got.Turns) != len(chat.Turns) {
		t.Fatalf("show json: conversation %d with %d turns, want %d with %d", got.ID, len(got.Turns), chat.Conversation.ID, len(chat.Turns))
	}
	for i, turn := range got.Turns {
		want := chat.Turns[i]
		if turn.Reply != want.Response.Content || turn.Tokens.Prompt != want.Tokens.Prompt || turn.Kept != want.Request.Kept {
			t.Errorf("turn %d: %+v", i, turn)
		}
		if len(turn.Messages) != len(want.Request.Messages) || !tape.JSONEqual(turn.Messages[0].JSON, want.Request.Messages[0]) {
			t.Errorf("turn %d messages %+v", i, turn.Messages)
		}
		if turn.TTFTMs == nil || *turn.TTFTMs <= 0 || turn.E2EMs == nil || *turn.E2EMs <= *turn.TTFTMs {
			t.Errorf("turn %d timing ttft %v e2e %v", i, turn.TTFTMs, turn.E2EMs)
		}
		if (i == 0) != (turn.ThinkMs == nil) {
			t.Errorf("turn %d think %v", i, turn.ThinkMs)
		}
	}
}

func TestShowErrors(t *testing.T) {
	path, _ := lsStore(t)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"show", "999", "--store", path}, 1, "conversation 999 is not in"},
		{[]string{"show", "abc", "--store", path}, 2, "want a conversation id"},
		{[]string{"show", "--store", path}, 2, "accepts 1 arg"},
		{[]string{"show", "1", "--store", path + ".missing"}, 1, "does not exist"},
	}
	for _, tt := range tests {
		code, _, errOut := lsExec(tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d stderr %q; want %d with %q", tt.args, code, errOut, tt.code, tt.want)
		}
	}
}

func TestMessagePreview(t *testing.T) {
	tests := []struct {
		msg, role, text string
	}{
		{`{"role":"user","content":"hello\nworld"}`, "user", "hello world"},
		{`{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"x"}}]}`, "user", "look [image_url]"},
		{`{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`, "assistant", "[call get_weather]"},
		{`not json`, "?", "not json"},
		{`{"role":"user","content":"` + strings.Repeat("é", 100) + `"}`, "user", strings.Repeat("é", showPreview-1) + "…"},
	}
	for _, tt := range tests {
		role, text := messagePreview(json.RawMessage(tt.msg))
		if role != tt.role || text != tt.text {
			t.Errorf("messagePreview(%s) = %q, %q; want %q, %q", tt.msg, role, text, tt.role, tt.text)
		}
	}
}

// TestShowNoTiming: imported and generated turns have no response timing, and show says so
// instead of printing a latency of 0.
func TestShowNoTiming(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "s.db")
	file := filepath.Join(dir, "c.json")
	if err := os.WriteFile(file, []byte(`[{"id": "a", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := lsExec("import", "--format", "vllm", "--store", store, file); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	code, out, errOut := lsExec("show", "1", "--store", store, "--format", "json")
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	var got showOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Turns) != 1 {
		t.Fatalf("show json: %v\n%s", err, out)
	}
	if tr := got.Turns[0]; tr.E2EMs != nil || tr.TTFTMs != nil {
		t.Errorf("imported turn has e2e %v ttft %v, want null", tr.E2EMs, tr.TTFTMs)
	}
	_, out, _ = lsExec("show", "1", "--store", store)
	if !strings.Contains(out, "ttft -  e2e -") {
		t.Errorf("show table:\n%s", out)
	}
}

func TestShowTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := &tape.Recording{Name: "r"}
	if err := s.CreateRecording(rec); err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *tape.Tx) error {
		c := &tape.Conversation{Recording: rec.ID}
		if err := tx.PutConversation(c); err != nil {
			return err
		}
		return tx.PutTurn(&tape.Turn{Conversation: c.ID, Request: tape.Request{Truncated: true, BodySize: 12345}})
	})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, out, errOut := lsExec("show", "1", "--store", path)
	if !strings.Contains(out, "request body of 12345 bytes not kept") {
		t.Errorf("show of a truncated turn:\n%s%s", out, errOut)
	}
}
