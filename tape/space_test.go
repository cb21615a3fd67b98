package tape_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// TestSpaceLinear stores 1,000 conversations of 50 turns, recorder-style (100 conversations
// active at once, their turns interleaved, through the batched writer), and checks that the
// file is within 1.3× of the conversations' unique message bytes: a turn stores only what it
// adds, so the file grows linearly with a conversation's length. (Storing every turn's full
// message list would take about 25× as much.)
func TestSpaceLinear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "space.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := tapetest.Recording(t, s)
	const conversations, turns, active = 1000, 50, 100
	rng := rand.New(rand.NewPCG(7, 8))
	w := s.NewWriter(tape.WriterConfig{})
	var unique, quadratic int64
	for g := 0; g < conversations; g += active {
		var chats []*tapetest.Chat
		for range active {
			c := tapetest.NewChat(rng, rec.ID, s.NextConversationID(), tapetest.Config{
				Turns: turns, MessageBytes: 200 + rng.IntN(1000), ReplyBytes: 300 + rng.IntN(2000), Chunks: 16})
			chats = append(chats, c)
			unique += c.UniqueBytes()
			for _, full := range c.Full {
				for _, m := range full {
					quadratic += int64(len(m))
				}
			}
			if err := w.Put(c.Conversation); err != nil {
				t.Fatal(err)
			}
		}
		for k := range turns {
			for _, c := range chats {
				if err := w.Put(c.Turns[k]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(fi.Size()) / float64(unique)
	t.Logf("file %d bytes, unique message bytes %d: %.3f× (full message lists would be %d bytes, %.1f×)",
		fi.Size(), unique, ratio, quadratic, float64(quadratic)/float64(unique))
	if ratio > 1.3 {
		t.Errorf("file is %.2f× the unique message bytes, want ≤ 1.3×", ratio)
	}
}
