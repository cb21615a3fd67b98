package tape_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// TestCorruptRecords damages single records (not pages) behind the store's back: every read
// of them is ErrCorrupt, and the rest of the store still reads.
func TestCorruptRecords(t *testing.T) {
	path := storeWithData(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := func(v ...uint64) []byte {
		var b []byte
		for _, x := range v {
			b = binary.BigEndian.AppendUint64(b, x)
		}
		return b
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("conversations")).Put(key(2), []byte{1, 0xff}); err != nil {
			return err
		}
		// Turn 0 of conversation 3: point its index entry at data that does not decode.
		seq := tx.Bucket([]byte("turns")).Get(append(key(3), 0, 0, 0, 0))
		if err := tx.Bucket([]byte("turndata")).Put(append([]byte(nil), seq...), []byte{1, 5, 'a'}); err != nil {
			return err
		}
		// Turn 1 of conversation 4: an index entry with no data.
		seq = tx.Bucket([]byte("turns")).Get(append(key(4), 0, 0, 0, 1))
		return tx.Bucket([]byte("turndata")).Delete(append([]byte(nil), seq...))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Conversation(2); !errors.Is(err, tape.ErrCorrupt) {
		t.Errorf("damaged conversation: %v", err)
	}
	if err := s.Conversations(1, func(*tape.Conversation) error { return nil }); !errors.Is(err, tape.ErrCorrupt) {
		t.Errorf("scan over a damaged conversation: %v", err)
	}
	if _, err := s.Turn(3, 0); !errors.Is(err, tape.ErrCorrupt) {
		t.Errorf("damaged turn: %v", err)
	}
	if err := s.TurnMessages(3, func(*tape.Turn, []json.RawMessage) error { return nil }); !errors.Is(err, tape.ErrCorrupt) {
		t.Errorf("TurnMessages over a damaged turn: %v", err)
	}
	if err := s.Turns(4, func(*tape.Turn) error { return nil }); !errors.Is(err, tape.ErrCorrupt) {
		t.Errorf("Turns with missing data: %v", err)
	}
	if _, err := s.Turn(5, 9); err != nil {
		t.Errorf("undamaged turn: %v", err)
	}
}

// TestLostIndexEntries deletes index entries behind the store's back: a scan that would
// silently skip records finds fewer than their parent counts and fails with ErrCorrupt.
func TestLostIndexEntries(t *testing.T) {
	path := storeWithData(t)
	s, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	conv7, err := s.Conversation(7)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		// Conversation 7's arrival index entry (recording | arrival | id).
		k := binary.BigEndian.AppendUint64(nil, conv7.Recording)
		k = binary.BigEndian.AppendUint64(k, uint64(conv7.Arrival)^(1<<63)) // sign bit flipped: ordered
		k = binary.BigEndian.AppendUint64(k, 7)
		if tx.Bucket([]byte("arrivals")).Get(k) == nil {
			t.Fatalf("no arrival key %x", k)
		}
		if err := tx.Bucket([]byte("arrivals")).Delete(k); err != nil {
			return err
		}
		// The last turn of conversation 8: a scan ends one turn early.
		return tx.Bucket([]byte("turns")).Delete(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, 8), 9))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err = tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	err = s.Conversations(conv7.Recording, func(*tape.Conversation) error { n++; return nil })
	if !errors.Is(err, tape.ErrCorrupt) || n != 199 {
		t.Errorf("Conversations without an index entry: %d conversations, err %v", n, err)
	}
	if err := s.Turns(8, func(*tape.Turn) error { return nil }); !errors.Is(err, tape.ErrCorrupt) {
		t.Errorf("Turns without the last index entry: %v", err)
	}
	if err := s.TurnMessages(8, func(*tape.Turn, []json.RawMessage) error { return nil }); !errors.Is(err, tape.ErrCorrupt) {
		t.Errorf("TurnMessages without the last index entry: %v", err)
	}
	if err := s.Turns(9, func(*tape.Turn) error { return nil }); err != nil {
		t.Errorf("undamaged conversation: %v", err)
	}
	// A scan stopped early is not checked.
	if err := s.Turns(8, func(*tape.Turn) error { return tape.ErrStop }); err != nil {
		t.Errorf("stopped scan: %v", err)
	}
}

// FuzzOpenDamaged: a store file is outside input. Opening any damaged copy of a small store
// and reading all of it must give data or an error, never a panic or a hang.
func FuzzOpenDamaged(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	rec := tapetest.Recording(f, s)
	rng := rand.New(rand.NewPCG(5, 6))
	err = s.Update(func(tx *tape.Tx) error {
		for range 3 {
			c := tapetest.NewChat(rng, rec.ID, s.NextConversationID(), tapetest.Config{Turns: 3, MessageBytes: 100})
			if err := c.Write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	s.Close()
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	// Damage: at offset off (within the file), write the bytes of patch.
	f.Add(uint32(0), []byte{0})
	f.Add(uint32(2*32<<10+100), []byte{0xff, 0xff, 0xff})
	f.Add(uint32(len(seed)-200), []byte("garbage"))
	f.Fuzz(func(t *testing.T, off uint32, patch []byte) {
		data := append([]byte(nil), seed...)
		copy(data[int(off)%len(data):], patch)
		p := filepath.Join(t.TempDir(), "d.db")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := tape.Open(p, &tape.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			return
		}
		defer s.Close()
		var convs []uint64
		_ = s.Recordings(func(r *tape.Recording) error {
			return s.Conversations(r.ID, func(c *tape.Conversation) error {
				convs = append(convs, c.ID)
				return nil
			})
		})
		for _, id := range convs {
			_ = s.TurnMessages(id, func(*tape.Turn, []json.RawMessage) error { return nil })
		}
		_ = s.Runs(func(*tape.Run) error { return nil })
	})
}
