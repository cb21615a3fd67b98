package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/tape"
)

// Defaults for Config fields left zero.
const (
	// DefaultQueueSize is the number of captured exchanges that may wait to be recorded.
	DefaultQueueSize = 8192
	// DefaultMaxOpen is the number of conversations the stitching index keeps.
	DefaultMaxOpen = 20000
	// SourceRecord is the default Config.Source: a recording made by a recording proxy.
	SourceRecord = "record"
)

// infoCacheSize bounds the per-message cache (hashes and token counts of the messages that
// conversations re-send every turn): about 100 bytes an entry.
const infoCacheSize = 1 << 17

// DefaultSessionHeaders are the request headers whose value names a conversation explicitly,
// in priority order.
var DefaultSessionHeaders = []string{"X-Session-ID", "X-Conversation-ID", "Helicone-Session-Id"}

// Config configures a Recorder. The zero value is usable.
type Config struct {
	// QueueSize is how many captured exchanges may wait to be parsed and stitched; when it is
	// full, Capture counts the exchange as not recorded. Default DefaultQueueSize.
	QueueSize int
	// Workers is the number of goroutines that parse exchanges. Default runtime.GOMAXPROCS(0).
	Workers int
	// SessionHeaders are request headers that name a session, tried after DefaultSessionHeaders
	// (the --session-header flag).
	SessionHeaders []string
	// RedactHeaders are headers never stored, in addition to those the redaction rule of
	// package internal/redact calls secrets (names containing auth, key, token, secret,
	// password, cookie or signature) (the --redact-header flag). The proxy drops them before
	// the recorder sees them; the recorder drops them again so that no caller can store them
	// by mistake. The session headers (DefaultSessionHeaders, SessionHeaders) are kept unless
	// named here; one named here names no conversation (its value is not stored as the
	// conversation's session either).
	RedactHeaders []string
	// Name, Upstream and Mode describe the recording that Start creates. Name defaults to
	// "record <start time>". The password of a URL in Upstream is stored as "xxxxx".
	Name     string
	Upstream string
	Mode     string
	// Source is the recording's tape.Recording.Source. Default SourceRecord. Start continues
	// the conversations of earlier recordings whose Source is SourceRecord only.
	Source string
	// Writer configures the store's batched writer. Its OnLost, when set, is called after the
	// recorder has counted the loss.
	Writer tape.WriterConfig
	// MaxOpen is how many conversations the stitching index keeps (the most recently active);
	// a request that continues a forgotten conversation starts a new one. It also bounds how
	// many conversations New loads from the store. Default DefaultMaxOpen.
	MaxOpen int
	// Logger receives the recorder's warnings (queue full, store errors). Nil discards them.
	Logger *slog.Logger
}

// ErrStatusNotWritten is returned (wrapped) by Close when the recording's final state could
// not be written to the store after several attempts: the store then shows the recording as
// still being written, without its end or the count of exchanges it lacks.
var ErrStatusNotWritten = errors.New("recording status not written")

// Stats are a recorder's counters, as the proxy's admin /stats serves them. Once the recorder
// is closed, Seen = Ignored + Recorded + NotRecorded.
type Stats struct {
	Seen     uint64 `json:"seen"`     // exchanges handed to Capture
	Recorded uint64 `json:"recorded"` // turns handed to the store and not lost
	// NotRecorded counts the exchanges that are not in the store: Dropped, Lost, and those
	// that failed to parse.
	NotRecorded uint64 `json:"not_recorded"`
	Dropped     uint64 `json:"dropped"` // exchanges not queued: queue full or recorder closed
	Lost        uint64 `json:"lost"`    // turns the store could not take (disk full, I/O error)
	Ignored     uint64 `json:"ignored"` // exchanges of other paths (not completions)
	Errors      uint64 `json:"errors"`  // exchanges that failed to parse + records the store lost
	Open        int    `json:"open_conversations"`
	QueueDepth  int    `json:"queue_depth"` // exchanges captured and not yet stitched
	Stored      uint64 `json:"stored"`      // records committed by the store writer
}

