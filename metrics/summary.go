package metrics

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

// Summary is the replayer's summary of a run: what "llmtape replay" prints (rendered in every
// format by analyze.WriteSummary), and what the store keeps as tape.Run.Summary. The JSON keys are stable and
// documented in docs/replay.md.
type Summary struct {
	Requests   Requests   `json:"requests"`
	Throughput Throughput `json:"throughput"`
	// Latencies in milliseconds, of successful requests (schedule lag: of every request sent).
	TTFT Dist `json:"ttft_ms"`
	TPOT Dist `json:"tpot_ms"`
	// TPOTFirstChunk is vLLM's TPOT (ResultTPOTFirstChunk); a run stored before it was
	// measured has no samples.
	TPOTFirstChunk Dist `json:"tpot_first_chunk_ms"`
	ITL            Dist `json:"itl_ms"`
	E2E            Dist `json:"e2e_ms"`
	ScheduleLag    Dist `json:"schedule_lag_ms"`
	// Token counts of successful requests.
	InputTokens  Dist    `json:"input_tokens"`
	OutputTokens Dist    `json:"output_tokens"`
	CachedTokens int64   `json:"cached_tokens"` // sum over successful requests
	Goodput      Goodput `json:"goodput"`
	// ErrorsByClass counts failed requests by class (the names of errclass).
	ErrorsByClass map[string]int `json:"errors_by_class"`
	ByTurn        []TurnSummary  `json:"by_turn"`
	Duration      float64        `json:"duration_s"`      // measurement window in seconds
	Warmup        int            `json:"warmup_excluded"` // results excluded as warmup
	Retries       int            `json:"retries"`         // retries made, over all requests
	// Reconnects counts requests sent again on a new connection because the target had closed
	// the kept-alive one before answering (set by the replayer; every request, warmup
	// included). They are neither errors nor retries.
	Reconnects int `json:"reconnects"`
	// Skipped counts recorded turns the replayer did not send (set by the replayer): no
	// request recorded, a body too large to record, a turn that failed when recorded under
	// --failed skip, a synthetic prompt that could not be made.
	Skipped int `json:"skipped"`
	// Percentiles are the percentiles the table and CSV show (--percentiles; from
	// ParsePercentiles); nil for their defaults. Not stored: JSON always has every one.
	Percentiles []float64 `json:"-"`
}

// Requests counts the requests of the measurement window (warmup excluded).
type Requests struct {
	Total  int `json:"total"`
	OK     int `json:"ok"`
	Errors int `json:"errors"`
}

// Throughput is per second of the measurement window, over successful requests.
type Throughput struct {
	RequestsPerS     float64 `json:"requests_per_s"`
	InputTokensPerS  float64 `json:"input_tokens_per_s"`
	OutputTokensPerS float64 `json:"output_tokens_per_s"`
}

// Goodput counts the requests that succeeded and met every objective of the SLO. With no SLO
// every successful request counts.
type Goodput struct {
	SLO          string  `json:"slo"` // as given to --slo; "" when none
	RequestsPerS float64 `json:"requests_per_s"`
	Met          int     `json:"met"`
	Ratio        float64 `json:"ratio"` // Met / Requests.Total
}

// TurnSummary is the summary of one turn bucket.
type TurnSummary struct {
	Bucket   string `json:"bucket"` // one of TurnBuckets
	Requests int    `json:"requests"`
	Errors   int    `json:"errors"`
	TTFT     Dist   `json:"ttft_ms"`
	TPOT     Dist   `json:"tpot_ms"`
	ITL      Dist   `json:"itl_ms"`
	E2E      Dist   `json:"e2e_ms"`
}

type sloSample struct {
	ttft, e2e time.Duration
	out       int
}

// Accumulator builds a Summary from results. Add only bumps counters and histograms;
// Summary computes the derived figures. The zero value is ready to use. It is not safe for
// concurrent use.
type Accumulator struct {
	set               *Set
	total, ok, warmup int
	retries           int
	errors            map[string]int
	byTurn            [numBuckets]struct{ requests, errors int }
	input, output     []float64
	inSum, outSum     int64
	cached            int64
	samples           []sloSample
}

// Set returns the accumulator's histograms (to encode into tape.Run.Histograms or merge).
func (a *Accumulator) Set() *Set {
	if a.set == nil {
		a.set = NewSet()
	}
	return a.set
}

