package analyze

import (
	"fmt"
	"io"
	"strconv"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
)

// Write renders the profile in format f.
// The table leaves out the timeline, which is long.
func (p *Profile) Write(w io.Writer, f Format) error {
	return rendering{
		what:   "write analysis",
		value:  p,
		title:  p.title,
		secs:   func() []output.Section { return append(p.sections(), timelineSection(p.Timeline)) },
		charts: p.charts,
		table:  func(w io.Writer) error { return output.WriteTable(w, p.title(), output.NonEmpty(p.sections())) },
	}.write(w, f)
}

func (p *Profile) title() string {
	name := p.Recording.Name
	if name == "" {
		name = p.Recording.Source
	}
	return fmt.Sprintf("llmtape analyze: recording %d (%s)", p.Recording.ID, name)
}

func (p *Profile) sections() []output.Section {
	secs := []output.Section{
		{Title: "overview", Cols: []string{"figure", "value"}, Rows: [][]output.Cell{
			{output.Text("conversations"), output.Int(p.Conversations)},
			{output.Text("turns"), output.Int(p.Turns)},
			{output.Text("errors"), output.Int(p.Errors.Total)},
			{output.Text("server_cached_tokens"), output.Int(p.CachedTokens)},
			{output.Text("arrival_span_s"), output.Num(p.Arrivals.SpanS)},
			{output.Text("conversations_per_s"), output.Num(p.Arrivals.RatePerS)},
			{output.Text("burstiness_cv"), output.Num(p.Arrivals.CV)},
		}},
		distSection("distributions", p.Percentiles, distTablePercentiles, true,
			namedDist{"turns/conv", p.TurnsPerConversation},
			namedDist{"input_tokens", p.InputTokens},
			namedDist{"output_tokens", p.OutputTokens},
			namedDist{"think_time_ms", p.ThinkTime},
			namedDist{"interarrival_ms", p.Arrivals.Interarrival},
			namedDist{"ttft_ms", p.TTFT},
			namedDist{"tpot_ms", p.TPOT},
			namedDist{"tpot_first_chunk_ms", p.TPOTFirstChunk},
			namedDist{"itl_ms", p.ITL},
			namedDist{"e2e_ms", p.E2E},
		),
	}
	reuse := output.Section{Title: "prefix reuse", Cols: []string{"block_size", "prompt_tokens", "hit_tokens",
		"hit_ratio", "lru_cache_tokens", "lru_hit_tokens", "lru_hit_ratio"}}
	for _, r := range p.PrefixReuse {
		reuse.Rows = append(reuse.Rows, []output.Cell{output.Text(strconv.Itoa(r.BlockSize)), output.Int(r.PromptTokens),
			output.Int(r.HitTokens), output.Num(r.HitRatio), output.Int(r.LRUTokens), output.Int(r.LRUHitTokens), output.Num(r.LRUHitRatio)})
	}
	secs = append(secs, reuse)
	secs = append(secs, byTurnSection(p.ByTurn))
	secs = append(secs,
		output.Section{Title: "grouping (conversations)", Cols: []string{"grouping", "conversations"}, Rows: countRows(p.Grouping)},
		output.Section{Title: "turn matches", Cols: []string{"match", "turns"}, Rows: countRows(p.Matches)},
		output.Section{Title: "models", Cols: []string{"model", "turns"}, Rows: countRows(p.Models)},
		output.Section{Title: "token sources", Cols: []string{"source", "turns"}, Rows: countRows(p.TokenSources)},
		output.Section{Title: "errors by class", Cols: []string{"class", "turns"}, Rows: countRows(p.Errors.ByClass)},
		output.Section{Title: "errors by status", Cols: []string{"status", "turns"}, Rows: countRows(p.Errors.ByStatus)},
	)
	return secs
}

// byTurnSection is the per-turn-bucket table: medians and tails of the latencies.
func byTurnSection(ts []TurnStats) output.Section {
	s := output.Section{Title: "by turn index", Cols: []string{"turn", "requests", "in_p50", "out_p50",
		"ttft_p50", "ttft_p99", "itl_p50", "itl_p99", "e2e_p50", "e2e_p99"}}
	for _, t := range ts {
		s.Rows = append(s.Rows, []output.Cell{output.Text(t.Bucket), output.Int(t.Requests), output.Num(t.InputTokens.P50),
			output.Num(t.OutputTokens.P50), output.Num(t.TTFT.P50), output.Num(t.TTFT.P99), output.Num(t.ITL.P50), output.Num(t.ITL.P99),
			output.Num(t.E2E.P50), output.Num(t.E2E.P99)})
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
func timelineSection(tl Timeline) output.Section {
	s := output.Section{Title: "timeline", Cols: []string{"start_s", "requests_per_s", "conversations_per_s",
		"output_tokens_per_s", "concurrency"}}
	for i := range tl.Requests {
		s.Rows = append(s.Rows, []output.Cell{output.Text(strconv.FormatFloat(float64(i)*tl.BucketS, 'f', -1, 64)),
			output.Num(tl.Requests[i]), output.Num(tl.Conversations[i]), output.Num(tl.OutputTok[i]), output.Num(tl.Concurrency[i])})
	}
	return s
}
