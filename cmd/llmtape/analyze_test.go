package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

var updateGolden = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// handT0 anchors the hand-built store's wall clock.
var handT0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

// handTurn is one turn of the hand-built recording and its replay in run "slow".
type handTurn struct {
	conv  uint64
	index int
	at    time.Duration // start from handT0
	kept  int
	added [][2]int // per added message: tokens, hash
	in    int      // prompt tokens
	out   int      // completion tokens (one chunk each)
	ttft  time.Duration
	itl   time.Duration
	fail  bool
	// The replay in run "slow": TTFT + 500µs, same ITL; B3 answers 9 tokens; C1 succeeds.
	slowOut int
}

// handTurns: conversations A (10) and B (11) share a 40-token system prompt and have three
// turns each; C (12) is one failed turn. Every latency is below 2.048 ms, where HDR
// histograms are exact, so that the figures can be worked out by hand.
var handTurns = []handTurn{
	{conv: 10, index: 0, at: 0, added: [][2]int{{40, 1}, {10, 100}}, in: 50, out: 20, ttft: 1000 * time.Microsecond, itl: 20 * time.Microsecond, slowOut: 20},
	{conv: 11, index: 0, at: 1 * time.Second, added: [][2]int{{40, 1}, {6, 200}}, in: 46, out: 16, ttft: 1100 * time.Microsecond, itl: 30 * time.Microsecond, slowOut: 16},
	{conv: 10, index: 1, at: 2 * time.Second, kept: 3, added: [][2]int{{8, 101}}, in: 78, out: 12, ttft: 1200 * time.Microsecond, itl: 20 * time.Microsecond, slowOut: 12},
	{conv: 12, index: 0, at: 2500 * time.Millisecond, added: [][2]int{{30, 300}}, in: 30, out: 0, fail: true, slowOut: 5},
	{conv: 11, index: 1, at: 3 * time.Second, kept: 3, added: [][2]int{{9, 201}}, in: 71, out: 10, ttft: 1300 * time.Microsecond, itl: 40 * time.Microsecond, slowOut: 10},
	{conv: 10, index: 2, at: 4 * time.Second, kept: 5, added: [][2]int{{5, 102}}, in: 95, out: 7, ttft: 1400 * time.Microsecond, itl: 50 * time.Microsecond, slowOut: 7},
	{conv: 11, index: 2, at: 5 * time.Second, kept: 5, added: [][2]int{{7, 202}}, in: 88, out: 7, ttft: 1500 * time.Microsecond, itl: 60 * time.Microsecond, slowOut: 9},
}

func handChunks(ttft, itl time.Duration, n int) []tape.Chunk {
	c := make([]tape.Chunk, n)
	for i := range c {
		c[i] = tape.Chunk{Offset: ttft + time.Duration(i)*itl, Tokens: 1}
	}
	return c
}

