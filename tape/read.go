package tape

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// scan runs a read transaction for one of the scan methods: ErrStop from the callback ends
// it without error.
func (s *Store) scan(op string, fn func(tx *bolt.Tx) error) error {
	err := s.view(fn)
	if err == nil || errors.Is(err, ErrStop) {
		return nil
	}
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrClosed) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return err
}

// get reads one record by key in a read transaction.
func (s *Store) get(op string, bucket, key []byte, decode func([]byte) error) error {
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(key)
		if v == nil {
			return ErrNotFound
		}
		return decode(v)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Recordings calls fn with each recording in ID order.
func (s *Store) Recordings(fn func(*Recording) error) error {
	return s.scan("recordings", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecs).ForEach(func(k, v []byte) error {
			r := new(Recording)
			if err := decodeRecording(v, r); err != nil {
				return fmt.Errorf("recording %d: %w", idOf(k), err)
			}
			return call(fn, r)
		})
	})
}

// Recording returns recording id, or ErrNotFound.
func (s *Store) Recording(id uint64) (*Recording, error) {
	r := new(Recording)
	err := s.get(fmt.Sprintf("recording %d", id), bucketRecs, u64key(id),
		func(v []byte) error { return decodeRecording(v, r) })
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Conversations calls fn with each conversation of a recording in arrival order (ties by ID).
// A scan that ends with fewer or more conversations than the recording counts (a damaged
// index) fails with ErrCorrupt after the last one.
func (s *Store) Conversations(recording uint64, fn func(*Conversation) error) error {
	return s.scan("conversations", func(tx *bolt.Tx) error {
		convs := tx.Bucket(bucketConvs)
		c := tx.Bucket(bucketArrival).Cursor()
		prefix := u64key(recording)
		n := 0
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != 24 {
				return fmt.Errorf("conversations: bad index key: %w", ErrCorrupt)
			}
			id := idOf(k[16:])
			v := convs.Get(k[16:])
			if v == nil {
				return fmt.Errorf("conversation %d: indexed but missing: %w", id, ErrCorrupt)
			}
			conv := new(Conversation)
			if err := decodeConversation(v, conv); err != nil {
				return fmt.Errorf("conversation %d: %w", id, err)
			}
			n++
			if err := call(fn, conv); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketRecs).Get(prefix); v != nil {
			var r Recording
			if err := decodeRecording(v, &r); err != nil {
				return fmt.Errorf("recording %d: %w", recording, err)
			}
			return checkCount("recording", recording, "conversations", n, r.Conversations)
		}
		return nil
	})
}

// checkCount reports a scan that found another number of records than their parent counts:
// the store's counters are kept in the same transactions as the records, so a difference
// means a damaged index.
func checkCount(parent string, id uint64, what string, found, counted int) error {
	if found != counted {
		return fmt.Errorf("%s %d: %d %s found, %d counted: %w", parent, id, found, what, counted, ErrCorrupt)
	}
	return nil
}

