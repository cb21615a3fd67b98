package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/internal/reconn"
)

// The capture path, shared by both modes.
//
// roundTrip sends a request upstream. For a recordable request it wraps the request body in a
// reqTee (which keeps up to MaxBody bytes and notes when the body was fully sent) and the
// response body in a respTee (which appends every read to Exchange.Body with its monotonic
// arrival time). Whoever copies the response to the client (our own loop in reverse mode,
// goproxy in forward mode) reads from the respTee and closes it; Close finishes the exchange
// and hands it to the Sink. The hot path therefore only copies bytes and reads the clock:
// decoding a compressed body happens after the end, in its own goroutine.

// roundTrip forwards req upstream. start is when the request arrived at the proxy. It never
// returns an error: a failure to reach the upstream becomes a 502 response with an
// OpenAI-style error body.
func (p *Proxy) roundTrip(req *http.Request, start time.Time) *http.Response {
	if !p.recordable(req) {
		p.passed.Add(1)
		resp, err := p.pass(req)
		if errors.Is(err, ErrBodyStalled) {
			return stalledResponse(req)
		}
		if err != nil {
			return errorResponse(req, err)
		}
		return resp
	}
	p.exchanges.Add(1)
	p.begin()
	x := &Exchange{
		Start:     start,
		Method:    req.Method,
		Host:      req.URL.Host,
		Path:      req.URL.Path,
		ReqHeader: p.redact.Header(req.Header),
	}
	c := &capture{p: p, x: x, clientCtx: req.Context()}
	ctx, cancel := context.WithCancel(req.Context())
	c.cancel = cancel
	c.stopAbort = context.AfterFunc(p.abortCtx, cancel)
	tr := p.transportFor(req.URL.Host)
	if tr != p.fresh {
		// A pooled connection may have been closed by the upstream: see send.
		ctx = c.conn.Context(ctx)
	}
	req = req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		c.req = &reqTee{rc: req.Body, c: c, max: p.cfg.MaxBody}
		if req.ContentLength > 0 && req.ContentLength <= p.cfg.MaxBody {
			c.req.buf = make([]byte, 0, req.ContentLength)
		}
		req.Body = c.req
	}
	sendAt := time.Since(start)
	resp, err := p.send(tr, req, &c.conn, c.req)
	headersAt := time.Since(start)
	if err != nil {
		x.Err = "reach upstream: " + err.Error()
		x.ErrClass = c.classify(err)
		if x.ErrClass == errclass.Canceled && c.clientCtx.Err() != nil {
			x.ClientGone = true
		}
		resp = errorResponse(req, err)
		if c.req != nil && c.canDrain() {
			// The upstream may have failed before it took the whole body (a refused
			// connection takes none of it): read the rest from the client before answering,
			// so that the exchange keeps the request as it was sent.
			c.req.drain()
		}
		if c.req != nil && c.req.isStalled() {
			resp = stalledResponse(req) // (the connection is closed after it: see stallBody)
		}
	}
	c.sendAt = sendAt
	x.HeadersAt = headersAt
	x.Status = resp.StatusCode
	x.RespHeader = p.redact.Header(resp.Header)
	resp.Body = &respTee{rc: resp.Body, c: c}
	return resp
}

// capture is one recordable exchange in flight.
type capture struct {
	p         *Proxy
	x         *Exchange
	clientCtx context.Context // the client's request context: done when the client is gone
	cancel    context.CancelFunc
	stopAbort func() bool
	req       *reqTee
	sendAt    time.Duration
	conn      reconn.Trace // the upstream connection of the request (see send)
}

// canDrain reports whether the rest of the request body may be read from the client (see
// reqTee.drain): the client is still there and the proxy is not aborting (second Ctrl-C).
func (c *capture) canDrain() bool {
	return c.clientCtx.Err() == nil && c.p.abortCtx.Err() == nil
}

// classify names the kind of an upstream failure.
func (c *capture) classify(err error) errclass.Class {
	switch {
	case c.clientCtx.Err() != nil || errors.Is(err, context.Canceled) || c.p.abortCtx.Err() != nil:
		return errclass.Canceled
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return errclass.Timeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errclass.Timeout
	}
	return errclass.Connect
}