// saveResults writes the run's results, and its summary (over window) and histograms as the
// replayer saves them.
func saveResults(t testing.TB, s *tape.Store, run *tape.Run, results []*tape.Result, window time.Duration, slo metrics.SLO) {
	t.Helper()
	var acc metrics.Accumulator
	err := s.Update(func(tx *tape.Tx) error {
		for _, r := range results {
			acc.Add(r)
			if err := tx.PutResult(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	run.Summary, _ = json.Marshal(acc.Summary(window, slo))
	if run.Histograms, err = acc.Set().Encode(); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateRun(run); err != nil {
		t.Fatal(err)
	}
}

// buildHandStore writes the hand-built recording (id 1) and runs "slow" (id 1; all seven
// turns replayed with TTFT + 500µs), "shard0" (conversation 10 of the same results) and
// "shard1" (conversations 11 and 12).
func buildHandStore(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hand.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(func(tx *tape.Tx) error {
		rec := &tape.Recording{ID: 1, Name: "hand", Source: "record", Upstream: "http://127.0.0.1:8000",
			Mode: "reverse", Started: handT0, Ended: handT0.Add(5 * time.Second), Complete: true}
		if err := tx.PutRecording(rec); err != nil {
			return err
		}
		for _, c := range []*tape.Conversation{
			{ID: 10, Recording: 1, Arrival: 0, Grouping: tape.GroupPrefix},
			{ID: 11, Recording: 1, Arrival: time.Second, Grouping: tape.GroupPrefix},
			{ID: 12, Recording: 1, Arrival: 2500 * time.Millisecond, Grouping: tape.GroupSingle},
		} {
			if err := tx.PutConversation(c); err != nil {
				return err
			}
		}
		for _, h := range handTurns {
			tr := &tape.Turn{Conversation: h.conv, Index: h.index, Match: tape.GroupPrefix}
			if h.index == 0 {
				tr.Match = tape.GroupSingle
			}
			tr.Request = tape.Request{Method: "POST", Path: "/v1/chat/completions", Model: "m", Stream: true,
				Params: json.RawMessage(`{"model":"m","stream":true}`), Kept: h.kept}
			for _, m := range h.added {
				tr.Request.Messages = append(tr.Request.Messages, json.RawMessage(fmt.Sprintf(`{"role":"user","content":"m%d"}`, m[1])))
				tr.Request.MessageMeta = append(tr.Request.MessageMeta, tape.MessageMeta{Tokens: int32(m[0]), Hash: uint64(m[1])})
			}
			tr.Timing = tape.Timing{Start: handT0.Add(h.at)}
			tr.Tokens = tape.Tokens{Prompt: h.in, Completion: h.out, Source: tape.TokensServer}
			if h.fail {
				tr.Response = tape.Response{Status: 500, Error: "overloaded", ErrorClass: "http"}
				tr.Timing.End = 800 * time.Microsecond
			} else {
				tr.Response = tape.Response{Status: 200, Content: fmt.Sprintf("reply %d/%d", h.conv, h.index),
					FinishReason: "stop", Streamed: true, Events: h.out + 2}
				tr.Timing.Chunks = handChunks(h.ttft, h.itl, h.out)
				tr.Timing.End = tr.Timing.Chunks[h.out-1].Offset
			}
			if err := tx.PutTurn(tr); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slo, _ := metrics.ParseSLO("ttft=1800us")
	writeRun := func(name string, keep func(conv uint64) bool) {
		run := &tape.Run{Name: name, Target: "http://127.0.0.1:8001", Recording: 1,
			Options: json.RawMessage(`{"speed":1}`), Started: handT0.Add(time.Hour),
			Ended: handT0.Add(time.Hour + 5*time.Second)}
		if err := s.CreateRun(run); err != nil {
			t.Fatal(err)
		}
		var results []*tape.Result
		seq := uint64(0)
		for i, h := range handTurns {
			if !keep(h.conv) {
				continue
			}
			seq++
			ttft := h.ttft + 500*time.Microsecond
			itl := h.itl
			if h.fail {
				ttft, itl = 1000*time.Microsecond, 10*time.Microsecond
			}
			ch := handChunks(ttft, itl, h.slowOut)
			results = append(results, &tape.Result{Run: run.ID, Seq: seq, Conversation: h.conv, Turn: h.index,
				Scheduled: h.at, Sent: h.at + time.Duration(i+1)*100*time.Microsecond,
				TTFT: ttft, Chunks: ch, E2E: ch[len(ch)-1].Offset, InputTokens: h.in,
				OutputTokens: h.slowOut, TokenSource: tape.TokensServer, Status: 200})
		}
		saveResults(t, s, run, results, 5*time.Second, slo)
	}
	writeRun("slow", func(uint64) bool { return true })
	writeRun("shard0", func(c uint64) bool { return c == 10 })
	writeRun("shard1", func(c uint64) bool { return c != 10 })
	return path
}

func checkAnalysisGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run go test -update after checking):\n%s", name, path, firstDiff(string(want), got))
	}
}

// diffLines shows the first differing lines.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\nwant %q\ngot  %q", i+1, a, b)
		}
	}
	return ""
}

// TestAnalysisGolden renders analyze, report and compare of the hand-built store in every
// format and compares each with its golden file.
func TestAnalysisGolden(t *testing.T) {
	store := buildHandStore(t)
	cmds := map[string][]string{
		"analyze":       {"analyze"},
		"report":        {"report", "--run", "slow"},
		"report_shards": {"report", "--run", "shard0", "--run", "shard1", "--by", "conversation"},
		"compare":       {"compare", "recording", "slow"},
	}
	for name, args := range cmds {
		for _, f := range []string{"table", "json", "csv", "html"} {
			t.Run(name+"_"+f, func(t *testing.T) {
				code, out, errs := execCmd(context.Background(), append([]string{"--store", store, "--format", f}, args...)...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errs)
				}
				ext := map[string]string{"table": "txt", "json": "json", "csv": "csv", "html": "html"}[f]
				checkAnalysisGolden(t, name+"."+ext, out)
				if f == "table" {
					for i, l := range strings.Split(out, "\n") {
						if n := len([]rune(l)); n > 100 {
							t.Errorf("line %d is %d columns: %q", i+1, n, l)
						}
					}
				}
			})
		}
	}
}

