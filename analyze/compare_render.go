package analyze

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
)

// Write renders the comparison in format f.
func (c *Comparison) Write(w io.Writer, f Format) error {
	return rendering{what: "write comparison", value: c, title: c.title, secs: c.sections, view: c.view, page: c.body,
		lead: c.lead, head: c.head, charts: c.charts}.write(w, f)
}

// String names the side: "run 3 (nightly)", "recording 1 (prod)" or, for several runs,
// "runs 3+4+5 (shard-0+shard-1+shard-2)".
func (s Side) String() string {
	out := s.Kind + " " + strconv.FormatUint(s.ID, 10)
	if len(s.Runs) > 1 {
		ids := make([]string, len(s.Runs))
		for i, id := range s.Runs {
			ids[i] = strconv.FormatUint(id, 10)
		}
		out = "runs " + strings.Join(ids, "+")
	}
	if s.Name != "" {
		out += " (" + s.Name + ")"
	}
	return out
}

func (c *Comparison) title() string {
	return fmt.Sprintf("llmtape compare: base %s -> target %s, %d matched requests", c.Base, c.Target, c.Matched)
}

// noSamples stands in the table for the figure of a side whose distribution has no samples.
const noSamples = "n/a"

func changeRow(ch Change) []output.Cell {
	if ch.Missing == "" {
		return []output.Cell{output.Text(ch.Name), output.Num(ch.Base), output.Num(ch.Target), output.Num(ch.Abs), output.Change(ch.Rel)}
	}
	b, t := output.Num(ch.Base), output.Num(ch.Target)
	if ch.Missing != "target" {
		b = output.Text(noSamples)
	}
	if ch.Missing != "base" {
		t = output.Text(noSamples)
	}
	return []output.Cell{output.Text(ch.Name), b, t, output.Text("-"), output.Text("-")}
}

func (c *Comparison) sections() []output.Section {
	changeCols := []string{"figure", "base", "target", "abs", "rel"}
	m := output.Section{Title: "metrics", Cols: changeCols}
	for _, ch := range c.Metrics {
		if c.hidesPercentile(ch.Name) {
			continue
		}
		m.Rows = append(m.Rows, changeRow(ch))
	}
	bt := output.Section{Title: "by turn index", KeyCols: 2, Cols: []string{"turn", "figure", "base", "target", "abs", "rel"}}
	for _, t := range c.ByTurn {
		for _, ch := range t.Changes {
			bt.Rows = append(bt.Rows, append([]output.Cell{output.Text(t.Bucket)}, changeRow(ch)...))
		}
	}
	rt := output.Section{Title: "biggest regressions: turns (by ttft)", Cols: []string{"conversation", "turn",
		"base_ttft", "target_ttft", "ttft_delta", "base_e2e", "target_e2e", "e2e_delta"}}
	for _, r := range c.Regressions.Turns {
		rt.Rows = append(rt.Rows, []output.Cell{output.Text(strconv.FormatUint(r.Conversation, 10)), output.Int(r.Turn + 1),
			output.Num(r.BaseTTFT), output.Num(r.TargetTTFT), output.Num(r.TTFTDelta), output.Num(r.BaseE2E), output.Num(r.TargetE2E), output.Num(r.E2EDelta)})
	}
	rc := output.Section{Title: "biggest regressions: conversations (by summed e2e)", Cols: []string{"conversation",
		"turns", "base_e2e", "target_e2e", "e2e_delta", "ttft_delta"}}
	for _, r := range c.Regressions.Conversations {
		rc.Rows = append(rc.Rows, []output.Cell{output.Text(strconv.FormatUint(r.Conversation, 10)), output.Int(r.Turns),
			output.Num(r.BaseE2E), output.Num(r.TargetE2E), output.Num(r.E2EDelta), output.Num(r.TTFTDelta)})
	}
	dr := output.Section{Title: fmt.Sprintf("token drift over %d matched successful pairs", c.Drift.Pairs),
		Cols: []string{"tokens", "base_total", "target_total", "mean_delta", "mean_abs_delta", "changed_ratio"}}
	for _, d := range []struct {
		name string
		td   TokenDrift
	}{{"input_tokens", c.Drift.InputTokens}, {"output_tokens", c.Drift.OutputTokens}} {
		dr.Rows = append(dr.Rows, []output.Cell{output.Text(d.name), output.Int(d.td.Base), output.Int(d.td.Target), output.Num(d.td.MeanDelta),
			output.Num(d.td.MeanAbsDelta), output.Num(d.td.ChangedRatio)})
	}
	secs := []output.Section{m, bt, rt, rc, dr}
	if c.VerifyOutput != nil {
		secs = append(secs, c.VerifyOutput.section())
	}
	if c.Verdict != nil {
		secs = append([]output.Section{verdictCSV(c.Verdict)}, secs...)
	}
	if len(c.Warnings) > 0 {
		ws := output.Section{Title: "warnings", Cols: []string{"warning"}}
		for _, w := range c.Warnings {
			ws.Rows = append(ws.Rows, []output.Cell{output.Text(w)})
		}
		secs = append([]output.Section{ws}, secs...)
	}
	if len(c.Failed) > 0 {
		f := output.Section{Title: "failed conditions", Cols: []string{"condition"}}
		for _, r := range c.Failed {
			f.Rows = append(f.Rows, []output.Cell{output.Text(r)})
		}
		secs = append(secs, f)
	}
	return secs
}

