package recorder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/tape"
)

// A recorder stitches two exchanges of one chat into one conversation; the second turn stores
// only the message it adds.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "recorder-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := tape.Open(filepath.Join(dir, "llmtape.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	rec, err := recorder.New(store, recorder.Config{Upstream: "http://127.0.0.1:8000", Mode: "reverse"})
	if err != nil {
		log.Fatal(err)
	}
	if err := rec.Start(context.Background()); err != nil { // creates the recording
		log.Fatal(err)
	}
	// In "llmtape record" the proxy calls Capture; here two exchanges are made by hand.
	start := time.Now()
	rec.Capture(exchange(start, "/v1/chat/completions",
		chatBody(msg("user", "Hi!")), 200, "text/event-stream", sseOf("Hello there.", true)))
	rec.Capture(exchange(start.Add(3*time.Second), "/v1/chat/completions",
		chatBody(msg("user", "Hi!"), msg("assistant", "Hello there."), msg("user", "Bye!")), 200, "text/event-stream", sseOf("Bye.", true)))
	if err := rec.Close(); err != nil {
		log.Fatal(err)
	}

	err = store.Conversations(rec.Recording(), func(c *tape.Conversation) error {
		fmt.Printf("conversation: %d turns, grouped %s\n", c.Turns, c.Grouping)
		return store.TurnMessages(c.ID, func(t *tape.Turn, msgs []json.RawMessage) error {
			fmt.Printf("turn %d (%s): %d messages, %d stored, reply %q\n", t.Index, t.Match, len(msgs), len(t.Request.Messages), t.Response.Content)
			return nil
		})
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", rec.Stats())
	// Output:
	// conversation: 2 turns, grouped prefix
	// turn 0 (single): 1 messages, 1 stored, reply "Hello there."
	// turn 1 (prefix): 3 messages, 1 stored, reply "Bye."
	// {Seen:2 Recorded:2 NotRecorded:0 Dropped:0 Lost:0 Ignored:0 Errors:0 Open:1 QueueDepth:0 Stored:4}
}
