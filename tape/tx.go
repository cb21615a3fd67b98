package tape

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Tx is a write transaction of Store.Update. It keeps the parents' counters: a new
// conversation counts in its recording, a new turn in its conversation and recording, a new
// result in its run. Parents are written back when the transaction's function returns.
// A Tx must be used only inside the function that received it, from one goroutine.
type Tx struct {
	s     *Store
	tx    *bolt.Tx
	b     *buckets
	recs  map[uint64]*Recording
	convs map[uint64]*Conversation
	runs  map[uint64]*Run
	dirty struct{ recs, convs, runs map[uint64]bool }
}

func newTx(s *Store, btx *bolt.Tx) *Tx {
	t := &Tx{s: s, tx: btx, b: openBuckets(btx),
		recs: map[uint64]*Recording{}, convs: map[uint64]*Conversation{}, runs: map[uint64]*Run{}}
	t.dirty.recs, t.dirty.convs, t.dirty.runs = map[uint64]bool{}, map[uint64]bool{}, map[uint64]bool{}
	return t
}

// Update runs fn in one write transaction: everything fn puts is committed together, or
// nothing when fn (or the commit) returns an error.
func (s *Store) Update(fn func(tx *Tx) error) error {
	return s.update(func(btx *bolt.Tx) error {
		t := newTx(s, btx)
		if err := call(fn, t); err != nil {
			return err
		}
		return t.finish()
	})
}

// finish writes back the parents whose counters or fields changed.
func (t *Tx) finish() error {
	for id := range t.dirty.recs {
		if err := t.b.recs.Put(u64key(id), encodeRecording(nil, t.recs[id])); err != nil {
			return fmt.Errorf("put recording %d: %w", id, err)
		}
	}
	for id := range t.dirty.convs {
		if err := t.b.convs.Put(u64key(id), encodeConversation(nil, t.convs[id])); err != nil {
			return fmt.Errorf("put conversation %d: %w", id, err)
		}
	}
	for id := range t.dirty.runs {
		if err := t.b.runs.Put(u64key(id), encodeRun(nil, t.runs[id])); err != nil {
			return fmt.Errorf("put run %d: %w", id, err)
		}
	}
	clear(t.dirty.recs)
	clear(t.dirty.convs)
	clear(t.dirty.runs)
	return nil
}

// recording returns the current state of recording id in this transaction, nil if none.
func (t *Tx) recording(id uint64) (*Recording, error) {
	if r, ok := t.recs[id]; ok {
		return r, nil
	}
	v := t.b.recs.Get(u64key(id))
	if v == nil {
		return nil, nil
	}
	r := new(Recording)
	if err := decodeRecording(v, r); err != nil {
		return nil, fmt.Errorf("recording %d: %w", id, err)
	}
	t.recs[id] = r
	return r, nil
}

func (t *Tx) conversation(id uint64) (*Conversation, error) {
	if c, ok := t.convs[id]; ok {
		return c, nil
	}
	v := t.b.convs.Get(u64key(id))
	if v == nil {
		return nil, nil
	}
	c := new(Conversation)
	if err := decodeConversation(v, c); err != nil {
		return nil, fmt.Errorf("conversation %d: %w", id, err)
	}
	t.convs[id] = c
	return c, nil
}

func (t *Tx) run(id uint64) (*Run, error) {
	if r, ok := t.runs[id]; ok {
		return r, nil
	}
	v := t.b.runs.Get(u64key(id))
	if v == nil {
		return nil, nil
	}
	r := new(Run)
	if err := decodeRun(v, r); err != nil {
		return nil, fmt.Errorf("run %d: %w", id, err)
	}
	t.runs[id] = r
	return r, nil
}

// PutRecording creates or replaces a recording. An ID of 0 is assigned (and set in r). Its
// counters (Conversations, Turns) are the store's: the values in r are ignored.
func (t *Tx) PutRecording(r *Recording) error {
	if r.ID == 0 {
		id, err := t.b.recs.NextSequence()
		if err != nil {
			return fmt.Errorf("put recording: %w", err)
		}
		r.ID = id
	} else if r.ID > t.b.recs.Sequence() {
		if err := t.b.recs.SetSequence(r.ID); err != nil {
			return fmt.Errorf("put recording: %w", err)
		}
	}
	old, err := t.recording(r.ID)
	if err != nil {
		return fmt.Errorf("put recording: %w", err)
	}
	nr := *r
	if old != nil {
		nr.Conversations, nr.Turns = old.Conversations, old.Turns
	} else {
		// Normally none: its conversations come after it.
		nr.Conversations, nr.Turns = 0, 0
		c := t.b.arrival.Cursor()
		prefix := u64key(r.ID)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			conv, err := t.conversation(idOf(k[16:]))
			if err != nil {
				return fmt.Errorf("put recording: %w", err)
			}
			if conv != nil {
				nr.Conversations++
				nr.Turns += conv.Turns
			}
		}
	}
	t.recs[r.ID] = &nr
	t.dirty.recs[r.ID] = true
	return nil
}

