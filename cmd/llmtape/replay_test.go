package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// replayStore writes a store of n conversations of turns each, arriving 10 ms apart, and
// returns its path.
func replayStore(t *testing.T, n, turns int) string {
	t.Helper()
	return chatStore(t, "replay.db", rand.NewPCG(5, 6), n, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: turns, MessageBytes: 80},
			arrival: time.Duration(i) * 10 * time.Millisecond, completion: 20}
	})
}

func replaySim(t *testing.T, cfg sim.Config) string {
	_, url := replaySimServer(t, cfg)
	return url
}

func replaySimServer(t *testing.T, cfg sim.Config) (*sim.Server, string) {
	t.Helper()
	cfg.Tokenizer = "approx"
	srv, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url, err := srv.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, url
}

func TestReplayCommand(t *testing.T) {
	path := replayStore(t, 6, 3)
	url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond})
	jsonPath := filepath.Join(t.TempDir(), "summary.json")
	code, out, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", url,
		"--think", "none", "--speed", "10", "--name", "cli test", "--slo", "ttft=1s", "--json", jsonPath,
		"--header", "X-Test: 1", "--max-concurrency", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	for _, want := range []string{"ttft_ms", "itl_ms", "e2e_ms", "goodput", "schedule lag", `run 1 "cli test" saved (complete, 18 results)`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var sum map[string]json.RawMessage
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"requests", "throughput", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms",
		"schedule_lag_ms", "goodput", "by_turn"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("--json lacks %q", k)
		}
	}
	var req struct{ Total, OK int }
	_ = json.Unmarshal(sum["requests"], &req)
	if req.Total != 18 || req.OK != 18 {
		t.Errorf("requests %+v", req)
	}
	// The run is listed.
	code, out, errOut = execCmd(context.Background(), "ls", "--store", path)
	if code != 0 || !strings.Contains(out, "cli test") {
		t.Errorf("ls: exit %d %s\n%s", code, errOut, out)
	}
}

func TestReplayUsageErrors(t *testing.T) {
	path := replayStore(t, 1, 1)
	for _, args := range [][]string{
		{"replay", "--store", path},
		{"replay", "--store", path, "--target", "http://x", "--think", "later"},
		{"replay", "--store", path, "--target", "http://x", "--output", "-3"},
		{"replay", "--store", path, "--target", "http://x", "--shard", "3/3"},
		{"replay", "--store", path, "--target", "http://x", "--slo", "ttft=fast"},
		{"replay", "--store", path, "--target", "http://x", "--warmup", "soon"},
		{"replay", "--store", path, "--target", "http://x", "--sample", "1.5"},
		{"replay", "--store", path, "--target", "http://x", "--header", "novalue"},
		{"replay", "--store", path, "--target", "http://x", "--arrival", "poisson"},
		{"replay", "--store", path, "--target", "http://x", "--start-at", "tomorrow"},
		{"replay", "--store", path, "--target", "http://x", "--start-at", "NaN"},
		{"replay", "--store", path, "--target", "http://x", "--start-at", "Inf"},
		{"replay", "--store", path, "--target", "http://x", "--start-at", "1e30"},
		{"replay", "--store", path, "--target", "http://x", "--start-at", "1795791600000"},
		{"replay", "--store", path, "--target", "http://x", "--start-at", "2999-01-01T00:00:00Z"},
		{"replay", "--store", path, "--target", "http://x", "--speed", "0"},
		{"replay", "--store", path, "--target", "http://x", "--speed", "Inf"},
		{"replay", "--store", path, "--target", "http://x", "--burstiness", "0", "--arrival", "gamma", "--rate", "1"},
		{"replay", "--store", path, "--target", "http://x", "--timeout", "0s"},
		{"replay", "--store", path, "--target", "http://x", "--rate", "5"},
		{"replay", "--store", path, "--target", "http://x", "--arrival", "all", "--rate", "5"},
		{"replay", "--store", path, "--target", "http://x", "--arrival", "poisson", "--rate", "Inf"},
		{"replay", "--store", path, "--target", "http://x", "--burstiness", "0.5"},
		{"replay", "--store", path, "--target", "http://x", "--think-scale", "NaN"},
		{"replay", "--store", path, "--target", "http://x", "--think", "none", "--think-scale", "0.5"},
	} {
		code, _, errOut := execCmd(context.Background(), args...)
		if code != 2 || !strings.HasPrefix(errOut, "llmtape: ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", args[3:], code, errOut)
		}
	}
	// Out-of-range timing scales name the flag and the range (1e-300 was accepted, then hung).
	for _, args := range [][]string{
		{"--speed", "1e-300"},
		{"--speed", "0"},
		{"--speed", "1e7"},
		{"--think-scale", "1e7"},
		{"--think-scale", "1e-4"},
	} {
		code, _, errOut := execCmd(context.Background(), append([]string{"replay", "--store", path, "--target", "http://x"}, args...)...)
		if code != 2 || !strings.Contains(errOut, args[0]+" ") || !strings.Contains(errOut, "0.001 to 1e+06") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", "http://x", "--json", path)
	if code != 2 || !strings.Contains(errOut, "is the store") {
		t.Errorf("--json naming the store: exit %d %q", code, errOut)
	}
	code, _, errOut = execCmd(context.Background(), "replay", "--store", filepath.Join(t.TempDir(), "none.db"), "--target", "http://x")
	if code != 1 || !strings.Contains(errOut, "open store") {
		t.Errorf("missing store: exit %d %q", code, errOut)
	}
}

