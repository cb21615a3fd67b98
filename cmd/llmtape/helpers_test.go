package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// Helpers shared by the tests of replay, analyze, report, compare and merge.

// execCmd runs the real command tree and returns its exit status, stdout and stderr.
func execCmd(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// chatSpec shapes the i-th conversation of chatStore: its tapetest chat, its arrival offset,
// the recorded completion tokens of each of its turns and, when set, their model, and whether
// they were recorded without streaming (no "stream" member, as a client that asked for whole
// replies sent them).
type chatSpec struct {
	chat       tapetest.Config
	arrival    time.Duration
	completion int
	model      string
	whole      bool
}

// chatStore writes a store (in a temporary directory, file name name) with one recording of
// n tapetest chats drawn from src and shaped by spec, and returns its path.
func chatStore(t *testing.T, name string, src rand.Source, n int, spec func(i int) chatSpec) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := tapetest.Recording(t, s)
	rng := rand.New(src)
	err = s.Update(func(tx *tape.Tx) error {
		for i := range n {
			sp := spec(i)
			c := tapetest.NewChat(rng, rec.ID, s.NextConversationID(), sp.chat)
			c.Conversation.Arrival = sp.arrival
			for _, turn := range c.Turns {
				turn.Tokens.Completion = sp.completion
				if sp.model != "" {
					turn.Request.Model = sp.model
				}
				if sp.whole {
					turn.Request.Stream = false
					turn.Request.Params = json.RawMessage(`{"model":"llama-3.1-8b","temperature":0.7}`)
				}
			}
			if err := c.Write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// unchanged fails the test if the file at path no longer holds want.
func unchanged(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed (%d bytes, was %d)", path, len(got), len(want))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
