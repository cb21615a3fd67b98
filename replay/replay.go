package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// Replayer replays one recording against a target. Make one with New, call Run once.
type Replayer struct {
	cfg    Config
	store  *tape.Store
	client *http.Client
	fresh  *http.Client // client's transport without keep-alive, for re-sending; nil: no re-sending
	header http.Header
	base   *url.URL
	urls   map[string]string // request URL by recorded path, made once
	synth  func(*tape.Synthetic) ([]json.RawMessage, error)

	plans   []*convPlan
	start   time.Time                 // the run's monotonic anchor, set before any goroutine
	started atomic.Pointer[time.Time] // start, for Progress from other goroutines

	stopOnce   sync.Once
	stop       chan struct{} // closed when scheduling stops
	stopReason atomic.Value  // string
	abortCtx   context.Context
	abort      context.CancelFunc

	convSlots chan struct{} // nil: no conversation limit
	reqSlots  chan struct{} // nil: no concurrency limit
	issued    atomic.Int64  // requests started
	results   chan *tape.Result

	reconnects                                       atomic.Int64 // requests sent again on a new connection
	planned, done, failed, inflight, skipped, active atomic.Int64
	cut                                              atomic.Int64 // conversations stopped before their end
	whole                                            atomic.Int64 // requests sent without streaming
	ran                                              atomic.Bool
	runID                                            uint64 // the run's id in the store, for SessionID
}

// Report is what Run returns: the run as saved, its summary and its histograms.
type Report struct {
	Run     *tape.Run
	Summary metrics.Summary
	Set     *metrics.Set
	// Skipped counts recorded turns that were not sent (no request recorded, a body too large
	// to record, failed when recorded under FailedSkip, no synthetic text), as
	// Summary.Skipped; SkipReasons gives one example reason per kind.
	Skipped     int
	SkipReasons []string
	// Lost counts results the store could not commit.
	Lost int
	// NotStreamed counts the requests sent without streaming (Config.Stream): measured by
	// their E2E alone, without TTFT, TPOT or ITL.
	NotStreamed int
}

// Progress is a snapshot of a running replay.
type Progress struct {
	Planned  int64         // requests the run will send if nothing stops it
	Done     int64         // results so far
	Errors   int64         // failed results so far
	InFlight int64         // requests being sent now
	Active   int64         // conversations started and not finished
	Elapsed  time.Duration // since the run's start (0 before it)
}

// New checks the config, resolves the recording and loads the conversations to replay, in
// phases: validate the config, find the recording, build the plan, make the HTTP clients and
// headers, then the synthetic text and the concurrency limits.
func New(st *tape.Store, cfg Config) (*Replayer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Recording, err = findRecording(st, cfg.Recording); err != nil {
		return nil, err
	}
	r := &Replayer{cfg: cfg, store: st, stop: make(chan struct{})}
	r.base = baseURL(cfg.Target)
	if err := r.buildPlan(); err != nil {
		return nil, err
	}
	r.client, r.fresh = clients(cfg)
	r.header = requestHeader(cfg)
	r.synth = synthesizer(cfg.Synthesize, r.plans)
	r.setLimits()
	r.abortCtx, r.abort = context.WithCancel(context.Background())
	return r, nil
}

// findRecording returns id after checking that the store has it, or the latest recording
// when id is 0.
func findRecording(st *tape.Store, id uint64) (uint64, error) {
	if id == 0 {
		return latestRecording(st)
	}
	if _, err := st.Recording(id); err != nil {
		return 0, fmt.Errorf("find recording %d: %w", id, err)
	}
	return id, nil
}

// baseURL returns the target (checked by withDefaults) without a trailing slash on its path.
func baseURL(target string) *url.URL {
	u, _ := url.Parse(target)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u
}

// buildPlan loads the conversations, makes each recorded path's request URL once, prepares
// each turn's params, and counts the requests planned.
func (r *Replayer) buildPlan() error {
	var err error
	r.plans, err = load(r.store, &r.cfg)
	if err != nil {
		return err
	}
	var planned int64
	r.urls = map[string]string{}
	for _, p := range r.plans {
		planned += int64(len(p.turns))
		for i := range p.turns {
			tp := &p.turns[i]
			if _, ok := r.urls[tp.path]; !ok {
				u := *r.base
				u.Path += joinPath(r.base.Path, tp.path)
				r.urls[tp.path] = u.String()
			}
			if tp.skip != "" {
				continue
			}
			if tp.params, err = r.cfg.params(tp); err != nil {
				tp.skip, tp.skipKind = err.Error(), "params"
			}
		}
	}
	if r.cfg.MaxRequests > 0 {
		planned = min(planned, int64(r.cfg.MaxRequests))
	}
	r.planned.Store(planned)
	return nil
}