// PutConversation creates or replaces a conversation. An ID of 0 is assigned with
// NextConversationID (and set in c). Its recording must exist. Its Turns counter is the
// store's: the value in c is ignored.
func (t *Tx) PutConversation(c *Conversation) error {
	if c.ID == 0 {
		c.ID = t.s.NextConversationID()
	} else {
		t.s.seenConversationID(c.ID)
	}
	old, err := t.conversation(c.ID)
	if err != nil {
		return fmt.Errorf("put conversation: %w", err)
	}
	nc := *c
	if old != nil {
		nc.Turns = old.Turns
		if old.Recording != c.Recording || old.Arrival != c.Arrival {
			if err := t.b.arrival.Delete(arrivalKey(old)); err != nil {
				return fmt.Errorf("put conversation %d: %w", c.ID, err)
			}
			if old.Recording != c.Recording {
				if rec, err := t.recording(old.Recording); err == nil && rec != nil {
					rec.Conversations--
					rec.Turns -= old.Turns
					t.dirty.recs[rec.ID] = true
				}
			}
		}
	} else {
		// Normally 0: its turns come after it.
		nc.Turns = 0
		c := t.b.turns.Cursor()
		prefix := u64key(nc.ID)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			nc.Turns++
		}
	}
	if old == nil || old.Recording != c.Recording {
		rec, err := t.recording(c.Recording)
		if err != nil {
			return fmt.Errorf("put conversation %d: %w", c.ID, err)
		}
		if rec == nil {
			return fmt.Errorf("put conversation %d: recording %d: %w", c.ID, c.Recording, ErrNotFound)
		}
		rec.Conversations++
		rec.Turns += nc.Turns
		t.dirty.recs[rec.ID] = true
	}
	if old == nil || old.Recording != c.Recording || old.Arrival != c.Arrival {
		if err := t.b.arrival.Put(arrivalKey(&nc), nil); err != nil {
			return fmt.Errorf("put conversation %d: %w", c.ID, err)
		}
	}
	t.convs[nc.ID] = &nc
	t.dirty.convs[nc.ID] = true
	return nil
}

// PutTurn creates or replaces a turn. Its conversation must exist, and so must the turn before
// it (turns are added in order, so that none is stored without the turns its messages extend).
func (t *Tx) PutTurn(turn *Turn) error {
	return t.putTurn(turn, nil)
}

// putTurn puts a turn whose encoding may already be done (enc != nil).
func (t *Tx) putTurn(turn *Turn, enc []byte) error {
	if turn.Index < 0 || int64(turn.Index) > 1<<32-1 {
		return fmt.Errorf("put turn %d/%d: index out of range", turn.Conversation, turn.Index)
	}
	conv, err := t.conversation(turn.Conversation)
	if err != nil {
		return fmt.Errorf("put turn %d/%d: %w", turn.Conversation, turn.Index, err)
	}
	if conv == nil {
		return fmt.Errorf("put turn %d/%d: conversation %d: %w", turn.Conversation, turn.Index, turn.Conversation, ErrNotFound)
	}
	if enc == nil {
		enc = encodeTurn(nil, turn)
	}
	key := turnKey(turn.Conversation, turn.Index)
	seq := t.b.turns.Get(key)
	fresh := seq == nil
	if fresh && turn.Index > 0 && t.b.turns.Get(turnKey(turn.Conversation, turn.Index-1)) == nil {
		// A turn's messages are stored relative to the turn before it: without that turn they
		// could not be rebuilt.
		return fmt.Errorf("put turn %d/%d: turn %d: %w", turn.Conversation, turn.Index, turn.Index-1, ErrNotFound)
	}
	if fresh {
		n, err := t.b.data.NextSequence()
		if err != nil {
			return fmt.Errorf("put turn %d/%d: %w", turn.Conversation, turn.Index, err)
		}
		seq = u64key(n)
		if err := t.b.turns.Put(key, seq); err != nil {
			return fmt.Errorf("put turn %d/%d: %w", turn.Conversation, turn.Index, err)
		}
	} else if len(seq) != 8 {
		return fmt.Errorf("put turn %d/%d: bad index entry: %w", turn.Conversation, turn.Index, ErrCorrupt)
	} else {
		seq = append([]byte(nil), seq...)
	}
	if err := t.b.data.Put(seq, enc); err != nil {
		return fmt.Errorf("put turn %d/%d: %w", turn.Conversation, turn.Index, err)
	}
	if fresh {
		conv.Turns++
		t.dirty.convs[conv.ID] = true
		rec, err := t.recording(conv.Recording)
		if err != nil {
			return fmt.Errorf("put turn %d/%d: %w", turn.Conversation, turn.Index, err)
		}
		if rec != nil {
			rec.Turns++
			t.dirty.recs[rec.ID] = true
		}
	}
	return nil
}

