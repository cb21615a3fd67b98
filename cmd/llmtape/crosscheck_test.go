package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

// TestFiguresAgreeAcrossCommands records real multi-turn conversations through llmtape record
// and checks that show, analyze, export and compare give the same figures for the same turns:
// the ones tape.Timing defines (TTFT, E2E, think time). Each command once had its own copy of
// these, and show printed a TTFT less the send offset.
func TestFiguresAgreeAcrossCommands(t *testing.T) {
	up := recStartSim(t, 15*time.Millisecond, 2*time.Millisecond)
	const convs, turns = 3, 3
	store := recConversations(t, up, "cross.db", convs, turns)

	// What the store holds, through the one definition of each figure.
	type figures struct{ ttft, e2e, think []float64 } // ms
	var want figures
	wantTurn := map[string][3]float64{} // "conv/turn" → ttft, e2e, think (-1: none)
	st, err := tape.Open(store, &tape.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tape.FindRecording(st, "latest")
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	err = st.Conversations(rec.ID, func(c *tape.Conversation) error {
		ids = append(ids, c.ID)
		var prev *tape.Timing
		return st.Turns(c.ID, func(tu *tape.Turn) error {
			f := [3]float64{-1, -1, -1}
			if d, ok := tu.Timing.TTFT(); ok {
				f[0] = msOf(d)
				want.ttft = append(want.ttft, f[0])
			}
			if d, ok := tu.Timing.E2E(); ok {
				f[1] = msOf(d)
				want.e2e = append(want.e2e, f[1])
			}
			if d, ok := tu.Timing.ThinkTime(prev); ok {
				f[2] = msOf(d)
				want.think = append(want.think, f[2])
			}
			wantTurn[fmt.Sprintf("%d/%d", c.ID, tu.Index)] = f
			tm := tu.Timing
			prev = &tm
			return nil
		})
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != convs || len(want.ttft) != convs*turns || len(want.e2e) != convs*turns || len(want.think) != convs*(turns-1) {
		t.Fatalf("store: %d conversations, %d TTFTs, %d E2Es, %d think times; want %d, %d, %d, %d",
			len(ids), len(want.ttft), len(want.e2e), len(want.think), convs, convs*turns, convs*turns, convs*(turns-1))
	}

	// show: every turn's figures, to the microsecond it prints.
	var shown figures
	for _, id := range ids {
		var sh struct {
			Turns []struct {
				Index   int      `json:"index"`
				TTFTMs  *float64 `json:"ttft_ms"`
				E2EMs   *float64 `json:"e2e_ms"`
				ThinkMs *float64 `json:"think_ms"`
			} `json:"turns"`
		}
		crossRunJSON(t, &sh, "--store", store, "show", strconv.FormatUint(id, 10), "--format", "json")
		for _, tu := range sh.Turns {
			w := wantTurn[fmt.Sprintf("%d/%d", id, tu.Index)]
			for i, got := range []*float64{tu.TTFTMs, tu.E2EMs, tu.ThinkMs} {
				name := [...]string{"ttft_ms", "e2e_ms", "think_ms"}[i]
				switch {
				case got == nil && w[i] >= 0, got != nil && w[i] < 0:
					t.Errorf("show conversation %d turn %d: %s present=%v, the store's present=%v", id, tu.Index, name, got != nil, w[i] >= 0)
				case got != nil && math.Abs(*got-w[i]) > 0.001:
					t.Errorf("show conversation %d turn %d: %s %.3f, the store's %.3f", id, tu.Index, name, *got, w[i])
				}
			}
			if tu.ThinkMs != nil {
				shown.think = append(shown.think, *tu.ThinkMs)
			}
		}
	}

	// analyze: the latency distributions (HDR histograms, 3 significant digits) and the think
	// times (exact).
	var an struct {
		TTFT  metrics.Dist `json:"ttft_ms"`
		E2E   metrics.Dist `json:"e2e_ms"`
		Think metrics.Dist `json:"think_time_ms"`
	}
	crossRunJSON(t, &an, "--store", store, "analyze", "--format", "json")
	crossDist(t, "analyze ttft_ms", an.TTFT, want.ttft, 1e-3)
	crossDist(t, "analyze e2e_ms", an.E2E, want.e2e, 1e-3)
	crossDist(t, "analyze think_time_ms", an.Think, want.think, 1e-9)

	// export: mooncake's "delay" is the think time of each later turn, exactly.
	code, out, errs := execCmd(context.Background(), "--store", store, "export", "--format", "mooncake")
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	var delays []float64
	for line := range strings.Lines(out) {
		var row struct {
			Delay *float64 `json:"delay"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if row.Delay != nil {
			delays = append(delays, *row.Delay)
		}
	}
	crossSame(t, "export delay vs the store's think time", delays, want.think, 1e-9)
	crossSame(t, "show think_ms vs the store's think time", shown.think, want.think, 0.001)

	// compare: its "recording" side is the recorded turns, figure for figure as analyze.
	if code, _, errs := execCmd(context.Background(), "replay", "--store", store, "--target", up,
		"--think", "none", "--speed", "100"); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errs)
	}
	var cmp struct {
		Metrics []struct {
			Name string  `json:"name"`
			Base float64 `json:"base"`
		} `json:"metrics"`
	}
	crossRunJSON(t, &cmp, "--store", store, "compare", "recording", "latest", "--format", "json")
	base := map[string]float64{}
	for _, m := range cmp.Metrics {
		base[m.Name] = m.Base
	}
	for metric, d := range map[string]metrics.Dist{"ttft_ms": an.TTFT, "e2e_ms": an.E2E} {
		for stat, v := range map[string]float64{"count": float64(d.Count), "min": d.Min, "mean": d.Mean, "p50": d.P50, "p99": d.P99, "max": d.Max} {
			if got, ok := base[metric+"."+stat]; !ok || got != v {
				t.Errorf("compare recording %s.%s = %v (present %v), analyze %v", metric, stat, got, ok, v)
			}
		}
	}
}

// recConversations records convs conversations of turns streamed turns each through llmtape
// record in front of up, each turn carrying the previous replies as a client would, and returns
// the store's path once record has stopped.
func recConversations(t *testing.T, up, name string, convs, turns int) string {
	t.Helper()
	store := filepath.Join(t.TempDir(), name)
	rp := recRun(t, "--upstream", up, "--listen", "127.0.0.1:0", "--store", store)
	client := &http.Client{}
	for c := range convs {
		var msgs []map[string]string
		for i := range turns {
			msgs = append(msgs, map[string]string{"role": "user", "content": fmt.Sprintf("conversation %d, question %d", c, i)})
			reply, err := recConverse(client, "http://"+rp.addr, msgs)
			if err != nil {
				t.Fatalf("conversation %d turn %d: %v", c, i, err)
			}
			msgs = append(msgs, map[string]string{"role": "assistant", "content": reply})
		}
	}
	client.CloseIdleConnections()
	rp.stop(t)
	return store
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// crossRunJSON runs the command tree and decodes its standard output into v.
func crossRunJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	code, out, errs := execCmd(context.Background(), args...)
	if code != 0 {
		t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: %v in %s", strings.Join(args, " "), err, out)
	}
}

// crossDist checks that d describes the samples: the same count, and min, max and mean within
// a relative tolerance.
func crossDist(t *testing.T, what string, d metrics.Dist, samples []float64, rel float64) {
	t.Helper()
	if d.Count != int64(len(samples)) {
		t.Errorf("%s: %d samples, want %d", what, d.Count, len(samples))
		return
	}
	var sum float64
	for _, v := range samples {
		sum += v
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= rel*math.Abs(b)+0.001 }
	if !close(d.Min, slices.Min(samples)) || !close(d.Max, slices.Max(samples)) || !close(d.Mean, sum/float64(len(samples))) {
		t.Errorf("%s: min %.4f max %.4f mean %.4f; want %.4f, %.4f, %.4f", what, d.Min, d.Max, d.Mean,
			slices.Min(samples), slices.Max(samples), sum/float64(len(samples)))
	}
}

// crossSame checks that got and want hold the same values, in any order, within tol.
func crossSame(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	g, w := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if len(g) != len(w) {
		t.Errorf("%s: %d values, want %d", what, len(g), len(w))
		return
	}
	for i := range g {
		if math.Abs(g[i]-w[i]) > tol {
			t.Errorf("%s: %v, want %v", what, g, w)
			return
		}
	}
}
