package analyze

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

// The noise rule (docs/analyze.md, "The verdict"). Each side of a figure gets a 95 %
// interval from what the store holds; a change is called only when the two intervals do not
// overlap and the change is at least the minimum effect. Non-overlapping 95 % intervals are
// a conservative test (about 99.5 % for two independent sides), which is what keeps the
// jitter of a busy machine from being called a regression.
const (
	// noiseZ is the normal quantile of the 95 % intervals.
	noiseZ = 1.96
	// MinEffect is the smallest relative change of a latency percentile or a throughput that
	// the verdict calls better or worse (10 %).
	MinEffect = 0.10
	// MinRateEffect is the smallest change of a ratio (error rate, goodput ratio) that the
	// verdict calls better or worse: one percentage point.
	MinRateEffect = 0.01
	// ErrorBanner is the error rate above which a run gets a warning banner (1 %).
	ErrorBanner = 0.01
)

// Call is the verdict on one figure.
type Call string

// The calls.
const (
	CallBetter Call = "better"
	CallWorse  Call = "worse"
	CallSame   Call = "same"  // within noise
	CallNone   Call = "n/a"   // no samples, or too few for an interval
	callMixed  Call = "mixed" // overall only: better and worse figures (reads as worse)
)

// Judgement is the verdict on one headline figure of a comparison.
type Judgement struct {
	Metric string   `json:"metric"` // ttft_ms, itl_ms, tpot_ms, e2e_ms, throughput, goodput, errors
	Figure string   `json:"figure"` // the figure judged: ttft_ms.p50, throughput.output_tokens_per_s, goodput.ratio, requests.error_rate
	Base   float64  `json:"base"`
	Target float64  `json:"target"`
	Abs    float64  `json:"abs"`
	Rel    *float64 `json:"rel"`
	// BaseInterval and TargetInterval are the 95 % intervals of each side (nil when there
	// are too few samples for one).
	BaseInterval   *[2]float64 `json:"base_interval"`
	TargetInterval *[2]float64 `json:"target_interval"`
	Call           Call        `json:"call"`
	// HigherIsBetter is true for throughput and goodput.
	HigherIsBetter bool `json:"higher_is_better"`
}

// Gate is the outcome of --fail-on.
type Gate struct {
	Conditions []string `json:"conditions"`
	Passed     bool     `json:"passed"`
	Failed     []string `json:"failed"`
}

// Verdict is what a comparison's page and table open with.
type Verdict struct {
	Call   Call        `json:"call"` // better, worse, same, or mixed (some better, some worse)
	Line   string      `json:"line"` // the one line the page opens with
	Items  []Judgement `json:"items"`
	Gate   *Gate       `json:"gate,omitempty"`
	Banner []string    `json:"banner"` // warnings: errors above 1 %, no successful requests, partial runs, different models, too few samples
}

// quantileInterval is the distribution-free 95 % interval of the q-quantile of h, from the
// order statistics: the values at quantiles q ± z·√(q(1−q)/n). It is nil when that range
// runs past the smallest or largest sample (too few samples for the percentile: p99 needs
// about 380, p50 4).
func quantileInterval(h *hdrhistogram.Histogram, q float64) *[2]float64 {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	n := float64(h.TotalCount())
	d := noiseZ * math.Sqrt(q*(1-q)/n)
	if q-d < 0 || q+d > 1 {
		return nil
	}
	lo := float64(h.ValueAtQuantile(100*(q-d))) / 1000
	hi := float64(h.ValueAtQuantile(100*(q+d))) / 1000
	return &[2]float64{lo, hi}
}

// rateInterval is the 95 % interval of a rate over a window measured from n events (a
// Poisson count: relative spread 1/√n).
func rateInterval(rate float64, n int) *[2]float64 {
	if n == 0 {
		return nil
	}
	f := math.Exp(noiseZ / math.Sqrt(float64(n)))
	return &[2]float64{rate / f, rate * f}
}

// wilson is the Wilson 95 % interval of a proportion of k in n.
func wilson(k, n int) *[2]float64 {
	if n == 0 {
		return nil
	}
	p, nn, z := float64(k)/float64(n), float64(n), noiseZ
	den := 1 + z*z/nn
	mid := (p + z*z/(2*nn)) / den
	half := z * math.Sqrt(p*(1-p)/nn+z*z/(4*nn*nn)) / den
	return &[2]float64{max(0, mid-half), min(1, mid+half)}
}

