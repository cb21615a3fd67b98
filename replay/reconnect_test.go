package replay_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/llmtape/llmtape/internal/reconn/reconntest"
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

// TestFailureAfterAnswerBytesIsNotResent: a target that sends headers and part of a stream on
// a reused connection and then closes it broke its answer: that is a stream error, never sent
// again.
func TestFailureAfterAnswerBytesIsNotResent(t *testing.T) {
	var requests atomic.Int64
	const full = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
	const part = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
	target := reconntest.Serve(t, func(c net.Conn, n int, req *http.Request) bool {
		_, _ = io.Copy(io.Discard, req.Body)
		requests.Add(1)
		if n > 0 { // a reused connection: headers, one event, then gone
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(part), part)
			return false
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s", len(full), full)
		return true
	})
	rs := makeStore(t, specs(1, 6, 0, 0))
	rep := mustRun(t, rs.store, replay.Config{Target: target, Arrival: replay.ArrivalAll,
		Think: replay.ThinkNone})
	s := rep.Summary
	if s.ErrorsByClass["stream"] == 0 || s.Reconnects != 0 || int64(s.Requests.Total) != requests.Load() {
		t.Fatalf("requests %+v (target saw %d), errors %v, reconnects %d; want stream errors, no reconnect",
			s.Requests, requests.Load(), s.ErrorsByClass, s.Reconnects)
	}
}
