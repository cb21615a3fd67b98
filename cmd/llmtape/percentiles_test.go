package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// TestPercentilesFlagErrors: a bad --percentiles is one usage line (exit 2) on every command
// that takes it, before anything is read or sent.
func TestPercentilesFlagErrors(t *testing.T) {
	store := buildHandStore(t)
	for _, args := range [][]string{
		{"report", "--store", store},
		{"analyze", "--store", store},
		{"replay", "--store", store, "--target", "http://127.0.0.1:1"},
		{"compare", "--store", store, "recording", "slow"},
	} {
		for _, bad := range []struct{ value, want string }{
			{"50,abc", `"abc" is not a number`},
			{"101", "101 is not one of 25, 50, 75, 90, 95, 99, 99.9, 99.99"},
		} {
			code, _, errOut := execCmd(context.Background(), append(args, "--percentiles", bad.value)...)
			if code != 2 || !strings.Contains(errOut, "--percentiles") || !strings.Contains(errOut, bad.want) ||
				strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("%s --percentiles %s: exit %d, stderr %q; want 2 and one line with %q", args[0], bad.value, code, errOut, bad.want)
			}
		}
	}
}

// TestPercentilesChosen: --percentiles picks the columns of the table and CSV; a percentile
// with too few samples (p99.9 of 7) is an empty cell, never 0; JSON keeps every key.
func TestPercentilesChosen(t *testing.T) {
	store := buildHandStore(t)
	code, table, errOut := execCmd(context.Background(), "--store", store, "report", "--run", "slow", "--percentiles", "50,95,99.9")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(table, "  50%     95%   99.9%     max") || strings.Contains(table, "25%") {
		t.Errorf("table columns are not 50%%, 95%%, 99.9%%:\n%s", table)
	}
	if !strings.Contains(table, "ttft_ms                  7    1.64    0.31    1.00    1.70    2.00       -    2.00") {
		t.Errorf("ttft_ms row should leave p99.9 of 7 samples out:\n%s", table)
	}
	_, csv, _ := execCmd(context.Background(), "--store", store, "report", "--run", "slow", "--percentiles", "50,95,99.9", "--format", "csv")
	if !strings.Contains(csv, "distributions,ttft_ms,p95,") || !strings.Contains(csv, "distributions,ttft_ms,p999,\n") ||
		strings.Contains(csv, "distributions,ttft_ms,p25,") {
		t.Errorf("csv lacks chosen percentiles or keeps others:\n%s", csv)
	}
	_, js, _ := execCmd(context.Background(), "--store", store, "report", "--run", "slow", "--percentiles", "50", "--format", "json")
	var rep struct {
		TTFT map[string]any `json:"ttft_ms"`
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	for _, p := range metrics.Percentiles {
		if _, ok := rep.TTFT[p.Key]; !ok {
			t.Errorf("JSON ttft_ms lacks %s under --percentiles 50", p.Key)
		}
	}
	_, cmp, _ := execCmd(context.Background(), "--store", store, "compare", "recording", "slow", "--percentiles", "50,99.9")
	if !strings.Contains(cmp, "metric   side    count      mean       p50  p999       max") ||
		!strings.Contains(cmp, "ttft_ms  base        6     1.250     1.200  n/a      1.500") {
		t.Errorf("compare table columns are not p50, p999 (n/a under 1,000 samples):\n%s", cmp)
	}
	_, cmpCSV, _ := execCmd(context.Background(), "--store", store, "compare", "recording", "slow", "--percentiles", "50,99.9", "--format", "csv")
	if !strings.Contains(cmpCSV, "metrics,ttft_ms.p999,base,n/a") || !strings.Contains(cmpCSV, "metrics,ttft_ms.p50,") ||
		strings.Contains(cmpCSV, "metrics,ttft_ms.p90,") || !strings.Contains(cmpCSV, "metrics,ttft_ms.mean,") {
		t.Errorf("compare csv keeps other percentiles or lacks chosen ones:\n%s", cmpCSV)
	}
	_, prof, _ := execCmd(context.Background(), "--store", store, "analyze", "--percentiles", "90")
	if !strings.Contains(prof, "p90") || strings.Contains(prof, "p25") {
		t.Errorf("analyze table columns are not p90:\n%s", prof)
	}
}

// TestPercentilesByDefault: without --percentiles a table adds p99.9 once a distribution has
// 1,000 samples (ITL of a replay of 2,400 tokens), leaving it empty for those with fewer.
func TestPercentilesByDefault(t *testing.T) {
	path := chatStore(t, "long.db", rand.NewPCG(7, 8), 6, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 2, MessageBytes: 80}, completion: 200}
	})
	url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 10 * time.Microsecond})
	code, out, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", url,
		"--think", "none", "--arrival", "all", "--name", "long")
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "99.9%") || strings.Contains(out, "99.99%") {
		t.Errorf("replay table should add 99.9%% (ITL has about 2,000 samples) and not 99.99%%:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ttft_ms ") && !strings.Contains(l, "       -") {
			t.Errorf("ttft_ms (12 samples) shows a p99.9: %q", l)
		}
		if strings.HasPrefix(l, "itl_ms ") && strings.Contains(l, " -") {
			t.Errorf("itl_ms lacks its p99.9: %q", l)
		}
	}
	_, rep, _ := execCmd(context.Background(), "--store", path, "report", "--run", "long", "--format", "csv")
	if !strings.Contains(rep, "distributions,itl_ms,p999,") || strings.Contains(rep, "distributions,itl_ms,p9999,") {
		t.Errorf("report csv should add p999 and not p9999:\n%s", rep)
	}
	_, rep, _ = execCmd(context.Background(), "--store", path, "report", "--run", "long", "--percentiles", "50,99")
	if strings.Contains(rep, "99.9%") {
		t.Errorf("--percentiles 50,99 still shows 99.9%%:\n%s", rep)
	}
}

// TestPercentileGateFewSamples: a --fail-on on p99.9 or p99.99 of sides with fewer samples
// than it needs fails as a figure with no samples does, never reading the number as a value.
func TestPercentileGateFewSamples(t *testing.T) {
	store := buildHandStore(t)
	for _, cond := range []string{"ttft_ms.p999>+1000%", "e2e_ms.p9999<0", "tpot_first_chunk_ms.p999>+1000%"} {
		code, out, errOut := execCmd(context.Background(), "--store", store, "compare", "recording", "slow",
			"--fail-on", cond, "--format", "json")
		if code != 1 {
			t.Errorf("--fail-on %s: exit %d, want 1: %s", cond, code, errOut)
			continue
		}
		var c struct {
			Failed []string `json:"failed"`
		}
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatal(err)
		}
		if len(c.Failed) != 1 || !strings.Contains(c.Failed[0], "has no samples on either side") {
			t.Errorf("--fail-on %s: failed %q, want no samples", cond, c.Failed)
		}
	}
	// p99 has no threshold: the same store passes a gate on it.
	if code, _, errOut := execCmd(context.Background(), "--store", store, "compare", "recording", "slow",
		"--fail-on", "ttft_ms.p99>+1000%"); code != 0 {
		t.Errorf("--fail-on ttft_ms.p99>+1000%%: exit %d: %s", code, errOut)
	}
}
