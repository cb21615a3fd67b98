package analyze

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/metrics"
)

// Write renders the comparison in format f.
func (c *Comparison) Write(w io.Writer, f Format) error {
	var err error
	switch f {
	case FormatJSON:
		err = writeJSON(w, c)
	case FormatCSV:
		err = writeCSV(w, c.sections())
	case FormatHTML:
		err = writeHTML(w, c.title(), c.charts(), c.sections())
	default:
		err = writeTable(w, c.title(), c.sections())
	}
	if err != nil {
		return fmt.Errorf("write comparison: %w", err)
	}
	return nil
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

func changeRow(ch Change) []cell {
	if ch.Missing == "" {
		return []cell{txt(ch.Name), num(ch.Base), num(ch.Target), num(ch.Abs), pctCell(ch.Rel)}
	}
	b, t := num(ch.Base), num(ch.Target)
	if ch.Missing != "target" {
		b = txt(noSamples)
	}
	if ch.Missing != "base" {
		t = txt(noSamples)
	}
	return []cell{txt(ch.Name), b, t, txt("-"), txt("-")}
}

func (c *Comparison) sections() []section {
	changeCols := []string{"figure", "base", "target", "abs", "rel"}
	m := section{title: "metrics", cols: changeCols}
	for _, ch := range c.Metrics {
		m.rows = append(m.rows, changeRow(ch))
	}
	bt := section{title: "by turn index", keyCols: 2, cols: []string{"turn", "figure", "base", "target", "abs", "rel"}}
	for _, t := range c.ByTurn {
		for _, ch := range t.Changes {
			bt.rows = append(bt.rows, append([]cell{txt(t.Bucket)}, changeRow(ch)...))
		}
	}
	rt := section{title: "biggest regressions: turns (by ttft)", cols: []string{"conversation", "turn",
		"base_ttft", "target_ttft", "ttft_delta", "base_e2e", "target_e2e", "e2e_delta"}}
	for _, r := range c.Regressions.Turns {
		rt.rows = append(rt.rows, []cell{txt(strconv.FormatUint(r.Conversation, 10)), inum(r.Turn + 1),
			num(r.BaseTTFT), num(r.TargetTTFT), num(r.TTFTDelta), num(r.BaseE2E), num(r.TargetE2E), num(r.E2EDelta)})
	}
	rc := section{title: "biggest regressions: conversations (by summed e2e)", cols: []string{"conversation",
		"turns", "base_e2e", "target_e2e", "e2e_delta", "ttft_delta"}}
	for _, r := range c.Regressions.Conversations {
		rc.rows = append(rc.rows, []cell{txt(strconv.FormatUint(r.Conversation, 10)), inum(r.Turns),
			num(r.BaseE2E), num(r.TargetE2E), num(r.E2EDelta), num(r.TTFTDelta)})
	}
	dr := section{title: fmt.Sprintf("token drift over %d matched successful pairs", c.Drift.Pairs),
		cols: []string{"tokens", "base_total", "target_total", "mean_delta", "mean_abs_delta", "changed_ratio"}}
	for _, d := range []struct {
		name string
		td   TokenDrift
	}{{"input_tokens", c.Drift.InputTokens}, {"output_tokens", c.Drift.OutputTokens}} {
		dr.rows = append(dr.rows, []cell{txt(d.name), inum(d.td.Base), inum(d.td.Target), num(d.td.MeanDelta),
			num(d.td.MeanAbsDelta), num(d.td.ChangedRatio)})
	}
	secs := []section{m, bt, rt, rc, dr}
	if len(c.Warnings) > 0 {
		ws := section{title: "warnings", cols: []string{"warning"}}
		for _, w := range c.Warnings {
			ws.rows = append(ws.rows, []cell{txt(w)})
		}
		secs = append([]section{ws}, secs...)
	}
	if len(c.Failed) > 0 {
		f := section{title: "failed conditions", cols: []string{"condition"}}
		for _, r := range c.Failed {
			f.rows = append(f.rows, []cell{txt(r)})
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
	return []string{cdfs.svg(), byTurn.svg(), ttft.svg(), e2e.svg()}
}
