package analyze

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

// RecordingRef is the name that stands for the recorded baseline in Compare: the recording
// the other side's run replayed, matched to it turn by turn.
const RecordingRef = "recording"

// Side names one side of a comparison. A side of several runs (shards of one replay) has the
// first run's ID, the names joined with "+" and every run's id in Runs.
type Side struct {
	Kind string   `json:"kind"` // "run" or "recording"
	ID   uint64   `json:"id"`
	Name string   `json:"name"`
	Runs []uint64 `json:"runs,omitempty"` // the runs of a side of several runs
}

// Change is one figure on both sides: Abs = Target − Base, Rel = Abs / Base (nil when Base
// is 0). A statistic of a distribution that has no samples on a side (the latencies of a side
// without successful requests, the TTFT of turns that were not streamed) is not 0: Missing
// names that side, Abs is 0 and Rel nil, and the side's Base or Target (0) means nothing.
type Change struct {
	Name   string   `json:"name"` // "ttft_ms.p99", "requests.errors", …
	Base   float64  `json:"base"`
	Target float64  `json:"target"`
	Abs    float64  `json:"abs"`
	Rel    *float64 `json:"rel"`
	// Missing is "base", "target" or "both": the side whose distribution has no samples.
	// Empty when both sides have the figure.
	Missing string `json:"missing,omitempty"`
}

// TurnChange is one turn-index bucket's figures on both sides.
type TurnChange struct {
	Bucket  string   `json:"bucket"`
	Changes []Change `json:"changes"`
}

// TurnRegression is one matched request whose latency grew.
type TurnRegression struct {
	Conversation uint64  `json:"conversation"`
	Turn         int     `json:"turn"` // 0-based
	BaseTTFT     float64 `json:"base_ttft_ms"`
	TargetTTFT   float64 `json:"target_ttft_ms"`
	TTFTDelta    float64 `json:"ttft_delta_ms"`
	BaseE2E      float64 `json:"base_e2e_ms"`
	TargetE2E    float64 `json:"target_e2e_ms"`
	E2EDelta     float64 `json:"e2e_delta_ms"`
}

// ConversationRegression is one conversation's total E2E change over its matched turns.
type ConversationRegression struct {
	Conversation uint64  `json:"conversation"`
	Turns        int     `json:"turns"`
	BaseE2E      float64 `json:"base_e2e_ms"`
	TargetE2E    float64 `json:"target_e2e_ms"`
	E2EDelta     float64 `json:"e2e_delta_ms"`
	TTFTDelta    float64 `json:"ttft_delta_ms"` // summed over its turns
}

// TokenDrift compares token counts of matched requests.
type TokenDrift struct {
	Base         int64   `json:"base_total"`
	Target       int64   `json:"target_total"`
	MeanDelta    float64 `json:"mean_delta"`
	MeanAbsDelta float64 `json:"mean_abs_delta"`
	ChangedRatio float64 `json:"changed_ratio"` // share of pairs whose count differs
}

// Drift is the output-length and token-count drift over matched successful pairs.
type Drift struct {
	Pairs        int        `json:"pairs"`
	InputTokens  TokenDrift `json:"input_tokens"`
	OutputTokens TokenDrift `json:"output_tokens"`
}