// clients returns the client that sends the requests (Config.Client, else one with a
// transport sized for the run) and a copy of it without keep-alive for re-sending a request
// lost to a closed connection (nil when its transport cannot be cloned).
func clients(cfg Config) (client, fresh *http.Client) {
	client = cfg.Client
	if client == nil {
		conns := cfg.MaxConcurrency
		if conns == 0 {
			conns = 4096
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = conns
		tr.MaxIdleConnsPerHost = conns
		tr.DisableCompression = true // compressed SSE would be buffered by the decompressor
		tr.ForceAttemptHTTP2 = false
		client = &http.Client{Transport: tr}
	}
	if tr, ok := transportOf(client); ok {
		tr = tr.Clone()
		tr.DisableKeepAlives = true
		c := *client
		c.Transport = tr
		fresh = &c
	}
	return client, fresh
}

// requestHeader returns the headers of every request: JSON in, a stream out, the API key as a
// bearer token, then Config.Header, whose names replace the defaults.
func requestHeader(cfg Config) http.Header {
	h := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"text/event-stream"},
		"User-Agent":   {"llmtape-replay"},
	}
	if cfg.APIKey != "" {
		h.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	for k, vs := range cfg.Header {
		h.Del(k)
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return h
}

// synthesizer returns fn, or package synth's default text, which it warms up here when a
// planned turn is synthetic: synth.Default tokenizes its text once (about 0.2 s), better paid
// now than in the first conversation's schedule, and not at all when no turn needs it.
func synthesizer(fn func(*tape.Synthetic) ([]json.RawMessage, error), plans []*convPlan) func(*tape.Synthetic) ([]json.RawMessage, error) {
	if fn != nil {
		return fn
	}
warm:
	for _, p := range plans {
		for i := range p.turns {
			if p.turns[i].synthetic != nil {
				synth.Default()
				break warm
			}
		}
	}
	return func(s *tape.Synthetic) ([]json.RawMessage, error) {
		return synth.Default().Messages(s)
	}
}

// setLimits makes the slots of Config.MaxConversations and Config.MaxConcurrency. Under
// ArrivalAll with only a request limit, the conversation limit is the request limit.
func (r *Replayer) setLimits() {
	if r.cfg.Arrival == ArrivalAll && r.cfg.MaxConversations == 0 && r.cfg.MaxConcurrency > 0 {
		// "As soon as a slot is free": with only a request limit, a conversation starts when a
		// request slot could take it, rather than all waiting at once.
		r.cfg.MaxConversations = r.cfg.MaxConcurrency
	}
	if r.cfg.MaxConversations > 0 {
		r.convSlots = make(chan struct{}, r.cfg.MaxConversations)
	}
	if r.cfg.MaxConcurrency > 0 {
		r.reqSlots = make(chan struct{}, r.cfg.MaxConcurrency)
	}
}

// Config returns the config with its defaults filled in.
func (r *Replayer) Config() Config { return r.cfg }

// Conversations returns the ids of the conversations this replayer will send, in arrival
// order.
func (r *Replayer) Conversations() []uint64 {
	ids := make([]uint64, len(r.plans))
	for i, p := range r.plans {
		ids[i] = p.id
	}
	return ids
}

// Abort cancels the requests in flight (the second Ctrl-C). Run still saves what was
// measured; aborted requests are counted as "canceled".
func (r *Replayer) Abort() {
	r.halt("aborted")
	r.abort()
}

func (r *Replayer) halt(reason string) {
	r.stopOnce.Do(func() {
		r.stopReason.Store(reason)
		close(r.stop)
	})
}

func (r *Replayer) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// Progress returns a snapshot of the run's counters; safe to call from any goroutine.
func (r *Replayer) Progress() Progress {
	p := Progress{
		Planned: r.planned.Load(), Done: r.done.Load(), Errors: r.failed.Load(),
		InFlight: r.inflight.Load(), Active: r.active.Load(),
	}
	if s := r.started.Load(); s != nil {
		p.Elapsed = time.Since(*s)
	}
	return p
}

// Run replays the conversations and saves the run. Cancelling ctx stops scheduling (the
// first Ctrl-C): requests in flight finish (Abort cancels them) and the partial run is saved.
// The run is created in the store before the first request and its results are written as
// they finish, so a crash loses at most the writer's last commit interval. Errors of single
// requests never stop the run; Run returns an error only when the store fails.
//
// Its phases: wait for the run's time zero, create the run, start the collector of results,
// dispatch the conversations, drain the results, save the run with its summary.
func (r *Replayer) Run(ctx context.Context) (*Report, error) {
	if !r.ran.CompareAndSwap(false, true) {
		return nil, errors.New("replay: Run called twice")
	}
	if err := r.waitStart(ctx); err != nil {
		return nil, err
	}
	run, err := r.createRun()
	if err != nil {
		return nil, err
	}
	col := r.startCollector(run.ID)
	go r.watchStop(ctx)

	skips := r.dispatch()
	r.halt("done") // ends watchStop when nothing stopped the run early
	close(r.results)
	werr := col.close()

	rep, err := r.save(run.ID, col, skips)
	if err != nil {
		return nil, err
	}
	if werr != nil {
		return rep, fmt.Errorf("write results: %w", werr)
	}
	return rep, nil
}

// waitStart sets the run's time zero, now or Config.StartAt, and waits for it.
func (r *Replayer) waitStart(ctx context.Context) error {
	r.start = time.Now()
	if !r.cfg.StartAt.IsZero() {
		// StartAt is the run's time zero, on the monotonic clock from here on. A replayer that
		// gets here after StartAt does not shift its schedule: everything already due is sent
		// at once and its lateness shows as schedule lag, as it does for shards that started
		// on time.
		// Round(0) drops a monotonic reading of StartAt, so that the offset is taken on the
		// wall clock, where StartAt was agreed, and r.start's wall time is StartAt exactly.
		r.start = r.start.Add(r.cfg.StartAt.Round(0).Sub(r.start))
		if d := time.Until(r.start); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("wait for start time: %w", ctx.Err())
			}
		}
	}
	start := r.start
	r.started.Store(&start)
	return nil
}