// judge calls a change from the two intervals: worse or better only when they do not overlap
// and the change is at least the minimum effect (relative, or absolute for ratios).
func judge(j *Judgement, absolute bool) {
	*j = Judgement{Metric: j.Metric, Figure: j.Figure, Base: j.Base, Target: j.Target, BaseInterval: j.BaseInterval,
		TargetInterval: j.TargetInterval, HigherIsBetter: j.HigherIsBetter}
	c := change(j.Figure, j.Base, j.Target)
	j.Abs, j.Rel = c.Abs, c.Rel
	b, t := j.BaseInterval, j.TargetInterval
	if b == nil || t == nil {
		j.Call = CallNone
		return
	}
	big := j.Rel != nil && math.Abs(*j.Rel) >= MinEffect
	if absolute {
		big = math.Abs(j.Abs) >= MinRateEffect
	}
	up, down := t[0] > b[1], t[1] < b[0]
	switch {
	case !big || !up && !down:
		j.Call = CallSame
	case up == j.HigherIsBetter:
		j.Call = CallBetter
	default:
		j.Call = CallWorse
	}
}

// latencyJudgement judges a latency metric on p50 and, where there are samples enough, p99:
// worse when either percentile is worse, better when one is better and none worse. The
// figure shown is the one that decided (p50 when both agree or neither moved).
func latencyJudgement(metric string, bs, ts *metrics.Set) (Judgement, []string) {
	var hb, ht *hdrhistogram.Histogram
	if bs != nil {
		hb = bs.Hist(metric, "")
	}
	if ts != nil {
		ht = ts.Hist(metric, "")
	}
	at := func(h *hdrhistogram.Histogram, q float64) float64 {
		if h == nil {
			return 0
		}
		return float64(h.ValueAtQuantile(100*q)) / 1000
	}
	var thin []string
	one := func(name string, q float64) Judgement {
		j := Judgement{Metric: metric, Figure: metric + "." + name, Base: at(hb, q), Target: at(ht, q),
			BaseInterval: quantileInterval(hb, q), TargetInterval: quantileInterval(ht, q)}
		judge(&j, false)
		return j
	}
	p50, p99 := one("p50", 0.5), one("p99", 0.99)
	if p99.Call == CallNone && hb != nil && ht != nil && hb.TotalCount() > 0 && ht.TotalCount() > 0 {
		thin = append(thin, metric)
	}
	if p50.Call != CallWorse && (p99.Call == CallWorse || p99.Call == CallBetter && p50.Call != CallBetter) {
		return p99, thin
	}
	return p50, thin
}

// buildVerdict judges the comparison's headline figures and gathers its warnings.
func (c *Comparison) buildVerdict(runs, other []*tape.Run, failOn []Condition) {
	v := &Verdict{Banner: []string{}}
	var thin []string
	for _, m := range []string{metrics.TTFT, metrics.ITL, metrics.TPOT, metrics.E2E} {
		j, t := latencyJudgement(m, c.BaseSet, c.TargetSet)
		v.Items = append(v.Items, j)
		thin = append(thin, t...)
	}
	b, t := &c.BaseSummary, &c.TargetSummary
	tp := Judgement{Metric: "throughput", Figure: "throughput.output_tokens_per_s", Base: b.Throughput.OutputTokensPerS,
		Target: t.Throughput.OutputTokensPerS, HigherIsBetter: true,
		BaseInterval: rateInterval(b.Throughput.OutputTokensPerS, b.Requests.OK), TargetInterval: rateInterval(t.Throughput.OutputTokensPerS, t.Requests.OK)}
	judge(&tp, false)
	gp := Judgement{Metric: "goodput", Figure: "goodput.ratio", Base: b.Goodput.Ratio, Target: t.Goodput.Ratio, HigherIsBetter: true,
		BaseInterval: wilson(b.Goodput.Met, b.Requests.Total), TargetInterval: wilson(t.Goodput.Met, t.Requests.Total)}
	judge(&gp, true)
	er := Judgement{Metric: "errors", Figure: "requests.error_rate", Base: errorRate(b), Target: errorRate(t),
		BaseInterval: wilson(b.Requests.Errors, b.Requests.Total), TargetInterval: wilson(t.Requests.Errors, t.Requests.Total)}
	judge(&er, true)
	v.Items = append(v.Items, tp, gp, er)

	for _, s := range []struct {
		role string
		side Side
		sum  *metrics.Summary
	}{{"base", c.Base, b}, {"target", c.Target, t}} {
		if s.sum.Requests.OK > 0 { // else Warnings says it, in its words
			v.Banner = append(v.Banner, runBanner(s.role+" "+s.side.String(), s.sum)...)
		}
	}
	for _, r := range append(append([]*tape.Run{}, runs...), other...) {
		if r.Partial || r.Ended.IsZero() {
			v.Banner = append(v.Banner, fmt.Sprintf("run %d (%s) is partial: stopped early or never ended", r.ID, r.Name))
		}
	}
	if len(runs) > 0 && len(other) > 0 {
		if mb, mt := runModel(runs[0]), runModel(other[0]); mb != mt {
			v.Banner = append(v.Banner, fmt.Sprintf("the runs were made against different models: %s and %s", modelName(mb), modelName(mt)))
		}
	}
	if len(thin) > 0 {
		v.Banner = append(v.Banner, fmt.Sprintf("too few samples for p99 (needs about 380 a side): %s judged on p50", strings.Join(thin, ", ")))
	}
	v.Banner = append(v.Banner, c.Warnings...)
	if len(failOn) > 0 {
		g := &Gate{Passed: len(c.Failed) == 0, Failed: c.Failed}
		for _, f := range failOn {
			g.Conditions = append(g.Conditions, f.text)
		}
		v.Gate = g
	}
	v.Call, v.Line = verdictLine(v.Items)
	c.Verdict = v
}