// Comparison is what "llmtape compare" reports.
type Comparison struct {
	Base    Side         `json:"base"`
	Target  Side         `json:"target"`
	Matched int          `json:"matched"` // requests present on both sides
	Metrics []Change     `json:"metrics"`
	ByTurn  []TurnChange `json:"by_turn"`
	// Regressions are the matched turns and conversations whose latency grew most, worst first
	// (at most CompareConfig.Top each).
	Regressions struct {
		Turns         []TurnRegression         `json:"turns"`
		Conversations []ConversationRegression `json:"conversations"`
	} `json:"regressions"`
	Drift Drift `json:"drift"`
	// TTFTNotMeasured counts, per side, the successful requests that have no TTFT: recorded
	// turns that were not streamed (a whole reply has no first token) or streamed no output.
	// They are left out of every TTFT figure and of the TTFT regressions, never read as 0.
	TTFTNotMeasured struct {
		Base   int `json:"base"`
		Target int `json:"target"`
	} `json:"ttft_not_measured"`
	// Warnings say what leaves figures of the comparison empty or incomplete, as readable
	// lines: a side with no successful requests, TTFT not measured.
	Warnings []string `json:"warnings"`
	// Failed says why the --fail-on gate fails, as readable reasons: a side with no successful
	// requests (whatever the conditions), a condition whose figure has no samples on a side,
	// and the conditions that hold.
	Failed []string `json:"failed"`
	// Verdict is what the comparison opens with: better, worse or the same within noise for
	// each headline figure, the gate's outcome and the warnings (docs/analyze.md).
	Verdict *Verdict `json:"verdict"`
	// VerifyOutput compares the replies turn by turn (CompareConfig.VerifyOutput); nil
	// without it.
	VerifyOutput *OutputVerification `json:"verify_output,omitempty"`

	// Percentiles are the percentiles the table, CSV and page show (compare --percentiles);
	// nil for their defaults. JSON always has every one.
	Percentiles                []float64       `json:"-"`
	BaseSummary, TargetSummary metrics.Summary `json:"-"`
	BaseSet, TargetSet         *metrics.Set    `json:"-"`
	pairs                      []pair
}

// CompareConfig tunes a comparison.
type CompareConfig struct {
	// Top is how many regressions of each kind to keep; default 10.
	Top int
	// FailOn are conditions that fail the comparison (see ParseConditions).
	FailOn []Condition
	// SLO is used for both sides' goodput. Zero takes the SLO the runs were replayed with
	// when they all used the same one (as report shows their goodput), else counts every
	// successful request.
	SLO metrics.SLO
	// VerifyOutput compares the replies of matched requests (see OutputVerification). A run
	// side must have been replayed with replay --keep-replies, else Compare fails.
	VerifyOutput bool
}

// sample is one request's figures for matching. A ttft of 0 is not measured (no output
// event), as the accumulator reads it.
type sample struct {
	ttft, e2e time.Duration
	in, out   int
	ok        bool
}

// hasTTFT reports whether the request succeeded with a measured TTFT.
func (s sample) hasTTFT() bool { return s.ok && s.ttft > 0 }

type key struct {
	conv uint64
	turn int
}

type pair struct {
	k            key
	base, target sample
}

// sideData is one side read into memory.
type sideData struct {
	side    Side
	acc     metrics.Accumulator
	samples map[key]sample
	window  time.Duration
	noTTFT  int // successful requests without a TTFT
	// replies and temps are the requests' replies and temperatures, read only for output
	// verification (nil otherwise).
	replies map[key]reply
	temps   map[key]temperature
}

// newSide is an empty side; verify also keeps replies and temperatures.
func newSide(side Side, verify bool) *sideData {
	d := &sideData{side: side, samples: map[key]sample{}}
	if verify {
		d.replies, d.temps = map[key]reply{}, map[key]temperature{}
	}
	return d
}

// add keeps one request's sample.
func (d *sideData) add(k key, s sample) {
	d.samples[k] = s
	if s.ok && !s.hasTTFT() {
		d.noTTFT++
	}
}

func sampleOf(r *tape.Result) sample {
	return sample{ttft: r.TTFT, e2e: r.E2E, in: r.InputTokens, out: r.OutputTokens, ok: metrics.OK(r)}
}

// findRuns resolves a side's reference: one run (id, name, "latest"), or several separated
// by commas ("shard-0,shard-1,shard-2") when no run has the whole reference as its name.
func findRuns(src Source, ref string) ([]*tape.Run, error) {
	run, err := src.FindRun(ref)
	if err == nil {
		return []*tape.Run{run}, nil
	}
	if !strings.Contains(ref, ",") || !errors.Is(err, tape.ErrNotFound) {
		return nil, err
	}
	var runs []*tape.Run
	seen := map[uint64]bool{}
	for _, part := range strings.Split(ref, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("run list %q: empty run reference", ref)
		}
		r, err := src.FindRun(part)
		if err != nil {
			return nil, err
		}
		if !seen[r.ID] {
			seen[r.ID] = true
			runs = append(runs, r)
		}
	}
	return runs, nil
}