// createRun creates the run in the store, named by Config.Name, else by its start (and its
// shard).
func (r *Replayer) createRun() (*tape.Run, error) {
	run := &tape.Run{
		Name: r.cfg.Name, Target: redact.URL(r.cfg.Target), Recording: r.cfg.Recording,
		Options: r.cfg.options(), Started: r.start,
	}
	if run.Name == "" {
		run.Name = "replay " + r.start.UTC().Format("2006-01-02 15:04:05")
		if r.cfg.Shards > 1 {
			// Shards share their start (StartAt): the shard tells their runs apart.
			run.Name += fmt.Sprintf(" shard %d/%d", r.cfg.Shard, r.cfg.Shards)
		}
	}
	if err := r.store.CreateRun(run); err != nil {
		return nil, fmt.Errorf("create run: %w", err)
	}
	r.runID = run.ID // before any conversation goroutine
	return run, nil
}

// watchStop stops scheduling on ctx (first Ctrl-C) or at the end of Config.Duration, counted
// from the run's time zero. It returns once the run has stopped scheduling for any reason.
func (r *Replayer) watchStop(ctx context.Context) {
	var timeout <-chan time.Time
	if r.cfg.Duration > 0 {
		t := time.NewTimer(time.Until(r.start.Add(r.cfg.Duration)))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
		r.halt("interrupted")
	case <-timeout:
		r.halt("duration")
	case <-r.stop:
	}
}

// collector takes the results from the conversations on one goroutine: it numbers them in
// the order they finish, adds them to the run's figures and hands them to the store's
// writer. Its fields other than lost are read only after close.
type collector struct {
	w    *tape.Writer
	lost atomic.Int64 // results the store could not commit
	acc  metrics.Accumulator
	// windowStart and windowEnd are the first send and the last reply end of the results
	// outside warmup: the measurement window (windowStart is -1 before the first).
	windowStart, windowEnd time.Duration
	putErr                 error // the writer's first error
	done                   chan struct{}
}

