package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
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

// TestCompareDeadRunGate: compare of a recording with a run against a target that was down
// warns, and as a CI gate fails with its own reason instead of reading the empty latencies as
// zeros (a 100% improvement).
func TestCompareDeadRunGate(t *testing.T) {
	path := replayStore(t, 4, 2)
	code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", deadTarget(t),
		"--think", "none", "--name", "dead", "--progress-interval", "0")
	if code != 1 {
		t.Fatalf("replay: exit %d, stderr %q", code, errOut)
	}
	// Without --fail-on, compare shows the comparison and says loudly what is wrong.
	code, out, errOut := execCmd(context.Background(), "--store", path, "compare", "recording", "dead")
	const noOK = "target run has no successful requests: 8 of 8 failed (connect 8)"
	if code != 0 || !strings.Contains(errOut, "llmtape: warning: "+noOK) || !strings.Contains(out, noOK) {
		t.Errorf("compare: exit %d, stderr %q; want 0 and the warning on stderr and in the table:\n%s", code, errOut, out)
	}
	for _, line := range strings.Split(out, "\n") {
		// No figure of the dead side reads as a change: its latencies have no samples.
		if f := strings.Fields(line); len(f) == 5 && f[0] == "ttft_ms.p99" && (f[2] != "n/a" || f[4] != "-") {
			t.Errorf("ttft_ms.p99 row %q: want target n/a and no relative change", line)
		}
	}
	code, out, errOut = execCmd(context.Background(), "--store", path, "compare", "recording", "dead", "--format", "json")
	v := decodeAnalysisJSON(t, out)
	if code != 0 || !strings.Contains(fmt.Sprint(jsonPath(t, v, "warnings")), noOK) {
		t.Errorf("compare json: exit %d %s, warnings %v", code, errOut, jsonPath(t, v, "warnings"))
	}
	for _, m := range jsonPath(t, v, "metrics").([]any) {
		m := m.(map[string]any)
		if m["name"] == "ttft_ms.p99" && (m["missing"] != "target" || m["rel"] != nil) {
			t.Errorf("ttft_ms.p99: %v; want missing target, rel null", m)
		}
	}

	// As a gate it fails, whatever the condition.
	for _, cond := range []string{"ttft_ms.p99>+10%", "errors>100", "e2e_ms.mean>+10%,requests.total<1"} {
		code, _, errOut = execCmd(context.Background(), "--store", path, "compare", "recording", "dead", "--fail-on", cond)
		if code != 1 || !strings.Contains(errOut, "llmtape: compare: fail-on: "+noOK) {
			t.Errorf("--fail-on %s: exit %d, stderr %q; want 1 and %q", cond, code, errOut, noOK)
		}
	}
	// The other way round too: the dead run as the base.
	code, _, errOut = execCmd(context.Background(), "--store", path, "compare", "dead", "recording", "--fail-on", "ttft_ms.p99>+10%")
	if code != 1 || !strings.Contains(errOut, "base run has no successful requests") {
		t.Errorf("dead base: exit %d, stderr %q", code, errOut)
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

// TestReplayEmptySelectionFails: a shard that holds no conversation sends nothing, and a run
// that is all warmup measures nothing; their runs are saved but the replay is no success.
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
	// Every request sent was warmup: nothing was measured either.
	code, out, errOut = execCmd(context.Background(), "replay", "--store", path, "--target", url, "--warmup", "5",
		"--name", "warm", "--progress-interval", "0")
	if code != 1 || !strings.Contains(errOut, "llmtape: replay: no request was measured: all 1 were warmup (--warmup)\n") ||
		!strings.Contains(out, `"warm" saved (complete, 1 results)`) {
		t.Errorf("all warmup: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
}

// unstreamedStore writes a store of n conversations of 2 turns, arriving 5 ms apart, whose
// turns are recorded as not streamed (no output events, so no TTFT) when plain(i) holds for
// the conversation's index i, and returns its path and the ids of those conversations.
func unstreamedStore(t *testing.T, n int, plain func(i int) bool) (string, map[uint64]bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plain.db")
	st, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := tapetest.Recording(t, st)
	rng := rand.New(rand.NewPCG(21, 22))
	ids := map[uint64]bool{}
	err = st.Update(func(tx *tape.Tx) error {
		for i := range n {
			chat := tapetest.NewChat(rng, rec.ID, st.NextConversationID(), tapetest.Config{Turns: 2, MessageBytes: 80, Chunks: 4})
			chat.Conversation.Arrival = time.Duration(i) * 5 * time.Millisecond
			for _, tr := range chat.Turns {
				tr.Tokens.Completion = 8
				if plain(i) {
					ids[tr.Conversation] = true
					tr.Request.Stream = false
					tr.Request.Params = json.RawMessage(`{"model":"llama-3.1-8b","stream":false}`)
					tr.Response.Streamed, tr.Response.Events = false, 0
					tr.Response.Headers = map[string]string{"Content-Type": "application/json"}
					tr.Timing.Chunks = nil
				}
			}
			if err := chat.Write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path, ids
}

// TestCompareUnstreamedRecording: recorded turns that were not streamed have no TTFT. compare
// leaves them out of the TTFT figures and regressions (instead of reading a TTFT of 0, which
// makes every such turn a regression), counts them and says so; a gate on a TTFT figure that
// has no sample at all is an error, not a pass.
func TestCompareUnstreamedRecording(t *testing.T) {
	path, plain := unstreamedStore(t, 6, func(i int) bool { return i%2 == 0 })
	url := replaySim(t, sim.Config{TTFT: 20 * time.Millisecond, ITL: 100 * time.Microsecond})
	// --stream always: the run measures a TTFT for every turn, the recording only for the streamed.
	code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", url, "--name", "run",
		"--arrival", "all", "--think", "none", "--progress-interval", "0", "--stream", "always")
	if code != 0 {
		t.Fatalf("replay: exit %d, stderr %q", code, errOut)
	}
	const note = "ttft not measured for 6 recorded turns"
	code, out, errOut := execCmd(context.Background(), "--store", path, "compare", "recording", "run", "--format", "json")
	if code != 0 || !strings.Contains(errOut, "llmtape: warning: "+note) {
		t.Fatalf("compare: exit %d, stderr %q", code, errOut)
	}
	v := decodeAnalysisJSON(t, out)
	if b, tg := jsonPath(t, v, "ttft_not_measured.base"), jsonPath(t, v, "ttft_not_measured.target"); b != 6.0 || tg != 0.0 {
		t.Errorf("ttft_not_measured %v/%v, want 6/0", b, tg)
	}
	if w := fmt.Sprint(jsonPath(t, v, "warnings")); !strings.Contains(w, note) {
		t.Errorf("warnings %s lack %q", w, note)
	}
	for _, m := range jsonPath(t, v, "metrics").([]any) {
		m := m.(map[string]any)
		switch m["name"] {
		case "ttft_ms.count":
			if m["base"] != 6.0 || m["target"] != 12.0 {
				t.Errorf("ttft_ms.count %v -> %v, want the 6 streamed turns -> 12", m["base"], m["target"])
			}
		case "ttft_ms.min":
			// The recorded streamed turns' first events came after at least 5 ms: a 0 read
			// from a turn without TTFT would show here.
			if m["base"].(float64) < 5 {
				t.Errorf("recorded ttft_ms.min %v: a turn without TTFT was read as 0", m["base"])
			}
		case "e2e_ms.count":
			if m["base"] != 12.0 {
				t.Errorf("e2e_ms.count base %v, want every recorded turn (12)", m["base"])
			}
		}
	}
	for _, r := range jsonPath(t, v, "regressions.turns").([]any) {
		r := r.(map[string]any)
		if plain[uint64(r["conversation"].(float64))] || r["base_ttft_ms"].(float64) <= 0 {
			t.Errorf("regression %v: a turn without recorded TTFT is ranked by TTFT", r)
		}
	}
	code, table, _ := execCmd(context.Background(), "--store", path, "compare", "recording", "run")
	if code != 0 || !strings.Contains(table, "== warnings ==") || !strings.Contains(table, note) {
		t.Errorf("table: exit %d, want the note under warnings:\n%s", code, table)
	}

	// No recorded turn was streamed: TTFT has no samples on the recorded side.
	path, _ = unstreamedStore(t, 3, func(int) bool { return true })
	code, _, errOut = execCmd(context.Background(), "replay", "--store", path, "--target", url, "--name", "run",
		"--arrival", "all", "--think", "none", "--progress-interval", "0", "--stream", "always")
	if code != 0 {
		t.Fatalf("replay: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = execCmd(context.Background(), "--store", path, "compare", "recording", "run",
		"--fail-on", "ttft_ms.p99>+10%,e2e_ms.p99>+100000%")
	want := "llmtape: compare: fail-on: ttft_ms.p99 has no samples on the base side (recording 1"
	if code != 1 || !strings.Contains(errOut, want) || strings.Contains(errOut, "e2e_ms") {
		t.Errorf("--fail-on on TTFT without recorded samples: exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
	code, _, errOut = execCmd(context.Background(), "--store", path, "compare", "recording", "run", "--fail-on", "e2e_ms.p99>+100000%")
	if code != 0 {
		t.Errorf("--fail-on on E2E, measured on both sides: exit %d, stderr %q; want 0", code, errOut)
	}
}