// PutRun creates or replaces a run. An ID of 0 is assigned (and set in r). Its Requests
// counter is the store's: the value in r is ignored.
func (t *Tx) PutRun(r *Run) error {
	if r.ID == 0 {
		id, err := t.b.runs.NextSequence()
		if err != nil {
			return fmt.Errorf("put run: %w", err)
		}
		r.ID = id
	} else if r.ID > t.b.runs.Sequence() {
		if err := t.b.runs.SetSequence(r.ID); err != nil {
			return fmt.Errorf("put run: %w", err)
		}
	}
	old, err := t.run(r.ID)
	if err != nil {
		return fmt.Errorf("put run: %w", err)
	}
	nr := *r
	if old != nil {
		nr.Requests = old.Requests
	} else {
		nr.Requests = 0
		c := t.b.results.Cursor()
		prefix := u64key(r.ID)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			nr.Requests++
		}
	}
	t.runs[r.ID] = &nr
	t.dirty.runs[r.ID] = true
	return nil
}

// PutResult creates or replaces a result. Its run must exist and its Seq must be > 0.
func (t *Tx) PutResult(r *Result) error {
	return t.putResult(r, nil)
}

func (t *Tx) putResult(r *Result, enc []byte) error {
	if r.Seq == 0 {
		return fmt.Errorf("put result %d/0: seq must be > 0", r.Run)
	}
	run, err := t.run(r.Run)
	if err != nil {
		return fmt.Errorf("put result %d/%d: %w", r.Run, r.Seq, err)
	}
	if run == nil {
		return fmt.Errorf("put result %d/%d: run %d: %w", r.Run, r.Seq, r.Run, ErrNotFound)
	}
	if enc == nil {
		enc = encodeResult(nil, r)
	}
	key := resultKey(r.Run, r.Seq)
	fresh := t.b.results.Get(key) == nil
	if err := t.b.results.Put(key, enc); err != nil {
		return fmt.Errorf("put result %d/%d: %w", r.Run, r.Seq, err)
	}
	if fresh {
		run.Requests++
		t.dirty.runs[run.ID] = true
	}
	return nil
}

// put puts any record.
func (t *Tx) put(rec Record) error {
	switch r := rec.(type) {
	case *Recording:
		return t.PutRecording(r)
	case *Conversation:
		return t.PutConversation(r)
	case *Turn:
		return t.PutTurn(r)
	case *Run:
		return t.PutRun(r)
	case *Result:
		return t.PutResult(r)
	case nil:
		return errors.New("put: nil record")
	}
	return fmt.Errorf("put: unknown record type %T", rec)
}

// deleteRecording deletes a recording with its conversations and their turns.
func (t *Tx) deleteRecording(id uint64) error {
	rec, err := t.recording(id)
	if err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("recording %d: %w", id, ErrNotFound)
	}
	prefix := u64key(id)
	ac := t.b.arrival.Cursor()
	for k, _ := ac.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = ac.Seek(prefix) {
		conv := idOf(k[16:])
		if err := ac.Delete(); err != nil {
			return err
		}
		if err := t.b.convs.Delete(u64key(conv)); err != nil {
			return err
		}
		delete(t.convs, conv)
		delete(t.dirty.convs, conv)
		if err := t.deleteTurns(conv); err != nil {
			return err
		}
	}
	delete(t.recs, id)
	delete(t.dirty.recs, id)
	return t.b.recs.Delete(prefix)
}

func (t *Tx) deleteRun(id uint64) error {
	run, err := t.run(id)
	if err != nil {
		return err
	}
	if run == nil {
		return fmt.Errorf("run %d: %w", id, ErrNotFound)
	}
	prefix := u64key(id)
	if err := deletePrefix(t.b.results, prefix); err != nil {
		return err
	}
	delete(t.runs, id)
	delete(t.dirty.runs, id)
	return t.b.runs.Delete(prefix)
}

// deletePrefix deletes every key of b that starts with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// deleteTurns deletes a conversation's turns and their data.
func (t *Tx) deleteTurns(conv uint64) error {
	var seqs [][]byte
	c := t.b.turns.Cursor()
	prefix := u64key(conv)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		seqs = append(seqs, append([]byte(nil), v...))
	}
	for _, seq := range seqs {
		if err := t.b.data.Delete(seq); err != nil {
			return err
		}
	}
	return deletePrefix(t.b.turns, prefix)
}
