package tape

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Record is a value that a Writer stores: *Recording, *Conversation, *Turn, *Run or *Result.
type Record interface{ record() }

func (*Recording) record()    {}
func (*Conversation) record() {}
func (*Turn) record()         {}
func (*Run) record()          {}
func (*Result) record()       {}

// Defaults of WriterConfig, used where a field is zero.
const (
	DefaultMaxBatch  = 512
	DefaultMaxDelay  = 50 * time.Millisecond
	DefaultQueueSize = 8192
)

// WriterConfig configures a Writer. Zero fields take the defaults.
type WriterConfig struct {
	// MaxBatch is the most records committed in one transaction; default 512.
	MaxBatch int
	// MaxDelay is the longest a record waits for its transaction; default 50ms.
	MaxDelay time.Duration
	// QueueSize is how many units (a record of Put, the records of one PutTogether) may wait
	// before Put blocks and TryPut fails; default 8192.
	QueueSize int
	// OnLost, if set, is called from the writer's goroutine for each record that could not be
	// committed, with the reason. It must not call the Writer.
	OnLost func(rec Record, err error)
}

// WriterStats are a Writer's counters.
type WriterStats struct {
	Committed int64 // records committed
	Lost      int64 // records that could not be committed (reported to OnLost)
	Queued    int64 // records put and not yet committed or lost
	Batches   int64 // transactions committed
}

// Writer commits records handed to it by many goroutines in batched transactions: up to
// MaxBatch records or MaxDelay per transaction. Every record put is either committed or
// reported lost (OnLost, Stats().Lost and the error of Close); none is dropped silently.
//
// Put encodes turns and results in the caller's goroutine, so the caller may reuse a *Turn or
// *Result once Put returns (OnLost gets the pointer that was put). Recordings, conversations
// and runs are copied shallowly: do not modify their byte slices or maps after Put. A
// conversation or recording put with ID 0 gets its ID in the writer's goroutine, not in the
// value put: give conversations an ID from NextConversationID first. A batch that fails is
// retried unit by unit (a record of Put, or the records of one PutTogether), so that one bad
// record (say, a turn of an unknown conversation) loses only its unit.
type Writer struct {
	s    *Store
	cfg  WriterConfig
	ch   chan item
	done chan struct{}

	mu     sync.RWMutex // guards closed and sends on ch
	closed bool

	errMu     sync.Mutex
	firstErr  error // first commit error: returned by Close
	flushErr  error // first commit error since the last Flush
	committed atomic.Int64
	lost      atomic.Int64
	queued    atomic.Int64
	batches   atomic.Int64
}

// item is one queued record, or a flush marker (flush != nil). The records of a PutTogether
// travel as one item: the first, with the others in more.
type item struct {
	orig  Record // as put, for OnLost
	rec   Record
	enc   []byte // encoded turn or result
	more  []item // committed in the same transaction as this one, or lost with it
	flush chan error
}

// size is the number of records of a unit.
func (it *item) size() int64 { return 1 + int64(len(it.more)) }

// NewWriter starts a batched writer. Close it before closing the store.
func (s *Store) NewWriter(cfg WriterConfig) *Writer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	w := &Writer{s: s, cfg: cfg, ch: make(chan item, cfg.QueueSize), done: make(chan struct{})}
	go w.loop()
	return w
}

// prepare encodes or copies rec so that the caller may reuse it.
func prepare(rec Record) (item, error) {
	it, err := prepareCopy(rec)
	it.orig = rec
	return it, err
}

func prepareCopy(rec Record) (item, error) {
	switch r := rec.(type) {
	case *Turn:
		if r == nil {
			break
		}
		c := *r
		c.Request, c.Response, c.Timing = Request{}, Response{}, Timing{}
		return item{rec: &c, enc: encodeTurn(nil, r)}, nil
	case *Result:
		if r == nil {
			break
		}
		c := *r
		c.Chunks = nil
		return item{rec: &c, enc: encodeResult(nil, r)}, nil
	case *Conversation:
		if r == nil {
			break
		}
		c := *r
		return item{rec: &c}, nil
	case *Recording:
		if r == nil {
			break
		}
		c := *r
		return item{rec: &c}, nil
	case *Run:
		if r == nil {
			break
		}
		c := *r
		return item{rec: &c}, nil
	}
	return item{}, fmt.Errorf("writer: cannot put %T", rec)
}

// Put queues rec, blocking while the queue is full. It returns ErrClosed after Close.
func (w *Writer) Put(rec Record) error {
	it, err := prepare(rec)
	if err != nil {
		return err
	}
	return w.send(it)
}

