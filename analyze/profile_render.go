package analyze

import (
	"fmt"
	"io"
	"strconv"

	"github.com/llmtape/llmtape/metrics"
)

// Write renders the profile in format f.
func (p *Profile) Write(w io.Writer, f Format) error {
	var err error
	switch f {
	case FormatJSON:
		err = writeJSON(w, p)
	case FormatCSV:
		err = writeCSV(w, append(p.sections(), timelineSection(p.Timeline)))
	case FormatHTML:
		err = writeHTML(w, p.title(), p.charts(), append(p.sections(), timelineSection(p.Timeline)))
	default:
		err = writeTable(w, p.title(), p.sections())
	}
	if err != nil {
		return fmt.Errorf("write analysis: %w", err)
	}
	return nil
}

func (p *Profile) title() string {
	name := p.Recording.Name
	if name == "" {
		name = p.Recording.Source
	}
	return fmt.Sprintf("llmtape analyze: recording %d (%s)", p.Recording.ID, name)
}

func (p *Profile) sections() []section {
	secs := []section{
		{title: "overview", cols: []string{"figure", "value"}, rows: [][]cell{
			{txt("conversations"), inum(p.Conversations)},
			{txt("turns"), inum(p.Turns)},
			{txt("errors"), inum(p.Errors.Total)},
			{txt("server_cached_tokens"), inum(p.CachedTokens)},
			{txt("arrival_span_s"), num(p.Arrivals.SpanS)},
			{txt("conversations_per_s"), num(p.Arrivals.RatePerS)},
			{txt("burstiness_cv"), num(p.Arrivals.CV)},
		}},
		{title: "distributions", cols: distCols, rows: [][]cell{
			distRow("turns/conv", p.TurnsPerConversation),
			distRow("input_tokens", p.InputTokens),
			distRow("output_tokens", p.OutputTokens),
			distRow("think_time_ms", p.ThinkTime),
			distRow("interarrival_ms", p.Arrivals.Interarrival),
			distRow("ttft_ms", p.TTFT),
			distRow("tpot_ms", p.TPOT),
			distRow("itl_ms", p.ITL),
			distRow("e2e_ms", p.E2E),
		}},
	}
	reuse := section{title: "prefix reuse", cols: []string{"block_size", "prompt_tokens", "hit_tokens",
		"hit_ratio", "lru_cache_tokens", "lru_hit_tokens", "lru_hit_ratio"}}
	for _, r := range p.PrefixReuse {
		reuse.rows = append(reuse.rows, []cell{txt(strconv.Itoa(r.BlockSize)), inum(r.PromptTokens),
			inum(r.HitTokens), num(r.HitRatio), inum(r.LRUTokens), inum(r.LRUHitTokens), num(r.LRUHitRatio)})
	}
	secs = append(secs, reuse)
	secs = append(secs, byTurnSection(p.ByTurn))
	secs = append(secs,
		section{title: "grouping (conversations)", cols: []string{"grouping", "conversations"}, rows: countRows(p.Grouping)},
		section{title: "turn matches", cols: []string{"match", "turns"}, rows: countRows(p.Matches)},
		section{title: "models", cols: []string{"model", "turns"}, rows: countRows(p.Models)},
		section{title: "token sources", cols: []string{"source", "turns"}, rows: countRows(p.TokenSources)},
		section{title: "errors by class", cols: []string{"class", "turns"}, rows: countRows(p.Errors.ByClass)},
		section{title: "errors by status", cols: []string{"status", "turns"}, rows: countRows(p.Errors.ByStatus)},
	)
	return secs
}

