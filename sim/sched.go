package sim

import (
	"context"
	"sync"
)

// limiter admits at most max requests at once (max <= 0: no limit) and queues the rest in
// arrival order. Unlike a buffered channel it is strictly FIFO, and it counts both sides for
// the running and waiting gauges.
type limiter struct {
	mu      sync.Mutex
	max     int
	running int
	queue   []*waiter // FIFO; a canceled waiter is removed
}

type waiter struct {
	ready chan struct{} // closed when the slot is handed over
}

func newLimiter(max int) *limiter { return &limiter{max: max} }

// acquire waits for a slot. On cancellation it returns ctx's error and holds no slot.
func (l *limiter) acquire(ctx context.Context) error {
	l.mu.Lock()
	if l.max <= 0 || (l.running < l.max && len(l.queue) == 0) {
		l.running++
		l.mu.Unlock()
		return nil
	}
	w := &waiter{ready: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for i, q := range l.queue {
			if q == w {
				l.queue = append(l.queue[:i], l.queue[i+1:]...)
				l.mu.Unlock()
				return ctx.Err()
			}
		}
		l.mu.Unlock()
		// The slot was handed over while we gave up: pass it on.
		l.release()
		return ctx.Err()
	}
}

// release frees a slot, handing it to the first waiter if there is one.
func (l *limiter) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) > 0 {
		w := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		close(w.ready)
		return
	}
	l.running--
}

// counts returns the running and waiting requests.
func (l *limiter) counts() (running, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running, len(l.queue)
}
