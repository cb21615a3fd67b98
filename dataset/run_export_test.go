package dataset_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/tape"
)

func msg(s string) json.RawMessage { return json.RawMessage(s) }

// TestExportRunAnswered: a run's conversations as its target answered them. Replies of the
// recording are replaced by the run's, an assistant message the client edited stays as it
// sent it, a reply with tool calls is the assistant message a client echoes, and a
// conversation ends before its first turn without a successful reply.
func TestExportRunAnswered(t *testing.T) {
	st := mustStore(t)
	rec := &tape.Recording{Name: "r", Source: "record"}
	if err := st.CreateRecording(rec); err != nil {
		t.Fatal(err)
	}
	run := &tape.Run{Name: "kept", Recording: rec.ID}
	if err := st.CreateRun(run); err != nil {
		t.Fatal(err)
	}
	sys, u0, u1, u2, u3 := msg(`{"role":"system","content":"s"}`), msg(`{"role":"user","content":"u0"}`),
		msg(`{"role":"user","content":"u1"}`), msg(`{"role":"user","content":"u2"}`), msg(`{"role":"user","content":"u3"}`)
	edited := msg(`{"role":"assistant","content":"edited by the client"}`)
	calls := msg(`[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]`)
	err := st.Update(func(tx *tape.Tx) error {
		for _, id := range []uint64{1, 2} {
			if err := tx.PutConversation(&tape.Conversation{ID: id, Recording: rec.ID, Grouping: tape.GroupPrefix}); err != nil {
				return err
			}
		}
		turns := []*tape.Turn{
			{Conversation: 1, Index: 0, Request: tape.Request{Messages: []json.RawMessage{sys, u0}}},
			{Conversation: 1, Index: 1, Request: tape.Request{Kept: 3, Messages: []json.RawMessage{u1}}},
			{Conversation: 1, Index: 2, Request: tape.Request{Kept: 4, Messages: []json.RawMessage{edited, u2}}},
			{Conversation: 1, Index: 3, Request: tape.Request{Kept: 7, Messages: []json.RawMessage{u3}}},
			{Conversation: 2, Index: 0, Request: tape.Request{Messages: []json.RawMessage{u0}}},
		}
		for i, turn := range turns {
			turn.Request.Path = "/v1/chat/completions"
			turn.Response = tape.Response{Status: 200, Content: "recorded reply"}
			turn.Request.Model = "m"
			if err := tx.PutTurn(turn); err != nil {
				return err
			}
			res := &tape.Result{Run: run.ID, Seq: uint64(i + 1), Conversation: turn.Conversation, Turn: turn.Index, Status: 200,
				Reply: &tape.Reply{Content: "target " + string(rune('0'+i))}}
			switch i {
			case 2:
				res.Reply = &tape.Reply{ToolCalls: calls}
			case 3:
				res.Status, res.ErrorClass, res.Error = 500, "http", "500: boom"
			case 4:
				res.Reply = nil // conversation 2's only turn kept no reply
			}
			if err := tx.PutResult(res); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	stats, err := dataset.ExportRun(context.Background(), st, run.ID, &buf, dataset.ExportConfig{Format: dataset.FormatVLLM})
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		ID       string            `json:"id"`
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.Bytes())
	}
	want := []json.RawMessage{sys, u0, msg(`{"role":"assistant","content":"target 0"}`), u1, edited, u2,
		msg(`{"role":"assistant","content":null,"tool_calls":` + string(calls) + `}`)}
	if len(got) != 1 || got[0].ID != "conv-1" || len(got[0].Messages) != len(want) || stats.Conversations != 1 || stats.Turns != 3 {
		t.Fatalf("stats %+v, got %s", stats, buf.Bytes())
	}
	for i := range want {
		if !tape.JSONEqual(got[0].Messages[i], want[i]) {
			t.Errorf("message %d: %s, want %s", i, got[0].Messages[i], want[i])
		}
	}

	// A run without kept replies, and a format that does not export runs.
	plain := &tape.Run{Name: "plain", Recording: rec.ID}
	if err := st.CreateRun(plain); err != nil {
		t.Fatal(err)
	}
	if _, err := dataset.ExportRun(context.Background(), st, plain.ID, &buf, dataset.ExportConfig{Format: dataset.FormatShareGPT}); err == nil {
		t.Error("a run without kept replies exported")
	}
	if _, err := dataset.ExportRun(context.Background(), st, run.ID, &buf, dataset.ExportConfig{Format: dataset.FormatMooncake}); !errors.Is(err, dataset.ErrUnknownFormat) {
		t.Errorf("mooncake of a run: %v", err)
	}
}