// startCollector makes r.results and the store's writer, and starts collecting the results
// of run.
func (r *Replayer) startCollector(run uint64) *collector {
	c := &collector{windowStart: -1, done: make(chan struct{})}
	wcfg := r.cfg.Writer
	onLost := wcfg.OnLost
	wcfg.OnLost = func(rec tape.Record, err error) {
		c.lost.Add(1)
		if onLost != nil {
			onLost(rec, err)
		}
	}
	c.w = r.store.NewWriter(wcfg)
	r.results = make(chan *tape.Result, 1024)
	go c.collect(r.results, run)
	return c
}

func (c *collector) collect(results <-chan *tape.Result, run uint64) {
	defer close(c.done)
	var seq uint64
	for res := range results {
		seq++
		res.Seq, res.Run = seq, run
		c.acc.Add(res)
		if !res.Warmup {
			if c.windowStart < 0 || res.Sent < c.windowStart {
				c.windowStart = res.Sent
			}
			c.windowEnd = max(c.windowEnd, res.Sent+res.E2E)
		}
		if err := c.w.Put(res); err != nil && c.putErr == nil {
			c.putErr = err
		}
	}
}

// close waits until the closed results channel is drained, then closes the writer. It
// returns the first error of writing the results.
func (c *collector) close() error {
	<-c.done
	werr := c.w.Close()
	if c.putErr != nil {
		return c.putErr
	}
	return werr
}

// save reads the run back and saves it with its end, whether it stopped early, its summary
// and its histograms, and returns the report.
func (r *Replayer) save(id uint64, c *collector, skips map[string]string) (*Report, error) {
	sum := c.acc.Summary(c.windowEnd-max(c.windowStart, 0), r.cfg.SLO)
	sum.Reconnects = int(r.reconnects.Load())
	sum.Skipped = int(r.skipped.Load())
	set := c.acc.Set()
	saved, err := r.store.Run(id)
	if err != nil {
		return nil, fmt.Errorf("read run %d back: %w", id, err)
	}
	saved.Ended = time.Now()
	saved.Partial = r.partial()
	if saved.Summary, err = json.Marshal(sum); err != nil {
		return nil, fmt.Errorf("encode summary: %w", err)
	}
	if saved.Histograms, err = set.Encode(); err != nil {
		return nil, err
	}
	if err := r.store.UpdateRun(saved); err != nil {
		return nil, fmt.Errorf("save run %d: %w", id, err)
	}
	rep := &Report{Run: saved, Summary: sum, Set: set, Lost: int(c.lost.Load()), NotStreamed: int(r.whole.Load())}
	rep.Skipped = int(r.skipped.Load())
	for _, s := range skips {
		rep.SkipReasons = append(rep.SkipReasons, s)
	}
	slices.Sort(rep.SkipReasons)
	return rep, nil
}

// partial says whether the run stopped early: interrupted, aborted, or at the end of
// Config.Duration with conversations cut short.
func (r *Replayer) partial() bool {
	reason, _ := r.stopReason.Load().(string)
	return reason == "interrupted" || reason == "aborted" ||
		(reason == "duration" && r.cut.Load() > 0)
}

// dispatchLead is how long before its arrival a conversation's goroutine is started.
const dispatchLead = 5 * time.Millisecond

// dispatch starts each conversation at its arrival (and when a conversation slot is free)
// and waits for all of them.
func (r *Replayer) dispatch() map[string]string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	skips := map[string]string{}
	skip := func(kind, reason string) {
		r.skipped.Add(1)
		mu.Lock()
		if _, ok := skips[kind]; !ok {
			skips[kind] = reason
		}
		mu.Unlock()
	}
	if r.cfg.Clients > 0 {
		r.runClients(skip)
		return skips
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	slotsFull := false // a conversation has had to wait for a slot
loop:
	for i, p := range r.plans {
		if r.stopped() {
			r.cut.Add(int64(len(r.plans) - i))
			break
		}
		// Start the conversation's goroutine a little early: it builds its first body and
		// waits on its own timer, so the send is not late by the dispatcher's work.
		if d := time.Until(r.start.Add(p.arrival - dispatchLead)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-r.stop:
				timer.Stop()
				r.cut.Add(int64(len(r.plans) - i))
				break loop
			}
		}
		sched := p.arrival
		if r.convSlots != nil {
			select {
			case r.convSlots <- struct{}{}:
			default:
				// No free slot: wait for one. Under a schedule the wait is schedule lag.
				select {
				case r.convSlots <- struct{}{}:
				case <-r.stop:
					r.cut.Add(int64(len(r.plans) - i))
					break loop
				}
				slotsFull = true
			}
			if r.cfg.Arrival == ArrivalAll && slotsFull {
				// Once the slots have run out, a conversation under ArrivalAll is due when
				// a slot frees for it. Before that, it is due at time zero, so that a late
				// start (StartAt) shows as schedule lag.
				sched = max(sched, time.Since(r.start))
			}
		}
		wg.Add(1)
		r.active.Add(1)
		go func(p *convPlan, sched time.Duration) {
			defer wg.Done()
			defer r.active.Add(-1)
			if r.convSlots != nil {
				defer func() { <-r.convSlots }()
			}
			r.conversation(p, sched, skip)
		}(p, sched)
	}
	wg.Wait()
	return skips
}

