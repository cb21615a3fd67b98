package analyze_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

// twoRunStore holds the hand-built recording of TestPrefixReuseHandCount and two runs of it:
// run 1 as recorded, run 2 with every TTFT 5 ms longer.
func twoRunStore() *memStore {
	m := twoConversations()
	for id, extra := range map[uint64]int{1: 0, 2: 5} {
		run := &tape.Run{ID: id, Name: fmt.Sprintf("run%d", id), Recording: 1, Started: t0}
		var acc metrics.Accumulator
		seq := uint64(0)
		for _, c := range m.convs {
			for _, tr := range m.turns[c.ID] {
				seq++
				ttft := (20 + extra) * 1000000
				r := &tape.Result{Run: id, Seq: seq, Conversation: tr.Conversation, Turn: tr.Index,
					TTFT: time.Duration(ttft), Chunks: chunksOf(time.Duration(ttft), 2*time.Millisecond, tr.Tokens.Completion),
					InputTokens: 100, OutputTokens: tr.Tokens.Completion, Status: 200}
				r.E2E = r.Chunks[len(r.Chunks)-1].Offset
				acc.Add(r)
				m.results[id] = append(m.results[id], r)
			}
		}
		sum := acc.Summary(6e9, metrics.SLO{})
		run.Summary = mustJSON(sum)
		run.Histograms, _ = acc.Set().Encode()
		m.runs = append(m.runs, run)
	}
	return m
}

func ExampleAnalyze() {
	src := twoConversations() // a store: *tape.Store in real use
	p, err := analyze.Analyze(context.Background(), src, 1, analyze.Config{BlockSizes: []int{16}})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := p.PrefixReuse[0]
	fmt.Printf("%d conversations, %d turns; block %d: %d of %d prompt tokens reusable (%.3f)\n",
		p.Conversations, p.Turns, r.BlockSize, r.HitTokens, r.PromptTokens, r.HitRatio)
	// Output: 2 conversations, 6 turns; block 16: 240 of 428 prompt tokens reusable (0.561)
}

func ExampleCompare() {
	src := twoRunStore()
	conds, _ := analyze.ParseConditions("ttft_ms.p50>+10%,errors>0")
	c, err := analyze.Compare(context.Background(), src, "run1", "run2", analyze.CompareConfig{FailOn: conds})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ch := range c.Metrics {
		if ch.Name == "ttft_ms.p50" {
			fmt.Printf("%s: %.0f -> %.0f ms (%+.0f%%)\n", ch.Name, ch.Base, ch.Target, 100**ch.Rel)
		}
	}
	fmt.Println(c.Failed)
	// Output:
	// ttft_ms.p50: 20 -> 25 ms (+25%)
	// [ttft_ms.p50 changed +24.9% (20.02 → 25.01) [ttft_ms.p50>+10%]]
}

func ExampleBuildReport() {
	src := twoRunStore()
	rep, err := analyze.BuildReport(context.Background(), src, src.runs[1:], analyze.ReportConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = rep.Write(os.Stdout, analyze.FormatCSV)
}
