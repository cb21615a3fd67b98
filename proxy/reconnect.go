package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtape/llmtape/internal/reconn"
)

// Reconnects.
//
// Some servers (llama.cpp's llama-server among them) answer with keep-alive but close the
// connection right after every streamed answer. The transport pools that connection when the
// answer ends and may hand it to the next request before it has seen the close: that request
// then fails (EOF, reset, broken pipe, "server closed idle connection") although the server
// never saw it, and without this the client would get a 502 that only the proxy made. Go's
// transport re-sends such requests itself only when they are idempotent, never a POST
// without an Idempotency-Key. So send does it: a request that failed on a reused connection
// before any byte of the answer arrived is sent once more, on a new connection (the fresh
// transport, which never pools). The body is sent again from the reqTee, which keeps it up to
// MaxBody; a bigger body is not re-sent, and the error says why. A failure after answer bytes
// arrived is a broken answer, never re-sent.
//
// The risk: a server that processed the request and then dropped the connection without
// answering at all sees it twice. HTTP gives no way to tell that from the race above.
//
// Upstreams that close every connection after a response are learnt (habits): after
// noPoolAfter such closes in a row, with no answer on a reused connection in between, every
// later request to that host goes on a new connection, so the race no longer happens.

// noPoolAfter is how many reused connections an upstream must have closed in a row, each
// soon after its previous answer (quickClose), before the proxy stops pooling connections
// to it.
const (
	noPoolAfter = 3
	quickClose  = time.Second
)

// errBodyTooLarge is why a request body cannot be sent again.
var errBodyTooLarge = errors.New("request body larger than --max-body")

// habits are what the proxy has learnt about upstreams that close pooled connections.
type habits struct {
	pending atomic.Int64 // hosts with a run of closes in progress
	any     atomic.Bool  // some host is no longer pooled

	mu     sync.RWMutex
	run    map[string]int  // closes in a row, per host
	noPool map[string]bool // hosts whose connections are not pooled
}

// transportFor returns the transport for host: the pooling one, or the fresh one once the
// host has shown that it closes connections after each answer.
func (p *Proxy) transportFor(host string) *http.Transport {
	if !p.habits.any.Load() {
		return p.transport
	}
	p.habits.mu.RLock()
	np := p.habits.noPool[host]
	p.habits.mu.RUnlock()
	if np {
		return p.fresh
	}
	return p.transport
}

// closedQuickly notes that host closed a pooled connection idle < quickClose.
func (h *habits) closedQuickly(host string) (stopped bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.noPool[host] {
		return false
	}
	if h.run == nil {
		h.run, h.noPool = make(map[string]int), make(map[string]bool)
	}
	if h.run[host] == 0 {
		h.pending.Add(1)
	}
	h.run[host]++
	if h.run[host] < noPoolAfter {
		return false
	}
	delete(h.run, host)
	h.pending.Add(-1)
	h.noPool[host] = true
	h.any.Store(true)
	return true
}

// answered notes that a reused connection to host carried an answer: its closes were not a
// habit. Free unless a run of closes is in progress.
func (h *habits) answered(host string) {
	if h.pending.Load() == 0 {
		return
	}
	h.mu.Lock()
	if h.run[host] > 0 {
		delete(h.run, host)
		h.pending.Add(-1)
	}
	h.mu.Unlock()
}

