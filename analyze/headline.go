package analyze

import (
	"fmt"
	"strings"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
)

// HeadlineFigure is one of a run's headline figures.
type HeadlineFigure struct {
	Name  string  `json:"name"`  // ttft_ms.p50, throughput.output_tokens_per_s, goodput.ratio, requests.error_rate, …
	Value float64 `json:"value"` // in the figure's unit (ms, tokens/s, a ratio)
	// Warn is true for a figure that the banner warns about (an error rate above 1 %).
	Warn bool `json:"warn"`
}

// Headline is what a run report opens with: one line, the run's headline figures and the
// warnings of the banner (errors above 1 %, no successful requests, a partial run, too few
// samples for a p99 interval).
type Headline struct {
	Line    string           `json:"line"`
	Figures []HeadlineFigure `json:"figures"`
	Banner  []string         `json:"banner"`
}

// buildHeadline sets the report's headline from its summary and histograms.
func (r *Report) buildHeadline() {
	s := &r.Summary
	h := &Headline{Banner: []string{}}
	add := func(name string, v float64) { h.Figures = append(h.Figures, HeadlineFigure{Name: name, Value: v}) }
	add("requests.total", float64(s.Requests.Total))
	h.Figures = append(h.Figures, HeadlineFigure{Name: "requests.error_rate", Value: errorRate(s), Warn: errorRate(s) > ErrorBanner})
	var thin []string
	for _, m := range []struct {
		name string
		d    metrics.Dist
	}{{metrics.TTFT, s.TTFT}, {metrics.ITL, s.ITL}, {metrics.TPOT, s.TPOT}, {metrics.E2E, s.E2E}} {
		if m.d.Count == 0 {
			continue
		}
		add(m.name+".p50", m.d.P50)
		add(m.name+".p99", m.d.P99)
		if r.Latency != nil && quantileInterval(r.Latency.Hist(m.name, ""), 0.99) == nil {
			thin = append(thin, m.name)
		}
	}
	add("throughput.requests_per_s", s.Throughput.RequestsPerS)
	add("throughput.output_tokens_per_s", s.Throughput.OutputTokensPerS)
	add("goodput.ratio", s.Goodput.Ratio)

	names := make([]string, len(r.Runs))
	for i, run := range r.Runs {
		names[i] = fmt.Sprintf("run %d (%s)", run.ID, run.Name)
		if run.Partial {
			h.Banner = append(h.Banner, fmt.Sprintf("run %d (%s) is partial: stopped early or never ended", run.ID, run.Name))
		}
	}
	h.Banner = append(runBanner(strings.Join(names, ", "), s), h.Banner...)
	if len(thin) > 0 {
		h.Banner = append(h.Banner, fmt.Sprintf("too few samples for a p99 interval (about 380 needed): %s", strings.Join(thin, ", ")))
	}
	slo := s.Goodput.SLO
	if slo == "" {
		slo = "no SLO: every success counts"
	}
	line := fmt.Sprintf("%d requests, %.1f%% failed", s.Requests.Total, 100*errorRate(s))
	if s.TTFT.Count > 0 {
		line += fmt.Sprintf("; ttft p50 %s p99 %s", output.Millis(s.TTFT.P50), output.Millis(s.TTFT.P99))
	}
	if s.E2E.Count > 0 {
		line += fmt.Sprintf("; e2e p50 %s", output.Millis(s.E2E.P50))
	}
	line += fmt.Sprintf("; %s output tok/s; goodput %.1f%% (%s)", output.FormatNum(s.Throughput.OutputTokensPerS), 100*s.Goodput.Ratio, slo)
	h.Line = line
	r.Headline = h
}

// headlineText is a headline figure for people.
func headlineText(f HeadlineFigure) string {
	switch {
	case strings.HasSuffix(f.Name, "_ms.p50"), strings.HasSuffix(f.Name, "_ms.p99"):
		return output.FormatNum(f.Value) + " ms"
	case f.Name == "goodput.ratio", f.Name == "requests.error_rate":
		return fmt.Sprintf("%.1f%%", 100*f.Value)
	case strings.HasPrefix(f.Name, "throughput."):
		return output.FormatNum(f.Value) + "/s"
	}
	return output.FormatNum(f.Value)
}

// headlineSection is the headline figures as a section (CSV keeps the numbers).
func (h *Headline) section() output.Section {
	s := output.Section{Title: "headline", Cols: []string{"figure", "value"}}
	for _, f := range h.Figures {
		c := output.Num(f.Value)
		if f.Warn {
			c = c.WithTone(output.Warn)
		}
		s.Rows = append(s.Rows, []output.Cell{output.Text(f.Name), c})
	}
	return s
}

// bannerSection is the banner as a section of a table or page.
func bannerSection(banner []string) output.Section {
	s := output.Section{Title: "warnings", Cols: []string{"warning"}}
	for _, w := range banner {
		s.Rows = append(s.Rows, []output.Cell{output.Text("⚠ " + w).WithTone(output.Warn)})
	}
	return s
}

// head is the top of the report page: the headline line, its banner and a card per figure.
func (h *Headline) head() string {
	var cards []card
	for _, f := range h.Figures {
		c := card{key: f.Name, value: headlineText(f)}
		if f.Warn {
			c.tone, c.delta = output.Warn, "⚠ above 1 %"
		}
		cards = append(cards, c)
	}
	tone := output.Plain
	if len(h.Banner) > 0 {
		tone = output.Warn
	}
	return headHTML(h.Line, tone, cards, nil, h.Banner)
}
