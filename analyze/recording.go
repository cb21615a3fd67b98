package analyze

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

// Source is what analysis reads. *tape.Store implements it; tests may use a double.
type Source interface {
	Recordings(fn func(*tape.Recording) error) error
	Recording(id uint64) (*tape.Recording, error)
	Conversations(recording uint64, fn func(*tape.Conversation) error) error
	Turns(conversation uint64, fn func(*tape.Turn) error) error
	Runs(fn func(*tape.Run) error) error
	FindRun(ref string) (*tape.Run, error)
	Results(run uint64, fn func(*tape.Result) error) error
}

var _ Source = (*tape.Store)(nil)

// Defaults of Config.
const (
	// DefaultCacheTokens is the LRU prefix cache's budget in tokens.
	DefaultCacheTokens = 1 << 20
)

// DefaultBlockSizes are the prefix-cache block sizes analysed when Config.BlockSizes is empty.
var DefaultBlockSizes = []int{16, 512}

// Config says how to analyse a recording. The zero value uses the defaults.
type Config struct {
	// BlockSizes are the prefix-cache block sizes in tokens; default DefaultBlockSizes.
	BlockSizes []int
	// CacheTokens is the LRU cache's budget in tokens; default DefaultCacheTokens.
	CacheTokens int64
}

// RecordingInfo names the recording a Profile describes.
type RecordingInfo struct {
	ID      uint64    `json:"id"`
	Name    string    `json:"name"`
	Source  string    `json:"source"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
}

// Arrivals describes when conversations arrived.
type Arrivals struct {
	// SpanS is the time from the first to the last conversation arrival, in seconds.
	SpanS float64 `json:"span_s"`
	// RatePerS is conversations per second: (conversations − 1) / SpanS; 0 under 2 arrivals.
	RatePerS float64 `json:"conversations_per_s"`
	// Interarrival is the distribution of gaps between consecutive conversation arrivals.
	Interarrival metrics.Dist `json:"interarrival_ms"`
	// CV is the coefficient of variation of the gaps (std / mean): 1 for Poisson arrivals,
	// above 1 for bursty ones.
	CV float64 `json:"burstiness_cv"`
}

// Errors counts failed requests.
type Errors struct {
	Total    int            `json:"total"`
	ByClass  map[string]int `json:"by_class"`
	ByStatus map[string]int `json:"by_status"`
}

// TurnStats are the figures of one turn-index bucket ("1", "2", "3", "4-7", "8-15", "16+").
type TurnStats struct {
	Bucket       string       `json:"bucket"`
	Requests     int          `json:"requests"`
	InputTokens  metrics.Dist `json:"input_tokens"`
	OutputTokens metrics.Dist `json:"output_tokens"`
	TTFT         metrics.Dist `json:"ttft_ms"`
	TPOT         metrics.Dist `json:"tpot_ms"`
	ITL          metrics.Dist `json:"itl_ms"`
	E2E          metrics.Dist `json:"e2e_ms"`
}

// Timeline is a quantity over time in buckets of BucketS seconds from the first request.
type Timeline struct {
	BucketS     float64   `json:"bucket_s"`
	Requests    []float64 `json:"requests_per_s"`      // requests started per second
	OutputTok   []float64 `json:"output_tokens_per_s"` // output tokens per second, at each end
	Concurrency []float64 `json:"concurrency"`         // mean requests in flight
	// Conversations is conversations started per second (their first turn's start).
	Conversations []float64 `json:"conversations_per_s"`
}

// Profile is what "llmtape analyze" reports about a recording.
type Profile struct {
	// Percentiles are the percentiles the table, CSV and page show (analyze --percentiles,
	// from metrics.ParsePercentiles); nil for their defaults. JSON always has every one.
	Percentiles          []float64      `json:"-"`
	Recording            RecordingInfo  `json:"recording"`
	Conversations        int            `json:"conversations"`
	Turns                int            `json:"turns"`
	TurnsPerConversation metrics.Dist   `json:"turns_per_conversation"`
	InputTokens          metrics.Dist   `json:"input_tokens"`
	OutputTokens         metrics.Dist   `json:"output_tokens"`
	CachedTokens         int64          `json:"server_cached_tokens"`
	ThinkTime            metrics.Dist   `json:"think_time_ms"`
	Arrivals             Arrivals       `json:"arrivals"`
	TTFT                 metrics.Dist   `json:"ttft_ms"`
	TPOT                 metrics.Dist   `json:"tpot_ms"`
	TPOTFirstChunk       metrics.Dist   `json:"tpot_first_chunk_ms"` // vLLM's TPOT (metrics.ResultTPOTFirstChunk)
	ITL                  metrics.Dist   `json:"itl_ms"`
	E2E                  metrics.Dist   `json:"e2e_ms"`
	Errors               Errors         `json:"errors"`
	Models               map[string]int `json:"models"`
	Grouping             map[string]int `json:"grouping"`
	Matches              map[string]int `json:"turn_matches"`
	TokenSources         map[string]int `json:"token_sources"`
	PrefixReuse          []Reuse        `json:"prefix_reuse"`
	ByTurn               []TurnStats    `json:"by_turn"`
	Timeline             Timeline       `json:"timeline"`
	// Latency holds the recorded latency histograms (not in JSON): the HTML report's CDFs.
	Latency *metrics.Set `json:"-"`
}

// turnRec is what the prefix-reuse pass keeps of a turn.
type turnRec struct {
	start   int64 // Unix ns, made non-decreasing within a conversation
	conv    int32 // index into the conversation table
	kept    int32
	replace bool
	segOff  int64 // into the segment arena
	nseg    int32
	reply   Segment
}

type convRec struct {
	parent   int32 // index of the parent conversation, or -1
	forkTurn int32
	first    int32 // index of its first turnRec
	n        int32
}

// interval is one request in time, for the timeline.
type interval struct {
	start, end int64 // Unix ns
	out        int32
	first      bool // the first turn of its conversation
}

// scan is what the first pass gathers from a run of conversations.
type scan struct {
	in, out, think, tpc, arrivals []float64
	byTurnIn, byTurnOut           [][]float64
	turns                         []turnRec
	crs                           []convRec // first is an index into turns
	arena                         []Segment
	ivs                           []interval
	scratch                       []Segment
	latency                       *metrics.Set
	nturns                        int
	cached                        int64
	errors                        int
	models, matches, sources      map[string]int
	grouping, byClass, byStatus   map[string]int
}

func newScan(p *Profile, hint int) *scan {
	s := &scan{
		byTurnIn:  make([][]float64, len(metrics.TurnBuckets)),
		byTurnOut: make([][]float64, len(metrics.TurnBuckets)),
		latency:   metrics.NewSet(),
		models:    map[string]int{}, matches: map[string]int{}, sources: map[string]int{},
		grouping: map[string]int{}, byClass: map[string]int{}, byStatus: map[string]int{},
	}
	// The recording's turn counter sizes the per-turn slices (it may be off while a recording
	// is still being written; append copes).
	if hint > 0 && hint < 1<<27 {
		s.in, s.out, s.think = make([]float64, 0, hint), make([]float64, 0, hint), make([]float64, 0, hint)
		s.turns, s.ivs, s.arena = make([]turnRec, 0, hint), make([]interval, 0, hint), make([]Segment, 0, hint+hint/4)
	}
	return s
}

// conversation reads conversation c (index ci of the recording) and its turns.
func (s *scan) conversation(src Source, ci int32, c *tape.Conversation, convIdx map[uint64]int32) error {
	cr := convRec{parent: -1, first: int32(len(s.turns))}
	if c.Parent != 0 {
		if pi, ok := convIdx[c.Parent]; ok {
			cr.parent, cr.forkTurn = pi, int32(c.ForkTurn)
		}
	}
	s.grouping[string(c.Grouping)]++
	s.arrivals = append(s.arrivals, float64(c.Arrival)/float64(time.Millisecond))
	var prev *tape.Turn
	var lastStart int64
	n := 0
	err := src.Turns(c.ID, func(t *tape.Turn) error {
		n++
		s.nturns++
		s.models[t.Request.Model]++
		s.matches[string(t.Match)]++
		s.sources[string(t.Tokens.Source)]++
		s.cached += int64(t.Tokens.Cached)
		s.in = append(s.in, float64(t.Tokens.Prompt))
		s.out = append(s.out, float64(t.Tokens.Completion))
		if b := metrics.TurnBucketIndex(t.Index); b >= 0 {
			s.byTurnIn[b] = append(s.byTurnIn[b], float64(t.Tokens.Prompt))
			s.byTurnOut[b] = append(s.byTurnOut[b], float64(t.Tokens.Completion))
		}
		if cls := t.FailureClass(); cls != errclass.None {
			s.errors++
			s.byClass[string(cls)]++
			if t.Response.Status > 0 {
				s.byStatus[strconv.Itoa(t.Response.Status)]++
			}
		}
		r := t.Result()
		s.latency.RecordResult(&r)
		start := t.Timing.Start.UnixNano()
		if prev != nil {
			if gap, ok := t.Timing.ThinkTime(&prev.Timing); ok {
				s.think = append(s.think, float64(gap)/float64(time.Millisecond))
			}
		}
		end := t.Timing.Ended().UnixNano()
		s.ivs = append(s.ivs, interval{start: start, end: end, out: int32(t.Tokens.Completion), first: n == 1})

		if start < lastStart {
			start = lastStart
		}
		lastStart = start
		var replace bool
		s.scratch, replace = addedSegments(t, s.scratch[:0])
		s.turns = append(s.turns, turnRec{
			start: start, conv: ci, kept: int32(t.Request.Kept), replace: replace,
			segOff: int64(len(s.arena)), nseg: int32(len(s.scratch)),
			reply: Segment{Tokens: int64(t.Tokens.Completion), Hash: replyHash(t)},
		})
		s.arena = append(s.arena, s.scratch...)
		prev = t
		return nil
	})
	if err != nil {
		return fmt.Errorf("analyze conversation %d: %w", c.ID, err)
	}
	cr.n = int32(n)
	s.crs = append(s.crs, cr)
	s.tpc = append(s.tpc, float64(n))
	return nil
}

// join appends o (the scan of the conversations after s's) to s.
func (s *scan) join(o *scan) {
	turnOff, segOff := int32(len(s.turns)), int64(len(s.arena))
	for _, cr := range o.crs {
		cr.first += turnOff
		s.crs = append(s.crs, cr)
	}
	for _, t := range o.turns {
		t.segOff += segOff
		s.turns = append(s.turns, t)
	}
	s.arena = append(s.arena, o.arena...)
	s.in, s.out = append(s.in, o.in...), append(s.out, o.out...)
	s.think, s.tpc = append(s.think, o.think...), append(s.tpc, o.tpc...)
	s.arrivals, s.ivs = append(s.arrivals, o.arrivals...), append(s.ivs, o.ivs...)
	for b := range s.byTurnIn {
		s.byTurnIn[b] = append(s.byTurnIn[b], o.byTurnIn[b]...)
		s.byTurnOut[b] = append(s.byTurnOut[b], o.byTurnOut[b]...)
	}
	s.latency.Merge(o.latency)
	s.nturns += o.nturns
	s.cached += o.cached
	s.errors += o.errors
	for _, m := range [][2]map[string]int{{s.models, o.models}, {s.matches, o.matches},
		{s.sources, o.sources}, {s.grouping, o.grouping}, {s.byClass, o.byClass}, {s.byStatus, o.byStatus}} {
		for k, v := range m[1] {
			m[0][k] += v
		}
	}
}

// fill copies the counts into the profile.
func (s *scan) fill(p *Profile) {
	p.Turns, p.CachedTokens, p.Errors.Total = s.nturns, s.cached, s.errors
	p.Models, p.Matches, p.TokenSources, p.Grouping = s.models, s.matches, s.sources, s.grouping
	p.Errors.ByClass, p.Errors.ByStatus = s.byClass, s.byStatus
	p.Latency = s.latency
}

// Analyze profiles one recording: two passes over its turns, the first streaming every turn
// for the distributions, the second replaying every prompt in time order through prefix
// caches of each block size. Both passes check ctx every checkEvery records and return its
// error, wrapped, once it is done.
func Analyze(ctx context.Context, src Source, recording uint64, cfg Config) (*Profile, error) {
	rec, err := src.Recording(recording)
	if err != nil {
		return nil, fmt.Errorf("analyze recording %d: %w", recording, err)
	}
	if len(cfg.BlockSizes) == 0 {
		cfg.BlockSizes = DefaultBlockSizes
	}
	if cfg.CacheTokens <= 0 {
		cfg.CacheTokens = DefaultCacheTokens
	}
	for _, b := range cfg.BlockSizes {
		if b <= 0 {
			return nil, fmt.Errorf("analyze: block size %d: want a positive number of tokens", b)
		}
	}
	p := &Profile{
		Recording: RecordingInfo{ID: rec.ID, Name: rec.Name, Source: rec.Source,
			Started: rec.Started, Ended: rec.Ended},
		Errors:       Errors{ByClass: map[string]int{}, ByStatus: map[string]int{}},
		Models:       map[string]int{},
		Grouping:     map[string]int{},
		Matches:      map[string]int{},
		TokenSources: map[string]int{},
		Latency:      metrics.NewSet(),
	}

	var convs []*tape.Conversation
	if err := src.Conversations(recording, func(c *tape.Conversation) error {
		convs = append(convs, c)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("analyze recording %d: %w", recording, err)
	}
	convIdx := make(map[uint64]int32, len(convs))
	for i, c := range convs {
		convIdx[c.ID] = int32(i)
	}

	// The first pass reads the conversations in two halves side by side (the store serves
	// concurrent reads), each into a scan of its own, then joins them in order.
	// The first scan is sized for every turn, so that joining the second needs no growing.
	parts := []*scan{newScan(p, rec.Turns), newScan(p, rec.Turns/2+1)}
	half := len(convs) / 2
	bounds := [][2]int{{0, half}, {half, len(convs)}}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ci := bounds[i][0]; ci < bounds[i][1] && errs[i] == nil; ci++ {
				if ci%checkEvery == 0 {
					if errs[i] = ctx.Err(); errs[i] != nil {
						break
					}
				}
				errs[i] = part.conversation(src, int32(ci), convs[ci], convIdx)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("analyze recording %d: %w", recording, err)
			}
			return nil, err
		}
	}
	first := parts[0]
	for _, part := range parts[1:] {
		first.join(part)
	}
	crs := first.crs
	in, out, think, tpc, arrivals := first.in, first.out, first.think, first.tpc, first.arrivals
	byTurnIn, byTurnOut := first.byTurnIn, first.byTurnOut
	turns, arena, ivs := first.turns, first.arena, first.ivs
	first.fill(p)
	p.Conversations = len(convs)
	p.TurnsPerConversation = metrics.ValuesDist(tpc)
	p.InputTokens = metrics.ValuesDist(in)
	p.OutputTokens = metrics.ValuesDist(out)
	p.ThinkTime = metrics.ValuesDist(think)
	p.Arrivals = arrivalStats(arrivals)
	p.TTFT = p.Latency.Dist(metrics.TTFT, "")
	p.TPOT = p.Latency.Dist(metrics.TPOT, "")
	p.TPOTFirstChunk = p.Latency.Dist(metrics.TPOTFirstChunk, "")
	p.ITL = p.Latency.Dist(metrics.ITL, "")
	p.E2E = p.Latency.Dist(metrics.E2E, "")
	for b, name := range metrics.TurnBuckets {
		if len(byTurnIn[b]) == 0 {
			continue
		}
		p.ByTurn = append(p.ByTurn, TurnStats{
			Bucket: name, Requests: len(byTurnIn[b]),
			InputTokens: metrics.ValuesDist(byTurnIn[b]), OutputTokens: metrics.ValuesDist(byTurnOut[b]),
			TTFT: p.Latency.Dist(metrics.TTFT, name), TPOT: p.Latency.Dist(metrics.TPOT, name),
			ITL: p.Latency.Dist(metrics.ITL, name), E2E: p.Latency.Dist(metrics.E2E, name),
		})
	}
	in, out, think, tpc, byTurnIn, byTurnOut = nil, nil, nil, nil, nil, nil
	p.Timeline = timeline(ivs)
	ivs, convs, convIdx, parts, first = nil, nil, nil, nil, nil
	// The first pass leaves a heap of decoded turns behind. Collect it and hand the pages back
	// before the caches allocate their tables (hundreds of MB for a million turns), or the
	// tables land on top of the first pass's peak instead of in its place.
	debug.FreeOSMemory()
	p.PrefixReuse = prefixReuse(ctx, turns, crs, arena, cfg)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("analyze recording %d: prefix reuse: %w", recording, err)
	}
	return p, nil
}

// arrivalStats summarizes conversation arrival offsets in milliseconds.
func arrivalStats(ms []float64) Arrivals {
	var a Arrivals
	if len(ms) < 2 {
		return a
	}
	sort.Float64s(ms)
	gaps := make([]float64, len(ms)-1)
	for i := 1; i < len(ms); i++ {
		gaps[i-1] = ms[i] - ms[i-1]
	}
	a.SpanS = (ms[len(ms)-1] - ms[0]) / 1000
	if a.SpanS > 0 {
		a.RatePerS = float64(len(gaps)) / a.SpanS
	}
	a.Interarrival = metrics.ValuesDist(gaps)
	if a.Interarrival.Mean > 0 {
		a.CV = a.Interarrival.Std / a.Interarrival.Mean
	}
	return a
}

// prefixReuse replays every prompt in time order through the caches. Each block size's
// unbounded cache and LRU is simulated by a goroutine of its own, which walks the turns and
// rebuilds the prompts itself (cheap next to the caches), so the simulations share nothing.
// Once ctx is done the simulations stop early and the figures are incomplete: the caller
// checks ctx.
func prefixReuse(ctx context.Context, turns []turnRec, crs []convRec, arena []Segment, cfg Config) []Reuse {
	order := make([]int32, len(turns))
	for i := range order {
		order[i] = int32(i)
	}
	// Turns were appended conversation by conversation, in arrival order, each in order: a
	// stable sort by start keeps each conversation's turns in order.
	sort.SliceStable(order, func(a, b int) bool { return turns[order[a]].start < turns[order[b]].start })
	out := make([]Reuse, len(cfg.BlockSizes))
	lru := make([]Reuse, len(cfg.BlockSizes))
	var wg sync.WaitGroup
	for i, bs := range cfg.BlockSizes {
		wg.Add(2)
		go func() {
			defer wg.Done()
			sim := newReuseSim(bs, false, 0)
			sim.seen = newU64Set(distinctBlocks(turns, arena, bs))
			out[i] = simulate(ctx, turns, crs, arena, order, sim)
		}()
		go func() {
			defer wg.Done()
			lru[i] = simulate(ctx, turns, crs, arena, order, newReuseSim(bs, false, cfg.CacheTokens))
		}()
	}
	wg.Wait()
	for i := range out {
		out[i].LRUTokens = cfg.CacheTokens
		out[i].LRUHitTokens = lru[i].LRUHitTokens
		if out[i].PromptTokens > 0 {
			out[i].LRUHitRatio = float64(out[i].LRUHitTokens) / float64(out[i].PromptTokens)
		}
	}
	return out
}

// distinctBlocks bounds the number of distinct blocks of size bs: a prompt's blocks before the
// last full block of its stable prefix were all seen by the conversation's previous turn, so a
// turn brings at most (added tokens + previous reply) / bs + 2 new blocks. Sizing the unbounded
// cache up front avoids the transient double memory of growing it.
func distinctBlocks(turns []turnRec, arena []Segment, bs int) int {
	var n int64
	for i := range turns {
		t := &turns[i]
		tok := t.reply.Tokens
		for _, s := range arena[t.segOff : t.segOff+int64(t.nseg)] {
			tok += s.Tokens
		}
		n += tok/int64(bs) + 2
	}
	return int(min(n, 1<<31))
}

// simulate walks the turns in order through one simulator, until ctx is done.
func simulate(ctx context.Context, turns []turnRec, crs []convRec, arena []Segment, order []int32, sim *reuseSim) Reuse {
	states := make([]*prompt, len(crs))
	// Finished conversations' prompt buffers are reused, so that the pass makes little garbage
	// next to the caches' tables (the heap's peak follows the garbage, not just what is live).
	var pool []*prompt
	fresh := func() *prompt {
		if n := len(pool); n > 0 {
			p := pool[n-1]
			pool = pool[:n-1]
			*p = prompt{segs: p.segs[:0], hash: p.hash[:0], cum: p.cum[:0]}
			return p
		}
		return &prompt{}
	}
	applyRec := func(p *prompt, t *turnRec) {
		p.apply(int(t.kept), arena[t.segOff:t.segOff+int64(t.nseg)], t.replace, t.reply)
	}
	// stateAt rebuilds conversation c's prompt after its turn k (for the base of a fork).
	var stateAt func(c int32, k int32, depth int) *prompt
	base := func(c int32, depth int) *prompt {
		cr := crs[c]
		if cr.parent >= 0 && depth < 64 {
			return stateAt(cr.parent, cr.forkTurn, depth+1)
		}
		return fresh()
	}
	stateAt = func(c int32, k int32, depth int) *prompt {
		p := base(c, depth)
		cr := crs[c]
		for i := int32(0); i <= k && i < cr.n; i++ {
			applyRec(p, &turns[cr.first+i])
		}
		return p
	}
	done := make([]int32, len(crs))
	for i, ti := range order {
		if i%checkEvery == 0 && ctx.Err() != nil {
			break
		}
		t := &turns[ti]
		st := states[t.conv]
		if st == nil {
			st = base(t.conv, 0)
			states[t.conv] = st
		}
		applyRec(st, t)
		sim.add(st)
		st.counted = true
		done[t.conv]++
		if done[t.conv] == crs[t.conv].n {
			states[t.conv] = nil
			pool = append(pool, st)
		}
	}
	return sim.result()
}

// maxBuckets bounds the number of timeline buckets.
const maxBuckets = 60

// niceWidth returns a bucket width in seconds (1, 2, 5 × a power of ten) that splits span
// seconds into at most maxBuckets buckets.
func niceWidth(span float64) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / maxBuckets
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if w := m * mag; w >= raw {
			if w < 0.001 {
				return 0.001
			}
			return w
		}
	}
	return 10 * mag
}

// timeline buckets requests over time: starts per second, conversations started per second,
// output tokens per second (at each request's end) and the mean number in flight.
func timeline(ivs []interval) Timeline {
	if len(ivs) == 0 {
		return Timeline{}
	}
	t0, t1 := ivs[0].start, ivs[0].end
	for _, iv := range ivs {
		t0 = min(t0, iv.start)
		t1 = max(t1, iv.end, iv.start)
	}
	w := niceWidth(float64(t1-t0) / 1e9)
	wn := int64(w * 1e9)
	n := int((t1-t0)/wn) + 1
	tl := Timeline{BucketS: w, Requests: make([]float64, n), OutputTok: make([]float64, n),
		Concurrency: make([]float64, n), Conversations: make([]float64, n)}
	for _, iv := range ivs {
		s, e := iv.start-t0, max(iv.end, iv.start)-t0
		tl.Requests[s/wn]++
		if iv.first {
			tl.Conversations[s/wn]++
		}
		tl.OutputTok[e/wn] += float64(iv.out)
		// Spread the request's time in flight over the buckets it overlaps.
		for b := s / wn; b <= e/wn && b < int64(n); b++ {
			lo, hi := max(s, b*wn), min(e, (b+1)*wn)
			if hi > lo {
				tl.Concurrency[b] += float64(hi-lo) / float64(wn)
			}
		}
	}
	for i := range tl.Requests {
		tl.Requests[i] /= w
		tl.OutputTok[i] /= w
		tl.Conversations[i] /= w
	}
	return tl
}

// checkEvery is how many records (conversations, turns, results) a long loop handles between
// checks of its context: often enough to stop well within a second, rarely enough to cost
// nothing.
const checkEvery = 1024