// reqTee keeps the first max bytes of a request body as the transport sends it. The transport
// may read and close it from its own goroutine, hence the mutex; an abandoned attempt and
// its re-sending (replayBody) may read it at once, hence readMu.
type reqTee struct {
	rc  io.ReadCloser
	c   *capture
	max int64

	readMu sync.Mutex // held across rc.Read and the append, so buf keeps the body's order

	mu         sync.Mutex
	buf        []byte
	size       int64
	trunc      bool
	sentAt     time.Duration // when the body's end was read (0: not seen)
	rerr       error         // rc's last error (io.EOF at the end)
	closeLater bool          // Close was deferred to the exchange's end: the body may be sent again
	stalled    bool          // the client paused mid-body over Config.BodyTimeout
}

// drain reads what the transport left of the body, keeping it as Read does, so that an
// exchange whose upstream failed (or answered early) still has the whole request. It stops at
// the body's end or first error, and as soon as the body is over max (it would not be kept
// anyway). A client that pauses mid-body is cut by Config.BodyTimeout as usual.
func (t *reqTee) drain() {
	var buf []byte
	for {
		t.mu.Lock()
		done := t.rerr != nil || t.trunc || t.stalled
		t.mu.Unlock()
		if done {
			return
		}
		if buf == nil {
			buf = make([]byte, 32<<10)
		}
		if _, err := t.Read(buf); err != nil {
			return
		}
	}
}

// untouched reports whether no byte of the body has been read yet.
func (t *reqTee) untouched() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.size == 0 && t.rerr == nil
}

// hasExpectContinue reports whether a request asked for "100 Continue" before its body.
func hasExpectContinue(h http.Header) bool {
	for _, v := range h.Values("Expect") {
		if strings.EqualFold(strings.TrimSpace(v), "100-continue") {
			return true
		}
	}
	return false
}

func (t *reqTee) isStalled() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stalled
}

func (t *reqTee) Read(b []byte) (int, error) {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	n, err := t.rc.Read(b)
	t.mu.Lock()
	if err != nil {
		t.rerr = err
	}
	if n > 0 {
		t.size += int64(n)
		if !t.trunc {
			if t.size > t.max {
				t.trunc, t.buf = true, nil
			} else {
				t.buf = append(t.buf, b[:n]...)
			}
		}
	}
	if err == io.EOF && t.sentAt == 0 {
		t.sentAt = time.Since(t.c.x.Start)
	} else if err != nil && errors.Is(err, ErrBodyStalled) {
		t.stalled = true
	}
	t.mu.Unlock()
	return n, err
}

// Close closes the client's body, unless it may still be sent again (it was kept whole):
// then respTee.Close closes it at the exchange's end.
func (t *reqTee) Close() error {
	t.mu.Lock()
	later := !t.trunc
	t.closeLater = later
	t.mu.Unlock()
	if later {
		return nil
	}
	return t.rc.Close()
}

// respTee records the response body as it is read. Only one goroutine reads and closes it.
type respTee struct {
	rc      io.ReadCloser
	c       *capture
	eof     bool
	readErr error
	closed  bool
}

func (t *respTee) Read(b []byte) (int, error) {
	n, err := t.rc.Read(b)
	x := t.c.x
	if n > 0 {
		at := time.Since(x.Start)
		x.RespSize += int64(n)
		if !x.RespTruncated {
			keep := b[:n]
			if room := t.c.p.cfg.MaxBody - int64(len(x.Body)); int64(n) > room {
				keep, x.RespTruncated = b[:room], true // keep the first MaxBody bytes
			}
			if x.Body == nil {
				x.Body = make([]byte, 0, 4096)
				x.Reads = make([]Read, 0, 64)
			}
			x.Body = append(x.Body, keep...)
			x.Reads = append(x.Reads, Read{At: at, End: len(x.Body)})
		}
	}
	if err != nil {
		if err == io.EOF {
			t.eof = true
		} else if t.readErr == nil {
			t.readErr = err
		}
	}
	return n, err
}

