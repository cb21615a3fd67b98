package merge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/llmtape/llmtape/tape"
)

// DefaultBatchSize is Config.BatchSize when it is 0.
const DefaultBatchSize = 4096

// ErrSameStore is returned when a source is the destination store itself.
var ErrSameStore = errors.New("source is the destination store")

// Config tunes a Merger. The zero value takes the defaults.
type Config struct {
	// BatchSize is about how many turns or results are written per transaction (a conversation's
	// turns are never split, so one transaction holds at least one whole conversation); default
	// DefaultBatchSize.
	BatchSize int
}

// Stats count what a merge wrote into the destination. The JSON keys are those of
// "llmtape merge --format json".
type Stats struct {
	Recordings       int `json:"recordings"`        // recordings copied
	SharedRecordings int `json:"shared_recordings"` // source recordings found already in the destination and merged once
	Conversations    int `json:"conversations"`     // conversations copied
	Turns            int `json:"turns"`             // turns copied
	Runs             int `json:"runs"`              // runs copied
	SkippedRuns      int `json:"skipped_runs"`      // source runs already in the destination (same name, target, start, end, results)
	Results          int `json:"results"`           // results copied
	// Unlinked counts results whose conversation is not in their source store; they are
	// written with Conversation 0.
	Unlinked int `json:"unlinked"`
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.Recordings += o.Recordings
	s.SharedRecordings += o.SharedRecordings
	s.Conversations += o.Conversations
	s.Turns += o.Turns
	s.Runs += o.Runs
	s.SkippedRuns += o.SkippedRuns
	s.Results += o.Results
	s.Unlinked += o.Unlinked
}

