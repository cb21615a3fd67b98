package analyze

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
)

// Write renders the report in format f. The table is the replayer's summary table, preceded by
// the runs and followed by per-conversation rows when asked for.
func (r *Report) Write(w io.Writer, f Format) error {
	return rendering{what: "write report", value: r, title: r.title, secs: r.sections, view: r.view, charts: r.charts,
		head: func() string {
			if r.Headline == nil {
				return ""
			}
			return r.Headline.head()
		},
		table: r.writeTable}.write(w, f)
}

func (r *Report) writeTable(w io.Writer) error {
	var b strings.Builder
	lead := func() []string { return nil }
	top := []output.Section{r.runsSection()}
	if h := r.Headline; h != nil {
		lead = func() []string { return wrapParts(h.Line) }
		top = append([]output.Section{bannerSection(h.Banner)}, top...)
	}
	err := writeLeadTable(&b, r.title(), lead, output.NonEmpty(top))
	if err == nil {
		b.WriteString("\n")
		err = WriteSummary(&b, &r.Summary, FormatTable)
	}
	if err == nil && len(r.ByConversation) > 0 {
		err = output.WriteTable(&b, "", []output.Section{r.convSection()})
	}
	if err == nil {
		_, err = io.WriteString(w, b.String())
	}
	return err
}

func (r *Report) title() string {
	names := make([]string, len(r.Runs))
	for i, run := range r.Runs {
		names[i] = strconv.FormatUint(run.ID, 10)
		if run.Name != "" {
			names[i] += " (" + run.Name + ")"
		}
	}
	return "llmtape report: run " + strings.Join(names, ", ")
}

func (r *Report) runsSection() output.Section {
	s := output.Section{Title: "runs", Cols: []string{"run", "name", "target", "recording", "requests", "partial"}}
	for _, run := range r.Runs {
		s.Rows = append(s.Rows, []output.Cell{output.Text(strconv.FormatUint(run.ID, 10)), output.Text(run.Name), output.Text(run.Target),
			output.Int(int64(run.Recording)), output.Int(run.Requests), output.Text(strconv.FormatBool(run.Partial))})
	}
	return s
}

func (r *Report) convSection() output.Section {
	s := output.Section{Title: "by conversation", Cols: []string{"conversation", "requests", "errors",
		"ttft_mean", "ttft_max", "e2e_mean", "e2e_max", "in_tokens", "out_tokens"}}
	for _, c := range r.ByConversation {
		s.Rows = append(s.Rows, []output.Cell{output.Text(strconv.FormatUint(c.Conversation, 10)), output.Int(c.Requests),
			output.Int(c.Errors), output.Num(c.TTFTMean), output.Num(c.TTFTMax), output.Num(c.E2EMean), output.Num(c.E2EMax),
			output.Int(c.InputTokens), output.Int(c.OutputTokens)})
	}
	return s
}