// endsWithDone reports whether an SSE body ends with the [DONE] event (whitespace after it
// aside): the OpenAI-style end of a whole stream.
func endsWithDone(body []byte) bool {
	body = bytes.TrimRight(body, " \r\n")
	line := body[bytes.LastIndexByte(body, '\n')+1:]
	v, ok := bytes.CutPrefix(line, []byte("data:"))
	return ok && string(bytes.TrimSpace(v)) == "[DONE]"
}

// Close ends the exchange: the copy to the client is over (all of it, or it failed).
func (t *respTee) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	err := t.rc.Close()
	c := t.c
	x := c.x
	x.End = time.Since(x.Start)
	c.cancel()
	c.stopAbort()
	switch {
	case t.readErr != nil && c.clientCtx.Err() != nil && !x.RespTruncated && endsWithDone(x.Body):
		// The client hung up after reading the stream's [DONE], as some clients do without
		// waiting for the connection's end: the stream was whole, and nothing failed.
	case t.readErr != nil:
		if x.Err == "" {
			x.Err = "read upstream: " + t.readErr.Error()
			x.ErrClass = c.classify(t.readErr)
			if x.ErrClass == errclass.Connect {
				x.ErrClass = errclass.Stream
			}
		}
		if c.clientCtx.Err() != nil {
			x.ClientGone = true
		}
	case !t.eof:
		// The copy stopped before the upstream's end without a read error: writing to the
		// client failed, so the client went away.
		x.ClientGone = true
		if x.Err == "" {
			x.Err = "write to client: client went away"
			x.ErrClass = errclass.Canceled
		}
	}
	if r := c.req; r != nil {
		// An upstream that answered without reading the whole body (an early 4xx) left the
		// rest with the client; read it so the exchange keeps the request. Not when the
		// client waits for a 100 Continue that the answer has made impossible: it will never
		// send the body.
		if c.canDrain() && !(r.untouched() && hasExpectContinue(x.ReqHeader)) {
			r.drain()
		}
		r.mu.Lock()
		x.ReqSize, x.Truncated, x.Sent = r.size, r.trunc, r.sentAt
		if !r.trunc && !r.stalled {
			x.ReqBody = r.buf
		}
		if r.stalled {
			// Whatever failed upstream failed because the client stopped sending: the turn
			// is the client's, canceled, without the half body.
			x.Err = "read request body: " + ErrBodyStalled.Error()
			x.ErrClass, x.ClientGone = errclass.Canceled, true
		}
		r.mu.Unlock()
		r.closeDeferred()
	}
	if x.Sent == 0 {
		x.Sent = c.sendAt
	}
	if x.ClientGone {
		c.p.gone.Add(1)
	}
	if x.Err != "" {
		c.p.errs.Add(1)
	}
	if needsDecode(x) {
		// Decoding is not the client's business: do it off the copy goroutine.
		go c.finish()
	} else {
		c.finish()
	}
	return err
}

// finish decodes what needs decoding and hands the exchange to the Sink.
func (c *capture) finish() {
	decodeExchange(c.x, c.p.cfg.MaxBody)
	if s := c.p.cfg.Sink; s != nil {
		s.Capture(c.x)
	}
	c.p.done()
}

// errorResponse is the 502 answer the client gets when the upstream cannot be reached.
func errorResponse(req *http.Request, err error) *http.Response {
	body := openAIError("llmtape proxy: upstream unreachable: "+err.Error(), "upstream_error", "bad_gateway")
	return jsonResponse(req, http.StatusBadGateway, body)
}

// stalledResponse is the answer to a client that paused mid-body over Config.BodyTimeout.
func stalledResponse(req *http.Request) *http.Response {
	body := openAIError("llmtape proxy: "+ErrBodyStalled.Error(), "invalid_request_error", "request_timeout")
	return jsonResponse(req, http.StatusRequestTimeout, body)
}

// jsonResponse is a response of the proxy's own with a JSON body.
func jsonResponse(req *http.Request, code int, body []byte) *http.Response {
	h := make(http.Header, 2)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// openAIError renders an OpenAI-style error body.
func openAIError(msg, typ, code string) []byte {
	type detail struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	}
	b, _ := json.Marshal(struct {
		Error detail `json:"error"`
	}{detail{Message: msg, Type: typ, Code: code}})
	return append(b, '\n')
}
