package merge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/llmtape/llmtape/merge"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// source is a store made for a test: one recording of chats (one of them a fork of another)
// and the ids of its conversations in arrival order.
type source struct {
	s     *tape.Store
	rec   *tape.Recording
	convs []uint64
}

// newSource writes a store with n chats of turns each, plus a fork of the first chat.
func newSource(t testing.TB, n, turns int) *source {
	t.Helper()
	s := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, s)
	rng := rand.New(rand.NewPCG(1, 2))
	err := s.Update(func(tx *tape.Tx) error {
		var first *tapetest.Chat
		for i := range n {
			c := tapetest.NewChat(rng, rec.ID, s.NextConversationID(), tapetest.Config{Turns: turns, MessageBytes: 40, Chunks: 4})
			c.Conversation.Arrival = time.Duration(i) * time.Second
			if err := c.Write(tx); err != nil {
				return err
			}
			if first == nil {
				first = c
			}
		}
		// A fork of the first chat at its first turn: it keeps the first message of that
		// turn's messages and reply, and adds a message of its own.
		fork := &tape.Conversation{ID: s.NextConversationID(), Recording: rec.ID, Arrival: time.Duration(n) * time.Second,
			Grouping: tape.GroupFork, Parent: first.Conversation.ID, ForkTurn: 0}
		if err := tx.PutConversation(fork); err != nil {
			return err
		}
		ft := *first.Turns[0]
		ft.Conversation, ft.Index, ft.Match = fork.ID, 0, tape.GroupFork
		ft.Request.Kept = 1
		ft.Request.Messages = []json.RawMessage{json.RawMessage(`{"role":"user","content":"say it again"}`)}
		ft.Request.MessageMeta = []tape.MessageMeta{{Tokens: 3, Hash: 7}}
		return tx.PutTurn(&ft)
	})
	if err != nil {
		t.Fatal(err)
	}
	src := &source{s: s}
	if src.rec, err = s.Recording(rec.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Conversations(rec.ID, func(c *tape.Conversation) error {
		src.convs = append(src.convs, c.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return src
}

// addRun replays nothing: it writes a run named name with one result per turn of the
// conversations for which keep returns true, and stores its histograms.
func (src *source) addRun(t testing.TB, name string, keep func(i int) bool) *tape.Run {
	t.Helper()
	started := time.Unix(1_800_000_000, 0).Add(time.Duration(len(name)) * time.Minute)
	run := &tape.Run{Name: name, Target: "http://127.0.0.1:1", Recording: src.rec.ID, Started: started,
		Ended: started.Add(time.Minute), Options: json.RawMessage(fmt.Sprintf(`{"target":"x","recording":%d}`, src.rec.ID))}
	if err := src.s.CreateRun(run); err != nil {
		t.Fatal(err)
	}
	var acc metrics.Accumulator
	rng := rand.New(rand.NewPCG(uint64(len(name)), 9))
	var seq uint64
	err := src.s.Update(func(tx *tape.Tx) error {
		for i, id := range src.convs {
			if !keep(i) {
				continue
			}
			c, err := src.s.Conversation(id)
			if err != nil {
				return err
			}
			for turn := range c.Turns {
				seq++
				r := &tape.Result{Run: run.ID, Seq: seq, Conversation: id, Turn: turn, Status: 200,
					TTFT: time.Duration(rng.IntN(5000)+100) * time.Microsecond, OutputTokens: 5,
					Chunks: []tape.Chunk{{Offset: time.Millisecond, Tokens: 1}, {Offset: 3 * time.Millisecond, Tokens: 4}}}
				r.E2E = r.TTFT + time.Duration(rng.IntN(20000))*time.Microsecond
				acc.Add(r)
				if err := tx.PutResult(r); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := json.Marshal(acc.Summary(time.Minute, metrics.SLO{}))
	hist, err := acc.Set().Encode()
	if err != nil {
		t.Fatal(err)
	}
	run.Summary, run.Histograms = sum, hist
	if err := src.s.UpdateRun(run); err != nil {
		t.Fatal(err)
	}
	if run, err = src.s.Run(run.ID); err != nil {
		t.Fatal(err)
	}
	return run
}

// copyStore makes a copy of s (a snapshot, as a shard's copy of the recording store would be)
// and opens it.
func copyStore(t *testing.T, s *tape.Store) *tape.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recordings returns every recording of s.
func recordings(t *testing.T, s *tape.Store) []*tape.Recording {
	t.Helper()
	var out []*tape.Recording
	if err := s.Recordings(func(r *tape.Recording) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// runs returns every run of s by name (names are unique in these tests unless said).
func runs(t *testing.T, s *tape.Store) []*tape.Run {
	t.Helper()
	var out []*tape.Run
	if err := s.Runs(func(r *tape.Run) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// conversation is a conversation's content, free of ids: its fields, and per turn the turn
// (with its conversation id cleared) and its full message list.
type conversation struct {
	conv  tape.Conversation
	turns []tape.Turn
	msgs  [][]json.RawMessage
}

// contents returns the conversations of a recording in arrival order, without ids. A fork's
// parent is given as its position in that order (+1).
func contents(t *testing.T, s *tape.Store, rec uint64) []conversation {
	t.Helper()
	var out []conversation
	pos := map[uint64]uint64{}
	if err := s.Conversations(rec, func(c *tape.Conversation) error {
		pos[c.ID] = uint64(len(out) + 1)
		cv := conversation{conv: *c}
		err := s.TurnMessages(c.ID, func(turn *tape.Turn, msgs []json.RawMessage) error {
			turn.Conversation = 0
			cv.turns = append(cv.turns, *turn)
			cv.msgs = append(cv.msgs, msgs)
			return nil
		})
		out = append(out, cv)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i := range out {
		out[i].conv.ID, out[i].conv.Recording = 0, 0
		if out[i].conv.Parent != 0 {
			out[i].conv.Parent = pos[out[i].conv.Parent]
		}
	}
	return out
}

// resultsOf returns a run's results with each conversation given as its arrival position in
// its recording (via positions) and the run id cleared.
func resultsOf(t *testing.T, s *tape.Store, run uint64, positions map[uint64]int) []tape.Result {
	t.Helper()
	var out []tape.Result
	if err := s.Results(run, func(r *tape.Result) error {
		p, ok := positions[r.Conversation]
		if !ok {
			return fmt.Errorf("result %d: conversation %d is not in the recording", r.Seq, r.Conversation)
		}
		r.Run, r.Conversation = 0, uint64(p)
		out = append(out, *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func positions(t *testing.T, s *tape.Store, rec uint64) map[uint64]int {
	t.Helper()
	pos := map[uint64]int{}
	if err := s.Conversations(rec, func(c *tape.Conversation) error { pos[c.ID] = len(pos); return nil }); err != nil {
		t.Fatal(err)
	}
	return pos
}

func TestStoresCopiesEverything(t *testing.T) {
	for _, batch := range []int{1, 3, 0} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			src := newSource(t, 5, 3)
			run := src.addRun(t, "all", func(int) bool { return true })
			dst := tapetest.MustOpen(t)
			// Something already in the destination, so that ids differ from the source's.
			other := newSource(t, 2, 1)
			if _, err := merge.Stores(context.Background(), dst, other.s); err != nil {
				t.Fatal(err)
			}
			m, err := merge.New(dst, merge.Config{BatchSize: batch})
			if err != nil {
				t.Fatal(err)
			}
			st, err := m.Add(context.Background(), src.s)
			if err != nil {
				t.Fatal(err)
			}
			want := merge.Stats{Recordings: 1, Conversations: 6, Turns: 16, Runs: 1, Results: 16}
			if st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			recs := recordings(t, dst)
			if len(recs) != 2 {
				t.Fatalf("%d recordings in the destination, want 2", len(recs))
			}
			got := recs[1]
			if got.ID == src.rec.ID {
				t.Errorf("copied recording kept the source's id %d", got.ID)
			}
			wantRec := *src.rec
			wantRec.ID = got.ID
			if !reflect.DeepEqual(*got, wantRec) {
				t.Errorf("recording\n got %+v\nwant %+v", *got, wantRec)
			}
			if a, b := contents(t, dst, got.ID), contents(t, src.s, src.rec.ID); !reflect.DeepEqual(a, b) {
				t.Errorf("conversations differ after the copy")
			}
			var copied *tape.Run
			for _, r := range runs(t, dst) {
				if r.Name == "all" {
					copied = r
				}
			}
			if copied == nil {
				t.Fatal("run not copied")
			}
			if copied.Recording != got.ID || copied.Requests != 16 || !reflect.DeepEqual(copied.Histograms, run.Histograms) ||
				!tape.JSONEqual(copied.Summary, run.Summary) || !copied.Started.Equal(run.Started) {
				t.Errorf("run copied as %+v", copied)
			}
			if want := fmt.Sprintf(`{"target":"x","recording":%d}`, got.ID); !tape.JSONEqual(copied.Options, []byte(want)) {
				t.Errorf("options %s, want %s", copied.Options, want)
			}
			if a, b := resultsOf(t, dst, copied.ID, positions(t, dst, got.ID)),
				resultsOf(t, src.s, run.ID, positions(t, src.s, src.rec.ID)); !reflect.DeepEqual(a, b) {
				t.Errorf("results differ after the copy")
			}
		})
	}
}

// TestShardsShareOneRecording merges three copies of one store, each with its own shard's
// run, as "llmtape replay --shard i/3" on three machines would leave them.
func TestShardsShareOneRecording(t *testing.T) {
	src := newSource(t, 9, 2)
	before := src.addRun(t, "before the copies", func(int) bool { return true })
	var shards []*tape.Store
	var want [][]tape.Result
	srcPos := positions(t, src.s, src.rec.ID)
	for i := range 3 {
		c := copyStore(t, src.s)
		sh := &source{s: c, rec: src.rec, convs: src.convs}
		run := sh.addRun(t, fmt.Sprintf("shard-%d", i), func(k int) bool { return k%3 == i })
		shards = append(shards, c)
		want = append(want, resultsOf(t, c, run.ID, srcPos))
	}
	dst := tapetest.MustOpen(t)
	st, err := merge.Stores(context.Background(), dst, shards...)
	if err != nil {
		t.Fatal(err)
	}
	// The recording and the run made before the copies are kept once.
	wantStats := merge.Stats{Recordings: 1, SharedRecordings: 2, Conversations: 10, Turns: 19,
		Runs: 4, SkippedRuns: 2, Results: 19 + 7 + 6 + 6}
	if st != wantStats {
		t.Errorf("stats %+v, want %+v", st, wantStats)
	}
	recs := recordings(t, dst)
	if len(recs) != 1 {
		t.Fatalf("%d recordings, want 1", len(recs))
	}
	pos := positions(t, dst, recs[0].ID)
	seen := map[[2]int]int{}
	for _, r := range runs(t, dst) {
		if r.Recording != recs[0].ID {
			t.Errorf("run %q points at recording %d, want %d", r.Name, r.Recording, recs[0].ID)
		}
		got := resultsOf(t, dst, r.ID, pos)
		if r.Name == before.Name {
			if len(got) != before.Requests {
				t.Errorf("run %q: %d results, want %d", r.Name, len(got), before.Requests)
			}
			continue
		}
		var i int
		if _, err := fmt.Sscanf(r.Name, "shard-%d", &i); err != nil {
			t.Fatalf("unexpected run %q", r.Name)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("run %q: results differ from the shard's", r.Name)
		}
		for _, res := range got {
			seen[[2]int{int(res.Conversation), res.Turn}]++
		}
	}
	if len(seen) != recs[0].Turns {
		t.Errorf("shards replayed %d distinct turns, want %d", len(seen), recs[0].Turns)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("turn %v replayed %d times", k, n)
		}
	}
}

func TestMergeIsIdempotent(t *testing.T) {
	src := newSource(t, 4, 2)
	src.addRun(t, "a", func(int) bool { return true })
	src.addRun(t, "b", func(i int) bool { return i < 2 })
	dst := tapetest.MustOpen(t)
	if _, err := merge.Stores(context.Background(), dst, src.s); err != nil {
		t.Fatal(err)
	}
	st, err := merge.Stores(context.Background(), dst, src.s)
	if err != nil {
		t.Fatal(err)
	}
	if want := (merge.Stats{SharedRecordings: 1, SkippedRuns: 2}); st != want {
		t.Errorf("second merge: %+v, want %+v", st, want)
	}
	if n, m := len(recordings(t, dst)), len(runs(t, dst)); n != 1 || m != 2 {
		t.Errorf("%d recordings and %d runs, want 1 and 2", n, m)
	}
}

// TestDestinationCopyIsReused merges a store into a copy of itself that got another run: the
// recording already in the destination is reused.
func TestDestinationCopyIsReused(t *testing.T) {
	src := newSource(t, 4, 2)
	dst := copyStore(t, src.s)
	run := src.addRun(t, "later", func(int) bool { return true })
	st, err := merge.Stores(context.Background(), dst, src.s)
	if err != nil {
		t.Fatal(err)
	}
	if want := (merge.Stats{SharedRecordings: 1, Runs: 1, Results: run.Requests}); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	got, err := dst.FindRun("later")
	if err != nil {
		t.Fatal(err)
	}
	if got.Recording != src.rec.ID {
		t.Errorf("run points at recording %d, want %d", got.Recording, src.rec.ID)
	}
	// Same store, same ids: the results are identical.
	if a, b := resultsOf(t, dst, got.ID, positions(t, dst, src.rec.ID)),
		resultsOf(t, src.s, run.ID, positions(t, src.s, src.rec.ID)); !reflect.DeepEqual(a, b) {
		t.Error("results differ")
	}
}

func TestDuplicateRunNamesAreKept(t *testing.T) {
	a := newSource(t, 2, 1)
	b := newSource(t, 3, 1)
	a.addRun(t, "nightly", func(int) bool { return true })
	// Same name, same length (so the same start in addRun), but another recording: a
	// different run.
	b.addRun(t, "nightly", func(int) bool { return true })
	dst := tapetest.MustOpen(t)
	st, err := merge.Stores(context.Background(), dst, a.s, b.s)
	if err != nil {
		t.Fatal(err)
	}
	// a's and b's recordings are made alike by tapetest but hold different conversations.
	if st.Recordings != 2 || st.Runs != 2 || st.SkippedRuns != 0 {
		t.Errorf("stats %+v", st)
	}
	rs := runs(t, dst)
	if len(rs) != 2 || rs[0].Name != "nightly" || rs[1].Name != "nightly" {
		t.Fatalf("runs %+v", rs)
	}
	latest, err := dst.FindRun("nightly")
	if err != nil || latest.ID != rs[1].ID {
		t.Errorf("FindRun(nightly) = %v, %v; want the later id %d", latest, err, rs[1].ID)
	}
}

func TestSameStore(t *testing.T) {
	s := newSource(t, 1, 1).s
	if _, err := merge.Stores(context.Background(), s, s); !errors.Is(err, merge.ErrSameStore) {
		t.Errorf("err %v, want ErrSameStore", err)
	}
}

func TestEmptySource(t *testing.T) {
	dst := tapetest.MustOpen(t)
	st, err := merge.Stores(context.Background(), dst, tapetest.MustOpen(t))
	if err != nil || st != (merge.Stats{}) {
		t.Errorf("stats %+v, err %v", st, err)
	}
}

func TestMissingForkParent(t *testing.T) {
	src := newSource(t, 2, 1)
	err := src.s.Update(func(tx *tape.Tx) error {
		return tx.PutConversation(&tape.Conversation{Recording: src.rec.ID, Arrival: time.Hour,
			Grouping: tape.GroupFork, Parent: 999})
	})
	if err != nil {
		t.Fatal(err)
	}
	dst := tapetest.MustOpen(t)
	if _, err := merge.Stores(context.Background(), dst, src.s); err == nil {
		t.Fatal("no error for a fork whose parent is missing")
	}
	if n := len(recordings(t, dst)); n != 0 {
		t.Errorf("%d recordings left in the destination", n)
	}
}

// cancelAfter is a context whose Err turns to Canceled after n calls, so a test can stop a
// merge between any two of its transactions.
type cancelAfter struct {
	context.Context
	n int
}

func (c *cancelAfter) Err() error {
	if c.n <= 0 {
		return context.Canceled
	}
	c.n--
	return nil
}

// TestCanceledLeavesNoHalfCopy stops a merge between each pair of its transactions in turn and
// checks that the destination holds only whole recordings and runs.
func TestCanceledLeavesNoHalfCopy(t *testing.T) {
	src := newSource(t, 4, 2)
	run := src.addRun(t, "r", func(int) bool { return true })
	whole := contents(t, src.s, src.rec.ID)
	for n := 0; ; n++ {
		dst := tapetest.MustOpen(t)
		m, err := merge.New(dst, merge.Config{BatchSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		st, err := m.Add(&cancelAfter{context.Background(), n}, src.s)
		if err == nil {
			if st.Runs != 1 || st.Recordings != 1 {
				t.Errorf("finished after %d checks with %+v", n, st)
			}
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel after %d: %v", n, err)
		}
		for _, r := range recordings(t, dst) {
			if !r.Complete || !reflect.DeepEqual(contents(t, dst, r.ID), whole) {
				t.Errorf("cancel after %d: half-merged recording %+v", n, r)
			}
		}
		for _, r := range runs(t, dst) {
			if r.Requests != run.Requests {
				t.Errorf("cancel after %d: half-merged run with %d of %d results", n, r.Requests, run.Requests)
			}
		}
		if n > 100 {
			t.Fatal("merge never finished")
		}
	}
}

// TestDifferentRecordingsAlike keeps two recordings apart that share name, source, start and
// counts but not their conversations.
func TestDifferentRecordingsAlike(t *testing.T) {
	a := newSource(t, 3, 2)
	b := copyStore(t, a.s)
	// Move one conversation's arrival in b.
	c, err := b.Conversation(a.convs[1])
	if err != nil {
		t.Fatal(err)
	}
	c.Arrival += time.Millisecond
	if err := b.Update(func(tx *tape.Tx) error { return tx.PutConversation(c) }); err != nil {
		t.Fatal(err)
	}
	dst := tapetest.MustOpen(t)
	st, err := merge.Stores(context.Background(), dst, a.s, b)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recordings != 2 || st.SharedRecordings != 0 {
		t.Errorf("stats %+v, want 2 recordings copied", st)
	}
}

// TestUnlinkedResult: a result whose conversation the source does not hold is kept with
// conversation 0 and counted.
func TestUnlinkedResult(t *testing.T) {
	src := newSource(t, 2, 1)
	run := src.addRun(t, "r", func(int) bool { return true })
	if err := src.s.Update(func(tx *tape.Tx) error {
		return tx.PutResult(&tape.Result{Run: run.ID, Seq: 99, Conversation: 12345, Status: 200})
	}); err != nil {
		t.Fatal(err)
	}
	dst := tapetest.MustOpen(t)
	st, err := merge.Stores(context.Background(), dst, src.s)
	if err != nil {
		t.Fatal(err)
	}
	if st.Unlinked != 1 || st.Results != run.Requests+1 {
		t.Errorf("stats %+v", st)
	}
	var convs []uint64
	got, _ := dst.FindRun("r")
	_ = dst.Results(got.ID, func(r *tape.Result) error { convs = append(convs, r.Conversation); return nil })
	sort.Slice(convs, func(i, j int) bool { return convs[i] < convs[j] })
	if len(convs) == 0 || convs[0] != 0 {
		t.Errorf("conversations of the results %v, want one 0", convs)
	}
}

// TestRunOfMissingRecording: a run whose recording is gone from its source is kept with
// recording 0, and its results with conversation 0.
func TestRunOfMissingRecording(t *testing.T) {
	src := newSource(t, 2, 1)
	run := src.addRun(t, "orphan", func(int) bool { return true })
	if err := src.s.DeleteRecording(src.rec.ID); err != nil {
		t.Fatal(err)
	}
	dst := tapetest.MustOpen(t)
	st, err := merge.Stores(context.Background(), dst, src.s)
	if err != nil {
		t.Fatal(err)
	}
	if want := (merge.Stats{Runs: 1, Results: run.Requests, Unlinked: run.Requests}); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	got, err := dst.FindRun("orphan")
	if err != nil {
		t.Fatal(err)
	}
	if got.Recording != 0 || !tape.JSONEqual(got.Options, run.Options) {
		t.Errorf("run copied as recording %d, options %s", got.Recording, got.Options)
	}
}