// runBanner is the warnings about one run's own figures: no successful requests, errors
// above ErrorBanner.
func runBanner(name string, s *metrics.Summary) []string {
	switch {
	case s.Requests.Total == 0:
		return []string{name + " has no requests"}
	case s.Requests.OK == 0:
		return []string{fmt.Sprintf("%s has no successful requests: %d of %d failed (%s)", name, s.Requests.Errors, s.Requests.Total, s.ErrorsText())}
	case errorRate(s) > ErrorBanner:
		return []string{fmt.Sprintf("%s: %.0f%% of requests failed (%d of %d: %s)", name, 100*errorRate(s), s.Requests.Errors, s.Requests.Total, s.ErrorsText())}
	}
	return nil
}

func errorRate(s *metrics.Summary) float64 {
	if s.Requests.Total == 0 {
		return 0
	}
	return float64(s.Requests.Errors) / float64(s.Requests.Total)
}

// runModel is the model a run replaced every request's with ("" = the recorded ones).
func runModel(r *tape.Run) string {
	var o struct {
		Model string `json:"model"`
	}
	if len(r.Options) > 0 {
		_ = json.Unmarshal(r.Options, &o) // options that do not decode name no model
	}
	return o.Model
}

func modelName(m string) string {
	if m == "" {
		return "the recorded models"
	}
	return m
}

// arrow marks the direction of a change: ▲ up, ▼ down, = none.
func arrow(abs float64) string {
	switch {
	case abs > 0:
		return "▲"
	case abs < 0:
		return "▼"
	}
	return "="
}

// callWord is a call in words, for people.
func callWord(c Call) string {
	switch c {
	case CallBetter:
		return "better"
	case CallWorse:
		return "worse (regression)"
	case CallSame:
		return "same within noise"
	case callMixed:
		return "mixed"
	}
	return "not judged (too few samples)"
}

// changeText is a judgement's change for people: "+1073.2% ▲", or "-" without a ratio.
func changeText(j Judgement) string {
	if j.Rel == nil {
		if j.Abs == 0 {
			return "0 ="
		}
		return fmt.Sprintf("%+.3g %s", j.Abs, arrow(j.Abs))
	}
	if j.Metric == "errors" || j.Metric == "goodput" {
		return fmt.Sprintf("%+.1f pt %s", 100*j.Abs, arrow(j.Abs))
	}
	return fmt.Sprintf("%+.1f%% %s", 100**j.Rel, arrow(j.Abs))
}

// verdictLine is the overall call and the line that opens the comparison.
func verdictLine(items []Judgement) (Call, string) {
	var worse, better, same, none []string
	for _, j := range items {
		d := j.Figure + " " + changeText(j)
		switch j.Call {
		case CallWorse:
			worse = append(worse, d)
		case CallBetter:
			better = append(better, d)
		case CallSame:
			same = append(same, j.Metric)
		default:
			none = append(none, j.Metric)
		}
	}
	var parts []string
	call := CallSame
	switch {
	case len(worse) > 0 && len(better) > 0:
		call = callMixed
	case len(worse) > 0:
		call = CallWorse
	case len(better) > 0:
		call = CallBetter
	}
	if len(worse) > 0 {
		parts = append(parts, "worse: "+strings.Join(worse, ", "))
	}
	if len(better) > 0 {
		parts = append(parts, "better: "+strings.Join(better, ", "))
	}
	if len(same) > 0 {
		parts = append(parts, "within noise: "+strings.Join(same, ", "))
	}
	if len(none) > 0 {
		parts = append(parts, "not judged: "+strings.Join(none, ", "))
	}
	head := map[Call]string{CallWorse: "WORSE", CallBetter: "BETTER", CallSame: "SAME within noise", callMixed: "MIXED"}[call]
	return call, "verdict: " + head + " — " + strings.Join(parts, "; ")
}