// conversation sends one conversation's turns in order (closed loop): each turn after the
// first is due when the previous reply in this replay ended plus the think time.
func (r *Replayer) conversation(p *convPlan, sched time.Duration, skip func(kind, reason string)) {
	c := r.newConvState(p, sched)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for r.step(c, timer, skip) {
	}
}

// runClients replays with vLLM's load model (Config.Clients): every client is a goroutine that
// keeps up to ActiveConversations/Clients active conversations and sends one request at a
// time, as a client process of vLLM's multi-turn benchmark does (client_main in
// benchmark_serving_multi_turn.py). The conversations form one queue in arrival order. The
// first shares are handed out in client order before any client starts (vLLM's processes race
// for them); after that a client that has finished a conversation takes the next one from the
// queue before its next request, so a faster client takes more conversations, as in vLLM.
func (r *Replayer) runClients(skip func(kind, reason string)) {
	per := r.cfg.ActiveConversations / r.cfg.Clients
	var mu sync.Mutex
	next := 0 // the queue is r.plans[next:]
	take := func() *convPlan {
		mu.Lock()
		defer mu.Unlock()
		if next == len(r.plans) {
			return nil
		}
		next++
		return r.plans[next-1]
	}
	shares := make([][]*convPlan, r.cfg.Clients)
	for i := range shares {
		for len(shares[i]) < per && next < len(r.plans) {
			shares[i] = append(shares[i], r.plans[next])
			next++
		}
	}
	var wg sync.WaitGroup
	for i, share := range shares {
		wg.Go(func() { r.loadClient(i, per, share, take, skip) })
	}
	wg.Wait()
	r.cut.Add(int64(len(r.plans) - next)) // never started: the run stopped first
}

