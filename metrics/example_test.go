package metrics_test

import (
	"fmt"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

func ExampleAccumulator() {
	var acc metrics.Accumulator
	for i := 0; i < 4; i++ {
		acc.Add(&tape.Result{Turn: i, Status: 200, TTFT: 50 * time.Millisecond,
			E2E: 150 * time.Millisecond, InputTokens: 100, OutputTokens: 11})
	}
	slo, _ := metrics.ParseSLO("ttft=100ms")
	s := acc.Summary(2*time.Second, slo)
	fmt.Printf("%d ok, ttft p50 %.0f ms, tpot p50 %.0f ms, goodput %.0f req/s\n",
		s.Requests.OK, s.TTFT.P50, s.TPOT.P50, s.Goodput.RequestsPerS)

	enc, _ := acc.Set().Encode() // stored as tape.Run.Histograms
	set, _ := metrics.Decode(enc)
	fmt.Println(set.Dist(metrics.E2E, "4-7").Count)
	// Output:
	// 4 ok, ttft p50 50 ms, tpot p50 10 ms, goodput 2 req/s
	// 1
}
