package recorder_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/llmtape/llmtape/recorder"
)

// Close stops every goroutine of the recorder (parsers, stitcher, store writer), also when
// exchanges are still queued, and a second Close is a no-op.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	s, _ := mustStore(t)
	before := runtime.NumGoroutine()
	r := mustNew(t, s, recorder.Config{Workers: 3})
	for _, x := range shortExchanges(200) {
		r.Capture(x)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if st := r.Stats(); st.Recorded != 200 || st.QueueDepth != 0 {
		t.Errorf("stats after close %+v; want 200 recorded, none queued", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