// maxScatter bounds the points of a scatter chart.
const maxScatter = 2000

func (c *Comparison) charts() []string {
	cdfs := chart{title: "Latency CDF: base vs target", xlabel: "latency (ms, log scale)", ylabel: "share of requests ≤ x", logx: true}
	for _, s := range []struct {
		label string
		set   *metrics.Set
	}{{"base ", c.BaseSet}, {"target ", c.TargetSet}} {
		for _, m := range []string{metrics.TTFT, metrics.E2E} {
			if s.set == nil {
				continue
			}
			if pts := cdf(s.set.Hist(m, "")); pts != nil {
				cdfs.series = append(cdfs.series, series{name: s.label + m, pts: pts})
			}
		}
	}
	byTurn := chart{title: "TTFT by turn index (p50): base vs target", xlabel: "turn index", ylabel: "ms"}
	bs, ts := series{name: "base ttft_ms p50"}, series{name: "target ttft_ms p50"}
	for i, t := range c.ByTurn {
		byTurn.xcats = append(byTurn.xcats, t.Bucket)
		for _, ch := range t.Changes {
			if ch.Name != "ttft_ms.p50" {
				continue
			}
			if ch.Missing == "" || ch.Missing == "target" {
				bs.pts = append(bs.pts, point{float64(i), ch.Base})
			}
			if ch.Missing == "" || ch.Missing == "base" {
				ts.pts = append(ts.pts, point{float64(i), ch.Target})
			}
		}
	}
	byTurn.series = []series{bs, ts}
	ttft := chart{title: fmt.Sprintf("TTFT per request: %s vs %s", c.Base.Kind, c.Target.Kind),
		xlabel: "base ttft (ms)", ylabel: "target ttft (ms)", scatter: true, diagonal: true}
	e2e := chart{title: fmt.Sprintf("E2E per request: %s vs %s", c.Base.Kind, c.Target.Kind),
		xlabel: "base e2e (ms)", ylabel: "target e2e (ms)", scatter: true, diagonal: true}
	var tp, ep []point
	step := max(1, len(c.pairs)/maxScatter)
	for i := 0; i < len(c.pairs); i += step {
		p := c.pairs[i]
		if !p.base.ok || !p.target.ok {
			continue
		}
		if p.base.hasTTFT() && p.target.hasTTFT() {
			tp = append(tp, point{ms(p.base.ttft), ms(p.target.ttft)})
		}
		ep = append(ep, point{ms(p.base.e2e), ms(p.target.e2e)})
	}
	ttft.series = []series{{name: "matched requests", pts: tp}}
	e2e.series = []series{{name: "matched requests", pts: ep}}
	out := []string{cdfs.svg(), byTurn.svg()}
	if hm := c.turnHeatmap(); hm != "" {
		out = append(out, hm)
	}
	return append(out, ttft.svg(), e2e.svg())
}

