package tape_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// writeChats stores n generated chats of the given turns in one transaction.
func writeChats(t *testing.T, s *tape.Store, rec uint64, n, turns int) []*tapetest.Chat {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), uint64(turns)))
	var chats []*tapetest.Chat
	err := s.Update(func(tx *tape.Tx) error {
		for range n {
			c := tapetest.NewChat(rng, rec, s.NextConversationID(), tapetest.Config{Turns: turns, MessageBytes: 50})
			chats = append(chats, c)
			if err := c.Write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return chats
}

func TestScansStopEarly(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	tapetest.Recording(t, s)
	chats := writeChats(t, s, rec.ID, 5, 4)
	run := &tape.Run{Name: "r"}
	if err := s.CreateRun(run); err != nil {
		t.Fatal(err)
	}
	s.CreateRun(&tape.Run{Name: "r2"})
	s.Update(func(tx *tape.Tx) error {
		for i := range 5 {
			if err := tx.PutResult(&tape.Result{Run: run.ID, Seq: uint64(i + 1)}); err != nil {
				return err
			}
		}
		return nil
	})
	conv := chats[0].Conversation.ID
	boom := errors.New("boom")
	scans := map[string]func(stop error) (int, error){
		"Recordings": func(stop error) (n int, err error) {
			return n, s.Recordings(func(*tape.Recording) error { n++; return stop })
		},
		"Conversations": func(stop error) (n int, err error) {
			return n, s.Conversations(rec.ID, func(*tape.Conversation) error { n++; return stop })
		},
		"Turns": func(stop error) (n int, err error) {
			return n, s.Turns(conv, func(*tape.Turn) error { n++; return stop })
		},
		"TurnMessages": func(stop error) (n int, err error) {
			return n, s.TurnMessages(conv, func(*tape.Turn, []json.RawMessage) error { n++; return stop })
		},
		"Runs": func(stop error) (n int, err error) {
			return n, s.Runs(func(*tape.Run) error { n++; return stop })
		},
		"Results": func(stop error) (n int, err error) {
			return n, s.Results(run.ID, func(*tape.Result) error { n++; return stop })
		},
	}
	for name, scan := range scans {
		t.Run(name, func(t *testing.T) {
			if n, err := scan(nil); err != nil || n < 2 {
				t.Errorf("full scan: %d records, %v", n, err)
			}
			if n, err := scan(tape.ErrStop); err != nil || n != 1 {
				t.Errorf("ErrStop: %d records, %v; want 1, nil", n, err)
			}
			if n, err := scan(boom); !errors.Is(err, boom) || n != 1 {
				t.Errorf("error: %d records, %v; want 1, boom", n, err)
			}
		})
	}
	t.Run("callback panic passes through", func(t *testing.T) {
		defer func() {
			if r := recover(); r != "mine" {
				t.Errorf("recovered %v, want the callback's panic", r)
			}
		}()
		s.Recordings(func(*tape.Recording) error { panic("mine") })
	})
}

func TestCountersAndOrder(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	chats := writeChats(t, s, rec.ID, 20, 3)
	// Re-putting a turn or a parent does not count it twice; the values given are ignored.
	err := s.Update(func(tx *tape.Tx) error {
		if err := tx.PutTurn(chats[0].Turns[1]); err != nil {
			return err
		}
		c := *chats[0].Conversation
		c.Turns = 1000
		return tx.PutConversation(&c)
	})
	if err != nil {
		t.Fatal(err)
	}
	r := *rec
	r.Turns, r.Ended = 1, rec.Started
	if err := s.UpdateRecording(&r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Recording(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Conversations != 20 || got.Turns != 60 || !got.Ended.Equal(rec.Started) {
		t.Errorf("recording %+v, want 20 conversations, 60 turns", got)
	}
	c, err := s.Conversation(chats[0].Conversation.ID)
	if err != nil || c.Turns != 3 {
		t.Errorf("conversation %+v %v", c, err)
	}
	var last int64 = -1 << 62
	n := 0
	s.Conversations(rec.ID, func(c *tape.Conversation) error {
		if int64(c.Arrival) < last {
			t.Errorf("conversation %d arrives before the previous one", c.ID)
		}
		last = int64(c.Arrival)
		n++
		return nil
	})
	if n != 20 {
		t.Errorf("%d conversations", n)
	}
	// Moving a conversation to another arrival keeps one index entry.
	moved := *chats[3].Conversation
	moved.Arrival = -1
	if err := s.Update(func(tx *tape.Tx) error { return tx.PutConversation(&moved) }); err != nil {
		t.Fatal(err)
	}
	var first *tape.Conversation
	n = 0
	s.Conversations(rec.ID, func(c *tape.Conversation) error {
		if first == nil {
			first = c
		}
		n++
		return nil
	})
	if n != 20 || first.ID != moved.ID {
		t.Errorf("after moving: %d conversations, first %d; want 20, %d", n, first.ID, moved.ID)
	}
}

func TestNotFound(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	checks := map[string]error{
		"Recording":       func() error { _, err := s.Recording(99); return err }(),
		"Conversation":    func() error { _, err := s.Conversation(99); return err }(),
		"Turn":            func() error { _, err := s.Turn(99, 0); return err }(),
		"Turn negative":   func() error { _, err := s.Turn(99, -1); return err }(),
		"Run":             func() error { _, err := s.Run(99); return err }(),
		"FindRun":         func() error { _, err := s.FindRun("latest"); return err }(),
		"TurnMessages":    s.TurnMessages(99, func(*tape.Turn, []json.RawMessage) error { return nil }),
		"UpdateRecording": s.UpdateRecording(&tape.Recording{ID: 99}),
		"UpdateRun":       s.UpdateRun(&tape.Run{ID: 99}),
		"DeleteRecording": s.DeleteRecording(99),
		"DeleteRun":       s.DeleteRun(99),
		"PutConversation": s.Update(func(tx *tape.Tx) error {
			return tx.PutConversation(&tape.Conversation{ID: 5, Recording: 99})
		}),
		"PutTurn": s.Update(func(tx *tape.Tx) error { return tx.PutTurn(&tape.Turn{Conversation: 99}) }),
	}
	for name, err := range checks {
		if !errors.Is(err, tape.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if err := s.Turns(99, func(*tape.Turn) error { t.Error("turn of nothing"); return nil }); err != nil {
		t.Errorf("Turns of a missing conversation: %v", err)
	}
	_ = rec
}

func TestFindRun(t *testing.T) {
	s := tapetest.MustOpen(t)
	a := &tape.Run{Name: "base"}
	b := &tape.Run{Name: "new"}
	c := &tape.Run{Name: "base"}
	for _, r := range []*tape.Run{a, b, c} {
		if err := s.CreateRun(r); err != nil {
			t.Fatal(err)
		}
	}
	for ref, want := range map[string]uint64{"latest": c.ID, "base": c.ID, "new": b.ID, "1": a.ID} {
		r, err := s.FindRun(ref)
		if err != nil || r.ID != want {
			t.Errorf("FindRun(%q) = %v, %v; want run %d", ref, r, err, want)
		}
	}
	if _, err := s.FindRun("nope"); !errors.Is(err, tape.ErrNotFound) {
		t.Errorf("FindRun(nope): %v", err)
	}
	b.Summary = raw(`{"requests":3}`)
	b.Histograms = map[string][]byte{"ttft": {1, 2, 3}}
	if err := s.UpdateRun(b); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Run(b.ID)
	if string(got.Summary) != `{"requests":3}` || !bytes.Equal(got.Histograms["ttft"], []byte{1, 2, 3}) {
		t.Errorf("updated run %+v", got)
	}
}

func TestDelete(t *testing.T) {
	s := tapetest.MustOpen(t)
	keep := tapetest.Recording(t, s)
	gone := tapetest.Recording(t, s)
	kept := writeChats(t, s, keep.ID, 3, 5)
	deleted := writeChats(t, s, gone.ID, 3, 5)
	run := &tape.Run{Recording: gone.ID}
	s.CreateRun(run)
	s.Update(func(tx *tape.Tx) error { return tx.PutResult(&tape.Result{Run: run.ID, Seq: 1}) })
	if err := s.DeleteRecording(gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRun(run.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recording(gone.ID); !errors.Is(err, tape.ErrNotFound) {
		t.Errorf("deleted recording: %v", err)
	}
	for _, c := range deleted {
		if _, err := s.Conversation(c.Conversation.ID); !errors.Is(err, tape.ErrNotFound) {
			t.Errorf("conversation of a deleted recording: %v", err)
		}
		if _, err := s.Turn(c.Conversation.ID, 0); !errors.Is(err, tape.ErrNotFound) {
			t.Errorf("turn of a deleted recording: %v", err)
		}
	}
	n := 0
	s.Results(run.ID, func(*tape.Result) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d results of a deleted run", n)
	}
	for _, c := range kept {
		if _, err := s.Turn(c.Conversation.ID, 4); err != nil {
			t.Errorf("turn of a kept recording: %v", err)
		}
	}
}

func TestTurnMessagesForksAndOtherShapes(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	chats := writeChats(t, s, rec.ID, 1, 4)
	parent := chats[0]
	// A fork that re-sent the parent's turn 1 messages plus its reply, minus the last user
	// message, and a new user message: regenerate with an edit.
	fork := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID, Grouping: tape.GroupFork,
		Parent: parent.Conversation.ID, ForkTurn: 1}
	edited := raw(`{"role":"user","content":"edited"}`)
	ft0 := &tape.Turn{Conversation: fork.ID, Index: 0, Match: tape.GroupFork,
		Request: tape.Request{Kept: 3, Messages: []json.RawMessage{edited}}, Response: tape.Response{Content: "ok"}}
	ft1 := &tape.Turn{Conversation: fork.ID, Index: 1,
		Request: tape.Request{Kept: 5, Messages: []json.RawMessage{raw(`{"role":"user","content":"more"}`)}}}
	// A fork of the fork.
	fork2 := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID, Parent: fork.ID, ForkTurn: 0}
	f2t0 := &tape.Turn{Conversation: fork2.ID, Request: tape.Request{Kept: 5}}
	// A completion conversation and a synthetic one.
	comp := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID}
	ct0 := &tape.Turn{Conversation: comp.ID, Request: tape.Request{Path: "/v1/completions", Prompt: raw(`"Once"`)}}
	ct1 := &tape.Turn{Conversation: comp.ID, Index: 1, Request: tape.Request{Synthetic: &tape.Synthetic{BlockSize: 512, HashIDs: []uint64{1}, InputTokens: 100}}}
	// A damaged turn that keeps more messages than exist.
	bad := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID}
	bt0 := &tape.Turn{Conversation: bad.ID, Request: tape.Request{Kept: 2}}
	// A fork whose parent turn does not exist.
	orphan := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID, Parent: parent.Conversation.ID, ForkTurn: 40}
	err := s.Update(func(tx *tape.Tx) error {
		for _, r := range []tape.Record{fork, ft0, ft1, fork2, f2t0, comp, ct0, ct1, bad, bt0, orphan} {
			var err error
			switch v := r.(type) {
			case *tape.Conversation:
				err = tx.PutConversation(v)
			case *tape.Turn:
				err = tx.PutTurn(v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	collect := func(conv uint64) ([][]json.RawMessage, error) {
		var all [][]json.RawMessage
		err := s.TurnMessages(conv, func(_ *tape.Turn, msgs []json.RawMessage) error {
			all = append(all, msgs)
			return nil
		})
		return all, err
	}
	p := parent.Full
	pReply1 := tape.ReplyMessage(parent.Turns[1])
	want0 := []json.RawMessage{p[1][0], p[1][1], p[1][2], edited}
	want1 := append(append(append([]json.RawMessage{}, want0...), tape.ReplyMessage(ft0)), ft1.Request.Messages[0])
	got, err := collect(fork.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal := func(name string, got, want []json.RawMessage) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d messages, want %d", name, len(got), len(want))
		}
		for i := range got {
			if !tape.JSONEqual(got[i], want[i]) {
				t.Errorf("%s message %d: %s, want %s", name, i, got[i], want[i])
			}
		}
	}
	_ = pReply1
	equal("fork turn 0", got[0], want0)
	equal("fork turn 1", got[1], want1)
	got, err = collect(fork2.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal("fork of fork", got[0], append(append([]json.RawMessage{}, want0...), tape.ReplyMessage(ft0)))

	got, err = collect(comp.ID)
	if err != nil || len(got) != 2 || got[0] != nil || got[1] != nil {
		t.Errorf("completion and synthetic turns: %v, %v; want nil message lists", got, err)
	}
	if _, err := collect(bad.ID); !errors.Is(err, tape.ErrCorrupt) {
		t.Errorf("turn keeping too many messages: %v, want ErrCorrupt", err)
	}
	if _, err := collect(orphan.ID); !errors.Is(err, tape.ErrNotFound) {
		t.Errorf("fork of a missing turn: %v, want ErrNotFound", err)
	}
}

func TestSnapshotIsAStore(t *testing.T) {
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	chats := writeChats(t, s, rec.ID, 10, 3)
	path := filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Snapshot(f)
	if err != nil || n == 0 {
		t.Fatalf("Snapshot: %d bytes, %v", n, err)
	}
	f.Close()
	snap, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	r, err := snap.Recording(rec.ID)
	if err != nil || r.Turns != 30 {
		t.Fatalf("snapshot recording %+v, %v", r, err)
	}
	if _, err := snap.Turn(chats[9].Conversation.ID, 2); err != nil {
		t.Error(err)
	}
}

func TestNextConversationIDAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := tapetest.Recording(t, s)
	// An importer may choose its own ids: later ids do not collide with it.
	if err := s.Update(func(tx *tape.Tx) error {
		return tx.PutConversation(&tape.Conversation{ID: 500, Recording: rec.ID})
	}); err != nil {
		t.Fatal(err)
	}
	if id := s.NextConversationID(); id != 501 {
		t.Errorf("NextConversationID after 500 = %d", id)
	}
	s.Close()
	s, err = tape.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if id := s.NextConversationID(); id != 501 {
		t.Errorf("NextConversationID after reopening = %d, want 501", id)
	}
	c := &tape.Conversation{Recording: rec.ID}
	if err := s.Update(func(tx *tape.Tx) error { return tx.PutConversation(c) }); err != nil || c.ID != 502 {
		t.Errorf("PutConversation with ID 0 got id %d, %v", c.ID, err)
	}
}

func TestReadOnlyStoreRefusesWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	s, err := tape.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateRecording(&tape.Recording{}); err == nil {
		t.Error("CreateRecording on a read-only store succeeded")
	}
}