// TestReplayJSONToStdout: with --json - stdout is the JSON summary alone.
func TestReplayJSONToStdout(t *testing.T) {
	path := replayStore(t, 2, 2)
	url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond})
	code, out, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", url,
		"--think", "none", "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var sum struct{ Requests struct{ Total, OK int } }
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Requests.OK != 4 {
		t.Errorf("stdout is not the JSON summary of 4 requests (%v):\n%s", err, out)
	}
	if !strings.Contains(errOut, "ttft_ms") || !strings.Contains(errOut, "saved (complete, 4 results)") {
		t.Errorf("stderr lacks the table:\n%s", errOut)
	}
}

// TestReplayInterruptBeforeStartAt: Ctrl-C while waiting for --start-at exits with 130 and
// leaves no run.
func TestReplayInterruptBeforeStartAt(t *testing.T) {
	path := replayStore(t, 2, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code, _, errOut := execCmd(ctx, "replay", "--store", path, "--target", "http://127.0.0.1:1",
		"--start-at", time.Now().Add(time.Hour).Format(time.RFC3339))
	if code != 130 || !strings.Contains(errOut, "waiting for --start-at") ||
		!strings.Contains(errOut, "llmtape: replay: interrupted before the start time; no run was created\n") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	code, out, _ := execCmd(context.Background(), "ls", "--store", path)
	if code != 0 || !strings.Contains(out, "no runs") {
		t.Errorf("ls after the interrupted wait: exit %d\n%s", code, out)
	}
}

func TestParseStartAt(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
	}{
		{"2026-11-27T13:00:00Z", now.Add(time.Hour)},
		{"2026-11-27T11:00:00.5Z", now.Add(-time.Hour + 500*time.Millisecond)},
		{"1795791600", time.Unix(1795791600, 0)},
		{"1795791600.25", time.Unix(1795791600, 250_000_000)},
		{"0", time.Unix(0, 0)},
	} {
		got, err := parseStartAt(tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseStartAt(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "soon", "NaN", "-Inf", "-1", "1e10", "2026-11-29T12:00:01Z"} {
		if _, err := parseStartAt(in, now); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("parseStartAt(%q): error %v, want one line", in, err)
		}
	}
}

func TestReplayInterruptSavesPartialRun(t *testing.T) {
	path := replayStore(t, 20, 5)
	// 20 tokens × 5 ms ≈ 100 ms a request; 100 requests, 4 at a time: about 2.5 s in all.
	srv, url := replaySimServer(t, sim.Config{TTFT: time.Millisecond, ITL: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// The Ctrl-C, once the simulator has answered about a third of the requests.
		for srv.Stats().Completed < 30 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	code, out, errOut := execCmd(ctx, "replay", "--store", path, "--target", url, "--think", "none",
		"--arrival", "all", "--max-concurrency", "4", "--name", "halfway")
	if code != 130 {
		t.Fatalf("exit %d, want 130: %s", code, errOut)
	}
	if !strings.Contains(errOut, "interrupted") || !strings.Contains(out, "partial") {
		t.Errorf("stderr %q\nstdout %s", errOut, out)
	}
	code, out, errOut = execCmd(context.Background(), "ls", "--store", path, "--format", "json")
	if code != 0 {
		t.Fatalf("ls: %d %s", code, errOut)
	}
	if !strings.Contains(out, "halfway") {
		t.Errorf("ls does not show the partial run:\n%s", out)
	}
	run := mustFindRun(t, path, "halfway")
	if !run.Partial || run.Requests == 0 || run.Requests >= 100 || len(run.Summary) == 0 || len(run.Histograms) == 0 {
		t.Errorf("run: partial %v requests %d summary %d bytes histograms %d", run.Partial, run.Requests,
			len(run.Summary), len(run.Histograms))
	}
}

func TestProgressBar(t *testing.T) {
	line := progressBar(replayProgress(50, 100), 12.5)
	if !strings.Contains(line, "50/100") || len(line) > 80 {
		t.Errorf("bar %q", line)
	}
}

func replayProgress(done, planned int64) (p replay.Progress) {
	p.Done, p.Planned = done, planned
	return p
}

// TestReplayBinarySignals runs the real binary: the first SIGINT stops scheduling, the second
// cancels the requests in flight; the partial run is saved and the exit status is 130.
func TestReplayBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := recBinary(t)
	path := replayStore(t, 20, 5)
	// 20 tokens × 250 ms: each request streams for about 5 s, so the requests in flight at the
	// first signal are still streaming at the second even on a busy machine.
	srv, url := replaySimServer(t, sim.Config{TTFT: time.Millisecond, ITL: 250 * time.Millisecond})
	cmd := exec.Command(bin, "replay", "--store", path, "--target", url, "--think", "none",
		"--arrival", "all", "--max-concurrency", "4", "--name", "signals")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The state the first signal needs: four requests streaming.
	recWaitFor(t, "four requests in flight", func() bool { return srv.Stats().Running >= 4 })
	_ = cmd.Process.Signal(os.Interrupt)
	var errText strings.Builder
	for l := range lines {
		errText.WriteString(l + "\n")
		if strings.Contains(l, "interrupted") {
			break
		}
	}
	_ = cmd.Process.Signal(os.Interrupt)
	for l := range lines {
		errText.WriteString(l + "\n")
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130; stderr:\n%s", err, errText.String())
	}
	if !strings.Contains(errText.String(), "canceling requests in flight") || !strings.Contains(stdout.String(), "partial") {
		t.Errorf("stderr:\n%s\nstdout:\n%s", errText.String(), stdout.String())
	}
	s, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run, err := s.FindRun("signals")
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Requests      struct{ Total int }
		ErrorsByClass map[string]int `json:"errors_by_class"`
	}
	_ = json.Unmarshal(run.Summary, &sum)
	if !run.Partial || run.Requests == 0 || run.Requests >= 100 || sum.ErrorsByClass["canceled"] == 0 {
		t.Errorf("run partial %v, %d results, errors %v", run.Partial, run.Requests, sum.ErrorsByClass)
	}
}
