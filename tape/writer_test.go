package tape_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

func TestWriterReportsLostRecords(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	var mu sync.Mutex
	var lost []tape.Record
	w := s.NewWriter(tape.WriterConfig{MaxBatch: 100, MaxDelay: time.Hour, OnLost: func(r tape.Record, err error) {
		if !errors.Is(err, tape.ErrNotFound) {
			t.Errorf("lost for %v, want ErrNotFound", err)
		}
		mu.Lock()
		lost = append(lost, r)
		mu.Unlock()
	}})
	conv := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID}
	good := &tape.Turn{Conversation: conv.ID, Index: 0}
	orphan := &tape.Turn{Conversation: 999_999, Index: 0} // no such conversation
	badResult := &tape.Result{Run: 12345, Seq: 1}         // no such run
	for _, r := range []tape.Record{conv, good, orphan, badResult} {
		if err := w.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	// One bad record fails its batch; the writer retries the others one by one.
	if err := w.Flush(); !errors.Is(err, tape.ErrNotFound) {
		t.Errorf("Flush: %v, want the commit error", err)
	}
	if err := w.Flush(); err != nil {
		t.Errorf("second Flush: %v, want nil (nothing failed since)", err)
	}
	err := w.Close()
	if err == nil || !strings.Contains(err.Error(), "2 records lost") {
		t.Errorf("Close: %v, want 2 records lost", err)
	}
	if st := w.Stats(); st.Committed != 2 || st.Lost != 2 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
	if len(lost) != 2 || lost[0] != tape.Record(orphan) || lost[1] != tape.Record(badResult) {
		t.Errorf("OnLost got %v", lost)
	}
	if _, err := s.Turn(conv.ID, 0); err != nil {
		t.Errorf("the good turn was not committed: %v", err)
	}
	if err := w.Put(good); !errors.Is(err, tape.ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if w.TryPut(good) {
		t.Error("TryPut after Close succeeded")
	}
	if err := w.Flush(); !errors.Is(err, tape.ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
}

func TestWriterStoreClosedUnderneath(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	w := s.NewWriter(tape.WriterConfig{MaxDelay: time.Hour})
	if err := w.Put(&tape.Conversation{ID: 1, Recording: rec.ID}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := w.Close(); !errors.Is(err, tape.ErrClosed) {
		t.Errorf("Close: %v, want ErrClosed", err)
	}
	if st := w.Stats(); st.Lost != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestWriterTryPutFull(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	// Hold the writer's transaction up so that the queue fills: an Update that waits.
	release := make(chan struct{})
	started := make(chan struct{})
	go s.Update(func(*tape.Tx) error { close(started); <-release; return nil })
	<-started
	w := s.NewWriter(tape.WriterConfig{QueueSize: 4, MaxBatch: 1})
	accepted := 0
	for i := range 50 {
		if w.TryPut(&tape.Conversation{ID: uint64(i + 1), Recording: rec.ID}) {
			accepted++
		}
	}
	if accepted >= 50 || accepted < 4 {
		t.Errorf("TryPut accepted %d of 50 with a queue of 4", accepted)
	}
	close(release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Committed != int64(accepted) {
		t.Errorf("stats %+v, want %d committed", st, accepted)
	}
	r, _ := s.Recording(rec.ID)
	if r.Conversations != accepted {
		t.Errorf("recording has %d conversations, want %d", r.Conversations, accepted)
	}
}

func TestWriterBatchesByDelay(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	w := s.NewWriter(tape.WriterConfig{MaxBatch: 1000, MaxDelay: 5 * time.Millisecond})
	defer w.Close()
	id := s.NextConversationID()
	if err := w.Put(&tape.Conversation{ID: id, Recording: rec.ID}); err != nil {
		t.Fatal(err)
	}
	// Committed by the delay, without Flush: poll the counters (bounded). The record is
	// visible in the store a moment before the counters move, so poll them, not the store.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if w.Stats().Committed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("conversation not committed within 10s of a 5ms MaxDelay")
		}
		time.Sleep(time.Millisecond)
	}
	if st := w.Stats(); st.Batches != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, err := s.Conversation(id); err != nil {
		t.Errorf("committed conversation: %v", err)
	}
}

// TestWriterReusedValues: the caller may reuse a Turn once Put returns.
func TestWriterReusedValues(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	chat := tapetest.NewChat(rand.New(rand.NewPCG(1, 1)), rec.ID, s.NextConversationID(), tapetest.Config{Turns: 5})
	w := s.NewWriter(tape.WriterConfig{MaxDelay: time.Hour})
	w.Put(chat.Conversation)
	var scratch tape.Turn
	for _, turn := range chat.Turns {
		scratch = *turn
		w.Put(&scratch)
		scratch.Response.Content = "overwritten"
		scratch.Index = 99
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	s.Turns(chat.Conversation.ID, func(turn *tape.Turn) error {
		if turn.Response.Content != chat.Turns[n].Response.Content || turn.Index != n {
			t.Errorf("turn %d: %q", turn.Index, turn.Response.Content)
		}
		n++
		return nil
	})
	if n != 5 {
		t.Errorf("%d turns", n)
	}
}

// TestWriterPutTogetherOnFullDisk: a store that cannot write (WriteFault, as a full disk) loses
// a new conversation and its first turn together, never the turn alone; an existing
// conversation that loses a turn keeps the turns it had, and its later turns are refused
// rather than stored after a gap.
func TestWriterPutTogetherOnFullDisk(t *testing.T) {
	var full atomic.Bool
	s, err := tape.Open(filepath.Join(t.TempDir(), "full.db"), &tape.Options{NoSync: true, WriteFault: func() error {
		if full.Load() {
			return fmt.Errorf("write: %w", syscall.ENOSPC)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := tapetest.Recording(t, s)
	var mu sync.Mutex
	var lost []tape.Record
	w := s.NewWriter(tape.WriterConfig{MaxBatch: 100, MaxDelay: time.Hour, OnLost: func(r tape.Record, err error) {
		mu.Lock()
		lost = append(lost, r)
		mu.Unlock()
	}})
	kept := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID}
	gone := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.PutTogether(kept, &tape.Turn{Conversation: kept.ID, Index: 0}))
	must(w.Flush())

	full.Store(true)
	must(w.PutTogether(gone, &tape.Turn{Conversation: gone.ID, Index: 0}))
	lostTurn := &tape.Turn{Conversation: kept.ID, Index: 1}
	must(w.Put(lostTurn))
	if err := w.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush on a full disk: %v, want ENOSPC", err)
	}
	full.Store(false)
	// Room again: the turns after the lost ones cannot be stored, the store says why.
	must(w.Put(&tape.Turn{Conversation: kept.ID, Index: 2}))
	must(w.Put(&tape.Turn{Conversation: gone.ID, Index: 1}))
	if err := w.Flush(); !errors.Is(err, tape.ErrNotFound) {
		t.Errorf("Flush after the loss: %v, want ErrNotFound", err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "5 records lost") {
		t.Errorf("Close: %v, want 5 records lost", err)
	}
	if st := w.Stats(); st.Committed != 2 || st.Lost != 5 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
	if len(lost) != 5 || lost[0] != tape.Record(gone) || lost[2] != tape.Record(lostTurn) {
		t.Errorf("OnLost got %v", lost)
	}
	if _, err := s.Conversation(gone.ID); !errors.Is(err, tape.ErrNotFound) {
		t.Errorf("conversation whose first turn was lost: %v, want ErrNotFound", err)
	}
	c, err := s.Conversation(kept.ID)
	if err != nil || c.Turns != 1 {
		t.Errorf("kept conversation: %+v, %v; want its 1 stored turn", c, err)
	}
	r, err := s.Recording(rec.ID)
	if err != nil || r.Conversations != 1 || r.Turns != 1 {
		t.Errorf("recording counters: %+v, %v", r, err)
	}
}