// loadClient is one client of vLLM's load model: before each request it fills its active
// conversations up to per from take, then picks one under Config.Sampling and sends its next
// turn when its previous reply (of any conversation) has ended plus that turn's think time.
// Round robin keeps vLLM's line: the conversation that became active last goes first, one
// that is not finished goes to the back.
func (r *Replayer) loadClient(id, per int, share []*convPlan, take func() *convPlan, skip func(kind, reason string)) {
	var rng *rand.Rand
	if r.cfg.Sampling == SamplingRandom {
		// Each client has its own seed, seed + client + 1, as vLLM's clients do (the
		// generator is Go's, so the choices are not Python's).
		rng = rand.New(rand.NewPCG(uint64(r.cfg.Seed)+uint64(id)+1, 0xc1e47))
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var active, line []*convState // active in the order they came; line: the next is last
	add := func(p *convPlan) {
		c := r.newConvState(p, 0)
		active = append(active, c)
		line = append(line, c)
		r.active.Add(1)
	}
	for _, p := range share {
		add(p)
	}
	var clock time.Duration // when this client's previous reply ended
	for {
		if r.stopped() {
			r.cut.Add(int64(len(active)))
			r.active.Add(-int64(len(active)))
			return
		}
		for len(active) < per {
			p := take()
			if p == nil {
				break
			}
			add(p)
		}
		if len(active) == 0 {
			return
		}
		var c *convState
		if rng != nil {
			c = active[rng.IntN(len(active))]
		} else {
			c, line = line[len(line)-1], line[:len(line)-1]
		}
		c.sched = clock // step adds the think time of a turn after the first
		more := r.step(c, timer, skip)
		clock = c.sched
		if more {
			if rng == nil {
				line = slices.Insert(line, 0, c)
			}
			continue
		}
		active = slices.DeleteFunc(active, func(a *convState) bool { return a == c })
		line = slices.DeleteFunc(line, func(a *convState) bool { return a == c })
		r.active.Add(-1)
	}
}

// convState is where a conversation is: its next turn, when that turn is due (before its
// think time) and the live history. A conversation goroutine owns it, or, under the vLLM
// preset, the client that holds the conversation.
type convState struct {
	p      *convPlan
	next   int               // index in p.turns of the next turn
	sched  time.Duration     // the previous reply's end (the first turn's due time before it)
	live   []json.RawMessage // the live history: last sent list plus the reply
	header http.Header
}

func (r *Replayer) newConvState(p *convPlan, sched time.Duration) *convState {
	return &convState{p: p, sched: sched, header: r.conversationHeader(p)}
}

// step sends the conversation's next turn that can be sent, due at c.sched plus its think
// time, and returns whether the conversation goes on: false when it has no turn left, failed
// under OnErrorStop, or the run stopped scheduling.
func (r *Replayer) step(c *convState, timer *time.Timer, skip func(kind, reason string)) bool {
	p := c.p
	for c.next < len(p.turns) {
		tp := &p.turns[c.next]
		if c.next > 0 {
			c.sched += r.think(tp)
		}
		c.next++
		// Build the body before waiting, so the wait ends with the send. A skipped turn
		// leaves the rest of the conversation to be sent: each later turn's recorded message
		// list is what its client sent. The live history is dropped, since a later turn's
		// list is relative to the skipped one: the next turn goes out as recorded.
		req, kind, why := r.build(tp, c.live)
		if kind != "" {
			skip(kind, fmt.Sprintf("conversation %d turn %d: %s", p.id, tp.index, why))
			c.live = nil
			continue
		}
		if !r.waitTurn(timer, c.sched) {
			r.cut.Add(1)
			return false
		}
		n, ok := r.count()
		if !ok {
			return false
		}
		x := r.send(tp, c.header, req.body, req.msgs, req.prompt, c.sched)
		r.releaseSlot()
		res := r.result(p, tp, x, n)
		ok = metrics.OK(res)
		// The next turn is due from the end of this reply.
		c.sched = x.end
		r.results <- res
		if !ok && (r.cfg.OnError == OnErrorStop || res.ErrorClass == errclass.Canceled) {
			return false
		}
		if r.cfg.History == HistoryLive && tp.synthetic == nil {
			reply := x.reply
			if !ok || reply == nil {
				reply = tp.reply
			}
			c.live = append(slices.Clip(req.msgs), reply)
		}
		return c.next < len(p.turns)
	}
	return false
}

// turnRequest is one turn's request, built before its send time.
type turnRequest struct {
	msgs   []json.RawMessage // nil for a completion
	body   []byte
	prompt json.RawMessage // a completion's prompt
}

// build makes a turn's request from its plan and the live history. When the turn is not to
// be sent, kind is the kind of reason (not empty) and why the reason.
func (r *Replayer) build(tp *turnPlan, live []json.RawMessage) (req turnRequest, kind, why string) {
	if tp.skip != "" {
		return req, tp.skipKind, tp.skip
	}
	msgs, err := r.messages(tp, live)
	if err != nil {
		return req, "synthetic", err.Error()
	}
	body, prompt, err := r.body(tp, msgs)
	if err != nil {
		return req, "body", err.Error()
	}
	return turnRequest{msgs: msgs, body: body, prompt: prompt}, "", ""
}

// waitTurn waits for the turn's send time sched (from the run's time zero) and then for a
// request slot (Config.MaxConcurrency). It returns false when the run stops scheduling
// first; with true the caller holds a slot and releases it with releaseSlot.
func (r *Replayer) waitTurn(timer *time.Timer, sched time.Duration) bool {
	if d := time.Until(r.start.Add(sched)); d > 0 {
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-r.stop:
			return false
		}
	}
	if r.stopped() {
		return false
	}
	if r.reqSlots != nil {
		select {
		case r.reqSlots <- struct{}{}:
		case <-r.stop:
			return false
		}
	}
	return true
}

// releaseSlot frees the request slot that waitTurn took.
func (r *Replayer) releaseSlot() {
	if r.reqSlots != nil {
		<-r.reqSlots
	}
}

