package analyze_test

import (
	"encoding/json"
	"errors"
	"sort"
	"strconv"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/tape"
)

// memStore is an in-memory analyze.Source for tests of the package alone.
type memStore struct {
	recs    []*tape.Recording
	convs   []*tape.Conversation
	turns   map[uint64][]*tape.Turn
	runs    []*tape.Run
	results map[uint64][]*tape.Result
}

var _ analyze.Source = (*memStore)(nil)

var errNotFound = errors.New("not found")

func newMem() *memStore {
	return &memStore{turns: map[uint64][]*tape.Turn{}, results: map[uint64][]*tape.Result{}}
}

func (m *memStore) addTurn(t *tape.Turn) {
	m.turns[t.Conversation] = append(m.turns[t.Conversation], t)
}

func (m *memStore) Recordings(fn func(*tape.Recording) error) error {
	for _, r := range m.recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Recording(id uint64) (*tape.Recording, error) {
	for _, r := range m.recs {
		if r.ID == id {
			return r, nil
		}
	}
	return nil, errNotFound
}

func (m *memStore) Conversations(rec uint64, fn func(*tape.Conversation) error) error {
	cs := append([]*tape.Conversation(nil), m.convs...)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Arrival < cs[j].Arrival })
	for _, c := range cs {
		if c.Recording != rec {
			continue
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Turns(conv uint64, fn func(*tape.Turn) error) error {
	for _, t := range m.turns[conv] {
		if err := fn(t); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Runs(fn func(*tape.Run) error) error {
	for _, r := range m.runs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) FindRun(ref string) (*tape.Run, error) {
	if len(m.runs) == 0 {
		return nil, errNotFound
	}
	if ref == "latest" || ref == "" {
		return m.runs[len(m.runs)-1], nil
	}
	for _, r := range m.runs {
		if r.Name == ref || strconv.FormatUint(r.ID, 10) == ref {
			return r, nil
		}
	}
	return nil, errNotFound
}

func (m *memStore) Results(run uint64, fn func(*tape.Result) error) error {
	for _, r := range m.results[run] {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