// Conversation returns conversation id, or ErrNotFound.
func (s *Store) Conversation(id uint64) (*Conversation, error) {
	c := new(Conversation)
	err := s.get(fmt.Sprintf("conversation %d", id), bucketConvs, u64key(id),
		func(v []byte) error { return decodeConversation(v, c) })
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Turns calls fn with each turn of a conversation in order. A scan that ends with fewer or
// more turns than the conversation counts (a damaged index) fails with ErrCorrupt.
func (s *Store) Turns(conversation uint64, fn func(*Turn) error) error {
	return s.scan("turns", func(tx *bolt.Tx) error {
		b := openBuckets(tx)
		want := -1
		if v := b.convs.Get(u64key(conversation)); v != nil {
			var conv Conversation
			if err := decodeConversation(v, &conv); err != nil {
				return fmt.Errorf("conversation %d: %w", conversation, err)
			}
			want = conv.Turns
		}
		return eachTurn(b, conversation, want, func(t *Turn) error { return call(fn, t) })
	})
}

// eachTurn calls fn with each turn of a conversation. When the scan is not stopped and want
// is not negative, a number of turns other than want is ErrCorrupt.
func eachTurn(b *buckets, conversation uint64, want int, fn func(*Turn) error) error {
	c := b.turns.Cursor()
	data := b.data.Cursor()
	var dk []byte // data's position
	prefix := u64key(conversation)
	n := 0
	for k, seq := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, seq = c.Next() {
		// A conversation's turns are often stored one after another (imports, one client):
		// step the data cursor rather than search for each.
		var v []byte
		if dk != nil && len(seq) == 8 && idOf(seq) == idOf(dk)+1 {
			dk, v = data.Next()
		}
		if dk == nil || !bytes.Equal(dk, seq) {
			dk, v = data.Seek(seq)
			if dk == nil || !bytes.Equal(dk, seq) {
				v = nil
			}
		}
		if len(dk) != 8 {
			dk = nil
		}
		if v == nil || len(k) != 12 {
			return fmt.Errorf("turn %d/%d: data missing: %w", conversation, turnIndex(k), ErrCorrupt)
		}
		t := new(Turn)
		if err := decodeTurn(v, t); err != nil {
			return fmt.Errorf("turn %d/%d: %w", conversation, turnIndex(k), err)
		}
		t.Conversation, t.Index = conversation, turnIndex(k)
		n++
		if err := fn(t); err != nil {
			return err
		}
	}
	if want >= 0 {
		return checkCount("conversation", conversation, "turns", n, want)
	}
	return nil
}

func turnIndex(k []byte) int {
	if len(k) != 12 {
		return -1
	}
	return int(uint32(k[8])<<24 | uint32(k[9])<<16 | uint32(k[10])<<8 | uint32(k[11]))
}

// Turn returns one turn, or ErrNotFound.
func (s *Store) Turn(conversation uint64, index int) (*Turn, error) {
	if index < 0 || int64(index) > 1<<32-1 {
		return nil, fmt.Errorf("turn %d/%d: %w", conversation, index, ErrNotFound)
	}
	t := new(Turn)
	err := s.view(func(tx *bolt.Tx) error {
		b := openBuckets(tx)
		seq := b.turns.Get(turnKey(conversation, index))
		if seq == nil {
			return ErrNotFound
		}
		v := b.data.Get(seq)
		if v == nil {
			return fmt.Errorf("data missing: %w", ErrCorrupt)
		}
		return decodeTurn(v, t)
	})
	if err != nil {
		return nil, fmt.Errorf("turn %d/%d: %w", conversation, index, err)
	}
	t.Conversation, t.Index = conversation, index
	return t, nil
}

// maxForkDepth bounds the chain of fork parents followed by TurnMessages (a loop in it means a
// damaged store).
const maxForkDepth = 1000

// TurnMessages calls fn with each turn of a conversation in order and its full message list,
// rebuilt from the messages each turn added (following a fork to its parent). msgs is a fresh
// slice that fn may keep; it is nil for completion requests and synthetic turns.
func (s *Store) TurnMessages(conversation uint64, fn func(t *Turn, msgs []json.RawMessage) error) error {
	return s.scan("turn messages", func(tx *bolt.Tx) error {
		b := openBuckets(tx)
		conv, err := getConversation(b, conversation)
		if err != nil {
			return err
		}
		base, err := forkBase(b, conv, 0)
		if err != nil {
			return err
		}
		return eachTurn(b, conversation, conv.Turns, func(t *Turn) error {
			msgs, next, err := rebuild(base, t)
			if err != nil {
				return err
			}
			base = next
			return call(func(struct{}) error { return fn(t, msgs) }, struct{}{})
		})
	})
}

func getConversation(b *buckets, id uint64) (*Conversation, error) {
	v := b.convs.Get(u64key(id))
	if v == nil {
		return nil, fmt.Errorf("conversation %d: %w", id, ErrNotFound)
	}
	conv := new(Conversation)
	if err := decodeConversation(v, conv); err != nil {
		return nil, fmt.Errorf("conversation %d: %w", id, err)
	}
	return conv, nil
}

// forkBase is the base sequence of a conversation's first turn: empty, or for a fork its
// parent's messages at ForkTurn followed by that turn's reply.
func forkBase(b *buckets, conv *Conversation, depth int) ([]json.RawMessage, error) {
	if conv.Parent == 0 {
		return nil, nil
	}
	if depth >= maxForkDepth {
		return nil, fmt.Errorf("conversation %d: fork chain too long: %w", conv.ID, ErrCorrupt)
	}
	parent, err := getConversation(b, conv.Parent)
	if err != nil {
		return nil, fmt.Errorf("fork parent of %d: %w", conv.ID, err)
	}
	base, err := forkBase(b, parent, depth+1)
	if err != nil {
		return nil, err
	}
	found := false
	err = eachTurn(b, parent.ID, parent.Turns, func(t *Turn) error {
		if t.Index > conv.ForkTurn {
			return errStop
		}
		_, next, err := rebuild(base, t)
		if err != nil {
			return err
		}
		base = next
		found = t.Index == conv.ForkTurn
		return nil
	})
	if err != nil && err != errStop {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("conversation %d: fork turn %d/%d: %w", conv.ID, parent.ID, conv.ForkTurn, ErrNotFound)
	}
	return base, nil
}

// rebuild returns a turn's full message list and the base of the next turn.
func rebuild(base []json.RawMessage, t *Turn) (msgs, next []json.RawMessage, err error) {
	if t.Request.Synthetic != nil || (len(t.Request.Prompt) > 0 && string(t.Request.Prompt) != "null") {
		return nil, base, nil
	}
	if t.Request.Kept < 0 || t.Request.Kept > len(base) {
		return nil, nil, fmt.Errorf("turn %d/%d keeps %d of %d messages: %w",
			t.Conversation, t.Index, t.Request.Kept, len(base), ErrCorrupt)
	}
	msgs = make([]json.RawMessage, 0, t.Request.Kept+len(t.Request.Messages))
	msgs = append(msgs, base[:t.Request.Kept]...)
	msgs = append(msgs, t.Request.Messages...)
	next = make([]json.RawMessage, len(msgs), len(msgs)+1)
	copy(next, msgs)
	next = append(next, ReplyMessage(t))
	return msgs, next, nil
}

// Runs calls fn with each run in ID order.
func (s *Store) Runs(fn func(*Run) error) error {
	return s.scan("runs", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
			r := new(Run)
			if err := decodeRun(v, r); err != nil {
				return fmt.Errorf("run %d: %w", idOf(k), err)
			}
			return call(fn, r)
		})
	})
}

