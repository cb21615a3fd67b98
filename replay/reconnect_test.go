package replay_test

import (
	"testing"

	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/sim/simtest"
)

// TestTargetClosingKeptAliveConnections: 16 closed-loop conversations of 4 turns against a
// target that closes every connection after its stream (as llama.cpp's server does). The
// replayer reuses a connection that the target has just closed often enough to lose that
// race; each time it must send the request again on a new connection: no errors, no retries,
// and the reconnects counted.
func TestTargetClosingKeptAliveConnections(t *testing.T) {
	cfg := simtest.Fast()
	cfg.CloseAfterStream = true
	srv := simtest.MustStart(t, cfg)
	rs := makeStore(t, specs(16, 4, 0, 0))
	reconnects := 0
	// The race is lost often, but it is a race: run until the replayer has met it.
	for run := 1; run <= 20 && reconnects == 0; run++ {
		rep := mustRun(t, rs.store, replay.Config{Target: srv.URL(), Arrival: replay.ArrivalAll,
			Think: replay.ThinkNone})
		s := rep.Summary
		if s.Requests.Total != 64 || s.Requests.Errors != 0 || s.Retries != 0 {
			t.Fatalf("run %d: requests %+v, errors %v, retries %d", run, s.Requests, s.ErrorsByClass, s.Retries)
		}
		reconnects = s.Reconnects
		t.Logf("run %d: %d reconnects", run, reconnects)
	}
	if reconnects == 0 {
		t.Fatal("20 runs and never a reconnect: the target did not close connections under the replayer")
	}
}
