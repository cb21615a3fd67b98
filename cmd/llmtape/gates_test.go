package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
)

// Tests of the gates: replay's exit status when the target is down or errs too often, and
// compare's refusal to read a side without successful requests, or a figure without samples,
// as zero.

// deadTarget returns the URL of a 127.0.0.1 port that was bound and closed: nothing listens,
// so every request fails to connect.
func deadTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// runRequests returns the request counts of the run named name in the store at path.
func runRequests(t *testing.T, path, name string) (total, ok int) {
	t.Helper()
	s, err := tape.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run, err := s.FindRun(name)
	if err != nil {
		t.Fatalf("run %q not saved: %v", name, err)
	}
	var sum struct{ Requests struct{ Total, OK int } }
	if err := json.Unmarshal(run.Summary, &sum); err != nil {
		t.Fatalf("run %q has no summary: %v", name, err)
	}
	return sum.Requests.Total, sum.Requests.OK
}

// TestReplayDeadTargetFails: a replay against a target where nothing listens saves its run and
// prints its summary, then exits 1 saying that no request succeeded.
func TestReplayDeadTargetFails(t *testing.T) {
	path := replayStore(t, 4, 2)
	code, out, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", deadTarget(t),
		"--think", "none", "--name", "dead", "--progress-interval", "0")
	if code != 1 || !strings.Contains(errOut, "llmtape: replay: no request succeeded: 8 of 8 failed (connect 8)\n") {
		t.Errorf("exit %d, stderr %q; want 1 and no request succeeded", code, errOut)
	}
	if !strings.Contains(out, "ttft_ms") || !strings.Contains(out, `run 1 "dead" saved (complete, 8 results)`) {
		t.Errorf("the summary and the saved line are missing:\n%s", out)
	}
	if total, ok := runRequests(t, path, "dead"); total != 8 || ok != 0 {
		t.Errorf("saved run: %d requests, %d ok; want 8, 0", total, ok)
	}

}

// TestReplayMaxErrorRate: with --max-error-rate a run whose share of failed requests is above
// the limit exits 1 after it is saved; at or below the limit it exits 0. The simulator's faults
// are seeded by request index, so every run of the same store fails the same requests.
func TestReplayMaxErrorRate(t *testing.T) {
	path := replayStore(t, 8, 2)
	replayWith := func(limit string) (int, string, string) {
		url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond, FailRate: 0.4, Seed: 7})
		return execCmd(context.Background(), "replay", "--store", path, "--target", url, "--think", "none",
			"--max-concurrency", "1", "--progress-interval", "0", "--max-error-rate", limit, "--json", "-")
	}
	code, out, errOut := replayWith("0.99")
	if code != 0 {
		t.Fatalf("--max-error-rate 0.99: exit %d, stderr %q", code, errOut)
	}
	var sum struct {
		Requests struct{ Total, OK, Errors int }
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	n := sum.Requests
	if n.Total != 16 || n.Errors == 0 || n.OK == 0 {
		t.Fatalf("requests %+v: want 16 with some failed and some ok", n)
	}
	rate := float64(n.Errors) / float64(n.Total)

	code, _, errOut = replayWith(fmt.Sprint(rate / 2))
	want := fmt.Sprintf("llmtape: replay: error rate %.4g%% above --max-error-rate %.4g%%: %d of 16 failed (http %d)\n",
		100*rate, 100*rate/2, n.Errors, n.Errors)
	if code != 1 || !strings.HasSuffix(errOut, want) {
		t.Errorf("--max-error-rate %v: exit %d, stderr %q; want 1 and %q", rate/2, code, errOut, want)
	}
	if code, _, errOut = replayWith(fmt.Sprint(rate)); code != 0 {
		t.Errorf("--max-error-rate %v (the run's own rate): exit %d, stderr %q; want 0", rate, code, errOut)
	}
	if code, _, errOut = replayWith("0"); code != 1 || !strings.Contains(errOut, "above --max-error-rate 0%") {
		t.Errorf("--max-error-rate 0: exit %d, stderr %q; want 1", code, errOut)
	}
	for _, bad := range []string{"-0.1", "1.5", "NaN", "5%"} {
		code, _, errOut = execCmd(context.Background(), "replay", "--store", path, "--target", "http://x", "--max-error-rate", bad)
		if code != 2 || !strings.Contains(errOut, "--max-error-rate") {
			t.Errorf("--max-error-rate %s: exit %d, stderr %q; want a usage error", bad, code, errOut)
		}
	}
}

// TestReplayEmptySelectionFails: a shard that holds no conversation sends nothing; its run is
// saved but the replay is no success.
func TestReplayEmptySelectionFails(t *testing.T) {
	path := replayStore(t, 1, 1)
	s, err := tape.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var id uint64
	err = s.Recordings(func(r *tape.Recording) error {
		return s.Conversations(r.ID, func(c *tape.Conversation) error { id = c.ID; return nil })
	})
	s.Close()
	if err != nil || id == 0 {
		t.Fatalf("conversation %d: %v", id, err)
	}
	shard := fmt.Sprintf("%d/2", 1-replay.ShardOf(id, 2))
	url := replaySim(t, sim.Config{TTFT: time.Millisecond})
	code, out, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", url, "--shard", shard,
		"--name", "empty", "--progress-interval", "0")
	if code != 1 || !strings.Contains(errOut, "llmtape: replay: no request was sent: the selection holds 0 conversations\n") {
		t.Errorf("exit %d, stderr %q; want 1 and no request was sent", code, errOut)
	}
	if !strings.Contains(out, `"empty" saved (complete, 0 results)`) {
		t.Errorf("the run is not saved:\n%s", out)
	}
}