// Run returns run id, or ErrNotFound.
func (s *Store) Run(id uint64) (*Run, error) {
	r := new(Run)
	err := s.get(fmt.Sprintf("run %d", id), bucketRuns, u64key(id),
		func(v []byte) error { return decodeRun(v, r) })
	if err != nil {
		return nil, err
	}
	return r, nil
}

// RecordingSource is what FindRecording reads: a Store, or a double of one in tests.
type RecordingSource interface {
	Recording(id uint64) (*Recording, error)
	Recordings(fn func(*Recording) error) error
}

var _ RecordingSource = (*Store)(nil)

// FindRecording resolves ref, as every command's --recording does: a numeric id, "" or
// "latest" (the newest recording; ErrNoRecording when there is none), or a name (the newest
// recording of that name). It is the one home of that rule.
func FindRecording(src RecordingSource, ref string) (*Recording, error) {
	if id, err := strconv.ParseUint(ref, 10, 64); err == nil {
		r, err := src.Recording(id)
		if err != nil {
			return nil, fmt.Errorf("find recording %s: %w", ref, err)
		}
		return r, nil
	}
	var found *Recording
	err := src.Recordings(func(r *Recording) error {
		if ref == "" || ref == "latest" || r.Name == ref {
			found = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find recording: %w", err)
	}
	if found == nil {
		if ref == "" || ref == "latest" {
			return nil, ErrNoRecording
		}
		return nil, fmt.Errorf("find recording %q: no recording of that id or name", ref)
	}
	return found, nil
}

// FindRun returns the run named by ref: a numeric ID, "latest" (the highest ID), or a name
// (the latest run of that name). ErrNotFound if none matches.
func (s *Store) FindRun(ref string) (*Run, error) {
	if id, err := strconv.ParseUint(ref, 10, 64); err == nil {
		return s.Run(id)
	}
	var found *Run
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRuns).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			r := new(Run)
			if err := decodeRun(v, r); err != nil {
				return fmt.Errorf("run %d: %w", idOf(k), err)
			}
			if ref == "latest" || r.Name == ref {
				found = r
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find run %q: %w", ref, err)
	}
	if found == nil {
		return nil, fmt.Errorf("run %q: %w", ref, ErrNotFound)
	}
	return found, nil
}

// Results calls fn with each result of a run in Seq order. A scan that ends with fewer or
// more results than the run counts (a damaged index) fails with ErrCorrupt.
func (s *Store) Results(run uint64, fn func(*Result) error) error {
	return s.scan("results", func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketResults).Cursor()
		prefix := u64key(run)
		n := 0
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			r := new(Result)
			if err := decodeResult(v, r); err != nil {
				return fmt.Errorf("result %d/%d: %w", run, idOf(k[8:]), err)
			}
			r.Run, r.Seq = run, idOf(k[8:])
			n++
			if err := call(fn, r); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketRuns).Get(prefix); v != nil {
			var r Run
			if err := decodeRun(v, &r); err != nil {
				return fmt.Errorf("run %d: %w", run, err)
			}
			return checkCount("run", run, "results", n, r.Requests)
		}
		return nil
	})
}
