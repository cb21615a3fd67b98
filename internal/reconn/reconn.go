// Package reconn recognises a request that failed only because the server had closed the
// kept-alive connection it was sent on: the race that servers such as llama.cpp's
// llama-server (which close every connection right after a streamed answer) make a pooling
// client lose. Such a request never reached the server's handler, or reached it and got no
// byte of answer, and may be sent again on a new connection; the proxy and the replayer do
// so once.
package reconn

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Trace watches the connection of one request (and of its re-sending). Its zero value is
// ready; Context attaches it. The hooks run on the transport's goroutines, hence the atomics.
type Trace struct {
	trace     httptrace.ClientTrace
	reused    atomic.Bool
	firstByte atomic.Bool
	idle      atomic.Int64 // ns a reused connection had been idle
}

// Context returns ctx with t as its client trace. It costs three small allocations.
func (t *Trace) Context(ctx context.Context) context.Context {
	t.trace.GotConn = func(info httptrace.GotConnInfo) {
		t.reused.Store(info.Reused)
		t.idle.Store(int64(info.IdleTime)) // zero unless WasIdle
		t.firstByte.Store(false)
	}
	t.trace.GotFirstResponseByte = func() { t.firstByte.Store(true) }
	return httptrace.WithClientTrace(ctx, &t.trace)
}

// Reused reports whether the last connection the request got had carried a request before.
func (t *Trace) Reused() bool { return t.reused.Load() }

// Idle is how long the last connection had been idle before the request got it.
func (t *Trace) Idle() time.Duration { return time.Duration(t.idle.Load()) }

// Lost reports whether err, the error of the request t watched, says that the server had
// closed the reused connection before any byte of the answer arrived. A failure after an
// answer byte, or on a new connection, is not.
func (t *Trace) Lost(err error) bool {
	return err != nil && t.reused.Load() && !t.firstByte.Load() && Closed(err)
}

// Closed reports whether err says that the connection was closed or broken under the
// request: EOF, connection reset, broken pipe, net.ErrClosed, or net/http's "server closed
// idle connection".
func Closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "server closed idle connection") // unexported in net/http
}