// byTurnSection is the per-turn-bucket table: medians and tails of the latencies.
func byTurnSection(ts []TurnStats) section {
	s := section{title: "by turn index", cols: []string{"turn", "requests", "in_p50", "out_p50",
		"ttft_p50", "ttft_p99", "itl_p50", "itl_p99", "e2e_p50", "e2e_p99"}}
	for _, t := range ts {
		s.rows = append(s.rows, []cell{txt(t.Bucket), inum(t.Requests), num(t.InputTokens.P50),
			num(t.OutputTokens.P50), num(t.TTFT.P50), num(t.TTFT.P99), num(t.ITL.P50), num(t.ITL.P99),
			num(t.E2E.P50), num(t.E2E.P99)})
	}
	return s
}

func (p *Profile) charts() []string {
	c := []string{latencyCDF("Recorded latency CDF", []*metrics.Set{p.Latency}, []string{""})}
	c = append(c, byTurnCharts(p.ByTurn)...)
	return append(c, timelineChart("Output throughput over time", p.Timeline),
		concurrencyChart("Concurrency and arrivals over time", p.Timeline))
}

// latencyCDF draws the CDFs of TTFT, TPOT, ITL and E2E of each set (labelled by prefix).
func latencyCDF(title string, sets []*metrics.Set, labels []string) string {
	c := chart{title: title, xlabel: "latency (ms, log scale)", ylabel: "share of samples ≤ x", logx: true}
	for i, set := range sets {
		if set == nil {
			continue
		}
		for _, m := range []string{metrics.TTFT, metrics.TPOT, metrics.ITL, metrics.E2E} {
			if pts := cdf(set.Hist(m, "")); pts != nil {
				c.series = append(c.series, series{name: labels[i] + m, pts: pts})
			}
		}
	}
	return c.svg()
}

// byTurnCharts draws TTFT and ITL (p50 and p99) per turn bucket, one chart each.
func byTurnCharts(ts []TurnStats) []string {
	var out []string
	for _, m := range []struct {
		title string
		get   func(TurnStats) metrics.Dist
	}{
		{"TTFT by turn index", func(t TurnStats) metrics.Dist { return t.TTFT }},
		{"ITL by turn index", func(t TurnStats) metrics.Dist { return t.ITL }},
	} {
		c := chart{title: m.title, xlabel: "turn index", ylabel: "ms"}
		p50, p99 := series{name: "p50"}, series{name: "p99"}
		for i, t := range ts {
			c.xcats = append(c.xcats, t.Bucket)
			d := m.get(t)
			p50.pts = append(p50.pts, point{float64(i), d.P50})
			p99.pts = append(p99.pts, point{float64(i), d.P99})
		}
		c.series = []series{p50, p99}
		out = append(out, c.svg())
	}
	return out
}

// timelineChart draws output tokens per second over time.
func timelineChart(title string, tl Timeline) string {
	return chart{title: title, xlabel: "time (s)", ylabel: "output tokens per second", series: []series{
		{name: "output tokens/s", pts: timelinePoints(tl.BucketS, tl.OutputTok)},
	}}.svg()
}

// concurrencyChart draws requests in flight, requests started per second and conversations
// started per second over time.
func concurrencyChart(title string, tl Timeline) string {
	return chart{title: title, xlabel: "time (s)", ylabel: "requests, conversations", series: []series{
		{name: "in flight (mean)", pts: timelinePoints(tl.BucketS, tl.Concurrency)},
		{name: "requests/s", pts: timelinePoints(tl.BucketS, tl.Requests)},
		{name: "conversations/s", pts: timelinePoints(tl.BucketS, tl.Conversations)},
	}}.svg()
}

// timelineSection lists the timeline, bucket by bucket (CSV and HTML only: it is long).
func timelineSection(tl Timeline) section {
	s := section{title: "timeline", cols: []string{"start_s", "requests_per_s", "conversations_per_s",
		"output_tokens_per_s", "concurrency"}}
	for i := range tl.Requests {
		s.rows = append(s.rows, []cell{txt(strconv.FormatFloat(float64(i)*tl.BucketS, 'f', -1, 64)),
			num(tl.Requests[i]), num(tl.Conversations[i]), num(tl.OutputTok[i]), num(tl.Concurrency[i])})
	}
	return s
}