// WriteSummary renders a replayer's summary in format f: as a table (the layout of vLLM's
// multi-turn benchmark, metrics.Summary.WriteTable, which "llmtape replay" prints and report's
// table holds), as JSON (the keys of docs/replay.md), or as CSV in long form (the sections
// report writes for it). HTML is report's alone: it is refused.
func WriteSummary(w io.Writer, s *metrics.Summary, f Format) error {
	var err error
	switch f {
	case FormatTable:
		err = s.WriteTable(w)
	case FormatJSON:
		err = output.WriteJSON(w, s)
	case FormatCSV:
		err = output.WriteCSV(w, summarySections(s))
	default:
		return fmt.Errorf("write summary: format %q: want table, json or csv", f)
	}
	if err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// summarySections are the sections of a replayer summary (shared by report and compare).
func summarySections(s *metrics.Summary) []output.Section {
	return []output.Section{
		{Title: "summary", Cols: []string{"figure", "value"}, Rows: [][]output.Cell{
			{output.Text("requests.total"), output.Int(s.Requests.Total)},
			{output.Text("requests.ok"), output.Int(s.Requests.OK)},
			{output.Text("requests.errors"), output.Int(s.Requests.Errors)},
			{output.Text("throughput.requests_per_s"), output.Num(s.Throughput.RequestsPerS)},
			{output.Text("throughput.input_tokens_per_s"), output.Num(s.Throughput.InputTokensPerS)},
			{output.Text("throughput.output_tokens_per_s"), output.Num(s.Throughput.OutputTokensPerS)},
			{output.Text("goodput.slo"), output.Text(s.Goodput.SLO)},
			{output.Text("goodput.requests_per_s"), output.Num(s.Goodput.RequestsPerS)},
			{output.Text("goodput.met"), output.Int(s.Goodput.Met)},
			{output.Text("goodput.ratio"), output.Num(s.Goodput.Ratio)},
			{output.Text("cached_tokens"), output.Int(s.CachedTokens)},
			{output.Text("duration_s"), output.Num(s.Duration)},
			{output.Text("warmup_excluded"), output.Int(s.Warmup)},
			{output.Text("retries"), output.Int(s.Retries)},
			{output.Text("reconnects"), output.Int(s.Reconnects)},
		}},
		distSection("distributions", s.Percentiles, distTablePercentiles, true,
			namedDist{"ttft_ms", s.TTFT}, namedDist{"tpot_ms", s.TPOT},
			namedDist{"tpot_first_chunk_ms", s.TPOTFirstChunk}, namedDist{"itl_ms", s.ITL},
			namedDist{"e2e_ms", s.E2E}, namedDist{"schedule_lag_ms", s.ScheduleLag},
			namedDist{"input_tokens", s.InputTokens}, namedDist{"output_tokens", s.OutputTokens}),
		{Title: "errors by class", Cols: []string{"class", "requests"}, Rows: countRows(s.ErrorsByClass)},
		byTurnSummarySection(s.ByTurn),
	}
}

func byTurnSummarySection(ts []metrics.TurnSummary) output.Section {
	s := output.Section{Title: "by turn index", Cols: []string{"turn", "requests", "errors", "ttft_p50",
		"ttft_p99", "tpot_p50", "itl_p50", "itl_p99", "e2e_p50", "e2e_p99"}}
	for _, t := range ts {
		s.Rows = append(s.Rows, []output.Cell{output.Text(t.Bucket), output.Int(t.Requests), output.Int(t.Errors), output.Num(t.TTFT.P50),
			output.Num(t.TTFT.P99), output.Num(t.TPOT.P50), output.Num(t.ITL.P50), output.Num(t.ITL.P99), output.Num(t.E2E.P50), output.Num(t.E2E.P99)})
	}
	return s
}

func (r *Report) sections() []output.Section {
	secs := []output.Section{r.runsSection()}
	if r.Headline != nil {
		secs = append([]output.Section{r.Headline.section()}, secs...)
	}
	secs = append(secs, summarySections(&r.Summary)...)
	if len(r.ByConversation) > 0 {
		secs = append(secs, r.convSection())
	}
	if r.Timeline != nil {
		secs = append(secs, timelineSection(*r.Timeline))
	}
	return secs
}

// turnStats converts the summary's per-turn figures for the by-turn chart.
func turnStats(ts []metrics.TurnSummary) []TurnStats {
	out := make([]TurnStats, len(ts))
	for i, t := range ts {
		out[i] = TurnStats{Bucket: t.Bucket, Requests: t.Requests, TTFT: t.TTFT, TPOT: t.TPOT, ITL: t.ITL, E2E: t.E2E}
	}
	return out
}

func (r *Report) charts() []string {
	c := []string{latencyCDF("Latency CDF", []*metrics.Set{r.Latency}, []string{""})}
	c = append(c, byTurnCharts(turnStats(r.ByTurn))...)
	if r.Timeline != nil {
		c = append(c, timelineChart("Output throughput over time", *r.Timeline),
			concurrencyChart("Concurrency and arrivals over time", *r.Timeline))
	}
	return c
}

// wrapParts breaks a line of parts separated by "; " into lines of at most 100 runes.
func wrapParts(line string) []string {
	var out []string
	cur := ""
	for _, p := range strings.Split(line, "; ") {
		switch {
		case cur == "":
			cur = p
		case len([]rune(cur))+2+len([]rune(p)) > 100:
			out = append(out, cur+";")
			cur = "  " + p
		default:
			cur += "; " + p
		}
	}
	return append(out, cur)
}

// view is the report shaped for reading (the page): the runs, then latency, throughput,
// tokens and errors with one row per metric, per turn, per conversation and the timeline.
// Every figure stays in CSV and JSON.
func (r *Report) view() []output.Section {
	s := &r.Summary
	viewPs := []float64{50, 90, 99}
	lat := distSection("latency (ms)", s.Percentiles, viewPs, false, namedDist{"ttft_ms", s.TTFT}, namedDist{"itl_ms", s.ITL},
		namedDist{"tpot_ms", s.TPOT}, namedDist{"tpot_first_chunk_ms", s.TPOTFirstChunk}, namedDist{"e2e_ms", s.E2E},
		namedDist{"schedule_lag_ms", s.ScheduleLag})
	fig := func(name string, c output.Cell) []output.Cell { return []output.Cell{output.Text(name), c} }
	tp := output.Section{Title: "throughput", Cols: []string{"figure", "value"}, Rows: [][]output.Cell{
		fig("throughput.requests_per_s", output.Num(s.Throughput.RequestsPerS)),
		fig("throughput.input_tokens_per_s", output.Num(s.Throughput.InputTokensPerS)),
		fig("throughput.output_tokens_per_s", output.Num(s.Throughput.OutputTokensPerS)),
		fig("goodput.requests_per_s", output.Num(s.Goodput.RequestsPerS)),
		fig("goodput.ratio", output.Num(s.Goodput.Ratio)),
		fig("goodput.slo", output.Text(s.Goodput.SLO)),
		fig("duration_s", output.Num(s.Duration)),
	}}
	tok := distSection("tokens", s.Percentiles, viewPs, false, namedDist{"input_tokens", s.InputTokens},
		namedDist{"output_tokens", s.OutputTokens})
	tok.Rows = append(tok.Rows, []output.Cell{output.Text("cached_tokens (sum)"), output.Int(s.CachedTokens)})
	rate := output.Num(errorRate(s))
	if errorRate(s) > ErrorBanner {
		rate = rate.WithTone(output.Warn)
	}
	errs := output.Section{Title: "errors", Cols: []string{"figure", "value"}, Rows: [][]output.Cell{
		fig("requests.total", output.Int(s.Requests.Total)), fig("requests.ok", output.Int(s.Requests.OK)),
		fig("requests.errors", output.Int(s.Requests.Errors)), fig("requests.error_rate", rate),
		fig("warmup_excluded", output.Int(s.Warmup)), fig("retries", output.Int(s.Retries)), fig("reconnects", output.Int(s.Reconnects)),
	}}
	for _, k := range sortedKeys(s.ErrorsByClass) {
		errs.Rows = append(errs.Rows, fig("errors."+k, output.Int(s.ErrorsByClass[k])))
	}
	secs := []output.Section{r.runsSection(), lat, tp, tok, errs, byTurnSummarySection(s.ByTurn)}
	if len(r.ByConversation) > 0 {
		secs = append(secs, r.convSection())
	}
	if r.Timeline != nil {
		secs = append(secs, timelineSection(*r.Timeline))
	}
	return secs
}