// Add counts one result. Warmup results are only counted as excluded. Latency histograms get
// successful requests (TTFT also when no output arrived is skipped); schedule lag gets every
// request.
func (a *Accumulator) Add(r *tape.Result) {
	if r.Warmup {
		a.warmup++
		return
	}
	s := a.Set()
	a.total++
	a.retries += r.Retries
	b := TurnBucketIndex(r.Turn)
	if b >= 0 {
		a.byTurn[b].requests++
	}
	s.Record(ScheduleLag, r.Turn, r.Sent-r.Scheduled)
	if !OK(r) {
		if a.errors == nil {
			a.errors = make(map[string]int)
		}
		class := r.ErrorClass
		if class == errclass.None {
			class = errclass.HTTP
		}
		a.errors[string(class)]++
		if b >= 0 {
			a.byTurn[b].errors++
		}
		return
	}
	a.ok++
	s.RecordResult(r)
	a.input = append(a.input, float64(r.InputTokens))
	a.output = append(a.output, float64(r.OutputTokens))
	a.inSum += int64(r.InputTokens)
	a.outSum += int64(r.OutputTokens)
	a.cached += int64(r.CachedTokens)
	a.samples = append(a.samples, sloSample{r.TTFT, r.E2E, r.OutputTokens})
}

// Summary computes the summary over a measurement window (for the rates; a window <= 0 gives
// zero rates) with the SLO for goodput.
func (a *Accumulator) Summary(window time.Duration, slo SLO) Summary {
	s := a.Set()
	sum := Summary{
		Requests:       Requests{Total: a.total, OK: a.ok, Errors: a.total - a.ok},
		TTFT:           s.Dist(TTFT, ""),
		TPOT:           s.Dist(TPOT, ""),
		TPOTFirstChunk: s.Dist(TPOTFirstChunk, ""),
		ITL:            s.Dist(ITL, ""),
		E2E:            s.Dist(E2E, ""),
		ScheduleLag:    s.Dist(ScheduleLag, ""),
		InputTokens:    ValuesDist(a.input),
		OutputTokens:   ValuesDist(a.output),
		CachedTokens:   a.cached,
		ErrorsByClass:  map[string]int{},
		ByTurn:         []TurnSummary{},
		Duration:       window.Seconds(),
		Warmup:         a.warmup,
		Retries:        a.retries,
	}
	for k, v := range a.errors {
		sum.ErrorsByClass[k] = v
	}
	met := 0
	for _, x := range a.samples {
		if slo.met(x.ttft, x.e2e, x.out) {
			met++
		}
	}
	sum.Goodput = Goodput{SLO: slo.String(), Met: met}
	if a.total > 0 {
		sum.Goodput.Ratio = float64(met) / float64(a.total)
	}
	if w := window.Seconds(); w > 0 {
		sum.Throughput = Throughput{
			RequestsPerS:     float64(a.ok) / w,
			InputTokensPerS:  float64(a.inSum) / w,
			OutputTokensPerS: float64(a.outSum) / w,
		}
		sum.Goodput.RequestsPerS = float64(met) / w
	}
	for i, b := range TurnBuckets {
		if a.byTurn[i].requests == 0 {
			continue
		}
		sum.ByTurn = append(sum.ByTurn, TurnSummary{
			Bucket:   b,
			Requests: a.byTurn[i].requests,
			Errors:   a.byTurn[i].errors,
			TTFT:     s.Dist(TTFT, b),
			TPOT:     s.Dist(TPOT, b),
			ITL:      s.Dist(ITL, b),
			E2E:      s.Dist(E2E, b),
		})
	}
	return sum
}

// ErrorsText lists the failed requests by class, sorted by class name, as in
// "connect 20, http 2"; "" when none failed.
func (s Summary) ErrorsText() string {
	classes := make([]string, 0, len(s.ErrorsByClass))
	for k := range s.ErrorsByClass {
		classes = append(classes, k)
	}
	sort.Strings(classes)
	for i, k := range classes {
		classes[i] = fmt.Sprintf("%s %d", k, s.ErrorsByClass[k])
	}
	return strings.Join(classes, ", ")
}

