package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
)

// TestTPOTFirstChunk replays through the command tree against the sim with 4 and 1 tokens per
// event: the run's tpot_first_chunk_ms is vLLM's (E2E − TTFT) / (output tokens − the first
// event's tokens), computed here by hand from the stored results, and tpot_ms is ours,
// (E2E − TTFT) / (output tokens − 1). With 4 tokens per event the first is larger (fewer
// tokens share the same time; equal only where the events arrived in one read, E2E = TTFT);
// with 1 token per event the two are the same figure.
func TestTPOTFirstChunk(t *testing.T) {
	for _, tc := range []struct {
		name      string
		perChunk  int
		wantEqual bool
	}{{"4 tokens per event", 4, false}, {"1 token per event", 1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := replayStore(t, 4, 2) // every turn: 20 completion tokens
			url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 200 * time.Microsecond,
				TokensPerChunk: tc.perChunk})
			code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", url,
				"--think", "none", "--arrival", "all", "--name", "tpot")
			if code != 0 {
				t.Fatalf("replay: exit %d: %s", code, errOut)
			}
			code, out, errOut := execCmd(context.Background(), "--store", path, "report", "--run", "tpot", "--format", "json")
			if code != 0 {
				t.Fatalf("report: exit %d: %s", code, errOut)
			}
			var rep metrics.Summary
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}

			// The definitions, by hand, over the stored results.
			ours, vllm := metrics.NewSet(), metrics.NewSet()
			s, err := tape.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			run, err := s.FindRun("tpot")
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			err = s.Results(run.ID, func(r *tape.Result) error {
				first := int(r.Chunks[0].Tokens)
				if r.OutputTokens != 20 || len(r.Chunks) != 20/tc.perChunk || (tc.perChunk == 1) != (first == 1) {
					t.Errorf("result %d/%d: %d tokens in %d events (first %d), want 20 in events of %d",
						r.Conversation, r.Turn, r.OutputTokens, len(r.Chunks), first, tc.perChunk)
				}
				decode := r.E2E - r.TTFT
				ours.Record(metrics.TPOT, r.Turn, decode/19)
				vllm.Record(metrics.TPOTFirstChunk, r.Turn, decode/time.Duration(20-first))
				n++
				return nil
			})
			s.Close()
			if err != nil {
				t.Fatal(err)
			}
			if n != 8 || rep.TPOT.Count != 8 || rep.TPOTFirstChunk.Count != 8 {
				t.Fatalf("%d results, tpot_ms count %d, tpot_first_chunk_ms count %d: want 8", n, rep.TPOT.Count, rep.TPOTFirstChunk.Count)
			}
			if want := ours.Dist(metrics.TPOT, ""); rep.TPOT != want {
				t.Errorf("tpot_ms = %+v, want %+v", rep.TPOT, want)
			}
			if want := vllm.Dist(metrics.TPOTFirstChunk, ""); rep.TPOTFirstChunk != want {
				t.Errorf("tpot_first_chunk_ms = %+v, want %+v", rep.TPOTFirstChunk, want)
			}
			if eq := rep.TPOT == rep.TPOTFirstChunk; eq != tc.wantEqual {
				t.Errorf("tpot_ms == tpot_first_chunk_ms is %v, want %v:\n%+v\n%+v", eq, tc.wantEqual, rep.TPOT, rep.TPOTFirstChunk)
			}
			if !tc.wantEqual && (rep.TPOTFirstChunk.Mean <= rep.TPOT.Mean || rep.TPOTFirstChunk.Max <= rep.TPOT.Max) {
				t.Errorf("tpot_first_chunk_ms (mean %v, max %v) not above tpot_ms (mean %v, max %v)",
					rep.TPOTFirstChunk.Mean, rep.TPOTFirstChunk.Max, rep.TPOT.Mean, rep.TPOT.Max)
			}

			// The table shows both.
			_, table, _ := execCmd(context.Background(), "--store", path, "report", "--run", "tpot")
			for _, want := range []string{"tpot_ms", "tpot_first_chunk_ms"} {
				if !strings.Contains(table, want) {
					t.Errorf("report table lacks %s:\n%s", want, table)
				}
			}
		})
	}
}
