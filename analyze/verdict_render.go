package analyze

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
)

// toneOf is the tone of a call.
func toneOf(c Call) output.Tone {
	switch c {
	case CallWorse, callMixed:
		return output.Worse
	case CallBetter:
		return output.Better
	case CallSame:
		return output.Same
	}
	return output.Plain
}

// verdictCSV is the verdict as a CSV section: numbers in full, the call in words.
func verdictCSV(v *Verdict) output.Section {
	s := output.Section{Title: "verdict", Cols: []string{"metric", "figure", "base", "target", "abs", "rel", "call"}}
	for _, j := range v.Items {
		s.Rows = append(s.Rows, []output.Cell{output.Text(j.Metric), output.Text(j.Figure), output.Num(j.Base), output.Num(j.Target),
			output.Num(j.Abs), output.Change(j.Rel), output.Text(string(j.Call))})
	}
	return s
}

// figureUnit is how a judged figure is written for people.
func figureText(j Judgement, v float64) string {
	switch j.Metric {
	case "throughput":
		return output.FormatNum(v) + " tok/s"
	case "goodput", "errors":
		return strconv.FormatFloat(100*v, 'f', 1, 64) + "%"
	}
	return output.FormatNum(v) + " ms"
}

// lead is the verdict line under the table's title, and the gate's outcome.
func (c *Comparison) lead() []string {
	if c.Verdict == nil {
		return nil
	}
	head, rest, _ := strings.Cut(c.Verdict.Line, " — ")
	out := []string{head}
	for _, part := range strings.Split(rest, "; ") {
		out = append(out, wrap("  "+part, "    ", 100)...)
	}
	if g := c.Verdict.Gate; g != nil {
		word := "PASSED"
		if !g.Passed {
			word = "FAILED"
		}
		out = append(out, fmt.Sprintf("fail-on %s: %s", word, strings.Join(g.Conditions, ", ")))
	}
	if c.VerifyOutput != nil {
		out = append(out, wrap(c.VerifyOutput.line(), "    ", 100)...)
	}
	return out
}

// head is the top of the compare page: the verdict line, a card per headline figure, the
// gate and the banner.
func (c *Comparison) head() string {
	if c.Verdict == nil {
		return ""
	}
	v := c.Verdict
	var cards []card
	for _, j := range v.Items {
		cards = append(cards, card{key: j.Figure,
			value: figureText(j, j.Base) + " → " + figureText(j, j.Target),
			delta: changeText(j) + " " + callWord(j.Call), tone: toneOf(j.Call)})
	}
	if o := c.VerifyOutput; o != nil {
		cards = append(cards, o.card())
	}
	return headHTML(v.Line, toneOf(v.Call), cards, v.Gate, v.Banner)
}

// verdictView is the verdict as a table people read: the change with ▲/▼ and the call in
// words.
func verdictView(v *Verdict) output.Section {
	s := output.Section{Title: "verdict", Cols: []string{"metric", "figure", "base", "target", "change", "call"}}
	for _, j := range v.Items {
		t := toneOf(j.Call)
		s.Rows = append(s.Rows, []output.Cell{output.Text(j.Metric), output.Text(j.Figure), output.Text(figureText(j, j.Base)),
			output.Text(figureText(j, j.Target)), output.Text(changeText(j)).WithTone(t), output.Text(callWord(j.Call)).WithTone(t)})
	}
	return s
}

// pctChange is the change of one percentile, judged by the noise rule where it can be.
func pctChange(metric, bucket string, q float64, bs, ts *metrics.Set, b, t float64, bn, tn int64) output.Cell {
	ch := statChange(metric, bn, tn, b, t)
	if ch.Missing != "" {
		return output.Text("n/a")
	}
	j := Judgement{Metric: metric, Figure: metric, Base: b, Target: t}
	if q > 0 && bs != nil && ts != nil {
		j.BaseInterval, j.TargetInterval = quantileInterval(bs.Hist(metric, bucket), q), quantileInterval(ts.Hist(metric, bucket), q)
	}
	judge(&j, false)
	tone := output.Plain
	if q > 0 {
		tone = toneOf(j.Call)
	}
	return output.Text(changeText(j)).WithTone(tone)
}