// Recorder turns captured exchanges into turns of conversations in a store. It implements
// proxy.Sink. Capture never blocks; parsing runs on Config.Workers goroutines, stitching on one
// goroutine in capture order, writing through the store's batched writer.
type Recorder struct {
	store *tape.Store
	cfg   Config
	w     atomic.Pointer[tape.Writer] // set by Start
	rec   tape.Recording              // as created; counters are the writer's business
	p     parser
	ix    *index
	log   *slog.Logger
	queue int64

	life    sync.Mutex   // serialises Start and Close
	mu      sync.RWMutex // guards running and closed against the channel sends in Capture
	running bool         // set by Start
	closed  bool
	work    chan *job
	order   chan *job

	inflight   atomic.Int64
	seen       atomic.Uint64
	turnsPut   atomic.Uint64
	lost       atomic.Uint64
	lostTurns  atomic.Uint64
	failed     atomic.Uint64 // recordable exchanges that failed to parse or to be put
	dropped    atomic.Uint64
	ignored    atomic.Uint64
	errs       atomic.Uint64
	open       atomic.Int64
	lastLogged atomic.Int64 // unix ns of the last "queue full" warning
	lastStore  atomic.Int64 // unix ns of the last store warning

	workers  sync.WaitGroup
	stitched chan struct{}
	// noteStop ends noteLoop, which has returned when noted is closed.
	noteStop, noted chan struct{}

	// broken holds the conversations that lost a turn (set by the writer's OnLost, taken by
	// the stitcher): their later turns cannot be stored after the gap, so the stitcher
	// forgets such a conversation and places its next turn as a conversation of its own.
	// It holds at most maxBroken entries: beyond that it is cleared, and the store refuses
	// the later turns of the conversations it forgot (counted as lost) instead.
	brokenMu  sync.Mutex
	broken    map[uint64]struct{}
	maxBroken int

	// Owned by the stitching goroutine.
	// first is the start of the first exchange stitched: conversations' arrivals are measured
	// from it (and clamped at zero for an exchange that started earlier but ended later);
	// started is the earliest start seen, last the latest end.
	first, started, last time.Time
}

// job is one captured exchange on its way through the recorder.
type job struct {
	x     *proxy.Exchange
	p     *parsed
	ready chan struct{} // closed when p is set
}

var _ proxy.Sink = (*Recorder)(nil)