// send sends req upstream with tr (req's context carries ct's trace); see Reconnects. body is
// the request body's tee, nil when there is none.
func (p *Proxy) send(tr *http.Transport, req *http.Request, ct *reconn.Trace, body *reqTee) (*http.Response, error) {
	resp, err := tr.RoundTrip(req)
	if err == nil {
		if ct.Reused() {
			p.habits.answered(req.URL.Host)
		}
		return resp, nil
	}
	if !ct.Lost(err) || req.Context().Err() != nil || p.abortCtx.Err() != nil {
		return nil, err
	}
	if ct.Idle() < quickClose && p.habits.closedQuickly(req.URL.Host) {
		p.logf("upstream %s closed %d connections in a row right after an answer (it promised keep-alive): connections to it are no longer kept", req.URL.Host, noPoolAfter)
	}
	again := new(http.Request)
	*again = *req
	if body != nil {
		again.GetBody = body.replay
		b, rerr := body.replay()
		if rerr != nil {
			return nil, fmt.Errorf("%w (on a reused connection that the upstream had closed; not sent again on a new one: %v (%d bytes))", err, rerr, p.cfg.MaxBody)
		}
		again.Body = b
	}
	p.reconnects.Add(1)
	resp, err = p.fresh.RoundTrip(again)
	if err != nil {
		return nil, fmt.Errorf("%w (sent again on a new connection after the upstream closed a reused one)", err)
	}
	return resp, nil
}

// pass sends a request that is not recorded, re-sent as a recorded one would be. Its body is
// kept for that up to MaxBody, and the client's body is closed with the response's.
func (p *Proxy) pass(req *http.Request) (*http.Response, error) {
	tr := p.transportFor(req.URL.Host)
	if tr == p.fresh {
		return tr.RoundTrip(req)
	}
	ct := new(reconn.Trace)
	var body *reqTee
	if req.Body != nil && req.Body != http.NoBody {
		body = &reqTee{rc: req.Body, c: &capture{x: &Exchange{Start: time.Now()}}, max: p.cfg.MaxBody}
		req.Body = body
	}
	req = req.WithContext(ct.Context(req.Context()))
	resp, err := p.send(tr, req, ct, body)
	switch {
	case body == nil:
	case err != nil:
		body.closeDeferred()
	default:
		resp.Body = &closeBoth{ReadCloser: resp.Body, also: body}
	}
	return resp, err
}

// closeBoth closes a response body and then the request body whose closing was deferred.
type closeBoth struct {
	io.ReadCloser
	also *reqTee
}

func (c *closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.also.closeDeferred()
	return err
}

// closeDeferred closes the client's body if reqTee.Close left it open for a re-send.
func (t *reqTee) closeDeferred() {
	t.mu.Lock()
	later := t.closeLater
	t.mu.Unlock()
	if later {
		_ = t.rc.Close()
	}
}

// replay returns the whole request body from its start, for sending it again: the bytes kept
// so far, then the rest as the client sends it. It fails when the body is over MaxBody (it
// was not kept).
func (t *reqTee) replay() (io.ReadCloser, error) {
	t.mu.Lock()
	trunc := t.trunc
	t.mu.Unlock()
	if trunc {
		return nil, errBodyTooLarge
	}
	return &replayBody{t: t}, nil
}

// replayBody reads a reqTee's body again from its start. An earlier attempt may still be
// reading the client's body through the tee (the transport can read a body after RoundTrip
// has returned); every byte it gets lands in the tee's buffer, so replayBody reads only from
// the buffer and asks the tee for more when it has caught up.
type replayBody struct {
	t   *reqTee
	off int
}

func (r *replayBody) Read(b []byte) (int, error) {
	t := r.t
	for {
		t.mu.Lock()
		switch {
		case t.trunc:
			t.mu.Unlock()
			return 0, errBodyTooLarge
		case r.off < len(t.buf):
			n := copy(b, t.buf[r.off:])
			r.off += n
			t.mu.Unlock()
			return n, nil
		case t.rerr != nil:
			err := t.rerr
			t.mu.Unlock()
			return 0, err
		}
		t.mu.Unlock()
		if len(b) == 0 {
			return 0, nil
		}
		_, _ = t.Read(b) // appends to t.buf (or sets t.rerr); the loop returns it from there
	}
}

// Close does nothing: the client's body is closed when the exchange ends (reqTee.Close).
func (r *replayBody) Close() error { return nil }