// readRuns reads the results of one or several runs (warmup excluded) as one side, as
// "report --run A --run B" merges shards: shards run side by side, so the side's window is
// the longest of the runs' windows. It returns the runs read.
func readRuns(ctx context.Context, src Source, ref string, verify bool) (*sideData, []*tape.Run, error) {
	runs, err := findRuns(src, ref)
	if err != nil {
		return nil, nil, err
	}
	if verify {
		if err := checkKeptReplies(runs); err != nil {
			return nil, nil, err
		}
	}
	d := newSide(Side{Kind: "run", ID: runs[0].ID, Name: runs[0].Name}, verify)
	if len(runs) > 1 {
		names := make([]string, len(runs))
		for i, r := range runs {
			names[i] = r.Name
			d.side.Runs = append(d.side.Runs, r.ID)
		}
		d.side.Name = strings.Join(names, "+")
	}
	for _, run := range runs {
		first, last := time.Duration(math.MaxInt64), time.Duration(0)
		n := 0
		err = src.Results(run.ID, func(r *tape.Result) error {
			if n++; n%checkEvery == 1 { // the first and every checkEvery-th
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			d.acc.Add(r)
			if r.Warmup {
				return nil
			}
			first, last = min(first, r.Sent), max(last, r.Sent+r.E2E)
			d.add(key{r.Conversation, r.Turn}, sampleOf(r))
			if d.replies != nil && r.Reply != nil {
				d.replies[key{r.Conversation, r.Turn}] = replyOf(r.Reply.Content, r.Reply.ToolCalls)
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("read run %d: %w", run.ID, err)
		}
		if first > last {
			first = 0
		}
		// The stored summary's window is the replayer's measurement window, as report uses.
		var stored *metrics.Summary
		var s metrics.Summary
		if len(run.Summary) > 0 && json.Unmarshal(run.Summary, &s) == nil {
			stored = &s
		}
		d.window = max(d.window, runWindow(run, stored, first, last))
	}
	return d, runs, nil
}

// sharedSLO returns the SLO that every run was replayed with (from its stored summary), or
// the zero SLO when they differ or none was given.
func sharedSLO(runs []*tape.Run) metrics.SLO {
	var slo string
	for i, r := range runs {
		var s struct {
			Goodput struct {
				SLO string `json:"slo"`
			} `json:"goodput"`
		}
		if len(r.Summary) > 0 {
			if json.Unmarshal(r.Summary, &s) != nil {
				return metrics.SLO{}
			}
		}
		if i > 0 && s.Goodput.SLO != slo {
			return metrics.SLO{}
		}
		slo = s.Goodput.SLO
	}
	o, err := metrics.ParseSLO(slo)
	if err != nil {
		return metrics.SLO{}
	}
	return o
}

// recordingOf returns the recording the runs replayed; runs of different recordings cannot
// stand against one recording.
func recordingOf(runs []*tape.Run) (uint64, error) {
	for _, r := range runs[1:] {
		if r.Recording != runs[0].Recording {
			return 0, fmt.Errorf("runs %d and %d replayed different recordings (%d and %d)",
				runs[0].ID, r.ID, runs[0].Recording, r.Recording)
		}
	}
	return runs[0].Recording, nil
}

// wantedTurns calls fn with each turn of the recording whose key is in want, checking ctx
// every checkEvery conversations.
func wantedTurns(ctx context.Context, src Source, recording uint64, want map[key]sample, fn func(key, *tape.Turn)) error {
	var convs []uint64
	if err := src.Conversations(recording, func(c *tape.Conversation) error {
		convs = append(convs, c.ID)
		return nil
	}); err != nil {
		return fmt.Errorf("read recording %d: %w", recording, err)
	}
	for i, id := range convs {
		if i%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("read recording %d: %w", recording, err)
			}
		}
		err := src.Turns(id, func(t *tape.Turn) error {
			k := key{t.Conversation, t.Index}
			if _, ok := want[k]; ok {
				fn(k, t)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read conversation %d: %w", id, err)
		}
	}
	return nil
}

// readRecording reads the recorded turns that match the other side's requests, as results.
func readRecording(ctx context.Context, src Source, recording uint64, want map[key]sample, verify bool) (*sideData, error) {
	rec, err := src.Recording(recording)
	if err != nil {
		return nil, fmt.Errorf("read recording %d: %w", recording, err)
	}
	d := newSide(Side{Kind: "recording", ID: rec.ID, Name: rec.Name}, verify)
	var first, last int64 = math.MaxInt64, math.MinInt64
	err = wantedTurns(ctx, src, recording, want, func(k key, t *tape.Turn) {
		r := t.Result()
		d.acc.Add(&r)
		d.add(k, sampleOf(&r))
		if verify {
			d.replies[k] = replyOf(t.Response.Content, t.Response.ToolCalls)
			d.temps[k] = temperatureOf(t.Request.Params)
		}
		s := t.Timing.Start.UnixNano()
		first, last = min(first, s), max(last, t.Timing.Ended().UnixNano())
	})
	if err != nil {
		return nil, err
	}
	if last > first {
		d.window = time.Duration(last - first)
	}
	return d, nil
}

// Compare compares base and target, each a run reference (id, name, "latest"), several run
// references separated by commas (shards of one replay, read as one side), or RecordingRef. With RecordingRef on one side, the other must be a run: the recording it
// replayed is read, keeping only the turns the run replayed. Reading checks ctx every
// checkEvery records and returns its error, wrapped, once it is done.
func Compare(ctx context.Context, src Source, base, target string, cfg CompareConfig) (*Comparison, error) {
	if cfg.Top <= 0 {
		cfg.Top = 10
	}
	if base == RecordingRef && target == RecordingRef {
		return nil, fmt.Errorf("compare: at most one side can be %q", RecordingRef)
	}
	var b, t *sideData
	var runs, other []*tape.Run
	var rec uint64
	var err error
	switch {
	case base == RecordingRef:
		if t, runs, err = readRuns(ctx, src, target, cfg.VerifyOutput); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		if rec, err = recordingOf(runs); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		if b, err = readRecording(ctx, src, rec, t.samples, cfg.VerifyOutput); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
	case target == RecordingRef:
		if b, runs, err = readRuns(ctx, src, base, cfg.VerifyOutput); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		if rec, err = recordingOf(runs); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		if t, err = readRecording(ctx, src, rec, b.samples, cfg.VerifyOutput); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
	default:
		if b, runs, err = readRuns(ctx, src, base, cfg.VerifyOutput); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		if t, other, err = readRuns(ctx, src, target, cfg.VerifyOutput); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
	}
	if cfg.VerifyOutput {
		// A run side's temperatures: its recorded requests', unless its --extra-body set one.
		// runs are the base's runs, or the target's when the base is the recording.
		cache := map[uint64]map[key]temperature{}
		sides := []struct {
			d    *sideData
			runs []*tape.Run
		}{{b, runs}, {t, other}}
		if base == RecordingRef {
			sides = sides[1:]
			sides[0].runs = runs
		} else if target == RecordingRef {
			sides = sides[:1]
		}
		for _, s := range sides {
			if err := sideTemperatures(ctx, src, s.d, s.runs, cache); err != nil {
				return nil, fmt.Errorf("compare: %w", err)
			}
		}
	}
	if cfg.SLO.IsZero() {
		cfg.SLO = sharedSLO(append(runs, other...))
	}
	c := &Comparison{Base: b.side, Target: t.side}
	c.BaseSummary = b.acc.Summary(b.window, cfg.SLO)
	c.TargetSummary = t.acc.Summary(t.window, cfg.SLO)
	c.BaseSet, c.TargetSet = b.acc.Set(), t.acc.Set()
	c.Metrics = summaryChanges(&c.BaseSummary, &c.TargetSummary)
	c.ByTurn = turnChanges(c.BaseSummary.ByTurn, c.TargetSummary.ByTurn)
	c.TTFTNotMeasured.Base, c.TTFTNotMeasured.Target = b.noTTFT, t.noTTFT
	c.Warnings = []string{}
	var unusable []string
	for _, s := range []struct {
		role string
		d    *sideData
		sum  *metrics.Summary
	}{{"base", b, &c.BaseSummary}, {"target", t, &c.TargetSummary}} {
		if s.sum.Requests.OK == 0 {
			msg := noSuccess(s.role, s.d.side.Kind, s.sum)
			c.Warnings = append(c.Warnings, msg)
			unusable = append(unusable, msg)
		}
		if s.d.noTTFT > 0 {
			c.Warnings = append(c.Warnings, ttftNotMeasured(s.role, s.d.side.Kind, s.d.noTTFT))
		}
	}
	for k, bs := range b.samples {
		if ts, ok := t.samples[k]; ok {
			c.pairs = append(c.pairs, pair{k, bs, ts})
		}
	}
	sort.Slice(c.pairs, func(i, j int) bool {
		a, b := c.pairs[i].k, c.pairs[j].k
		return a.conv < b.conv || a.conv == b.conv && a.turn < b.turn
	})
	c.Matched = len(c.pairs)
	c.regressions(cfg.Top)
	c.drift()
	if cfg.VerifyOutput {
		c.verifyOutput(b, t)
	}
	if len(cfg.FailOn) > 0 {
		// A side without one successful request is no measurement: a gate on it fails, even
		// when no condition names a latency.
		c.Failed = append(c.Failed, unusable...)
	}
	for _, cond := range cfg.FailOn {
		if reason, ok := cond.Eval(c); ok {
			c.Failed = append(c.Failed, reason)
		}
	}
	if c.Failed == nil {
		c.Failed = []string{}
	}
	c.buildVerdict(runs, other, cfg.FailOn)
	return c, nil
}

// noSuccess says that a side (role "base" or "target", kind "run" or "recording") has no
// successful requests, and what became of its requests.
func noSuccess(role, kind string, s *metrics.Summary) string {
	msg := fmt.Sprintf("%s %s has no successful requests", role, kind)
	if s.Requests.Total == 0 {
		return msg + ": it has no requests"
	}
	return fmt.Sprintf("%s: %d of %d failed (%s)", msg, s.Requests.Errors, s.Requests.Total, s.ErrorsText())
}

// ttftNotMeasured says that n successful requests of a side have no TTFT.
func ttftNotMeasured(role, kind string, n int) string {
	if kind == "recording" {
		return fmt.Sprintf("ttft not measured for %d recorded turns (not streamed, or no output): left out of the ttft figures", n)
	}
	return fmt.Sprintf("ttft not measured for %d requests of the %s %s (no output): left out of the ttft figures", n, role, kind)
}

func change(name string, b, t float64) Change {
	c := Change{Name: name, Base: b, Target: t, Abs: t - b}
	if b != 0 {
		r := (t - b) / b
		c.Rel = &r
	}
	return c
}

// statChange compares a statistic of two distributions of bn and tn samples: a side without
// samples has no statistic, so the change is marked Missing instead of read from a 0.
func statChange(name string, bn, tn int64, b, t float64) Change {
	c := change(name, b, t)
	switch {
	case bn == 0 && tn == 0:
		c.Missing = "both"
	case bn == 0:
		c.Missing = "base"
	case tn == 0:
		c.Missing = "target"
	default:
		return c
	}
	c.Abs, c.Rel = 0, nil
	return c
}

// distChanges compares two distributions stat by stat.
func distChanges(name string, b, t metrics.Dist) []Change {
	stat := func(s string, bv, tv float64) Change { return statChange(name+"."+s, b.Count, t.Count, bv, tv) }
	out := []Change{
		change(name+".count", float64(b.Count), float64(t.Count)),
		stat("mean", b.Mean, t.Mean),
		stat("std", b.Std, t.Std),
		stat("min", b.Min, t.Min),
	}
	// Each percentile of metrics.Percentiles; one a side has too few samples for (p99.9
	// under 1,000) is missing there, as with no samples, so no gate reads it.
	for _, p := range metrics.Percentiles {
		bn, tn := b.Count, t.Count
		if _, ok := b.At(p.Q); !ok {
			bn = 0
		}
		if _, ok := t.At(p.Q); !ok {
			tn = 0
		}
		out = append(out, statChange(name+"."+p.Key, bn, tn, b.Value(p.Q), t.Value(p.Q)))
	}
	return append(out, stat("max", b.Max, t.Max))
}

func summaryChanges(b, t *metrics.Summary) []Change {
	out := []Change{
		change("requests.total", float64(b.Requests.Total), float64(t.Requests.Total)),
		change("requests.ok", float64(b.Requests.OK), float64(t.Requests.OK)),
		change("requests.errors", float64(b.Requests.Errors), float64(t.Requests.Errors)),
		change("throughput.requests_per_s", b.Throughput.RequestsPerS, t.Throughput.RequestsPerS),
		change("throughput.input_tokens_per_s", b.Throughput.InputTokensPerS, t.Throughput.InputTokensPerS),
		change("throughput.output_tokens_per_s", b.Throughput.OutputTokensPerS, t.Throughput.OutputTokensPerS),
		change("goodput.ratio", b.Goodput.Ratio, t.Goodput.Ratio),
		change("cached_tokens", float64(b.CachedTokens), float64(t.CachedTokens)),
	}
	for _, m := range []struct {
		name string
		b, t metrics.Dist
	}{
		{metrics.TTFT, b.TTFT, t.TTFT}, {metrics.TPOT, b.TPOT, t.TPOT},
		{metrics.TPOTFirstChunk, b.TPOTFirstChunk, t.TPOTFirstChunk}, {metrics.ITL, b.ITL, t.ITL},
		{metrics.E2E, b.E2E, t.E2E}, {"input_tokens", b.InputTokens, t.InputTokens},
		{"output_tokens", b.OutputTokens, t.OutputTokens},
	} {
		out = append(out, distChanges(m.name, m.b, m.t)...)
	}
	return out
}

// turnChanges compares p50 and p99 of TTFT, ITL, TPOT and E2E per turn bucket present on
// either side.
func turnChanges(b, t []metrics.TurnSummary) []TurnChange {
	find := func(ts []metrics.TurnSummary, name string) metrics.TurnSummary {
		for _, x := range ts {
			if x.Bucket == name {
				return x
			}
		}
		return metrics.TurnSummary{Bucket: name}
	}
	var out []TurnChange
	for _, name := range metrics.TurnBuckets {
		bb, tt := find(b, name), find(t, name)
		if bb.Requests == 0 && tt.Requests == 0 {
			continue
		}
		stat := func(name string, b, t metrics.Dist, bv, tv float64) Change {
			return statChange(name, b.Count, t.Count, bv, tv)
		}
		out = append(out, TurnChange{Bucket: name, Changes: []Change{
			change("requests", float64(bb.Requests), float64(tt.Requests)),
			stat("ttft_ms.p50", bb.TTFT, tt.TTFT, bb.TTFT.P50, tt.TTFT.P50),
			stat("ttft_ms.p99", bb.TTFT, tt.TTFT, bb.TTFT.P99, tt.TTFT.P99),
			stat("itl_ms.p50", bb.ITL, tt.ITL, bb.ITL.P50, tt.ITL.P50),
			stat("tpot_ms.p50", bb.TPOT, tt.TPOT, bb.TPOT.P50, tt.TPOT.P50),
			stat("e2e_ms.p50", bb.E2E, tt.E2E, bb.E2E.P50, tt.E2E.P50),
			stat("e2e_ms.p99", bb.E2E, tt.E2E, bb.E2E.P99, tt.E2E.P99),
		}})
	}
	return out
}

// regressions keeps the matched successful turns with the largest TTFT increase and the
// conversations with the largest summed E2E increase. A turn without TTFT on a side is not
// ranked by TTFT and adds nothing to its conversation's TTFT delta.
func (c *Comparison) regressions(top int) {
	convs := map[uint64]*ConversationRegression{}
	var turns []TurnRegression
	for _, p := range c.pairs {
		if !p.base.ok || !p.target.ok {
			continue
		}
		tr := TurnRegression{Conversation: p.k.conv, Turn: p.k.turn,
			BaseTTFT: ms(p.base.ttft), TargetTTFT: ms(p.target.ttft),
			BaseE2E: ms(p.base.e2e), TargetE2E: ms(p.target.e2e)}
		tr.E2EDelta = tr.TargetE2E - tr.BaseE2E
		if p.base.hasTTFT() && p.target.hasTTFT() {
			tr.TTFTDelta = tr.TargetTTFT - tr.BaseTTFT
			turns = append(turns, tr)
		}
		cr := convs[p.k.conv]
		if cr == nil {
			cr = &ConversationRegression{Conversation: p.k.conv}
			convs[p.k.conv] = cr
		}
		cr.Turns++
		cr.BaseE2E += tr.BaseE2E
		cr.TargetE2E += tr.TargetE2E
		cr.E2EDelta += tr.E2EDelta
		cr.TTFTDelta += tr.TTFTDelta
	}
	sort.SliceStable(turns, func(i, j int) bool { return turns[i].TTFTDelta > turns[j].TTFTDelta })
	c.Regressions.Turns = []TurnRegression{}
	for _, t := range turns {
		if len(c.Regressions.Turns) == top || t.TTFTDelta <= 0 {
			break
		}
		c.Regressions.Turns = append(c.Regressions.Turns, t)
	}
	cs := make([]ConversationRegression, 0, len(convs))
	for _, cr := range convs {
		cs = append(cs, *cr)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].E2EDelta != cs[j].E2EDelta {
			return cs[i].E2EDelta > cs[j].E2EDelta
		}
		return cs[i].Conversation < cs[j].Conversation
	})
	c.Regressions.Conversations = []ConversationRegression{}
	for _, cr := range cs {
		if len(c.Regressions.Conversations) == top || cr.E2EDelta <= 0 {
			break
		}
		c.Regressions.Conversations = append(c.Regressions.Conversations, cr)
	}
}

// tokAcc sums one token count's drift over pairs.
type tokAcc struct {
	base, target, sum, absSum int64
	changed                   int
}

func (a *tokAcc) add(b, t int) {
	d := int64(t - b)
	a.base += int64(b)
	a.target += int64(t)
	a.sum += d
	if d != 0 {
		a.changed++
	}
	if d < 0 {
		d = -d
	}
	a.absSum += d
}

func (a *tokAcc) drift(n int) TokenDrift {
	td := TokenDrift{Base: a.base, Target: a.target}
	if n > 0 {
		td.MeanDelta = float64(a.sum) / float64(n)
		td.MeanAbsDelta = float64(a.absSum) / float64(n)
		td.ChangedRatio = float64(a.changed) / float64(n)
	}
	return td
}

// drift compares the token counts of matched pairs that succeeded on both sides.
func (c *Comparison) drift() {
	var in, out tokAcc
	n := 0
	for _, p := range c.pairs {
		if !p.base.ok || !p.target.ok {
			continue
		}
		n++
		in.add(p.base.in, p.target.in)
		out.add(p.base.out, p.target.out)
	}
	c.Drift = Drift{Pairs: n, InputTokens: in.drift(n), OutputTokens: out.drift(n)}
}

// Condition is one --fail-on condition: Name Op Value, where Value is a relative change
// (Percent), an absolute change (Signed: written with + or -), or the target's own value.
type Condition struct {
	Name  string  // a Change name ("ttft_ms.p99") or "errors" for requests.errors
	Op    string  // ">", ">=", "<", "<="
	Value float64 // percent when Percent
	// Percent is "+10%": the relative change in percent. For OutputMatch it is the share in
	// percent instead (99% is 0.99): output_match has no base to change from.
	Percent bool
	Signed  bool // "+20": the absolute change
	text    string
}

// ParseConditions parses a comma-separated list such as "ttft_ms.p99>+10%,errors>0".
func ParseConditions(s string) ([]Condition, error) {
	var out []Condition
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		i := strings.IndexAny(part, "<>")
		if i <= 0 {
			return nil, fmt.Errorf("condition %q: want name>value, e.g. ttft_ms.p99>+10%% or errors>0", part)
		}
		c := Condition{Name: strings.TrimSpace(part[:i]), Op: part[i : i+1], text: part}
		rest := part[i+1:]
		if strings.HasPrefix(rest, "=") {
			c.Op += "="
			rest = rest[1:]
		}
		rest = strings.TrimSpace(rest)
		if strings.HasSuffix(rest, "%") {
			c.Percent = true
			rest = strings.TrimSuffix(rest, "%")
		}
		c.Signed = strings.HasPrefix(rest, "+") || strings.HasPrefix(rest, "-")
		v, err := strconv.ParseFloat(rest, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("condition %q: value %q is not a number", part, rest)
		}
		c.Value = v
		if c.Name == "errors" {
			c.Name = "requests.errors"
		}
		if c.Name == OutputMatch && c.Signed {
			return nil, fmt.Errorf("condition %q: %s is the share of equal replies, not a change: write e.g. %s<99%% or %s<0.99", part, OutputMatch, OutputMatch, OutputMatch)
		}
		if c.Name != OutputMatch && !knownChange(c.Name) {
			return nil, fmt.Errorf("condition %q: unknown figure %q (e.g. ttft_ms.p99, e2e_ms.mean, requests.errors)", part, c.Name)
		}
		out = append(out, c)
	}
	return out, nil
}

