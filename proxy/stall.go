package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// ErrBodyStalled is returned by reads of a request body whose client paused longer than
// Config.BodyTimeout.
var ErrBodyStalled = errors.New("client paused mid-body longer than the body timeout")

// stallBody cuts a client that stops sending its request body: every read runs under a read
// deadline on the client's connection. The deadline is pushed forward only when half of
// the timeout has gone by since it was last set, to 1.5 × the timeout, so a read costs a clock
// read and a comparison, and a pause is cut after between d and 1.5 × d. At the end of the
// body the deadline is cleared: net/http's background read of a connection whose response
// streams for minutes must not time out.
//
// Reads come from one goroutine at a time (the handler's or the transport's); the deadline
// itself is the connection's and safe to set from any goroutine.
type stallBody struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	d       time.Duration
	p       *Proxy
	renewAt time.Time // when the deadline is next pushed forward
	done    bool      // the deadline was cleared or cannot be set
	stalled atomic.Bool
}

func (b *stallBody) Read(buf []byte) (int, error) {
	if !b.done {
		if now := time.Now(); !now.Before(b.renewAt) {
			if err := b.ctl.SetReadDeadline(now.Add(b.d + b.d/2)); err != nil {
				b.done = true // not supported by this connection (HTTP/2 test servers): no limit
			}
			b.renewAt = now.Add(b.d / 2)
		}
	}
	n, err := b.rc.Read(buf)
	switch {
	case err == nil:
	case err == io.EOF:
		if !b.done {
			b.done = true
			_ = b.ctl.SetReadDeadline(time.Time{})
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		if !b.stalled.Swap(true) {
			b.p.stalled.Add(1)
		}
		err = fmt.Errorf("read request body: %w (%v)", ErrBodyStalled, b.d)
	}
	return n, err
}

func (b *stallBody) Close() error { return b.rc.Close() }