// turnHeatmap is the change of TTFT (p50, p99) and ITL (p50) by turn index as a heat map,
// each cell judged by the verdict's noise rule on that bucket's histograms.
func (c *Comparison) turnHeatmap() string {
	if len(c.ByTurn) == 0 {
		return ""
	}
	figs := []struct {
		name, metric string
		q            float64
	}{{"ttft_ms.p50", metrics.TTFT, 0.5}, {"ttft_ms.p99", metrics.TTFT, 0.99}, {"itl_ms.p50", metrics.ITL, 0.5}}
	var rows, cols []string
	cells := make([][]heatCell, len(figs))
	for _, t := range c.ByTurn {
		cols = append(cols, t.Bucket)
	}
	for r, f := range figs {
		rows = append(rows, f.name)
		for _, t := range c.ByTurn {
			cell := heatCell{text: "n/a", call: CallNone}
			for _, ch := range t.Changes {
				if ch.Name == f.name {
					cell = c.turnCell(t.Bucket, f.metric, f.q, ch)
				}
			}
			cells[r] = append(cells[r], cell)
		}
	}
	return heatmap("TTFT and ITL change by turn index (target vs base)", rows, cols, cells)
}

// turnCell judges one turn bucket's change of a percentile (q 0: not judged) by the
// verdict's noise rule on that bucket's histograms.
func (c *Comparison) turnCell(bucket, metric string, q float64, ch Change) heatCell {
	if ch.Missing != "" {
		return heatCell{text: "n/a", call: CallNone}
	}
	j := Judgement{Metric: metric, Figure: ch.Name, Base: ch.Base, Target: ch.Target}
	if q > 0 && c.BaseSet != nil && c.TargetSet != nil {
		j.BaseInterval = quantileInterval(c.BaseSet.Hist(metric, bucket), q)
		j.TargetInterval = quantileInterval(c.TargetSet.Hist(metric, bucket), q)
	}
	judge(&j, false)
	cell := heatCell{text: changeText(j), call: j.Call}
	if j.Rel != nil {
		cell.rel = math.Abs(*j.Rel)
	}
	return cell
}

// turnView is the per-turn table shaped for reading: one row per turn bucket, the requests
// on each side and the change of each figure, marked ▲/▼ and coloured by the noise rule.
func (c *Comparison) turnView() output.Section {
	figs := []struct {
		name, metric string
		q            float64
	}{{"ttft_ms.p50", metrics.TTFT, 0.5}, {"ttft_ms.p99", metrics.TTFT, 0.99}, {"itl_ms.p50", metrics.ITL, 0.5},
		{"tpot_ms.p50", metrics.TPOT, 0.5}, {"e2e_ms.p50", metrics.E2E, 0.5}, {"e2e_ms.p99", metrics.E2E, 0.99}}
	s := output.Section{Title: "by turn index: change", Cols: []string{"turn", "requests", "ttft_p50", "ttft_p50 Δ", "ttft_p99 Δ",
		"itl_p50 Δ", "tpot_p50 Δ", "e2e_p50 Δ", "e2e_p99 Δ"}}
	for _, t := range c.ByTurn {
		row := []output.Cell{output.Text(t.Bucket)}
		byName := map[string]Change{}
		for _, ch := range t.Changes {
			byName[ch.Name] = ch
		}
		rq, p50 := byName["requests"], byName["ttft_ms.p50"]
		row = append(row, output.Text(fmt.Sprintf("%d / %d", int(rq.Base), int(rq.Target))))
		if p50.Missing == "" {
			row = append(row, output.Text(output.FormatNum(p50.Base)+" → "+output.FormatNum(p50.Target)))
		} else {
			row = append(row, output.Text(noSamples))
		}
		for _, f := range figs {
			hc := c.turnCell(t.Bucket, f.metric, f.q, byName[f.name])
			row = append(row, output.Text(hc.text).WithTone(toneOf(hc.call)))
		}
		s.Rows = append(s.Rows, row)
	}
	return s
}

// hidesPercentile reports whether the figure (ttft_ms.p95) is a percentile that --percentiles
// left out of the CSV; JSON keeps every figure.
func (c *Comparison) hidesPercentile(name string) bool {
	if c.Percentiles == nil {
		return false
	}
	i := strings.LastIndexByte(name, '.')
	for _, p := range metrics.Percentiles {
		if name[i+1:] == p.Key {
			return !slices.Contains(c.Percentiles, p.Q)
		}
	}
	return false
}
