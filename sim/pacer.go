package sim

import (
	"container/heap"
	"sync"
	"time"
)

// Precise waits.
//
// Go's timers are run by the scheduler, and when every P is idle the runtime sleeps in
// epoll_wait, whose timeout has millisecond resolution: a timer can fire up to about 1 ms late.
// That is most of the sim's error budget (TTFT within 2 ms at p50), so on Linux the streams wait
// on a pacer instead: one goroutine reading a timerfd (nanosecond resolution, woken through
// Go's netpoller like a socket), armed for the earliest deadline of a heap of waiting streams.
// Each stream still has its own goroutine and absolute deadlines; only the wake-up source is
// shared. A pacer wake-up costs several times the CPU of a timer's (a goroutine hop and two
// or three syscalls), so streams use it for their first token only, where precision matters
// most, unless Config.PreciseTimers asks for it throughout. Where no timerfd is available, a
// time.Timer is used.

// sleeper waits for one stream; it is not safe for concurrent use.
type sleeper interface {
	// wait blocks until deadline, returning true, or until a or b is closed, returning false.
	wait(deadline time.Time, a, b <-chan struct{}) bool
	stop()
}

// timerSleeper is the portable sleeper: a time.Timer reset to each deadline.
type timerSleeper struct{ t *time.Timer }

func newTimerSleeper() *timerSleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerSleeper{t: t}
}

func (s *timerSleeper) wait(deadline time.Time, a, b <-chan struct{}) bool {
	s.t.Reset(time.Until(deadline))
	select {
	case <-s.t.C:
		return true
	case <-a:
	case <-b:
	}
	s.t.Stop()
	return false
}

func (s *timerSleeper) stop() { s.t.Stop() }

// coalesce is how early the pacer may wake a waiter to share a wake-up with another.
const coalesce = 20 * time.Microsecond

// pacer wakes waiters at their deadlines from one goroutine driven by an armable clock.
type pacer struct {
	arm func(d time.Duration) // arms the clock to fire once after d (d > 0)

	mu    sync.Mutex
	heap  waitHeap
	armed time.Time // deadline the clock is armed for; zero when idle
	due   []*pacerWaiter
}

// pacerWaiter is one stream's place in the pacer.
type pacerWaiter struct {
	p     *pacer
	when  time.Time
	idx   int           // position in the heap, -1 when not in it
	ready chan struct{} // buffered 1: the pacer's signal
}

func (p *pacer) newWaiter() *pacerWaiter {
	return &pacerWaiter{p: p, idx: -1, ready: make(chan struct{}, 1)}
}

func (w *pacerWaiter) wait(deadline time.Time, a, b <-chan struct{}) bool {
	p := w.p
	w.when = deadline
	p.mu.Lock()
	heap.Push(&p.heap, w)
	if p.armed.IsZero() || deadline.Before(p.armed) {
		p.armLocked(deadline)
	}
	p.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-a:
	case <-b:
	}
	w.stop()
	return false
}

// stop takes the waiter out of the heap and drops a signal that raced with the removal.
func (w *pacerWaiter) stop() {
	p := w.p
	p.mu.Lock()
	if w.idx >= 0 {
		heap.Remove(&p.heap, w.idx)
	}
	p.mu.Unlock()
	select {
	case <-w.ready:
	default:
	}
}

func (p *pacer) armLocked(deadline time.Time) {
	p.armed = deadline
	p.arm(max(time.Until(deadline), time.Nanosecond))
}

// fire is called by the clock's goroutine each time the clock expires: it wakes every waiter
// that is due and arms the clock for the next one.
func (p *pacer) fire() {
	now := time.Now()
	p.mu.Lock()
	// Waiters due within coalesce of now are woken with the due ones: one wake-up instead of
	// several a few microseconds apart.
	limit := now.Add(coalesce)
	for len(p.heap) > 0 && !p.heap[0].when.After(limit) {
		p.due = append(p.due, heap.Pop(&p.heap).(*pacerWaiter))
	}
	p.armed = time.Time{}
	if len(p.heap) > 0 {
		p.armLocked(p.heap[0].when)
	}
	due := p.due
	p.due = p.due[:0]
	// Signal under the lock: a waiter that gives up (stop) then either finds itself in the
	// heap or finds its signal in its buffer, never a signal still to come.
	for i, w := range due {
		w.ready <- struct{}{}
		due[i] = nil
	}
	p.mu.Unlock()
}

// waitHeap orders waiters by deadline.
type waitHeap []*pacerWaiter

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *waitHeap) Push(x any) {
	w := x.(*pacerWaiter)
	w.idx = len(*h)
	*h = append(*h, w)
}
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.idx = -1
	return w
}

var (
	sharedPacerOnce sync.Once
	sharedPacer     *pacer // nil where no precise clock is available
)

// newSleeper returns a sleeper on the shared precise pacer when the platform has one, else a
// time.Timer sleeper.
func newSleeper() sleeper {
	sharedPacerOnce.Do(func() { sharedPacer = startPreciseClock() })
	if sharedPacer != nil {
		return sharedPacer.newWaiter()
	}
	return newTimerSleeper()
}
