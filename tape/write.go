package tape

import (
	"encoding/binary"
	"fmt"
)

// CreateRecording stores a new recording and sets r.ID.
func (s *Store) CreateRecording(r *Recording) error {
	r.ID = 0
	if err := s.Update(func(tx *Tx) error { return tx.PutRecording(r) }); err != nil {
		return fmt.Errorf("create recording: %w", err)
	}
	return nil
}

// UpdateRecording replaces an existing recording's fields (ErrNotFound if there is none); its
// counters stay the store's.
func (s *Store) UpdateRecording(r *Recording) error {
	err := s.Update(func(tx *Tx) error {
		old, err := tx.recording(r.ID)
		if err != nil {
			return err
		}
		if old == nil || r.ID == 0 {
			return ErrNotFound
		}
		return tx.PutRecording(r)
	})
	if err != nil {
		return fmt.Errorf("update recording %d: %w", r.ID, err)
	}
	return nil
}

// DeleteRecording deletes a recording with all its conversations and their turns.
func (s *Store) DeleteRecording(id uint64) error {
	if err := s.Update(func(tx *Tx) error { return tx.deleteRecording(id) }); err != nil {
		return fmt.Errorf("delete recording %d: %w", id, err)
	}
	return nil
}

// CreateRun stores a new run and sets r.ID.
func (s *Store) CreateRun(r *Run) error {
	r.ID = 0
	if err := s.Update(func(tx *Tx) error { return tx.PutRun(r) }); err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	return nil
}

// UpdateRun replaces an existing run's fields, for example Ended, Summary and Histograms
// (ErrNotFound if there is none); its Requests counter stays the store's.
func (s *Store) UpdateRun(r *Run) error {
	err := s.Update(func(tx *Tx) error {
		old, err := tx.run(r.ID)
		if err != nil {
			return err
		}
		if old == nil || r.ID == 0 {
			return ErrNotFound
		}
		return tx.PutRun(r)
	})
	if err != nil {
		return fmt.Errorf("update run %d: %w", r.ID, err)
	}
	return nil
}

// DeleteRun deletes a run and its results.
func (s *Store) DeleteRun(id uint64) error {
	if err := s.Update(func(tx *Tx) error { return tx.deleteRun(id) }); err != nil {
		return fmt.Errorf("delete run %d: %w", id, err)
	}
	return nil
}

// seenConversationID makes sure NextConversationID never returns id.
func (s *Store) seenConversationID(id uint64) {
	for {
		cur := s.nextConv.Load()
		if cur >= id || s.nextConv.CompareAndSwap(cur, id) {
			return
		}
	}
}

func idOf(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