// distView is one metric's rows in a table shaped for reading: base, target and the change of
// count, mean, p50, p90, p99 and max.
func distView(metric string, b, t metrics.Dist, bs, ts *metrics.Set, ps []metrics.Percentile) [][]output.Cell {
	row := func(side string, d metrics.Dist) []output.Cell {
		if d.Count == 0 {
			r := []output.Cell{output.Text(""), output.Text(side), output.Int(0), output.Text(noSamples)}
			for range ps {
				r = append(r, output.Text(noSamples))
			}
			return append(r, output.Text(noSamples))
		}
		r := []output.Cell{output.Text(""), output.Text(side), output.Int(d.Count), output.Num(d.Mean)}
		for _, p := range ps {
			if v, ok := d.At(p.Q); ok {
				r = append(r, output.Num(v))
			} else {
				r = append(r, output.Text(noSamples))
			}
		}
		return append(r, output.Num(d.Max))
	}
	rb, rt := row("base", b), row("target", t)
	rb[0] = output.Text(metric)
	pc := func(q, bv, tv float64, bn, tn int64) output.Cell {
		return pctChange(metric, "", q, bs, ts, bv, tv, bn, tn)
	}
	chg := []output.Cell{output.Text(""), output.Text("change"), output.Int(t.Count - b.Count), pc(0, b.Mean, t.Mean, b.Count, t.Count)}
	for _, p := range ps {
		q := 0.0 // the verdict's intervals are of p50 and p99
		if p.Q == 50 || p.Q == 99 {
			q = p.Q / 100
		}
		bn, tn := b.Count, t.Count
		if _, ok := b.At(p.Q); !ok {
			bn = 0
		}
		if _, ok := t.At(p.Q); !ok {
			tn = 0
		}
		chg = append(chg, pc(q, b.Value(p.Q), t.Value(p.Q), bn, tn))
	}
	chg = append(chg, pc(0, b.Max, t.Max, b.Count, t.Count))
	return [][]output.Cell{rb, rt, chg}
}

// distViewCols are the columns of distView's rows.
func distViewCols(ps []metrics.Percentile) []string {
	cols := []string{"metric", "side", "count", "mean"}
	for _, p := range ps {
		cols = append(cols, p.Key)
	}
	return append(cols, "max")
}

// figureView is a row of one figure on both sides with its change (toned by the verdict's
// call when the verdict judged it).
func figureView(name string, b, t float64, v *Verdict) []output.Cell {
	j := Judgement{Metric: name, Figure: name, Base: b, Target: t}
	judge(&j, false)
	tone := output.Plain
	if v != nil {
		for _, x := range v.Items {
			if x.Figure == name {
				j, tone = x, toneOf(x.Call)
			}
		}
	}
	return []output.Cell{output.Text(name), output.Num(b), output.Num(t), output.Text(changeText(j)).WithTone(tone)}
}

// view is the comparison shaped for reading: the verdict, warnings and gate, then one group
// per kind of figure (latency, throughput, tokens, errors) with one row per metric and side,
// then per turn, the regressions and the token drift. Every figure stays in CSV and JSON.
func (c *Comparison) view() []output.Section {
	return append(c.verdictSections(), c.body()...)
}

// verdictSections are the verdict, the warnings and the gate as tables (the page shows them
// as its head instead).
func (c *Comparison) verdictSections() []output.Section {
	var secs []output.Section
	if c.Verdict != nil {
		secs = append(secs, verdictView(c.Verdict))
		ws := output.Section{Title: "warnings", Cols: []string{"warning"}}
		for _, w := range c.Verdict.Banner {
			ws.Rows = append(ws.Rows, []output.Cell{output.Text("⚠ " + w).WithTone(output.Warn)})
		}
		secs = append(secs, ws)
		if g := c.Verdict.Gate; g != nil {
			gs := output.Section{Title: "fail-on", Cols: []string{"condition", "outcome"}}
			for _, o := range g.outcomes() {
				tone := output.Better
				if o.fails {
					tone = output.Worse
				}
				gs.Rows = append(gs.Rows, []output.Cell{output.Text(o.cond), output.Text(o.text).WithTone(tone)})
			}
			secs = append(secs, gs)
		}
	}
	return secs
}