// Stores merges every source into dst, in order, and returns the total counts. It is New
// followed by Merger.Add for each source; on error the counts of what was merged so far are
// returned with it.
func Stores(ctx context.Context, dst *tape.Store, src ...*tape.Store) (Stats, error) {
	m, err := New(dst, Config{})
	if err != nil {
		return Stats{}, err
	}
	var total Stats
	for _, s := range src {
		st, err := m.Add(ctx, s)
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Merger merges source stores into one destination store, one source at a time, and remembers
// the recordings and runs the destination holds so that shared ones are merged once. Make one
// with New. A Merger is not safe for concurrent use.
type Merger struct {
	dst   *tape.Store
	batch int
	recs  map[recKey][]*recCopy
	runs  map[runKey]bool
}

// recKey identifies a recording across copies of a store.
type recKey struct {
	source, name   string
	sec            int64
	nsec           int
	convs, turns   int
	complete       bool
	upstream, mode string
}

func keyOfRecording(r *tape.Recording) recKey {
	return recKey{source: r.Source, name: r.Name, sec: r.Started.Unix(), nsec: r.Started.Nanosecond(),
		convs: r.Conversations, turns: r.Turns, complete: r.Complete, upstream: r.Upstream, mode: r.Mode}
}

// runKey identifies a run across copies of a store; recording is the destination's id.
type runKey struct {
	name, target string
	recording    uint64
	sec, endSec  int64
	nsec, endNs  int
	requests     int
}

func keyOfRun(r *tape.Run, recording uint64) runKey {
	return runKey{name: r.Name, target: r.Target, recording: recording,
		sec: r.Started.Unix(), nsec: r.Started.Nanosecond(),
		endSec: r.Ended.Unix(), endNs: r.Ended.Nanosecond(), requests: r.Requests}
}

// recCopy is a recording in the destination: its id and, once loaded, its conversations in
// arrival order.
type recCopy struct {
	id     uint64
	loaded bool
	convs  []convSig
}

// convSig is what must agree between a source conversation and its copy, position by
// position. parent is the destination's id.
type convSig struct {
	id       uint64
	arrival  time.Duration
	session  string
	grouping tape.Grouping
	forkTurn int
	turns    int
	parent   uint64
}

// New returns a Merger into dst. It reads dst's recordings and runs.
func New(dst *tape.Store, cfg Config) (*Merger, error) {
	m := &Merger{dst: dst, batch: cfg.BatchSize, recs: map[recKey][]*recCopy{}, runs: map[runKey]bool{}}
	if m.batch <= 0 {
		m.batch = DefaultBatchSize
	}
	err := dst.Recordings(func(r *tape.Recording) error {
		k := keyOfRecording(r)
		m.recs[k] = append(m.recs[k], &recCopy{id: r.ID})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("merge: read destination recordings: %w", err)
	}
	err = dst.Runs(func(r *tape.Run) error {
		m.runs[keyOfRun(r, r.Recording)] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("merge: read destination runs: %w", err)
	}
	return m, nil
}

// Add merges one source store into the destination and returns what it wrote. On error the
// counts of what was committed are returned with it; a recording or run whose copy was cut
// short is deleted from the destination.
func (m *Merger) Add(ctx context.Context, src *tape.Store) (Stats, error) {
	var st Stats
	if src == m.dst {
		return st, fmt.Errorf("merge %s: %w", src.Path(), ErrSameStore)
	}
	var recs []*tape.Recording
	if err := src.Recordings(func(r *tape.Recording) error { recs = append(recs, r); return nil }); err != nil {
		return st, fmt.Errorf("merge %s: read recordings: %w", src.Path(), err)
	}
	recMap := map[uint64]uint64{}  // source recording id → destination id
	convMap := map[uint64]uint64{} // source conversation id → destination id
	claimed := map[uint64]bool{}   // destination recordings already matched by this source
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("merge %s: %w", src.Path(), err)
		}
		var convs []*tape.Conversation
		err := src.Conversations(r.ID, func(c *tape.Conversation) error { convs = append(convs, c); return nil })
		if err != nil {
			return st, fmt.Errorf("merge %s: recording %d: read conversations: %w", src.Path(), r.ID, err)
		}
		k := keyOfRecording(r)
		c, err := m.match(k, convs, claimed, convMap)
		if err != nil {
			return st, fmt.Errorf("merge %s: recording %d: %w", src.Path(), r.ID, err)
		}
		if c != nil {
			st.SharedRecordings++
		} else {
			c, err = m.copyRecording(ctx, src, r, convs, convMap, &st)
			if err != nil {
				return st, fmt.Errorf("merge %s: recording %d: %w", src.Path(), r.ID, err)
			}
			m.recs[k] = append(m.recs[k], c)
			st.Recordings++
		}
		claimed[c.id] = true
		recMap[r.ID] = c.id
	}

	var runs []*tape.Run
	if err := src.Runs(func(r *tape.Run) error { runs = append(runs, r); return nil }); err != nil {
		return st, fmt.Errorf("merge %s: read runs: %w", src.Path(), err)
	}
	for _, r := range runs {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("merge %s: %w", src.Path(), err)
		}
		rec := recMap[r.Recording]
		k := keyOfRun(r, rec)
		if m.runs[k] {
			st.SkippedRuns++
			continue
		}
		if err := m.copyRun(ctx, src, r, rec, convMap, &st); err != nil {
			return st, fmt.Errorf("merge %s: run %d %q: %w", src.Path(), r.ID, r.Name, err)
		}
		m.runs[k] = true
		st.Runs++
	}
	return st, nil
}

// match looks for a destination recording that the source recording (key k, conversations
// convs in arrival order) is a copy of. On a match it adds the conversations' mapping to
// convMap and returns the copy; nil when there is none.
func (m *Merger) match(k recKey, convs []*tape.Conversation, claimed map[uint64]bool, convMap map[uint64]uint64) (*recCopy, error) {
	for _, c := range m.recs[k] {
		if claimed[c.id] {
			continue
		}
		if !c.loaded {
			err := m.dst.Conversations(c.id, func(dc *tape.Conversation) error {
				c.convs = append(c.convs, sigOf(dc, dc.Parent))
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("read destination recording %d: %w", c.id, err)
			}
			c.loaded = true
		}
		if len(c.convs) != len(convs) {
			continue
		}
		pos := make(map[uint64]uint64, len(convs))
		for i, sc := range convs {
			pos[sc.ID] = c.convs[i].id
		}
		same := true
		for i, sc := range convs {
			parent := uint64(0)
			if sc.Parent != 0 {
				parent = pos[sc.Parent]
			}
			want := sigOf(sc, parent)
			want.id = c.convs[i].id
			if want != c.convs[i] {
				same = false
				break
			}
		}
		if !same {
			continue
		}
		for id, to := range pos {
			convMap[id] = to
		}
		return c, nil
	}
	return nil, nil
}

func sigOf(c *tape.Conversation, parent uint64) convSig {
	return convSig{id: c.ID, arrival: c.Arrival, session: c.Session, grouping: c.Grouping,
		forkTurn: c.ForkTurn, turns: c.Turns, parent: parent}
}

// copyRecording copies a recording with its conversations and turns into the destination in
// transactions of about m.batch turns. The recording is put first with Complete false and gets
// its final fields in the transaction of its last turns; on error the partial copy is deleted.
func (m *Merger) copyRecording(ctx context.Context, src *tape.Store, r *tape.Recording,
	convs []*tape.Conversation, convMap map[uint64]uint64, st *Stats) (*recCopy, error) {
	ids := make(map[uint64]uint64, len(convs))
	for _, c := range convs {
		ids[c.ID] = m.dst.NextConversationID()
	}
	for _, c := range convs {
		if c.Parent != 0 {
			if _, ok := ids[c.Parent]; !ok {
				return nil, fmt.Errorf("conversation %d: fork parent %d is not in the recording", c.ID, c.Parent)
			}
		}
	}
	cp := &recCopy{loaded: true, convs: make([]convSig, 0, len(convs))}
	head := *r
	head.ID, head.Complete = 0, false
	var (
		created bool
		next    int // next conversation to copy
		copied  Stats
	)
	for !created || next < len(convs) {
		if err := ctx.Err(); err != nil {
			return nil, m.undoRecording(created, head.ID, err)
		}
		var n Stats
		start := next
		err := m.dst.Update(func(t *tape.Tx) error {
			n = Stats{}
			next = start
			if !created {
				head.ID = 0
				if err := t.PutRecording(&head); err != nil {
					return err
				}
			}
			for next < len(convs) && (next == start || n.Turns < m.batch) {
				c := convs[next]
				nc := *c
				nc.ID, nc.Recording = ids[c.ID], head.ID
				if c.Parent != 0 {
					nc.Parent = ids[c.Parent]
				}
				if err := t.PutConversation(&nc); err != nil {
					return err
				}
				err := src.Turns(c.ID, func(turn *tape.Turn) error {
					turn.Conversation = nc.ID
					if err := t.PutTurn(turn); err != nil {
						return err
					}
					n.Turns++
					return nil
				})
				if err != nil {
					return fmt.Errorf("conversation %d: %w", c.ID, err)
				}
				n.Conversations++
				next++
			}
			if next == len(convs) {
				final := *r
				final.ID = head.ID
				return t.PutRecording(&final)
			}
			return nil
		})
		if err != nil {
			next = start
			return nil, m.undoRecording(created, head.ID, err)
		}
		created = true
		copied.Add(n)
	}
	for _, c := range convs {
		parent := uint64(0)
		if c.Parent != 0 {
			parent = ids[c.Parent]
		}
		s := sigOf(c, parent)
		s.id = ids[c.ID]
		cp.convs = append(cp.convs, s)
		convMap[c.ID] = ids[c.ID]
	}
	cp.id = head.ID
	st.Conversations += copied.Conversations
	st.Turns += copied.Turns
	return cp, nil
}

// undoRecording deletes a partial copy of a recording after err.
func (m *Merger) undoRecording(created bool, id uint64, err error) error {
	if !created {
		return err
	}
	if derr := m.dst.DeleteRecording(id); derr != nil {
		return fmt.Errorf("%w (and the partial copy, recording %d, could not be deleted: %v)", err, id, derr)
	}
	return err
}

// copyRun copies a run with its results into the destination in transactions of up to m.batch
// results; on error the partial copy is deleted.
func (m *Merger) copyRun(ctx context.Context, src *tape.Store, r *tape.Run, rec uint64,
	convMap map[uint64]uint64, st *Stats) error {
	nr := *r
	nr.ID, nr.Recording = 0, rec
	nr.Options = withRecording(r.Options, rec)
	var (
		created bool
		pending []*tape.Result
		copied  Stats
	)
	flush := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var n Stats
		err := m.dst.Update(func(t *tape.Tx) error {
			n = Stats{}
			if !created {
				nr.ID = 0
				if err := t.PutRun(&nr); err != nil {
					return err
				}
			}
			for _, res := range pending {
				res.Run = nr.ID
				if err := t.PutResult(res); err != nil {
					return err
				}
				n.Results++
			}
			return nil
		})
		if err != nil {
			return err
		}
		created = true
		for _, res := range pending {
			if res.Conversation == 0 {
				n.Unlinked++
			}
		}
		copied.Add(n)
		pending = pending[:0]
		return nil
	}
	err := src.Results(r.ID, func(res *tape.Result) error {
		if res.Conversation != 0 {
			res.Conversation = convMap[res.Conversation] // 0 when unknown: counted as unlinked
		}
		pending = append(pending, res)
		if len(pending) >= m.batch {
			return flush()
		}
		return nil
	})
	if err == nil && (!created || len(pending) > 0) {
		err = flush()
	}
	if err != nil {
		if created {
			if derr := m.dst.DeleteRun(nr.ID); derr != nil {
				return fmt.Errorf("%w (and the partial copy, run %d, could not be deleted: %v)", err, nr.ID, derr)
			}
		}
		return err
	}
	st.Results += copied.Results
	st.Unlinked += copied.Unlinked
	return nil
}

// withRecording returns run options (a JSON object) with their "recording" key set to id, or
// opts unchanged when they have no such key, are not an object, or id is 0.
func withRecording(opts json.RawMessage, id uint64) json.RawMessage {
	if id == 0 || len(opts) == 0 {
		return opts
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(opts, &m); err != nil || m == nil {
		return opts
	}
	if _, ok := m["recording"]; !ok {
		return opts
	}
	m["recording"] = json.RawMessage(strconv.FormatUint(id, 10))
	b, err := json.Marshal(m)
	if err != nil {
		return opts
	}
	return b
}
