package analyze

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

// ReportConfig says what a report needs beyond the stored summary and histograms.
type ReportConfig struct {
	// SLO recomputes goodput for these objectives (a scan of the results) when it differs
	// from the SLO the run was made with; zero keeps the stored goodput.
	SLO metrics.SLO
	// ByConversation adds one row per conversation (a scan of the results).
	ByConversation bool
	// Timeline adds throughput and concurrency over time (a scan of the results); the HTML
	// report wants it.
	Timeline bool
}

// RunInfo names a run in a report.
type RunInfo struct {
	ID        uint64    `json:"id"`
	Name      string    `json:"name"`
	Target    string    `json:"target"`
	Recording uint64    `json:"recording"`
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended"`
	Requests  int       `json:"requests"`
	// Partial is true for a run stopped early (Ctrl-C, --duration) and for one that never
	// ended (the replayer died: no end time, summary or histograms).
	Partial bool `json:"partial"`
}

// ConversationStats are one conversation's figures in a run (successful requests' latencies).
type ConversationStats struct {
	Conversation uint64  `json:"conversation"`
	Requests     int     `json:"requests"`
	Errors       int     `json:"errors"`
	TTFTMean     float64 `json:"ttft_ms_mean"`
	TTFTMax      float64 `json:"ttft_ms_max"`
	E2EMean      float64 `json:"e2e_ms_mean"`
	E2EMax       float64 `json:"e2e_ms_max"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
}

// Report is what "llmtape report" shows for one run or the shards of one: the replayer's
// summary (its JSON keys at the top level) plus the runs, and on request per-conversation
// figures and a timeline.
type Report struct {
	metrics.Summary
	Runs           []RunInfo           `json:"runs"`
	ByConversation []ConversationStats `json:"by_conversation,omitempty"`
	Timeline       *Timeline           `json:"timeline,omitempty"`
	// Headline is what the report opens with: the run's own headline figures, its SLO
	// goodput and the warnings (docs/analyze.md).
	Headline *Headline `json:"headline"`
	// Latency is the merged histogram set (not in JSON).
	Latency *metrics.Set `json:"-"`
}

// BuildReport reports the runs as one. Latency percentiles come from the runs' stored
// histograms, merged exactly; counts and throughput from their stored summaries. The results
// are scanned only when needed: a run without a stored summary or histograms, token
// distributions of several runs, a new SLO, per-conversation figures or a timeline. The scan
// checks ctx every checkEvery results and returns its error, wrapped, once it is done.
func BuildReport(ctx context.Context, src Source, runs []*tape.Run, cfg ReportConfig) (*Report, error) {
	rep, err := buildReport(ctx, src, runs, cfg)
	if err != nil {
		return nil, err
	}
	rep.buildHeadline()
	return rep, nil
}

func buildReport(ctx context.Context, src Source, runs []*tape.Run, cfg ReportConfig) (*Report, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("report: no run given")
	}
	rep := &Report{Latency: metrics.NewSet()}
	var sums []metrics.Summary
	needScan := cfg.ByConversation || cfg.Timeline || len(runs) > 1
	for _, r := range runs {
		rep.Runs = append(rep.Runs, RunInfo{ID: r.ID, Name: r.Name, Target: r.Target,
			Recording: r.Recording, Started: r.Started, Ended: r.Ended, Requests: r.Requests,
			Partial: r.Partial || r.Ended.IsZero()})
		var s metrics.Summary
		if len(r.Summary) == 0 || len(r.Histograms) == 0 {
			needScan = true
			continue
		}
		if err := json.Unmarshal(r.Summary, &s); err != nil {
			return nil, fmt.Errorf("report run %d: decode summary: %w", r.ID, err)
		}
		set, err := metrics.Decode(r.Histograms)
		if err != nil {
			return nil, fmt.Errorf("report run %d: %w", r.ID, err)
		}
		rep.Latency.Merge(set)
		sums = append(sums, s)
		if !cfg.SLO.IsZero() && cfg.SLO.String() != s.Goodput.SLO {
			needScan = true
		}
	}
	if !needScan {
		rep.Summary = sums[0]
		fillLatency(&rep.Summary, rep.Latency)
		return rep, nil
	}
	return scanReport(ctx, src, runs, sums, rep, cfg)
}

// fillLatency sets the summary's latency distributions from the histogram set.
func fillLatency(s *metrics.Summary, set *metrics.Set) {
	s.TTFT = set.Dist(metrics.TTFT, "")
	s.TPOT = set.Dist(metrics.TPOT, "")
	s.TPOTFirstChunk = set.Dist(metrics.TPOTFirstChunk, "")
	s.ITL = set.Dist(metrics.ITL, "")
	s.E2E = set.Dist(metrics.E2E, "")
	s.ScheduleLag = set.Dist(metrics.ScheduleLag, "")
	for i := range s.ByTurn {
		b := s.ByTurn[i].Bucket
		s.ByTurn[i].TTFT = set.Dist(metrics.TTFT, b)
		s.ByTurn[i].TPOT = set.Dist(metrics.TPOT, b)
		s.ByTurn[i].ITL = set.Dist(metrics.ITL, b)
		s.ByTurn[i].E2E = set.Dist(metrics.E2E, b)
	}
}

// runWindow is a run's measurement window: its stored summary's, else Ended − Started, else
// the span of its results.
func runWindow(r *tape.Run, stored *metrics.Summary, first, last time.Duration) time.Duration {
	if stored != nil && stored.Duration > 0 {
		return time.Duration(stored.Duration * float64(time.Second))
	}
	if !r.Ended.IsZero() && r.Ended.After(r.Started) {
		return r.Ended.Sub(r.Started)
	}
	return last - first
}

type convAcc struct {
	requests, errors int
	ttftSum, ttftMax float64
	ttftN            int
	e2eSum, e2eMax   float64
	okN              int
	in, out          int64
}

// scanReport reads every result of the runs through one Accumulator. Shards run side by side,
// so the merged window is the longest of the runs' windows.
func scanReport(ctx context.Context, src Source, runs []*tape.Run, sums []metrics.Summary, rep *Report, cfg ReportConfig) (*Report, error) {
	var acc metrics.Accumulator
	var window time.Duration
	convs := map[uint64]*convAcc{}
	var ivs []interval
	stored := map[uint64]*metrics.Summary{}
	{
		i := 0
		for _, r := range runs {
			if len(r.Summary) > 0 && len(r.Histograms) > 0 {
				stored[r.ID] = &sums[i]
				i++
			}
		}
	}
	slo := cfg.SLO
	if slo.IsZero() && len(sums) > 0 {
		// Keep the SLO the runs were made with.
		if o, err := metrics.ParseSLO(sums[0].Goodput.SLO); err == nil {
			slo = o
		}
	}
	for _, r := range runs {
		first, last := time.Duration(math.MaxInt64), time.Duration(0)
		base := r.Started.UnixNano()
		n := 0
		err := src.Results(r.ID, func(res *tape.Result) error {
			if n++; n%checkEvery == 1 { // the first and every checkEvery-th
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			acc.Add(res)
			if res.Warmup {
				return nil
			}
			first = min(first, res.Sent)
			last = max(last, res.Sent+res.E2E)
			if cfg.Timeline {
				ivs = append(ivs, interval{start: base + int64(res.Sent), end: base + int64(res.Sent+res.E2E),
					out: int32(res.OutputTokens), first: res.Turn == 0})
			}
			if cfg.ByConversation {
				c := convs[res.Conversation]
				if c == nil {
					c = &convAcc{}
					convs[res.Conversation] = c
				}
				c.requests++
				if !metrics.OK(res) {
					c.errors++
					return nil
				}
				c.okN++
				if res.TTFT > 0 {
					v := ms(res.TTFT)
					c.ttftSum += v
					c.ttftMax = max(c.ttftMax, v)
					c.ttftN++
				}
				v := ms(res.E2E)
				c.e2eSum += v
				c.e2eMax = max(c.e2eMax, v)
				c.in += int64(res.InputTokens)
				c.out += int64(res.OutputTokens)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("report run %d: %w", r.ID, err)
		}
		if first > last {
			first = 0
		}
		window = max(window, runWindow(r, stored[r.ID], first, last))
	}
	rep.Summary = acc.Summary(window, slo)
	for _, s := range sums {
		rep.Summary.Reconnects += s.Reconnects // the replayer's count; results do not keep it
		rep.Summary.Skipped += s.Skipped       // turns not sent leave no result either
	}
	if len(stored) == len(runs) {
		// Every run kept its histograms: percentiles come from them, merged exactly.
		fillLatency(&rep.Summary, rep.Latency)
	} else {
		rep.Latency = acc.Set()
	}
	if cfg.Timeline {
		tl := timeline(ivs)
		rep.Timeline = &tl
	}
	if cfg.ByConversation {
		ids := make([]uint64, 0, len(convs))
		for id := range convs {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		rep.ByConversation = make([]ConversationStats, 0, len(ids))
		for _, id := range ids {
			c := convs[id]
			cs := ConversationStats{Conversation: id, Requests: c.requests, Errors: c.errors,
				TTFTMax: c.ttftMax, E2EMax: c.e2eMax, InputTokens: c.in, OutputTokens: c.out}
			if c.ttftN > 0 {
				cs.TTFTMean = c.ttftSum / float64(c.ttftN)
			}
			if c.okN > 0 {
				cs.E2EMean = c.e2eSum / float64(c.okN)
			}
			rep.ByConversation = append(rep.ByConversation, cs)
		}
	}
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
