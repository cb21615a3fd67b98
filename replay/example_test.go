package replay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
)

// Replay a recording against the simulator at twice the recorded pace and read the summary.
func Example() {
	dir, _ := os.MkdirTemp("", "replay-example")
	defer os.RemoveAll(dir)
	st, _ := tape.Open(filepath.Join(dir, "llmtape.db"), nil)
	defer st.Close()
	// A recording of one conversation of two turns, the second sent 1 s after the first reply.
	rec := &tape.Recording{Name: "example", Complete: true}
	_ = st.CreateRecording(rec)
	_ = st.Update(func(tx *tape.Tx) error {
		c := &tape.Conversation{ID: st.NextConversationID(), Recording: rec.ID}
		_ = tx.PutConversation(c)
		start := time.Now()
		for i, text := range []string{"hello", "and then?"} {
			_ = tx.PutTurn(&tape.Turn{Conversation: c.ID, Index: i, Request: tape.Request{
				Path: "/v1/chat/completions", Kept: 2 * i, Params: []byte(`{"model":"m"}`),
				Messages: []json.RawMessage{json.RawMessage(`{"role":"user","content":"` + text + `"}`)},
			}, Response: tape.Response{Content: "ok"}, Tokens: tape.Tokens{Completion: 5},
				Timing: tape.Timing{Start: start.Add(time.Duration(i) * 1100 * time.Millisecond), End: 100 * time.Millisecond}})
		}
		return nil
	})

	srv, _ := sim.New(sim.Config{TTFT: 5 * time.Millisecond, ITL: time.Millisecond})
	url, _ := srv.Start("")
	defer srv.Close()

	r, err := replay.New(st, replay.Config{Target: url, Speed: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	rep, err := r.Run(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	s := rep.Summary
	fmt.Printf("%d requests, %d ok, %d output tokens each\n", s.Requests.Total, s.Requests.OK, int(s.OutputTokens.Max))
	// Output: 2 requests, 2 ok, 5 output tokens each
}