// jsonPath follows a dotted path ("prefix_reuse.0.hit_tokens") through decoded JSON.
func jsonPath(t *testing.T, v any, path string) any {
	t.Helper()
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[k]; !ok {
				t.Fatalf("%s: no key %q", path, k)
			}
		case []any:
			var i int
			if _, err := fmt.Sscan(k, &i); err != nil || i >= len(x) {
				t.Fatalf("%s: bad index %q", path, k)
			}
			v = x[i]
		default:
			t.Fatalf("%s: %q of a %T", path, k, v)
		}
	}
	return v
}

func decodeAnalysisJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v in %s", err, s)
	}
	return v
}

// TestAnalysisHandWorked checks the figures of the hand-built store against values worked out
// by hand (see handTurns). HDR percentiles take the sample of rank int(q·n + 0.5); exact
// distributions (tokens, think time, gaps) interpolate linearly between ranks.
func TestAnalysisHandWorked(t *testing.T) {
	store := buildHandStore(t)
	cases := []struct {
		args []string
		want map[string]any
	}{
		{[]string{"analyze"}, map[string]any{
			"conversations": 3.0, "turns": 7.0,
			"turns_per_conversation.mean": 7.0 / 3, "turns_per_conversation.p50": 3.0, "turns_per_conversation.min": 1.0,
			// 30 46 50 71 78 88 95
			"input_tokens.count": 7.0, "input_tokens.mean": 458.0 / 7, "input_tokens.p50": 71.0,
			"input_tokens.p90": 90.8, "input_tokens.p99": 94.58, "input_tokens.max": 95.0,
			// 0 7 7 10 12 16 20
			"output_tokens.mean": 72.0 / 7, "output_tokens.p50": 10.0, "output_tokens.p90": 17.6, "output_tokens.p99": 19.76,
			// A2−A1end, B2−B1end, A3−A2end, B3−B2end: 2000−1.38, 2000−1.55, 2000−1.42, 2000−1.66
			"think_time_ms.count": 4.0, "think_time_ms.mean": 1998.4975, "think_time_ms.p50": 1998.515,
			"think_time_ms.min": 1998.34, "think_time_ms.max": 1998.62,
			// arrivals 0, 1000, 2500 ms
			"arrivals.span_s": 2.5, "arrivals.conversations_per_s": 0.8, "arrivals.burstiness_cv": 0.2,
			"arrivals.interarrival_ms.mean": 1250.0,
			// TTFT 1.0 1.1 1.2 1.3 1.4 1.5 (the failed turn has none)
			"ttft_ms.count": 6.0, "ttft_ms.mean": 1.25, "ttft_ms.p50": 1.2, "ttft_ms.p90": 1.4, "ttft_ms.p99": 1.5,
			// ITL: 30×20µs 15×30 9×40 6×50 6×60
			"itl_ms.count": 66.0, "itl_ms.mean": 2.07 / 66, "itl_ms.p50": 0.03, "itl_ms.p90": 0.05, "itl_ms.p99": 0.06,
			"tpot_ms.count": 6.0, "tpot_ms.p50": 0.03,
			// E2E = TTFT + (n−1)·ITL: 1.38 1.55 1.42 1.66 1.70 1.86
			"e2e_ms.count": 6.0, "e2e_ms.mean": 1.595, "e2e_ms.p50": 1.55, "e2e_ms.p90": 1.7, "e2e_ms.max": 1.86,
			"errors.total": 1.0, "errors.by_class.http": 1.0, "errors.by_status.500": 1.0,
			"grouping.prefix": 2.0, "grouping.single": 1.0,
			// docs/analyze.md walks through the 240; C's 30 tokens are all new.
			"prefix_reuse.0.block_size": 16.0, "prefix_reuse.0.prompt_tokens": 458.0,
			"prefix_reuse.0.hit_tokens": 240.0, "prefix_reuse.0.hit_ratio": 240.0 / 458,
			"prefix_reuse.0.lru_hit_tokens": 240.0,
			"prefix_reuse.1.block_size":     512.0, "prefix_reuse.1.hit_tokens": 0.0,
			"by_turn.2.ttft_ms.p50": 1.4, "by_turn.0.requests": 3.0,
		}},
		{[]string{"report", "--run", "slow"}, map[string]any{
			"requests.total": 7.0, "requests.ok": 7.0, "requests.errors": 0.0,
			"throughput.requests_per_s": 1.4, "throughput.input_tokens_per_s": 91.6,
			"throughput.output_tokens_per_s": 15.8,
			// TTFT 1.0 1.5 1.6 1.7 1.8 1.9 2.0; four of them ≤ 1.8 ms plus C's 1.0
			"goodput.met": 5.0, "goodput.ratio": 5.0 / 7, "goodput.requests_per_s": 1.0, "goodput.slo": "ttft=1.8ms",
			"ttft_ms.count": 7.0, "ttft_ms.mean": 11.5 / 7, "ttft_ms.p50": 1.7, "ttft_ms.p90": 1.9, "ttft_ms.p99": 2.0,
			// lag (i+1)·100µs
			"schedule_lag_ms.mean": 0.4, "schedule_lag_ms.p50": 0.4, "schedule_lag_ms.max": 0.7,
			"itl_ms.count": 72.0, "output_tokens.mean": 79.0 / 7,
			"runs.0.name": "slow", "duration_s": 5.0,
		}},
		// A new SLO is recomputed from the results: TTFT ≤ 1.5 ms holds for C1 (1.0) and A1 (1.5).
		{[]string{"report", "--run", "slow", "--slo", "ttft=1500us"}, map[string]any{
			"goodput.met": 2.0, "goodput.slo": "ttft=1.5ms", "goodput.ratio": 2.0 / 7, "goodput.requests_per_s": 0.4,
			"ttft_ms.p50": 1.7, "requests.total": 7.0, "throughput.requests_per_s": 1.4,
		}},
		{[]string{"compare", "recording", "slow"}, map[string]any{
			"base.kind": "recording", "target.kind": "run", "matched": 7.0,
			"metrics.0.name": "requests.total",
			"metrics.2.name": "requests.errors", "metrics.2.base": 1.0, "metrics.2.target": 0.0,
			"metrics.13.name": "ttft_ms.p50", "metrics.13.base": 1.2, "metrics.13.target": 1.7,
			"metrics.13.rel": 0.5 / 1.2,
			"drift.pairs":    6.0, "drift.output_tokens.base_total": 72.0, "drift.output_tokens.target_total": 74.0,
			"drift.output_tokens.mean_delta": 2.0 / 6, "drift.output_tokens.changed_ratio": 1.0 / 6,
			"drift.input_tokens.base_total": 428.0, "drift.input_tokens.changed_ratio": 0.0,
			"regressions.turns.0.ttft_delta_ms": 0.5,
			// B: 1.55→2.05, 1.66→2.16, 1.86→2.48
			"regressions.conversations.0.conversation": 11.0, "regressions.conversations.0.e2e_delta_ms": 1.62,
			"by_turn.0.changes.1.name": "ttft_ms.p50", "by_turn.0.changes.1.base": 1.0, "by_turn.0.changes.1.target": 1.5,
		}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errs := execCmd(context.Background(), append([]string{"--store", store, "--format", "json"}, c.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			v := decodeAnalysisJSON(t, out)
			for path, want := range c.want {
				got := jsonPath(t, v, path)
				if w, ok := want.(float64); ok {
					g, ok := got.(float64)
					if !ok || !nearlyEqual(g, w) {
						t.Errorf("%s = %v, want %v", path, got, want)
					}
					continue
				}
				if got != want {
					t.Errorf("%s = %v, want %v", path, got, want)
				}
			}
		})
	}
}

func nearlyEqual(a, b float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= 1e-9*max(1, b, -b)
}

// TestReportShardsMergeExactly: the shards of run "slow" reported together give the same
// figures as the whole run.
func TestReportShardsMergeExactly(t *testing.T) {
	store := buildHandStore(t)
	_, whole, _ := execCmd(context.Background(), "--store", store, "report", "--run", "slow", "--format", "json")
	code, merged, errs := execCmd(context.Background(), "--store", store, "report", "--run", "shard0", "--run", "shard1", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	w, m := decodeAnalysisJSON(t, whole), decodeAnalysisJSON(t, merged)
	for _, k := range []string{"requests", "throughput", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms",
		"schedule_lag_ms", "input_tokens", "output_tokens", "goodput", "errors_by_class", "by_turn", "duration_s"} {
		a, _ := json.Marshal(jsonPath(t, w, k))
		b, _ := json.Marshal(jsonPath(t, m, k))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: whole %s, shards %s", k, a, b)
		}
	}
}

// TestReportUnfinishedRun: a run whose replayer died (no end, summary or histograms, only its
// results) is reported from its results, marked partial, and compares like the finished run
// with the same results.
func TestReportUnfinishedRun(t *testing.T) {
	store := buildHandStore(t)
	s, err := tape.Open(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := s.FindRun("slow")
	if err != nil {
		t.Fatal(err)
	}
	dead := &tape.Run{Name: "dead", Target: slow.Target, Recording: slow.Recording, Started: slow.Started}
	if err := s.CreateRun(dead); err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *tape.Tx) error {
		return s.Results(slow.ID, func(r *tape.Result) error {
			c := *r
			c.Run = dead.ID
			return tx.PutResult(&c)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, whole, _ := execCmd(context.Background(), "--store", store, "report", "--run", "slow", "--format", "json")
	code, got, errs := execCmd(context.Background(), "--store", store, "report", "--run", "dead", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	w, g := decodeAnalysisJSON(t, whole), decodeAnalysisJSON(t, got)
	for _, k := range []string{"requests", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "schedule_lag_ms", "by_turn"} {
		a, _ := json.Marshal(jsonPath(t, w, k))
		b, _ := json.Marshal(jsonPath(t, g, k))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: finished %s, unfinished %s", k, a, b)
		}
	}
	var runs struct {
		Runs []struct{ Partial bool } `json:"runs"`
	}
	if err := json.Unmarshal([]byte(got), &runs); err != nil || len(runs.Runs) != 1 || !runs.Runs[0].Partial {
		t.Errorf("unfinished run: runs %+v (%v), want one partial run", runs.Runs, err)
	}
	code, out, errs := execCmd(context.Background(), "--store", store, "compare", "slow", "dead", "--fail-on", "ttft_ms.p99>+0%,errors>0")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d matched requests", slow.Requests)) {
		t.Errorf("compare with the unfinished run: exit %d %s\n%s", code, errs, out)
	}
}

func TestCompareFailOn(t *testing.T) {
	store := buildHandStore(t)
	cases := []struct {
		cond string
		code int
		msg  string
	}{
		{"ttft_ms.p99>+10%", 1, "ttft_ms.p99 changed +33.3%"},
		{"errors>0", 0, ""},
		{"ttft_ms.p50>+0.6", 0, ""},
		{"ttft_ms.p50>=+0.5", 1, "ttft_ms.p50 changed by +0.5"},
		{"errors>0,e2e_ms.mean>+20%", 1, "e2e_ms.mean changed +23.0%"},
		{"requests.errors<0", 0, ""},
		{"ttft_ms.p99>", 2, "--fail-on"},
		{"nonsense.p99>1", 2, "unknown figure"},
	}
	for _, c := range cases {
		t.Run(c.cond, func(t *testing.T) {
			code, _, errs := execCmd(context.Background(), "--store", store, "compare", "recording", "slow", "--fail-on", c.cond)
			if code != c.code || !strings.Contains(errs, c.msg) {
				t.Errorf("exit %d, stderr %q; want %d containing %q", code, errs, c.code, c.msg)
			}
		})
	}
}

func TestAnalysisCommandErrors(t *testing.T) {
	store := buildHandStore(t)
	empty := filepath.Join(t.TempDir(), "empty.db")
	if s, err := tape.Open(empty, nil); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--store", store, "analyze", "--format", "xml"}, 2, "want table, json, csv or html"},
		{[]string{"--store", store, "analyze", "--block-size", "0"}, 2, "--block-size"},
		{[]string{"--store", store, "analyze", "--recording", "99"}, 1, "not found"},
		{[]string{"--store", empty, "analyze"}, 1, "no recording"},
		{[]string{"--store", empty, "report"}, 1, "no run in the store"},
		{[]string{"--store", empty, "compare", "recording", "latest"}, 1, "not found"},
		{[]string{"--store", store, "report", "--run", "nope"}, 1, "not found"},
		{[]string{"--store", store, "report", "--by", "turn"}, 2, "--by"},
		{[]string{"--store", store, "report", "--slo", "ttft=fast"}, 2, "--slo"},
		{[]string{"--store", store, "compare", "recording", "recording"}, 1, "at most one side"},
		{[]string{"--store", store, "compare", "slow"}, 2, "accepts 2 arg"},
		{[]string{"--store", filepath.Join(t.TempDir(), "missing.db"), "report"}, 1, "open store"},
		{[]string{"--store", store, "report", "-o", store}, 2, "is the store"},
		{[]string{"--store", store, "analyze", "--format", "html", "-o", store}, 2, "is the store"},
		{[]string{"--store", store, "compare", "recording", "slow", "-o", store}, 2, "is the store"},
	}
	for _, c := range cases {
		code, _, errs := execCmd(context.Background(), c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d containing %q", c.args, code, errs, c.code, c.msg)
		}
	}
	// The store survived the attempts to write over it.
	if code, _, errs := execCmd(context.Background(), "--store", store, "report", "--run", "slow"); code != 0 {
		t.Errorf("report after -o STORE: exit %d %s", code, errs)
	}
}

// TestAnalysisOutputFile: -o writes the file and nothing to stdout.
func TestAnalysisOutputFile(t *testing.T) {
	store := buildHandStore(t)
	out := filepath.Join(t.TempDir(), "profile.html")
	code, stdout, errs := execCmd(context.Background(), "--store", store, "analyze", "--format", "html", "-o", out)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, errs)
	}
	b, err := os.ReadFile(out)
	if err != nil || !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) || !bytes.Contains(b, []byte("<svg")) {
		t.Fatalf("%s: %v, %d bytes", out, err, len(b))
	}
}