// WriteTable writes the summary as a table like vLLM's multi-turn benchmark prints (count,
// mean, std, min, the percentiles, max per metric), then throughput, goodput, errors and
// per-turn figures. The percentiles are Percentiles when set, else 25%, 50%, 75%, 90%, 99%
// and, as vLLM prints them, 99.9% and 99.99% once a metric has 1,000 / 10,000 samples (a
// metric with fewer shows "-" there). Lines fit in 100 columns with the default five. It is
// the table format of analyze.WriteSummary, which renders the summary in every format.
func (s Summary) WriteTable(w io.Writer) error {
	var b strings.Builder
	rows := []struct {
		name string
		d    Dist
	}{
		{"ttft_ms", s.TTFT}, {"tpot_ms", s.TPOT}, {"tpot_first_chunk_ms", s.TPOTFirstChunk}, {"itl_ms", s.ITL}, {"e2e_ms", s.E2E},
		{"input_tokens", s.InputTokens}, {"output_tokens", s.OutputTokens},
	}
	dists := make([]Dist, len(rows))
	for i, r := range rows {
		dists[i] = r.d
	}
	ps := ShownPercentiles(s.Percentiles, TablePercentiles, dists...)
	line := strings.Repeat("-", 58+8*len(ps))
	fmt.Fprintf(&b, "%-19s%7s%8s%8s%8s", "", "count", "mean", "std", "min")
	for _, p := range ps {
		fmt.Fprintf(&b, "%8s", strconv.FormatFloat(p.Q, 'f', -1, 64)+"%")
	}
	fmt.Fprintf(&b, "%8s\n", "max")
	fmt.Fprintln(&b, line)
	for _, r := range rows {
		d := r.d
		fmt.Fprintf(&b, "%-19s%7d%8s%8s%8s", r.name, d.Count, output.FormatFixed(d.Mean),
			output.FormatFixed(d.Std), output.FormatFixed(d.Min))
		for _, p := range ps {
			cell := "-"
			if v, ok := d.At(p.Q); ok || (d.Count == 0 && p.MinSamples == 0) {
				cell = output.FormatFixed(v)
			}
			fmt.Fprintf(&b, "%8s", cell)
		}
		fmt.Fprintf(&b, "%8s\n", output.FormatFixed(d.Max))
	}
	fmt.Fprintln(&b, line)
	fmt.Fprintf(&b, "requests       %d total, %d ok, %d errors", s.Requests.Total, s.Requests.OK,
		s.Requests.Errors)
	if s.Warmup > 0 {
		fmt.Fprintf(&b, ", %d warmup excluded", s.Warmup)
	}
	if s.Retries > 0 {
		fmt.Fprintf(&b, ", %d retries", s.Retries)
	}
	if s.Reconnects > 0 {
		fmt.Fprintf(&b, ", %d reconnects", s.Reconnects)
	}
	if s.Skipped > 0 {
		fmt.Fprintf(&b, ", %d turns skipped", s.Skipped)
	}
	fmt.Fprintf(&b, " in %.2f s\n", s.Duration)
	fmt.Fprintf(&b, "throughput     %.2f req/s, %.1f input tok/s, %.1f output tok/s\n",
		s.Throughput.RequestsPerS, s.Throughput.InputTokensPerS, s.Throughput.OutputTokensPerS)
	slo := s.Goodput.SLO
	if slo == "" {
		slo = "no slo"
	}
	fmt.Fprintf(&b, "goodput        %.2f req/s, %d met (%.1f%%) [%s]\n", s.Goodput.RequestsPerS,
		s.Goodput.Met, 100*s.Goodput.Ratio, slo)
	if len(s.ErrorsByClass) > 0 {
		classes := make([]string, 0, len(s.ErrorsByClass))
		for k := range s.ErrorsByClass {
			classes = append(classes, k)
		}
		sort.Strings(classes)
		fmt.Fprint(&b, "errors        ")
		for _, k := range classes {
			fmt.Fprintf(&b, " %s=%d", k, s.ErrorsByClass[k])
		}
		fmt.Fprintln(&b)
	}
	l := s.ScheduleLag
	fmt.Fprintf(&b, "schedule lag   mean %s ms, p50 %s, p90 %s, p99 %s, max %s\n", output.FormatFixed(l.Mean),
		output.FormatFixed(l.P50), output.FormatFixed(l.P90), output.FormatFixed(l.P99), output.FormatFixed(l.Max))
	if len(s.ByTurn) > 0 {
		fmt.Fprintln(&b, line)
		fmt.Fprintf(&b, "%-6s%9s%7s%10s%10s%10s%10s%10s%10s\n", "turn", "requests", "errors",
			"ttft p50", "ttft p99", "tpot p50", "tpot p99", "e2e p50", "e2e p99")
		for _, t := range s.ByTurn {
			fmt.Fprintf(&b, "%-6s%9d%7d%10s%10s%10s%10s%10s%10s\n", t.Bucket, t.Requests, t.Errors,
				output.FormatFixed(t.TTFT.P50), output.FormatFixed(t.TTFT.P99), output.FormatFixed(t.TPOT.P50), output.FormatFixed(t.TPOT.P99),
				output.FormatFixed(t.E2E.P50), output.FormatFixed(t.E2E.P99))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