// count numbers the request about to be sent (from 1) and stops scheduling at
// Config.MaxRequests. It returns false, releasing the request's slot, for a request past the
// limit, which is not sent.
func (r *Replayer) count() (int64, bool) {
	n := r.issued.Add(1)
	if r.cfg.MaxRequests > 0 && n > int64(r.cfg.MaxRequests) {
		r.halt("max-requests")
		r.releaseSlot()
		return n, false
	}
	if r.cfg.MaxRequests > 0 && n == int64(r.cfg.MaxRequests) {
		r.halt("max-requests")
	}
	return n, true
}

// result returns the result of request n, turn tp of conversation p, and counts it as done
// (and failed when it did not succeed).
func (r *Replayer) result(p *convPlan, tp *turnPlan, x *exchange, n int64) *tape.Result {
	res := x.res
	res.Conversation, res.Turn = p.id, tp.index
	if !tp.stream {
		// Sent whole: the reply's end is all there is to measure (a server that streamed
		// anyway is read, but measured like the others).
		res.TTFT, res.Chunks = 0, nil
		r.whole.Add(1)
	}
	res.Warmup = (r.cfg.Warmup > 0 && res.Scheduled < r.cfg.Warmup) ||
		(r.cfg.WarmupRequests > 0 && n <= int64(r.cfg.WarmupRequests))
	if r.cfg.KeepReplies && x.reply != nil {
		reply := x.answer
		res.Reply = &reply
	}
	r.done.Add(1)
	if !metrics.OK(&res) {
		r.failed.Add(1)
	}
	return &res
}

// SessionID is the value of a conversation's session headers in a run:
// "llmtape-<run id>-<conversation id>". It is the same on every turn of the conversation and
// differs across the conversations and the runs of a store, so a router with session affinity
// sees the recorded conversations as conversations, and a new run as new ones.
func SessionID(run, conversation uint64) string {
	return "llmtape-" + strconv.FormatUint(run, 10) + "-" + strconv.FormatUint(conversation, 10)
}

// conversationHeader returns the headers of a conversation's requests: the run's, plus the
// recorded session header and Config.SessionHeader with the conversation's SessionID. They
// are set after Config.Header, so they replace a --header of the same name.
func (r *Replayer) conversationHeader(p *convPlan) http.Header {
	if p.sessionHeader == "" && r.cfg.SessionHeader == "" {
		return r.header
	}
	h := r.header.Clone()
	id := SessionID(r.runID, p.id)
	for _, name := range []string{p.sessionHeader, r.cfg.SessionHeader} {
		if name != "" {
			h.Set(name, id)
		}
	}
	return h
}

// send makes the attempts of one request (1 + Config.Retries at most) and returns the last.
// The result's Sent is the first attempt's; a request tried more than once keeps every try in
// the result's Attempts.
func (r *Replayer) send(tp *turnPlan, header http.Header, body []byte, msgs []json.RawMessage, prompt json.RawMessage, sched time.Duration) *exchange {
	target := r.urls[tp.path]
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	var (
		first    time.Duration
		attempts []tape.Attempt // every try, kept once there is a second
	)
	for try := 0; ; try++ {
		x := &exchange{msgs: msgs, prompt: prompt, events: tp.completion, header: header}
		x.res.Scheduled = sched
		r.attempt(r.abortCtx, target, body, x)
		r.reconnects.Add(int64(x.reconnects))
		x.end = x.res.Sent + x.res.E2E // the reply's last byte
		if try == 0 {
			first = x.res.Sent
		}
		x.res.Retries = try
		done := metrics.OK(&x.res) || try >= r.cfg.Retries || x.res.ErrorClass == errclass.Canceled ||
			r.abortCtx.Err() != nil
		if try > 0 || !done {
			attempts = append(attempts, tape.Attempt{Sent: x.res.Sent, TTFT: x.res.TTFT, E2E: x.res.E2E,
				Status: x.res.Status, ErrorClass: x.res.ErrorClass, Error: x.res.Error})
		}
		if done {
			x.res.Sent = first
			if try > 0 {
				x.res.Attempts = attempts
			}
			return x
		}
		wait := x.retryAfter
		if wait == 0 {
			wait = min(100*time.Millisecond<<try, 5*time.Second)
		}
		wait = min(wait, 10*time.Second)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.abortCtx.Done():
			t.Stop()
		}
	}
}

// transportOf returns the *http.Transport under c, if it has one that can be cloned.
func transportOf(c *http.Client) (*http.Transport, bool) {
	if c.Transport == nil {
		tr, ok := http.DefaultTransport.(*http.Transport)
		return tr, ok
	}
	tr, ok := c.Transport.(*http.Transport)
	return tr, ok
}