// body is what follows the verdict: the figures grouped, per turn, the regressions and the
// token drift.
func (c *Comparison) body() []output.Section {
	var secs []output.Section
	b, t := &c.BaseSummary, &c.TargetSummary
	viewPs := []float64{50, 90, 99}
	latPs := metrics.ShownPercentiles(c.Percentiles, viewPs, b.TTFT, t.TTFT, b.ITL, t.ITL, b.TPOT, t.TPOT, b.E2E, t.E2E)
	lat := output.Section{Title: "latency (ms)", Cols: distViewCols(latPs)}
	for _, m := range []struct {
		name string
		b, t metrics.Dist
	}{{metrics.TTFT, b.TTFT, t.TTFT}, {metrics.ITL, b.ITL, t.ITL}, {metrics.TPOT, b.TPOT, t.TPOT}, {metrics.E2E, b.E2E, t.E2E}} {
		lat.Rows = append(lat.Rows, distView(m.name, m.b, m.t, c.BaseSet, c.TargetSet, latPs)...)
	}
	figCols := []string{"figure", "base", "target", "change"}
	tp := output.Section{Title: "throughput", Cols: figCols, Rows: [][]output.Cell{
		figureView("throughput.requests_per_s", b.Throughput.RequestsPerS, t.Throughput.RequestsPerS, c.Verdict),
		figureView("throughput.input_tokens_per_s", b.Throughput.InputTokensPerS, t.Throughput.InputTokensPerS, c.Verdict),
		figureView("throughput.output_tokens_per_s", b.Throughput.OutputTokensPerS, t.Throughput.OutputTokensPerS, c.Verdict),
		figureView("goodput.ratio", b.Goodput.Ratio, t.Goodput.Ratio, c.Verdict),
		figureView("cached_tokens", float64(b.CachedTokens), float64(t.CachedTokens), nil),
	}}
	tokPs := metrics.ShownPercentiles(c.Percentiles, viewPs, b.InputTokens, t.InputTokens, b.OutputTokens, t.OutputTokens)
	tok := output.Section{Title: "tokens", Cols: distViewCols(tokPs)}
	tok.Rows = append(tok.Rows, distView("input_tokens", b.InputTokens, t.InputTokens, nil, nil, tokPs)...)
	tok.Rows = append(tok.Rows, distView("output_tokens", b.OutputTokens, t.OutputTokens, nil, nil, tokPs)...)
	errs := output.Section{Title: "errors", Cols: figCols, Rows: [][]output.Cell{
		figureView("requests.total", float64(b.Requests.Total), float64(t.Requests.Total), nil),
		figureView("requests.ok", float64(b.Requests.OK), float64(t.Requests.OK), nil),
		figureView("requests.errors", float64(b.Requests.Errors), float64(t.Requests.Errors), nil),
		figureView("requests.error_rate", errorRate(b), errorRate(t), c.Verdict),
	}}
	secs = append(secs, lat, tp, tok, errs, c.turnView())
	all := c.sections()
	for _, s := range all {
		switch s.Title {
		case "metrics", "warnings", "failed conditions", "verdict", "by turn index":
			continue
		}
		secs = append(secs, s)
	}
	return secs
}

// wrap breaks s after commas into lines of at most width runes where it can, continuing
// with indent.
func wrap(s, indent string, width int) []string {
	var out []string
	line := ""
	for i, w := range strings.SplitAfter(s, ", ") {
		if i > 0 && len([]rune(line))+len([]rune(w)) > width {
			out = append(out, strings.TrimRight(line, " "))
			line = indent
		}
		line += w
	}
	return append(out, line)
}

// gateOutcome is one line of the gate: a condition (or "(any)" for a reason that fails the
// gate whatever the conditions) and what became of it.
type gateOutcome struct {
	cond, text string
	fails      bool
}

// outcomes are the gate's conditions with their outcome, then the reasons that fail it
// whatever the conditions (a side without successful requests).
func (g *Gate) outcomes() []gateOutcome {
	var out []gateOutcome
	for _, cond := range g.Conditions {
		o := gateOutcome{cond: cond, text: "passes"}
		for _, f := range g.Failed {
			if strings.HasSuffix(f, "["+cond+"]") {
				o = gateOutcome{cond: cond, text: "FAILS: " + strings.TrimSuffix(f, " ["+cond+"]"), fails: true}
			}
		}
		out = append(out, o)
	}
	for _, f := range g.Failed {
		if !strings.HasSuffix(f, "]") {
			out = append(out, gateOutcome{cond: "(any)", text: "FAILS: " + f, fails: true})
		}
	}
	return out
}