// PutTogether queues recs as one unit: they are committed in one transaction, in order, or
// all reported lost. Use it for records that must not be stored apart, such as a new
// conversation and its first turn: a failing store then never leaves a conversation without
// its turns. The unit takes one place in the queue; PutTogether blocks while it is full. It
// returns ErrClosed after Close.
func (w *Writer) PutTogether(recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	it, err := prepare(recs[0])
	if err != nil {
		return err
	}
	for _, rec := range recs[1:] {
		m, err := prepare(rec)
		if err != nil {
			return err
		}
		it.more = append(it.more, m)
	}
	return w.send(it)
}

func (w *Writer) send(it item) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	w.queued.Add(it.size())
	w.ch <- it
	return nil
}

// TryPut queues rec if the queue has room and reports whether it did. It never blocks; it
// returns false after Close.
func (w *Writer) TryPut(rec Record) bool {
	it, err := prepare(rec)
	if err != nil {
		return false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return false
	}
	w.queued.Add(1)
	select {
	case w.ch <- it:
		return true
	default:
		w.queued.Add(-1)
		return false
	}
}

// Flush returns when every record put before it is committed or lost, with the first commit
// error since the previous Flush.
func (w *Writer) Flush() error {
	done := make(chan error, 1)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	w.ch <- item{flush: done}
	w.mu.RUnlock()
	return <-done
}

// Close commits everything queued, stops the writer and returns the first commit error (nil
// when every record was committed). Further Puts return ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	<-w.done
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.firstErr != nil {
		return fmt.Errorf("writer: %d records lost: %w", w.lost.Load(), w.firstErr)
	}
	return nil
}

// Stats returns the writer's counters.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		Committed: w.committed.Load(),
		Lost:      w.lost.Load(),
		Queued:    w.queued.Load(),
		Batches:   w.batches.Load(),
	}
}

func (w *Writer) loop() {
	defer close(w.done)
	batch := make([]item, 0, w.cfg.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		it, ok := <-w.ch
		if !ok {
			return
		}
		if it.flush != nil {
			w.answerFlush(it.flush)
			continue
		}
		batch = append(batch[:0], it)
		timer.Reset(w.cfg.MaxDelay)
		var flush chan error
		closed := false
	collect:
		for len(batch) < w.cfg.MaxBatch {
			select {
			case it, ok := <-w.ch:
				switch {
				case !ok:
					closed = true
					break collect
				case it.flush != nil:
					flush = it.flush
					break collect
				}
				batch = append(batch, it)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		w.commit(batch)
		clear(batch)
		if flush != nil {
			w.answerFlush(flush)
		}
		if closed {
			return
		}
	}
}

func (w *Writer) answerFlush(ch chan error) {
	w.errMu.Lock()
	err := w.flushErr
	w.flushErr = nil
	w.errMu.Unlock()
	ch <- err
}

// commit writes batch in one transaction, or unit by unit when that fails.
func (w *Writer) commit(batch []item) {
	err := w.s.update(func(btx *bolt.Tx) error { return putItems(w.s, btx, batch) })
	if err == nil {
		var n int64
		for i := range batch {
			n += batch[i].size()
		}
		w.batches.Add(1)
		w.committed.Add(n)
		w.queued.Add(-n)
		return
	}
	if len(batch) == 1 || errors.Is(err, ErrClosed) {
		for _, it := range batch {
			w.lose(it, err)
		}
		return
	}
	for i := range batch {
		w.commit(batch[i : i+1])
	}
}

// lose reports every record of a unit lost.
func (w *Writer) lose(it item, err error) {
	w.lost.Add(it.size())
	w.queued.Add(-it.size())
	w.errMu.Lock()
	if w.firstErr == nil {
		w.firstErr = err
	}
	if w.flushErr == nil {
		w.flushErr = err
	}
	w.errMu.Unlock()
	if w.cfg.OnLost != nil {
		w.cfg.OnLost(it.orig, err)
		for _, m := range it.more {
			w.cfg.OnLost(m.orig, err)
		}
	}
}

func putItems(s *Store, btx *bolt.Tx, batch []item) error {
	tx := newTx(s, btx)
	for i := range batch {
		if err := tx.putItem(&batch[i]); err != nil {
			return err
		}
		for j := range batch[i].more {
			if err := tx.putItem(&batch[i].more[j]); err != nil {
				return err
			}
		}
	}
	return tx.finish()
}

func (t *Tx) putItem(it *item) error {
	switch r := it.rec.(type) {
	case *Turn:
		return t.putTurn(r, it.enc)
	case *Result:
		return t.putResult(r, it.enc)
	}
	return t.put(it.rec)
}