// knownChange reports whether name is a figure of Comparison.Metrics.
func knownChange(name string) bool {
	var s metrics.Summary
	for _, c := range summaryChanges(&s, &s) {
		if c.Name == name {
			return true
		}
	}
	return false
}

// Eval reports whether the condition fails the comparison, with a readable reason: when it
// holds, or when its figure has no samples on a side (an unmeasured figure passes no gate).
func (cond Condition) Eval(c *Comparison) (string, bool) {
	if cond.Name == OutputMatch {
		return cond.evalOutputMatch(c)
	}
	for _, ch := range c.Metrics {
		if ch.Name != cond.Name {
			continue
		}
		switch ch.Missing {
		case "base", "target":
			side := c.Base
			if ch.Missing == "target" {
				side = c.Target
			}
			return fmt.Sprintf("%s has no samples on the %s side (%s) [%s]", ch.Name, ch.Missing, side, cond.text), true
		case "both":
			return fmt.Sprintf("%s has no samples on either side [%s]", ch.Name, cond.text), true
		}
		var v float64
		var what string
		switch {
		case cond.Percent:
			if ch.Rel == nil {
				if ch.Abs == 0 {
					v = 0
				} else {
					v = math.Copysign(math.Inf(1), ch.Abs)
				}
			} else {
				v = *ch.Rel * 100
			}
			what = fmt.Sprintf("%s changed %+.1f%% (%s → %s)", ch.Name, v, output.FormatNum(ch.Base), output.FormatNum(ch.Target))
		case cond.Signed:
			v = ch.Abs
			what = fmt.Sprintf("%s changed by %+g (%s → %s)", ch.Name, v, output.FormatNum(ch.Base), output.FormatNum(ch.Target))
		default:
			v = ch.Target
			what = fmt.Sprintf("%s is %s", ch.Name, output.FormatNum(v))
		}
		if cond.holds(v, cond.Value) {
			return fmt.Sprintf("%s [%s]", what, cond.text), true
		}
		return "", false
	}
	return "", false
}

// holds reports whether v Op limit.
func (cond Condition) holds(v, limit float64) bool {
	switch cond.Op {
	case ">":
		return v > limit
	case ">=":
		return v >= limit
	case "<":
		return v < limit
	case "<=":
		return v <= limit
	}
	return false
}
