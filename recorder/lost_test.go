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

// errFull is the error of a write to a full disk.
var errFull = fmt.Errorf("write full.db: %w", syscall.ENOSPC)

// fullDiskStore opens a store whose writes fail with ENOSPC while *full is set.
func fullDiskStore(t *testing.T, full *atomic.Bool) *tape.Store {
	return faultyStore(t, func() error {
		if full.Load() {
			return errFull
		}
		return nil
	})
}

// faultyStore opens a store whose write transactions fail when fault says so.
func faultyStore(t *testing.T, fault func() error) *tape.Store {
	t.Helper()
	s, err := tape.Open(filepath.Join(t.TempDir(), "full.db"), &tape.Options{NoSync: true, WriteFault: fault})
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

// chatters are driver conversations sent turn by turn, in the test's goroutine.
type chatters struct {
	d       *driver
	clients []*chatClient
	sent    int // turns sent
}

func newChatters(d *driver, n int) *chatters {
	cs := &chatters{d: d, clients: make([]*chatClient, n)}
	for i := range cs.clients {
		cs.clients[i] = &chatClient{ci: i}
	}
	return cs
}

// send sends the given number of turns of conversations from to to-1, one conversation after
// the other.
func (cs *chatters) send(t *testing.T, from, to, turns int) {
	t.Helper()
	for _, c := range cs.clients[from:to] {
		for range turns {
			c.turn(t, cs.d)
			cs.sent++
		}
	}
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
	cs := newChatters(d, 15)
	send := func(from, to, turns int) { cs.send(t, from, to, turns) }
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
	if stats.Lost != 15 || stats.NotRecorded != 15 || stats.Dropped != 0 || stats.Recorded != uint64(cs.sent-15) {
		t.Errorf("recorder stats %+v; want 15 lost and not recorded, %d recorded", stats, cs.sent-15)
	}
	if ps := st.prx.Stats(); ps.Errors != 0 || ps.Exchanges != int64(cs.sent) {
		t.Errorf("proxy stats %+v; want %d exchanges without errors", ps, cs.sent)
	}

	rec := checkLost(t, s, d, st.rec.Recording(), cs.sent)
	if rec.NotRecorded != 15 {
		t.Errorf("recording %+v: want not_recorded 15", rec)
	}
	// Conversations 0-4 keep their two stored turns; their fourth turns and the third turns of
	// 10-14 are conversations of their own; 5-9 have three turns.
	if want := 5 + 5 + 5 + 5; rec.Conversations != want {
		t.Errorf("%d conversations, want %d", rec.Conversations, want)
	}
}

// checkLost checks a recording made while the store failed: it is marked incomplete and
// ended; stored turns + not recorded = sent; every conversation has turns, in order, whose
// messages and replies are what the driver sent. It returns the recording.
func checkLost(t *testing.T, s *tape.Store, d *driver, id uint64, sent int) *tape.Recording {
	t.Helper()
	rec, err := s.Recording(id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status() != tape.StatusIncomplete || rec.Complete || rec.NotRecorded == 0 || rec.Ended.IsZero() {
		t.Errorf("recording %+v: want status incomplete, not_recorded > 0, and an end", rec)
	}
	stored := 0
	for cid, c := range readAll(t, s) {
		if len(c.turns) == 0 || c.conv.Turns != len(c.turns) {
			t.Errorf("conversation %d: %d turns stored, counter %d", cid, len(c.turns), c.conv.Turns)
		}
		for i, ti := range c.turns {
			key := ti.turn.Request.Headers["X-Test-Turn"]
			v, ok := d.sent.Load(key)
			if ti.turn.Index != i || !ok {
				t.Errorf("conversation %d: turn %d is %d, sent as %q", cid, i, ti.turn.Index, key)
				continue
			}
			if !sameMessages(t, ti.msgs, v.(sentTurn).body) || ti.turn.Response.Content != v.(sentTurn).reply {
				t.Errorf("conversation %d turn %d (%s): messages or reply differ from what was sent", cid, i, key)
			}
		}
		stored += len(c.turns)
	}
	if stored+rec.NotRecorded != sent || rec.Turns != stored {
		t.Errorf("%d turns stored (recording says %d) + %d not recorded, want %d exchanges sent", stored, rec.Turns, rec.NotRecorded, sent)
	}
	return rec
}

// TestFlakyStoreNoConversationWithoutTurns: a store that fails every other write (as a full
// disk does when some records still fit in free pages and others do not) never keeps a
// conversation without its turns, nor a turn after a lost one.
func TestFlakyStoreNoConversationWithoutTurns(t *testing.T) {
	var flaky atomic.Bool
	var writes atomic.Int64
	s := faultyStore(t, func() error {
		if flaky.Load() && writes.Add(1)%2 == 1 {
			return errFull
		}
		return nil
	})
	st := startStack(t, s, startSim(t, true), recorder.Config{})
	d := &driver{st: st, client: &http.Client{}}
	cs := newChatters(d, 8)
	round := func() { cs.send(t, 0, 8, 1) }
	round()
	flaky.Store(true)
	for range 3 {
		round()
	}
	waitFor(t, "turns lost", func() bool {
		stats := st.rec.Stats()
		return stats.QueueDepth == 0 && stats.Lost > 0
	})
	flaky.Store(false)
	round()
	if err := st.shutdown(t); err == nil || errors.Is(err, recorder.ErrStatusNotWritten) {
		t.Errorf("recorder Close: %v; want the store's loss reported, and the recording's status written", err)
	}
	rec := checkLost(t, s, d, st.rec.Recording(), cs.sent)
	t.Logf("%d exchanges: %d turns stored in %d conversations, %d not recorded", cs.sent, rec.Turns, rec.Conversations, rec.NotRecorded)
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

// TestQueueFullRecordingIncomplete: exchanges dropped because the recorder was behind (its
// queue full while the store stalls) make the recording incomplete too, with their count.
func TestQueueFullRecordingIncomplete(t *testing.T) {
	var stalled atomic.Bool
	release := make(chan struct{})
	s := faultyStore(t, func() error {
		if stalled.Load() {
			<-release
		}
		return nil
	})
	r := mustNew(t, s, recorder.Config{QueueSize: 1, Workers: 1, Writer: tape.WriterConfig{QueueSize: 1, MaxBatch: 1}})
	stalled.Store(true)
	start := time.Now()
	for i := 0; r.Stats().Dropped == 0; i++ {
		if i == 100_000 {
			t.Fatalf("no exchange dropped: %+v", r.Stats())
		}
		req := chatBody(msg("user", fmt.Sprintf("question %d", i)))
		r.Capture(exchange(start.Add(time.Duration(i)*time.Millisecond), "/v1/chat/completions", req, 200, "text/event-stream", sseOf("an answer", true)))
	}
	close(release)
	mustClose(t, r)
	stats := r.Stats()
	rec, err := s.Recording(r.Recording())
	if err != nil {
		t.Fatal(err)
	}
	if stats.NotRecorded != stats.Dropped || stats.Lost != 0 || stats.Seen != stats.Recorded+stats.NotRecorded {
		t.Errorf("stats %+v: want every exchange recorded or dropped", stats)
	}
	if rec.Status() != tape.StatusIncomplete || rec.NotRecorded != int(stats.Dropped) || rec.Turns != int(stats.Recorded) {
		t.Errorf("recording %+v; want incomplete with %d not recorded, %d turns", rec, stats.Dropped, stats.Recorded)
	}
}