// joinPath returns the recorded path to append to the target URL, dropping a "/v1" the
// target already ends with.
func joinPath(basePath, p string) string {
	if strings.HasSuffix(basePath, "/v1") && strings.HasPrefix(p, "/v1/") {
		return p[len("/v1"):]
	}
	return p
}

// think returns the think time before the turn under Config.Think: the recorded figure
// (turnPlan.think, tape's one definition) times ThinkScale, none, or the fixed ThinkTime.
func (r *Replayer) think(tp *turnPlan) time.Duration {
	switch r.cfg.Think {
	case ThinkNone:
		return 0
	case ThinkFixed:
		return r.cfg.ThinkTime
	default:
		return time.Duration(float64(tp.think) * *r.cfg.ThinkScale)
	}
}

// messages returns the message list to send: recorded, live, or synthetic.
func (r *Replayer) messages(tp *turnPlan, live []json.RawMessage) ([]json.RawMessage, error) {
	if tp.synthetic != nil {
		return r.synth(tp.synthetic)
	}
	if r.cfg.History != HistoryLive || live == nil || tp.full == nil || tp.kept > len(live) {
		return tp.full, nil
	}
	out := make([]json.RawMessage, 0, tp.kept+len(tp.added))
	out = append(out, live[:tp.kept]...)
	return append(out, tp.added...), nil
}

// params returns the recorded params with streaming, usage, the model and the output length
// set: computed once per turn when the replayer is made. It also settles tp.stream under
// Config.Stream.
func (c *Config) params(tp *turnPlan) (json.RawMessage, error) {
	req, err := openai.ParseRequest(paramsOrEmpty(tp.params))
	if err != nil {
		return nil, fmt.Errorf("recorded params: %w", err)
	}
	tp.stream = c.Stream == StreamAlways || (c.Stream == StreamRecorded && tp.stream)
	if tp.stream {
		_ = req.Set("stream", true)
		_ = req.Set("stream_options", json.RawMessage(`{"include_usage":true}`))
	} else {
		// Whole, as recorded (a body without "stream" keeps none); stream_options is only
		// allowed with a stream.
		req.Delete("stream_options")
		if _, ok := req.Get("stream"); ok {
			_ = req.Set("stream", false)
		}
	}
	if c.Model != "" {
		req.Model = c.Model
	}
	limit := 0
	switch c.Output {
	case OutputRecorded:
		limit = tp.completion
	case OutputFixed:
		limit = c.OutputTokens
	case OutputRequest:
		limit = req.MaxOutputTokens()
	}
	if limit > 0 && c.Output != OutputRequest {
		n := limit
		if req.MaxCompletionTokens != nil {
			req.MaxCompletionTokens = &n
		} else {
			req.MaxTokens = &n
		}
	}
	if c.IgnoreEOS && limit > 0 {
		t, n := true, limit
		req.IgnoreEOS, req.MinTokens = &t, &n
	}
	if c.MinTokens > 0 {
		n := c.MinTokens
		if l := req.MaxOutputTokens(); l > 0 {
			n = min(n, l)
		}
		req.MinTokens = &n
	}
	if len(c.ExtraBody) > 0 {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(c.ExtraBody, &members); err != nil {
			return nil, fmt.Errorf("extra body: %w", err)
		}
		if err := setExtra(req, members); err != nil {
			return nil, fmt.Errorf("extra body: %w", err)
		}
	}
	params, err := req.Params()
	if err != nil {
		return nil, fmt.Errorf("recorded params: %w", err)
	}
	return params, nil
}

// body builds the request body from the turn's prepared params and the messages (or the
// prompt of a completion request, which it returns).
func (r *Replayer) body(tp *turnPlan, msgs []json.RawMessage) ([]byte, json.RawMessage, error) {
	var prompt json.RawMessage
	if msgs == nil {
		prompt = tp.prompt
		if prompt == nil {
			prompt = json.RawMessage(`""`)
		}
	}
	b, err := openai.BuildRequest(tp.params, msgs, prompt)
	if err != nil {
		return nil, nil, err
	}
	return b, prompt, nil
}

func paramsOrEmpty(p json.RawMessage) []byte {
	if len(p) == 0 {
		return []byte(`{}`)
	}
	return p
}
