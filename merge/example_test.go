package merge_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/llmtape/llmtape/merge"
	"github.com/llmtape/llmtape/tape"
)

// Two shard stores, copies of one recording store, each with its shard's run: merged, they
// hold the recording once and both runs.
func ExampleStores() {
	dir, _ := os.MkdirTemp("", "merge-example")
	defer os.RemoveAll(dir)

	// The recording store: one recording of two single-turn conversations.
	orig, _ := tape.Open(filepath.Join(dir, "orig.db"), nil)
	rec := &tape.Recording{Name: "prod", Source: "record", Started: time.Unix(1_800_000_000, 0), Complete: true}
	var convs []uint64
	_ = orig.Update(func(tx *tape.Tx) error {
		if err := tx.PutRecording(rec); err != nil {
			return err
		}
		for i := range 2 {
			c := &tape.Conversation{Recording: rec.ID, Arrival: time.Duration(i) * time.Second, Grouping: tape.GroupSingle}
			if err := tx.PutConversation(c); err != nil {
				return err
			}
			convs = append(convs, c.ID)
			if err := tx.PutTurn(&tape.Turn{Conversation: c.ID, Request: tape.Request{Path: "/v1/chat/completions"}}); err != nil {
				return err
			}
		}
		return nil
	})
	_ = orig.Close()
	orig, _ = tape.Open(filepath.Join(dir, "orig.db"), &tape.Options{ReadOnly: true})
	defer orig.Close()

	// Each shard replays one conversation into its own copy.
	var shards []*tape.Store
	for i, conv := range convs {
		path := filepath.Join(dir, fmt.Sprintf("shard-%d.db", i))
		f, _ := os.Create(path)
		_, _ = orig.Snapshot(f)
		_ = f.Close()
		s, _ := tape.Open(path, nil)
		defer s.Close()
		run := &tape.Run{Name: fmt.Sprintf("shard-%d", i), Recording: rec.ID, Started: time.Unix(1_800_000_100, 0)}
		_ = s.CreateRun(run)
		_ = s.Update(func(tx *tape.Tx) error {
			return tx.PutResult(&tape.Result{Run: run.ID, Seq: 1, Conversation: conv, Status: 200})
		})
		shards = append(shards, s)
	}

	dst, _ := tape.Open(filepath.Join(dir, "merged.db"), nil)
	defer dst.Close()
	st, err := merge.Stores(context.Background(), dst, shards...)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("recordings copied %d, shared %d; conversations %d, turns %d; runs %d, results %d\n",
		st.Recordings, st.SharedRecordings, st.Conversations, st.Turns, st.Runs, st.Results)
	// Output:
	// recordings copied 1, shared 1; conversations 2, turns 2; runs 2, results 2
}
