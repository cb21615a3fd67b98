package tape_test

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/llmtape/llmtape/tape"
)

// A recorder hands conversations and turns to a batched writer; a reader rebuilds each turn's
// full message list.
func Example() {
	dir, _ := os.MkdirTemp("", "tape")
	defer os.RemoveAll(dir)
	s, err := tape.Open(filepath.Join(dir, "llmtape.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	rec := &tape.Recording{Name: "example", Source: "record"}
	if err := s.CreateRecording(rec); err != nil {
		log.Fatal(err)
	}
	w := s.NewWriter(tape.WriterConfig{})
	conv := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID, Grouping: tape.GroupPrefix}
	first := &tape.Turn{Conversation: conv.ID, Index: 0, Request: tape.Request{
		Messages: []json.RawMessage{json.RawMessage(`{"role":"user","content":"Hi!"}`)},
	}, Response: tape.Response{Content: "Hello."}}
	// The client echoes the reply back: the second turn keeps the first turn's message and
	// the reply (Kept: 2) and adds one message.
	second := &tape.Turn{Conversation: conv.ID, Index: 1, Request: tape.Request{
		Kept:     2,
		Messages: []json.RawMessage{json.RawMessage(`{"role":"user","content":"How are you?"}`)},
	}, Response: tape.Response{Content: "Fine."}}
	for _, r := range []tape.Record{conv, first, second} {
		if err := w.Put(r); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	err = s.TurnMessages(conv.ID, func(t *tape.Turn, msgs []json.RawMessage) error {
		fmt.Printf("turn %d: %d messages, last %s\n", t.Index, len(msgs), msgs[len(msgs)-1])
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	r, _ := s.Recording(rec.ID)
	fmt.Printf("recording %q: %d conversation, %d turns\n", r.Name, r.Conversations, r.Turns)
	// Output:
	// turn 0: 1 messages, last {"role":"user","content":"Hi!"}
	// turn 1: 3 messages, last {"role":"user","content":"How are you?"}
	// recording "example": 1 conversation, 2 turns
}
