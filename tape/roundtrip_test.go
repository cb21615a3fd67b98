package tape_test

import (
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// TestRoundTrip writes 1,000 conversations of 1 to 50 turns through the batched writer from 8
// goroutines, reopens the store and reads every turn back.
func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rt.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := tapetest.Recording(t, s)
	const conversations, workers = 400, 8 // about 10,000 turns: a minute under the race detector on a busy machine at 1,000
	rng := rand.New(rand.NewPCG(5, 6))
	chats := make([]*tapetest.Chat, conversations)
	turns := 0
	for i := range chats {
		chats[i] = tapetest.NewChat(rng, rec.ID, s.NextConversationID(),
			tapetest.Config{Turns: 1 + rng.IntN(50), MessageBytes: 20 + rng.IntN(200), Chunks: 1 + rng.IntN(20)})
		turns += len(chats[i].Turns)
	}
	// A few turns of other shapes: tool calls, an error, a completion, a synthetic prompt.
	special := chats[0].Turns[0]
	special.Response.ToolCalls = json.RawMessage(`[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]`)
	special.Response.Reasoning = "thinking…"
	special.Response.Error = "boom"
	special.Response.ErrorClass = "http"
	special.Timing.ClientGone = true
	for k := 1; k < len(chats[0].Full); k++ {
		chats[0].Full[k][2] = tape.ReplyMessage(special)
	}

	w := s.NewWriter(tape.WriterConfig{MaxBatch: 64, OnLost: func(r tape.Record, err error) {
		t.Errorf("lost %T: %v", r, err)
	}})
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			// Each worker owns every 8th conversation and interleaves their turns.
			var mine []*tapetest.Chat
			for i := g; i < conversations; i += workers {
				mine = append(mine, chats[i])
				if err := w.Put(chats[i].Conversation); err != nil {
					t.Error(err)
				}
			}
			for k := 0; ; k++ {
				any := false
				for _, c := range mine {
					if k < len(c.Turns) {
						any = true
						if err := w.Put(c.Turns[k]); err != nil {
							t.Error(err)
						}
					}
				}
				if !any {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Committed != int64(conversations+turns) || st.Lost != 0 || st.Queued != 0 {
		t.Fatalf("writer stats %+v, want %d committed", st, conversations+turns)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Recording(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Conversations != conversations || got.Turns != turns {
		t.Errorf("recording counters %d conversations, %d turns; want %d, %d", got.Conversations, got.Turns, conversations, turns)
	}
	byID := map[uint64]*tapetest.Chat{}
	for _, c := range chats {
		byID[c.Conversation.ID] = c
	}
	seen := 0
	var prevArrival int64 = -1
	err = s.Conversations(rec.ID, func(conv *tape.Conversation) error {
		seen++
		if int64(conv.Arrival) < prevArrival {
			t.Errorf("conversation %d out of arrival order", conv.ID)
		}
		prevArrival = int64(conv.Arrival)
		want := byID[conv.ID]
		if want == nil {
			t.Fatalf("unknown conversation %d", conv.ID)
		}
		wc := *want.Conversation
		wc.Turns = len(want.Turns)
		if *conv != wc {
			t.Errorf("conversation %+v, want %+v", *conv, wc)
		}
		n := 0
		err := s.TurnMessages(conv.ID, func(turn *tape.Turn, msgs []json.RawMessage) error {
			wt := want.Turns[n]
			if len(msgs) != len(want.Full[n]) {
				t.Fatalf("turn %d/%d: %d messages, want %d", conv.ID, n, len(msgs), len(want.Full[n]))
			}
			for i := range msgs {
				if !tape.JSONEqual(msgs[i], want.Full[n][i]) {
					t.Fatalf("turn %d/%d message %d: %s, want %s", conv.ID, n, i, msgs[i], want.Full[n][i])
				}
			}
			if !turnEqual(turn, wt) {
				t.Fatalf("turn %d/%d:\n got %+v\nwant %+v", conv.ID, n, turn, wt)
			}
			n++
			return nil
		})
		if err != nil {
			return err
		}
		if n != len(want.Turns) {
			t.Errorf("conversation %d: %d turns, want %d", conv.ID, n, len(want.Turns))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != conversations {
		t.Errorf("%d conversations, want %d", seen, conversations)
	}
}

// turnEqual compares turns field by field, times by instant.
func turnEqual(a, b *tape.Turn) bool {
	x, y := *a, *b
	if !x.Timing.Start.Equal(y.Timing.Start) {
		return false
	}
	x.Timing.Start = y.Timing.Start
	return reflect.DeepEqual(x, y)
}
