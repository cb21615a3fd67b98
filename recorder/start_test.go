package recorder_test

import (
	"context"
	"errors"
	"testing"

	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/tape"
)

// countRecordings returns how many recordings s holds.
func countRecordings(t *testing.T, s *tape.Store) int {
	t.Helper()
	n := 0
	if err := s.Recordings(func(*tape.Recording) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// New only builds: the store holds no recording until Start, an exchange captured before Start
// is counted as not recorded, and a recorder closed without Start leaves nothing behind.
func TestNewWritesNothingUntilStart(t *testing.T) {
	s, _ := mustStore(t)
	r, err := recorder.New(s, recorder.Config{Name: "later", Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if n := countRecordings(t, s); n != 0 {
		t.Fatalf("New wrote %d recordings, want none", n)
	}
	r.Capture(shortExchanges(1)[0])
	if st := r.Stats(); st.Dropped != 1 || st.NotRecorded != 1 || st.Stored != 0 {
		t.Errorf("stats after a capture before Start: %+v", st)
	}
	if r.Recording() != 0 {
		t.Errorf("recording %d before Start", r.Recording())
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
	mustClose(t, r)
	rec, err := s.Recording(r.Recording())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Name != "later" || rec.Source != "test" || countRecordings(t, s) != 1 {
		t.Errorf("recording %+v; want the one Start made, named later, source test", rec)
	}

	never, err := recorder.New(s, recorder.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, never)
	if err := never.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
	if n := countRecordings(t, s); n != 1 {
		t.Errorf("a recorder closed without Start left %d recordings, want the 1 from before", n)
	}
}

// A canceled context stops Start before it creates the recording.
func TestStartCanceled(t *testing.T) {
	s, _ := mustStore(t)
	mustClose(t, mustNew(t, s, recorder.Config{})) // a proxy recording for the rebuild to scan
	r, err := recorder.New(s, recorder.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a canceled context: %v", err)
	}
	if n := countRecordings(t, s); n != 1 {
		t.Errorf("%d recordings, want only the first", n)
	}
	mustClose(t, r)
}
