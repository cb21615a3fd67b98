package analyze

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/llmtape/llmtape/metrics"
)

// setOf records n TTFT samples of base ms with up to jitter (a share) of uniform noise, and a
// tail: every tailEvery-th sample is tail times slower (0: none).
func setOf(rng *rand.Rand, n int, base, jitter float64, tailEvery int, tail float64) *metrics.Set {
	s := metrics.NewSet()
	for i := range n {
		v := base * (1 + jitter*rng.Float64())
		if tailEvery > 0 && i%tailEvery == 0 {
			v *= tail
		}
		s.Record(metrics.TTFT, 0, time.Duration(v*float64(time.Millisecond)))
	}
	return s
}

// TestNoiseRule: the verdict's rule on latency percentiles, rates and ratios.
func TestNoiseRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 19))
	for _, c := range []struct {
		name       string
		base, targ *metrics.Set
		want       Call
	}{
		{"5 ms vs 60 ms", setOf(rng, 40, 5, 0.1, 0, 0), setOf(rng, 40, 60, 0.1, 0, 0), CallWorse},
		{"60 ms vs 5 ms", setOf(rng, 40, 60, 0.1, 0, 0), setOf(rng, 40, 5, 0.1, 0, 0), CallBetter},
		// Two runs of one server, the second 20% slower in its tail: 30 samples have no p99
		// interval, and the p50 has not moved.
		{"same server, tail jitter, 30 samples", setOf(rng, 30, 60, 0.05, 0, 0), setOf(rng, 30, 60, 0.05, 10, 1.2), CallSame},
		// A shift of 5% that the intervals resolve is below the minimum effect.
		{"5% shift", setOf(rng, 5000, 100, 0.01, 0, 0), setOf(rng, 5000, 105, 0.01, 0, 0), CallSame},
		// A tail regression with samples enough for a p99 is worse even with the p50 unchanged.
		{"p99 regression, 2000 samples", setOf(rng, 2000, 60, 0.05, 0, 0), setOf(rng, 2000, 60, 0.05, 20, 3), CallWorse},
		{"too few samples", setOf(rng, 2, 5, 0, 0, 0), setOf(rng, 2, 60, 0, 0, 0), CallNone},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, _ := latencyJudgement(metrics.TTFT, c.base, c.targ)
			if j.Call != c.want {
				t.Errorf("%s: %s on %s (%v -> %v, intervals %v %v), want %s", c.name, j.Call, j.Figure, j.Base, j.Target,
					j.BaseInterval, j.TargetInterval, c.want)
			}
		})
	}
	if quantileInterval(setOf(rng, 30, 60, 0.1, 0, 0).Hist(metrics.TTFT, ""), 0.99) != nil {
		t.Error("a p99 of 30 samples has an interval")
	}
	if quantileInterval(setOf(rng, 400, 60, 0.1, 0, 0).Hist(metrics.TTFT, ""), 0.99) == nil {
		t.Error("a p99 of 400 samples has no interval")
	}

	// Throughput: 40 requests a side cannot resolve 20%; 40,000 can.
	for _, c := range []struct {
		n    int
		want Call
	}{{40, CallSame}, {40000, CallWorse}} {
		j := Judgement{Figure: "throughput", Base: 100, Target: 80, HigherIsBetter: true,
			BaseInterval: rateInterval(100, c.n), TargetInterval: rateInterval(80, c.n)}
		judge(&j, false)
		if j.Call != c.want {
			t.Errorf("throughput 100 -> 80 over %d requests: %s, want %s", c.n, j.Call, c.want)
		}
	}
	// Errors: 0 of 40 -> 16 of 25 is worse; 0 -> 1 of 40 is within noise.
	for _, c := range []struct {
		bk, bn, tk, tn int
		want           Call
	}{{0, 40, 16, 25, CallWorse}, {0, 40, 1, 40, CallSame}, {16, 25, 0, 40, CallBetter}} {
		j := Judgement{Figure: "requests.error_rate", Base: float64(c.bk) / float64(c.bn), Target: float64(c.tk) / float64(c.tn),
			BaseInterval: wilson(c.bk, c.bn), TargetInterval: wilson(c.tk, c.tn)}
		judge(&j, true)
		if j.Call != c.want {
			t.Errorf("errors %d/%d -> %d/%d: %s, want %s", c.bk, c.bn, c.tk, c.tn, j.Call, c.want)
		}
	}
}
