package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// verdictRun describes a run of the deterministic verdict store: n results of 6 tokens, sent
// every 50 ms, with TTFT ttft (plus up to 400 µs of jitter that depends on seed), 25 ms
// between tokens, and the first failed of every 25 results failing with a 429.
type verdictRun struct {
	name   string
	ttft   time.Duration
	seed   int
	failed int
	n      int
}

// buildVerdictStore writes recording 1 and the runs, each with its stored summary and
// histograms, as the replayer would.
func buildVerdictStore(t *testing.T, runs ...verdictRun) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "verdict.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(func(tx *tape.Tx) error {
		return tx.PutRecording(&tape.Recording{ID: 1, Name: "prod", Source: "record", Started: handT0,
			Ended: handT0.Add(5 * time.Second), Complete: true})
	}); err != nil {
		t.Fatal(err)
	}
	for k, vr := range runs {
		start := handT0.Add(time.Duration(k+1) * time.Hour)
		run := &tape.Run{Name: vr.name, Target: "http://127.0.0.1:8001", Recording: 1,
			Options: json.RawMessage(`{"speed":1}`), Started: start, Ended: start.Add(3 * time.Second)}
		if err := s.CreateRun(run); err != nil {
			t.Fatal(err)
		}
		var results []*tape.Result
		var last time.Duration
		for i := range vr.n {
			at := time.Duration(i) * 50 * time.Millisecond
			r := &tape.Result{Run: run.ID, Seq: uint64(i + 1), Conversation: uint64(100 + i/4), Turn: i % 4,
				Scheduled: at, Sent: at, InputTokens: 100 + 50*(i%4), TokenSource: tape.TokensServer, Status: 200}
			if i%25 < vr.failed {
				r.Status, r.ErrorClass, r.Error, r.E2E = 429, errclass.HTTP, "rate limited", 2*time.Millisecond
			} else {
				ttft := vr.ttft + time.Duration((i*7+vr.seed*3)%5)*100*time.Microsecond
				r.TTFT, r.Chunks, r.OutputTokens = ttft, handChunks(ttft, 25*time.Millisecond, 6), 6
				r.E2E = r.Chunks[5].Offset
			}
			last = max(last, r.Sent+r.E2E)
			results = append(results, r)
		}
		saveResults(t, s, run, results, last, metrics.SLO{})
	}
	return path
}

