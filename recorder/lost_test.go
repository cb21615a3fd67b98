package recorder_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/tape"
)

// fullDiskStore opens a store whose writes fail with ENOSPC while *full is set.
func fullDiskStore(t *testing.T, full *atomic.Bool) *tape.Store {
	t.Helper()
	s, err := tape.Open(filepath.Join(t.TempDir(), "full.db"), &tape.Options{NoSync: true, WriteFault: func() error {
		if full.Load() {
			return fmt.Errorf("write full.db: %w", syscall.ENOSPC)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds; the deadline is generous because the machine may be busy.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// chatClient is one driver conversation sent turn by turn.
type chatClient struct {
	ci   int
	msgs []map[string]any
	next int // index of the next turn
}

// turn sends the client's next turn through the stack; the client must get its whole reply.
func (c *chatClient) turn(t *testing.T, d *driver) {
	t.Helper()
	c.msgs = append(c.msgs, msg("user", fmt.Sprintf("conversation %d, question %d: how does a disk fill up?", c.ci, c.next)))
	body, _ := json.Marshal(map[string]any{"model": "m", "messages": c.msgs, "stream": true, "max_tokens": 16})
	reply, err := d.send(c.ci, c.next, body)
	if err != nil || reply == "" {
		t.Fatalf("conversation %d turn %d: reply %q, %v: the proxy must keep serving", c.ci, c.next, reply, err)
	}
	d.sent.Store(fmt.Sprintf("%d/%d", c.ci, c.next), sentTurn{body: body, reply: reply})
	c.msgs = append(c.msgs, msg("assistant", reply))
	c.next++
}

// shutdown drains the proxy and closes the recorder, returning Close's error.
func (st *stack) shutdown(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.prx.Shutdown(ctx); err != nil {
		t.Errorf("proxy shutdown: %v", err)
	}
	if err := <-st.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("proxy serve: %v", err)
	}
	return st.rec.Close()
}

// TestFullDiskRecordingIncomplete drives real traffic through the proxy to the simulator while
// the store cannot write (an injected ENOSPC on every commit), then lets it write again. Every
// client gets its whole reply; the recording is marked incomplete with the number of exchanges
// that are not in the store; no conversation is stored without turns, conversations that lost a
// later turn keep the turns they had, and every stored turn's messages rebuild to what was sent.
func TestFullDiskRecordingIncomplete(t *testing.T) {
	var full atomic.Bool
	s := fullDiskStore(t, &full)
	st := startStack(t, s, startSim(t, true), recorder.Config{})
	d := &driver{st: st, client: &http.Client{}}
	clients := make([]*chatClient, 15)
	for i := range clients {
		clients[i] = &chatClient{ci: i}
	}
	sent := 0
	send := func(from, to, turns int) {
		for _, c := range clients[from:to] {
			for range turns {
				c.turn(t, d)
				sent++
			}
		}
	}
	recording := func() *tape.Recording {
		r, err := s.Recording(st.rec.Recording())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// The disk has room: conversations 0-9 get two turns each, all stored.
	send(0, 10, 2)
	waitFor(t, "20 turns stored", func() bool { return recording().Turns == 20 })

	// Full: conversations 0-4 lose their third turn; conversations 10-14 lose their first two.
	full.Store(true)
	send(0, 5, 1)
	send(10, 15, 2)
	waitFor(t, "15 turns lost", func() bool { return st.rec.Stats().Lost == 15 })

	// Room again: the turn after a lost one starts a conversation of its own (it could not be
	// stored after the gap); conversations 5-9 go on as before.
	full.Store(false)
	send(0, 15, 1)

	err := st.shutdown(t)
	if err == nil || errors.Is(err, recorder.ErrStatusNotWritten) {
		t.Errorf("recorder Close: %v; want the store's loss reported, and the recording's status written", err)
	}
	stats := st.rec.Stats()
	if stats.Lost != 15 || stats.NotRecorded != 15 || stats.Dropped != 0 || stats.Recorded != uint64(sent-15) {
		t.Errorf("recorder stats %+v; want 15 lost and not recorded, %d recorded", stats, sent-15)
	}
	if ps := st.prx.Stats(); ps.Errors != 0 || ps.Exchanges != int64(sent) {
		t.Errorf("proxy stats %+v; want %d exchanges without errors", ps, sent)
	}

	rec := recording()
	if rec.Status() != tape.StatusIncomplete || rec.Complete || rec.NotRecorded != 15 || rec.Ended.IsZero() {
		t.Errorf("recording %+v: want status incomplete, not_recorded 15, and an end", rec)
	}
	stored := 0
	for id, c := range readAll(t, s) {
		if len(c.turns) == 0 || c.conv.Turns != len(c.turns) {
			t.Errorf("conversation %d: %d turns stored, counter %d", id, len(c.turns), c.conv.Turns)
		}
		for i, ti := range c.turns {
			key := ti.turn.Request.Headers["X-Test-Turn"]
			v, ok := d.sent.Load(key)
			if ti.turn.Index != i || !ok {
				t.Errorf("conversation %d: turn %d is %d, sent as %q", id, i, ti.turn.Index, key)
				continue
			}
			if !sameMessages(t, ti.msgs, v.(sentTurn).body) || ti.turn.Response.Content != v.(sentTurn).reply {
				t.Errorf("conversation %d turn %d (%s): messages or reply differ from what was sent", id, i, key)
			}
		}
		stored += len(c.turns)
	}
	if stored+rec.NotRecorded != sent || rec.Turns != stored {
		t.Errorf("%d turns stored (recording says %d) + %d not recorded, want %d exchanges sent", stored, rec.Turns, rec.NotRecorded, sent)
	}
	// Conversations 0-4 keep their two stored turns; their fourth turns and the third turns of
	// 10-14 are conversations of their own; 5-9 have three turns.
	if want := 5 + 5 + 5 + 5; rec.Conversations != want {
		t.Errorf("%d conversations, want %d", rec.Conversations, want)
	}
}

// TestFullDiskStatusNotWritten: when even the recording's final write fails, Close says so
// with ErrStatusNotWritten and the store still shows the recording as incomplete.
func TestFullDiskStatusNotWritten(t *testing.T) {
	var full atomic.Bool
	s := fullDiskStore(t, &full)
	st := startStack(t, s, startSim(t, true), recorder.Config{})
	d := &driver{st: st, client: &http.Client{}}
	full.Store(true)
	c := &chatClient{}
	c.turn(t, d)
	c.turn(t, d)
	err := st.shutdown(t)
	if !errors.Is(err, recorder.ErrStatusNotWritten) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("recorder Close: %v; want ErrStatusNotWritten, for ENOSPC", err)
	}
	if stats := st.rec.Stats(); stats.NotRecorded != 2 || stats.Recorded != 0 {
		t.Errorf("recorder stats %+v; want 2 not recorded", stats)
	}
	r, err := s.Recording(st.rec.Recording())
	if err != nil {
		t.Fatal(err)
	}
	if r.Status() != tape.StatusIncomplete || r.Turns != 0 || r.Conversations != 0 {
		t.Errorf("recording %+v: want incomplete and empty", r)
	}
}