// New returns a recorder that will add a recording to store. It only builds: it reads and
// writes nothing and starts no goroutine, so a caller may check everything else that can fail
// before anything reaches the store. Start creates the recording; Close stops the recorder
// (the store stays open).
func New(store *tape.Store, cfg Config) (*Recorder, error) {
	if store == nil {
		return nil, errors.New("new recorder: nil store")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxOpen <= 0 {
		cfg.MaxOpen = DefaultMaxOpen
	}
	if cfg.Source == "" {
		cfg.Source = SourceRecord
	}
	r := &Recorder{
		store:    store,
		cfg:      cfg,
		log:      cfg.Logger,
		queue:    int64(cfg.QueueSize),
		work:     make(chan *job, cfg.QueueSize),
		order:    make(chan *job, cfg.QueueSize),
		stitched: make(chan struct{}),
		ix:       newIndex(cfg.MaxOpen),
		broken:   make(map[uint64]struct{}),
		// Twice the conversations the index keeps: a few MB at most, however long the
		// store fails.
		maxBroken: 2 * cfg.MaxOpen,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.p = parser{cache: newInfoCache(infoCacheSize)}
	var session []string
	for _, h := range append(append([]string{}, DefaultSessionHeaders...), cfg.SessionHeaders...) {
		session = append(session, http.CanonicalHeaderKey(h))
	}
	r.p.redact = redact.New(cfg.RedactHeaders, session)
	// A session header that is also redacted is never stored, not even as the conversation's
	// session id: it names no conversation.
	for _, h := range session {
		if !r.p.redact.Secret(h) {
			r.p.sessionHeaders = append(r.p.sessionHeaders, h)
		}
	}
	return r, nil
}

// Start rebuilds the stitching index from the store's recent conversations, so that
// conversations recorded before a restart continue (see docs/stitching.md), creates the
// recording and starts recording. Call it once, before the first Capture (exchanges captured
// earlier are counted as not recorded). A canceled ctx stops the rebuild; nothing is then
// written.
func (r *Recorder) Start(ctx context.Context) error {
	r.life.Lock()
	defer r.life.Unlock()
	r.mu.RLock()
	used := r.running || r.closed
	r.mu.RUnlock()
	if used {
		return errors.New("start recorder: already started or closed")
	}
	cfg := r.cfg
	if err := r.rebuild(ctx, cfg.MaxOpen); err != nil {
		return fmt.Errorf("start recorder: rebuild stitching index: %w", err)
	}
	r.open.Store(int64(r.ix.open()))

	now := time.Now()
	r.rec = tape.Recording{
		Name:     cfg.Name,
		Source:   cfg.Source,
		Upstream: redact.URL(cfg.Upstream),
		Mode:     cfg.Mode,
		Started:  now,
	}
	if r.rec.Name == "" {
		r.rec.Name = "record " + now.UTC().Format(time.RFC3339)
	}
	if err := r.store.CreateRecording(&r.rec); err != nil {
		return fmt.Errorf("start recorder: create recording: %w", err)
	}

	wcfg := cfg.Writer
	userLost := wcfg.OnLost
	wcfg.OnLost = func(rec tape.Record, err error) {
		if t, ok := rec.(*tape.Turn); ok {
			r.brokenMu.Lock()
			if len(r.broken) >= r.maxBroken {
				clear(r.broken)
			}
			r.broken[t.Conversation] = struct{}{}
			r.brokenMu.Unlock()
			r.lostTurns.Add(1)
		}
		r.lost.Add(1)
		if r.rateOK(&r.lastStore) {
			r.log.Error("recorder: the store lost records", "lost", r.lost.Load(), "err", err)
		}
		if userLost != nil {
			userLost(rec, err)
		}
	}
	r.w.Store(r.store.NewWriter(wcfg))

	r.workers.Add(cfg.Workers)
	for range cfg.Workers {
		go r.parseLoop()
	}
	go r.stitchLoop()
	r.noteStop, r.noted = make(chan struct{}), make(chan struct{})
	go r.noteLoop(notRecordedInterval)
	r.mu.Lock()
	r.running = true
	r.mu.Unlock()
	return nil
}

// Recording returns the id of the recording this recorder writes (0 before Start).
func (r *Recorder) Recording() uint64 { return r.rec.ID }

// Capture queues a finished exchange. It never blocks: when the queue is full, before Start or
// after Close, the exchange is counted as not recorded (and a warning is logged at most once a second). The
// recorder owns x afterwards; the caller must not change it.
func (r *Recorder) Capture(x *proxy.Exchange) {
	r.seen.Add(1)
	r.mu.RLock()
	defer r.mu.RUnlock()
	open := r.running && !r.closed
	full := false
	if open {
		full = r.inflight.Add(1) > r.queue
		if full {
			r.inflight.Add(-1)
		}
	}
	if !open || full {
		n := r.dropped.Add(1)
		if r.rateOK(&r.lastLogged) {
			r.log.Warn("recorder is behind: exchanges not recorded", "not_recorded", n, "queue", r.queue)
		}
		return
	}
	// Every job in either channel is counted in inflight, which is at most the capacity of
	// each channel, so neither send blocks.
	j := &job{x: x, ready: make(chan struct{})}
	r.order <- j
	r.work <- j
}

// rateOK reports whether a warning may be logged now (at most one a second per kind).
func (r *Recorder) rateOK(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(time.Second) && last.CompareAndSwap(prev, now)
}

// parseLoop parses exchanges until the work channel closes.
func (r *Recorder) parseLoop() {
	defer r.workers.Done()
	for j := range r.work {
		j.p = r.parseOne(j.x)
		j.x = nil
		close(j.ready)
	}
}

// parseOne parses one exchange; nil means there is nothing to record. A panic in a parser is a
// bug, but it must not take the proxy down: it is counted as an error.
func (r *Recorder) parseOne(x *proxy.Exchange) (p *parsed) {
	if !isRecorded(x.Path) {
		r.ignored.Add(1)
		return nil
	}
	defer func() {
		if v := recover(); v != nil {
			r.errs.Add(1)
			r.failed.Add(1)
			r.log.Error("recorder: parse exchange", "path", x.Path, "panic", v, "stack", string(debug.Stack()))
			p = nil
		}
	}()
	return r.p.parse(x)
}

// stitchLoop places parsed exchanges, in capture order, until the order channel closes.
func (r *Recorder) stitchLoop() {
	defer close(r.stitched)
	for j := range r.order {
		<-j.ready
		if j.p != nil {
			r.record(j.p)
		}
		r.inflight.Add(-1)
	}
}

// record places one parsed turn and hands it (and a new conversation) to the writer.
func (r *Recorder) record(p *parsed) {
	t := &p.turn
	if r.first.IsZero() {
		r.first = t.Timing.Start
		r.started = t.Timing.Start
	}
	if t.Timing.Start.Before(r.started) {
		r.started = t.Timing.Start
	}
	if end := t.Timing.Ended(); end.After(r.last) {
		r.last = end
	}
	pl := r.ix.place(p, r.store.NextConversationID)
	for {
		// A conversation that lost a turn takes no more turns, nor forks: they could not be
		// stored after the gap. The turn is placed again without it, as a conversation of its
		// own that keeps every message.
		b := pl.c
		if pl.isNew {
			b = pl.from
		}
		if b == nil || !r.takeBroken(b.id) {
			break
		}
		if pl.isNew {
			r.ix.remove(pl.c)
		}
		r.ix.remove(b)
		pl = r.ix.place(p, r.store.NextConversationID)
	}
	c := pl.c
	t.Conversation = c.id
	t.Index = c.turns
	t.Match = pl.match
	t.Request.Kept = pl.kept
	if p.msgs != nil {
		t.Request.Messages = p.msgs[pl.kept:]
		t.Request.MessageMeta = p.meta[pl.kept:]
	}
	r.ix.advance(c, pl.kept, p.exact, p.chain, p.reply, p.state, readyAt(t))
	r.ix.evict()
	r.open.Store(int64(r.ix.open()))

	if pl.isNew {
		conv := &tape.Conversation{
			ID:        c.id,
			Recording: r.rec.ID,
			Arrival:   max(t.Timing.Start.Sub(r.first), 0),
			Grouping:  pl.grouping,
			Session:   c.session,
			Parent:    pl.parent,
			ForkTurn:  pl.forkTurn,
		}
		if pl.grouping == tape.GroupSession {
			conv.SessionHeader = sessionHeaderName(t.Request.Headers, r.p.sessionHeaders, c.session)
		}
		c.meta = conv
		// Together: a store that fails loses both, never leaving a conversation without turns.
		r.put(conv, t)
	} else if pl.match == tape.GroupPrefix && c.meta != nil && c.meta.Grouping == tape.GroupSingle {
		// A conversation that began on its own was continued by prefix matching: that is how
		// its turns were found to belong together. (Forks and sessions keep their grouping.)
		conv := *c.meta
		conv.Grouping = tape.GroupPrefix
		c.meta = &conv
		r.put(&conv, t)
	} else {
		r.put(t)
	}
}

// put hands a turn, with the conversation record it needs, to the writer.
func (r *Recorder) put(recs ...tape.Record) {
	if err := r.w.Load().PutTogether(recs...); err != nil {
		r.errs.Add(1)
		r.failed.Add(1)
		return
	}
	r.turnsPut.Add(1)
}

// takeBroken reports whether conversation id lost a turn since the stitcher last asked, and
// forgets it.
func (r *Recorder) takeBroken(id uint64) bool {
	if r.lostTurns.Load() == 0 {
		return false
	}
	r.brokenMu.Lock()
	defer r.brokenMu.Unlock()
	_, ok := r.broken[id]
	delete(r.broken, id)
	return ok
}

// Stats returns the recorder's counters. It is safe to call at any time, also after Close.
func (r *Recorder) Stats() Stats {
	put, lostTurns := r.turnsPut.Load(), r.lostTurns.Load()
	s := Stats{
		Seen:        r.seen.Load(),
		NotRecorded: r.dropped.Load() + lostTurns + r.failed.Load(),
		Dropped:     r.dropped.Load(),
		Lost:        lostTurns,
		Ignored:     r.ignored.Load(),
		Errors:      r.errs.Load() + r.lost.Load(),
		Open:        int(r.open.Load()),
		QueueDepth:  int(max(r.inflight.Load(), 0)),
	}
	if w := r.w.Load(); w != nil {
		s.Stored = uint64(max(w.Stats().Committed, 0))
	}
	if put > lostTurns {
		s.Recorded = put - lostTurns
	}
	return s
}

// Close stops accepting exchanges, records every queued one, flushes the store writer and
// writes the recording's end (after Start; a recorder never started has nothing to close): complete, or, when exchanges are not in the store
// (Stats.NotRecorded), incomplete with their count. That write is tried even after the store
// lost records, and again a few times if it fails (a full disk may have room again once the
// failed batches are dropped); if it never succeeds the error wraps ErrStatusNotWritten.
// Close returns the first store error. It does not close the store.
func (r *Recorder) Close() error {
	r.life.Lock()
	defer r.life.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.work)
	close(r.order)
	running := r.running
	r.mu.Unlock()
	if !running {
		return nil
	}

	close(r.noteStop)
	<-r.noted
	r.workers.Wait()
	<-r.stitched
	errW := r.w.Load().Close()
	if errW != nil {
		errW = fmt.Errorf("close recorder: flush: %w", errW)
	}
	return errors.Join(errW, r.finish())
}

// notRecordedInterval is how often a recorder that is running writes its count of exchanges
// not recorded into the recording, when it has changed.
const notRecordedInterval = time.Second

// noteLoop writes the count of exchanges not recorded (Stats.NotRecorded) into the recording
// while it runs, every interval when it has changed, so that a recording cut short by a crash
// or kill -9 (whose end is never written) still says how many it lacks. finish writes the
// final count.
func (r *Recorder) noteLoop(interval time.Duration) {
	defer close(r.noted)
	t := time.NewTicker(interval)
	defer t.Stop()
	var written uint64
	for {
		select {
		case <-r.noteStop:
			return
		case <-t.C:
		}
		n := r.Stats().NotRecorded
		if n == written {
			continue
		}
		rec, err := r.store.Recording(r.rec.ID)
		if err == nil {
			rec.NotRecorded, rec.Complete = int(n), false
			err = r.store.UpdateRecording(rec)
		}
		if err != nil {
			if r.rateOK(&r.lastStore) {
				r.log.Error("recorder: could not note the exchanges not recorded", "recording", r.rec.ID, "err", err)
			}
			continue
		}
		written = n
	}
}

// finishRetries are the pauses before the second and later attempts to write the recording's
// end, when the first fails.
var finishRetries = []time.Duration{200 * time.Millisecond, time.Second}

// finish writes the recording's start and end wall-clock times, whether it is complete and how
// many exchanges it lacks, trying again after finishRetries.
func (r *Recorder) finish() error {
	var err error
	for i := 0; ; i++ {
		if err = r.finishOnce(); err == nil {
			return nil
		}
		if i == len(finishRetries) {
			break
		}
		r.log.Error("recorder: could not write the recording's end; trying again", "recording", r.rec.ID, "err", err)
		time.Sleep(finishRetries[i])
	}
	return fmt.Errorf("close recorder: recording %d: %w after %d attempts: %w", r.rec.ID, ErrStatusNotWritten, len(finishRetries)+1, err)
}

// finishOnce reads the recording back first so the counters the writer kept are not
// overwritten.
func (r *Recorder) finishOnce() error {
	rec, err := r.store.Recording(r.rec.ID)
	if err != nil {
		return fmt.Errorf("read recording: %w", err)
	}
	if !r.first.IsZero() {
		rec.Started = r.started
		rec.Ended = r.last
	} else {
		rec.Ended = time.Now()
	}
	rec.NotRecorded = int(r.Stats().NotRecorded)
	rec.Complete = rec.NotRecorded == 0
	if err := r.store.UpdateRecording(rec); err != nil {
		return fmt.Errorf("update recording: %w", err)
	}
	return nil
}

// readyAt is when the client had a turn's whole reply (wall clock, ns): the end of the
// response, which a client that reads the stream to its end (as SDKs do) has seen before it
// sends the next turn.
func readyAt(t *tape.Turn) int64 {
	return t.Timing.Ended().UnixNano()
}

// sessionHeaderName returns the name of the first session header (in the order of names, as
// sessionFromHeaders tries them) whose stored value starts with session, or "" when the
// session id came from the body. Only the name is kept with the conversation.
func sessionHeaderName(stored map[string]string, names []string, session string) string {
	for _, n := range names {
		v := strings.TrimSpace(stored[n])
		if v == "" {
			continue
		}
		// Several values of a header are stored joined by ", "; the id is the first.
		if v == session || strings.HasPrefix(v, session+", ") {
			return n
		}
		return ""
	}
	return ""
}