// verdictOf runs compare --format json and returns the calls of its verdict by metric, and
// the overall call.
func verdictOf(t *testing.T, store, base, target string) (map[string]string, string) {
	t.Helper()
	code, out, errs := execCmd(context.Background(), "--store", store, "compare", base, target, "--format", "json")
	if code != 0 {
		t.Fatalf("compare %s %s: exit %d: %s", base, target, code, errs)
	}
	var v struct {
		Verdict struct {
			Call  string `json:"call"`
			Items []struct {
				Metric string `json:"metric"`
				Call   string `json:"call"`
			} `json:"items"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	calls := map[string]string{}
	for _, it := range v.Verdict.Items {
		calls[it.Metric] = it.Call
	}
	if len(calls) != 7 {
		t.Fatalf("verdict has %d items, want 7 (ttft, itl, tpot, e2e, throughput, goodput, errors): %v", len(calls), calls)
	}
	return calls, v.Verdict.Call
}

// emptySections returns the titles of the sections of a table ("== title ==") or a page
// (<h2>title</h2><table>) that have headers and no rows.
func emptySections(out string) []string {
	var empty []string
	if strings.HasPrefix(out, "<!DOCTYPE html>") {
		re := regexp.MustCompile(`<h2>([^<]*)</h2>\n<table><tr>(?:<th[^>]*>[^<]*</th>)*</tr>\n</table>`)
		for _, m := range re.FindAllStringSubmatch(out, -1) {
			empty = append(empty, m[1])
		}
		return empty
	}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "== ") && strings.HasSuffix(l, " ==") && (i+2 >= len(lines) || strings.TrimSpace(lines[i+2]) == "") {
			empty = append(empty, l)
		}
	}
	return empty
}

// keepPage writes a page into $LLMTAPE_KEEP_PAGES (when set) for screenshots.
func keepPage(t *testing.T, name, page string) {
	if dir := os.Getenv("LLMTAPE_KEEP_PAGES"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// TestVerdictGolden: compares and a report of runs built deterministically, as tables and
// pages: a TTFT regression (5 ms -> 60 ms) is called worse and throughput within noise; two
// runs of the same server differing only by jitter are the same within noise; a run with 64 %
// failures shows the banner.
func TestVerdictGolden(t *testing.T) {
	store := buildVerdictStore(t,
		verdictRun{name: "fast", ttft: 5 * time.Millisecond, n: 40},
		verdictRun{name: "fast2", ttft: 5 * time.Millisecond, seed: 1, n: 40},
		verdictRun{name: "slow", ttft: 60 * time.Millisecond, n: 40},
		verdictRun{name: "flaky", ttft: 10 * time.Millisecond, failed: 16, n: 25})

	calls, overall := verdictOf(t, store, "fast", "slow")
	if calls["ttft_ms"] != "worse" || calls["throughput"] != "same" || overall != "worse" {
		t.Errorf("fast -> slow: %s %v; want worse with ttft_ms worse and throughput same", overall, calls)
	}
	calls, overall = verdictOf(t, store, "fast", "fast2")
	for m, c := range calls {
		if c != "same" {
			t.Errorf("fast -> fast2: %s is %s, want same", m, c)
		}
	}
	if overall != "same" {
		t.Errorf("fast -> fast2: %s, want same", overall)
	}

	for _, g := range []struct {
		name string
		args []string
		want []string
	}{
		{"compare_regression", []string{"compare", "fast", "slow", "--fail-on", "ttft_ms.p50>+50%,errors>0"},
			[]string{"verdict: WORSE", "worse: ttft_ms.p50 +", "within noise: itl_ms, tpot_ms, throughput, goodput, errors"}},
		{"compare_same", []string{"compare", "fast", "fast2"},
			[]string{"verdict: SAME within noise", "within noise: ttft_ms, itl_ms, tpot_ms, e2e_ms, throughput, goodput, errors"}},
		{"report_failures", []string{"report", "--run", "flaky"},
			[]string{"64.0% failed", "run 4 (flaky): 64% of requests failed (16 of 25: http 16)"}},
	} {
		for _, f := range []string{"table", "html"} {
			t.Run(g.name+"_"+f, func(t *testing.T) {
				code, out, errs := execCmd(context.Background(), append([]string{"--store", store, "--format", f}, g.args...)...)
				if code != 0 && !(code == 1 && strings.Contains(errs, "fail-on")) {
					t.Fatalf("exit %d: %s", code, errs)
				}
				for _, w := range g.want {
					if !strings.Contains(out, w) {
						t.Errorf("%s does not say %q", g.name, w)
					}
				}
				if e := emptySections(out); len(e) > 0 {
					t.Errorf("empty sections: %q", e)
				}
				ext := map[string]string{"table": "txt", "html": "html"}[f]
				checkAnalysisGolden(t, g.name+"."+ext, out)
				if f == "html" {
					keepPage(t, g.name+".html", out)
				}
			})
		}
	}
	// The regression's page colours TTFT red and throughput grey, and says it in words.
	_, page, _ := execCmd(context.Background(), "--store", store, "--format", "html", "compare", "fast", "slow")
	for _, w := range []string{`<div class="card worse"><div class="k">ttft_ms.p50</div>`, `<div class="card same"><div class="k">throughput.output_tokens_per_s</div>`,
		"worse (regression)", "same within noise", "TTFT and ITL change by turn index"} {
		if !strings.Contains(page, w) {
			t.Errorf("regression page does not hold %q", w)
		}
	}
	_, page, _ = execCmd(context.Background(), "--store", store, "--format", "html", "report", "--run", "flaky")
	if !strings.Contains(page, `<div class="banner" role="alert">`) {
		t.Errorf("report of 64%% failures has no banner")
	}
}

// TestNoEmptyTable scans every table and page of the golden files for a section with
// headers and no rows.
func TestNoEmptyTable(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		if !strings.HasSuffix(f, ".txt.golden") && !strings.HasSuffix(f, ".html.golden") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if e := emptySections(string(b)); len(e) > 0 {
			t.Errorf("%s: empty sections %q", f, e)
		}
	}
	// The scanner finds one.
	if e := emptySections("t\n\n== a ==\nx  y\n\n== b ==\nx\n1\n"); len(e) != 1 {
		t.Errorf("scanner found %q in a table with one empty section", e)
	}
	if e := emptySections("<!DOCTYPE html>\n<h2>r</h2>\n<table><tr><th scope=\"col\">a</th></tr>\n</table>\n"); len(e) != 1 {
		t.Errorf("scanner found %q in a page with one empty table", e)
	}
}

// TestVerdictSim replays one recording three times through the real command tree against
// real simulators: one with TTFT 5 ms, two with TTFT 60 ms. The verdict calls TTFT a
// regression and throughput within noise for the first pair, and everything within noise for
// the two runs of the same simulator. Paced arrivals (100 ms apart) and think times keep the
// throughput set by the schedule; the figures are large enough against a busy machine's
// jitter that the calls do not flip (the live numbers are not golden: the verdict and the
// structure are).
func TestVerdictSim(t *testing.T) {
	store := chatStore(t, "verdict-sim.db", rand.NewPCG(19, 1), 10, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 4, MessageBytes: 400, ReplyBytes: 40, Chunks: 5},
			arrival: time.Duration(i) * 100 * time.Millisecond, completion: 6}
	})
	replayOn := func(name string, ttft time.Duration) {
		srv := simtest.MustStart(t, sim.Config{TTFT: ttft, ITL: 25 * time.Millisecond, Tokenizer: "approx", Seed: 1})
		code, _, errs := execCmd(context.Background(), "replay", "--store", store, "--target", srv.URL()+"/v1",
			"--think", "100ms", "--ignore-eos", "--name", name, "--progress-interval", "0")
		if code != 0 {
			t.Fatalf("replay %s: exit %d: %s", name, code, errs)
		}
	}
	replayOn("fast", 5*time.Millisecond)
	replayOn("slow", 60*time.Millisecond)
	replayOn("slow2", 60*time.Millisecond)

	calls, overall := verdictOf(t, store, "fast", "slow")
	if calls["ttft_ms"] != "worse" || calls["throughput"] != "same" || calls["errors"] != "same" || overall != "worse" {
		t.Errorf("fast -> slow: %s %v; want worse with ttft_ms worse, throughput and errors same", overall, calls)
	}
	calls, overall = verdictOf(t, store, "slow", "slow2")
	if overall != "same" {
		t.Errorf("slow -> slow2 (the same simulator): %s %v; want everything within noise", overall, calls)
	}
	for _, c := range []struct{ base, target, want string }{
		{"fast", "slow", "worse: ttft_ms.p"}, {"slow", "slow2", "verdict: SAME within noise"}} {
		for _, f := range []string{"table", "html"} {
			code, out, errs := execCmd(context.Background(), "--store", store, "--format", f, "compare", c.base, c.target)
			if code != 0 {
				t.Fatalf("compare %s %s: exit %d: %s", c.base, c.target, code, errs)
			}
			if f == "table" {
				t.Logf("compare %s %s:\n%.1500s", c.base, c.target, out)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("compare %s %s --format %s does not say %q:\n%.2000s", c.base, c.target, f, c.want, out)
			}
			if e := emptySections(out); len(e) > 0 {
				t.Errorf("compare %s %s --format %s: empty sections %q", c.base, c.target, f, e)
			}
			if f == "html" {
				keepPage(t, fmt.Sprintf("sim_%s_%s.html", c.base, c.target), out)
			}
		}
	}
	for _, args := range [][]string{{"report", "--run", "slow"}, {"analyze"}} {
		for _, f := range []string{"table", "html"} {
			code, out, errs := execCmd(context.Background(), append([]string{"--store", store, "--format", f}, args...)...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, errs)
			}
			if e := emptySections(out); len(e) > 0 {
				t.Errorf("%v --format %s: empty sections %q", args, f, e)
			}
			if f == "html" {
				keepPage(t, "sim_"+args[0]+".html", out)
			}
		}
	}
}
