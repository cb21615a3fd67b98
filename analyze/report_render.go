package analyze

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/metrics"
)

// Write renders the report in format f. The table is the replayer's summary table, preceded by
// the runs and followed by per-conversation rows when asked for.
func (r *Report) Write(w io.Writer, f Format) error {
	var err error
	switch f {
	case FormatJSON:
		err = writeJSON(w, r)
	case FormatCSV:
		err = writeCSV(w, r.sections())
	case FormatHTML:
		err = writeHTML(w, r.title(), r.charts(), r.sections())
	default:
		var b strings.Builder
		err = writeTable(&b, r.title(), []section{r.runsSection()})
		if err == nil {
			b.WriteString("\n")
			err = r.Summary.WriteTable(&b)
		}
		if err == nil && len(r.ByConversation) > 0 {
			err = writeTable(&b, "", []section{r.convSection()})
		}
		if err == nil {
			_, err = io.WriteString(w, b.String())
		}
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
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

func (r *Report) runsSection() section {
	s := section{title: "runs", cols: []string{"run", "name", "target", "recording", "requests", "partial"}}
	for _, run := range r.Runs {
		s.rows = append(s.rows, []cell{txt(strconv.FormatUint(run.ID, 10)), txt(run.Name), txt(run.Target),
			inum(int64(run.Recording)), inum(run.Requests), txt(strconv.FormatBool(run.Partial))})
	}
	return s
}

func (r *Report) convSection() section {
	s := section{title: "by conversation", cols: []string{"conversation", "requests", "errors",
		"ttft_mean", "ttft_max", "e2e_mean", "e2e_max", "in_tokens", "out_tokens"}}
	for _, c := range r.ByConversation {
		s.rows = append(s.rows, []cell{txt(strconv.FormatUint(c.Conversation, 10)), inum(c.Requests),
			inum(c.Errors), num(c.TTFTMean), num(c.TTFTMax), num(c.E2EMean), num(c.E2EMax),
			inum(c.InputTokens), inum(c.OutputTokens)})
	}
	return s
}

// summarySections are the sections of a replayer summary (shared by report and compare).
func summarySections(s *metrics.Summary) []section {
	return []section{
		{title: "summary", cols: []string{"figure", "value"}, rows: [][]cell{
			{txt("requests.total"), inum(s.Requests.Total)},
			{txt("requests.ok"), inum(s.Requests.OK)},
			{txt("requests.errors"), inum(s.Requests.Errors)},
			{txt("throughput.requests_per_s"), num(s.Throughput.RequestsPerS)},
			{txt("throughput.input_tokens_per_s"), num(s.Throughput.InputTokensPerS)},
			{txt("throughput.output_tokens_per_s"), num(s.Throughput.OutputTokensPerS)},
			{txt("goodput.slo"), txt(s.Goodput.SLO)},
			{txt("goodput.requests_per_s"), num(s.Goodput.RequestsPerS)},
			{txt("goodput.met"), inum(s.Goodput.Met)},
			{txt("goodput.ratio"), num(s.Goodput.Ratio)},
			{txt("cached_tokens"), inum(s.CachedTokens)},
			{txt("duration_s"), num(s.Duration)},
			{txt("warmup_excluded"), inum(s.Warmup)},
			{txt("retries"), inum(s.Retries)},
			{txt("reconnects"), inum(s.Reconnects)},
		}},
		{title: "distributions", cols: distCols, rows: [][]cell{
			distRow("ttft_ms", s.TTFT), distRow("tpot_ms", s.TPOT), distRow("itl_ms", s.ITL),
			distRow("e2e_ms", s.E2E), distRow("schedule_lag_ms", s.ScheduleLag),
			distRow("input_tokens", s.InputTokens), distRow("output_tokens", s.OutputTokens),
		}},
		{title: "errors by class", cols: []string{"class", "requests"}, rows: countRows(s.ErrorsByClass)},
		byTurnSummarySection(s.ByTurn),
	}
}

func byTurnSummarySection(ts []metrics.TurnSummary) section {
	s := section{title: "by turn index", cols: []string{"turn", "requests", "errors", "ttft_p50",
		"ttft_p99", "tpot_p50", "itl_p50", "itl_p99", "e2e_p50", "e2e_p99"}}
	for _, t := range ts {
		s.rows = append(s.rows, []cell{txt(t.Bucket), inum(t.Requests), inum(t.Errors), num(t.TTFT.P50),
			num(t.TTFT.P99), num(t.TPOT.P50), num(t.ITL.P50), num(t.ITL.P99), num(t.E2E.P50), num(t.E2E.P99)})
	}
	return s
}

func (r *Report) sections() []section {
	secs := []section{r.runsSection()}
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
