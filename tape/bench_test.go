package tape_test

import (
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// benchTurns are turn templates with 2 KB of new messages each (a 2 KB user message; the
// reply is 1 KB more).
func benchChats(n int) []*tapetest.Chat {
	rng := rand.New(rand.NewPCG(1, 2))
	chats := make([]*tapetest.Chat, n)
	for i := range chats {
		chats[i] = tapetest.NewChat(rng, 1, uint64(i+1), tapetest.Config{Turns: 50, MessageBytes: 2048, ReplyBytes: 1024, Chunks: 32})
	}
	return chats
}

// BenchmarkWriter writes turns through the batched writer the way the recorder does: 64
// conversations active at once, their turns interleaved. One op is one turn.
func BenchmarkWriter(b *testing.B) {
	for _, sync := range []bool{false, true} {
		name := "nosync"
		if sync {
			name = "fsync"
		}
		b.Run(name, func(b *testing.B) {
			s, err := tape.Open(filepath.Join(b.TempDir(), "b.db"), &tape.Options{NoSync: !sync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rec := tapetest.Recording(b, s)
			chats := benchChats(64)
			w := s.NewWriter(tape.WriterConfig{})
			const active = 64
			b.ReportAllocs()
			b.SetBytes(2048)
			b.ResetTimer()
			var convs []uint64
			for i := 0; i < b.N; i++ {
				slot := i % active
				round := i / active
				idx := round % 50
				if idx == 0 {
					if slot == 0 {
						convs = convs[:0]
					}
					c := *chats[slot].Conversation
					c.ID = s.NextConversationID()
					c.Recording = rec.ID
					convs = append(convs, c.ID)
					if err := w.Put(&c); err != nil {
						b.Fatal(err)
					}
				}
				t := *chats[slot].Turns[idx]
				t.Conversation = convs[slot]
				if err := w.Put(&t); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
		})
	}
}

// BenchmarkScan scans and decodes every turn of stored conversations. One op is one turn.
func BenchmarkScan(b *testing.B) {
	s := tapetest.MustOpen(b)
	rec := tapetest.Recording(b, s)
	chats := benchChats(100)
	err := s.Update(func(tx *tape.Tx) error {
		for _, c := range chats {
			c.Conversation.Recording = rec.ID
			if err := c.Write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Turns", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for n < b.N {
			for _, c := range chats {
				err := s.Turns(c.Conversation.ID, func(t *tape.Turn) error {
					n++
					if n >= b.N {
						return tape.ErrStop
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if n >= b.N {
					break
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
	})
	b.Run("TurnMessages", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for n < b.N {
			for _, c := range chats {
				err := s.TurnMessages(c.Conversation.ID, func(t *tape.Turn, msgs []json.RawMessage) error {
					n++
					if n >= b.N {
						return tape.ErrStop
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if n >= b.N {
					break
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
	})
}

// BenchmarkWriterParallel has 8 goroutines put whole conversations (as importers and several
// recorder workers do); Put encodes each turn in its caller's goroutine. One op is one turn.
func BenchmarkWriterParallel(b *testing.B) {
	s, err := tape.Open(filepath.Join(b.TempDir(), "b.db"), &tape.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rec := tapetest.Recording(b, s)
	chats := benchChats(8)
	w := s.NewWriter(tape.WriterConfig{})
	b.ReportAllocs()
	b.SetBytes(2048)
	b.ResetTimer()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		c := chats[next.Add(1)%int64(len(chats))]
		var id uint64
		i := 0
		for pb.Next() {
			if i%50 == 0 {
				conv := *c.Conversation
				conv.ID, conv.Recording = s.NextConversationID(), rec.ID
				id = conv.ID
				if err := w.Put(&conv); err != nil {
					b.Error(err)
					return
				}
			}
			t := *c.Turns[i%50]
			t.Conversation = id
			if err := w.Put(&t); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
}
