package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtape/llmtape/internal/redact"
)

// Modes of the proxy.
const (
	ModeReverse = "reverse" // clients set their base URL to the proxy; Upstream is the server
	ModeForward = "forward" // clients set HTTP_PROXY / HTTPS_PROXY; TLS is intercepted with a CA
)

// DefaultMaxBody is the default Config.MaxBody: 32 MiB.
const DefaultMaxBody = 32 << 20

// DefaultBodyTimeout is the default Config.BodyTimeout.
const DefaultBodyTimeout = 60 * time.Second

// Config configures a Proxy. The zero value of each field means its default.
type Config struct {
	// Mode is ModeReverse (default) or ModeForward.
	Mode string
	// Upstream is the server in reverse mode, e.g. "http://127.0.0.1:8000" or
	// "http://host/api" (a base path is prefixed to every request path). Ignored in forward mode.
	Upstream string
	// Sink receives every finished exchange of a recordable request. Nil records nothing.
	Sink Sink
	// MaxBody is the largest request (and response) body kept in an Exchange, in bytes; bigger
	// bodies pass through untouched and are recorded as truncated. Default DefaultMaxBody.
	MaxBody int64
	// RedactHeaders are header names dropped from the Exchange in addition to the secret
	// headers that are always dropped (see Exchange). Case-insensitive. They still reach the
	// upstream.
	RedactHeaders []string
	// KeepHeaders are header names kept in the Exchange although the redaction rule calls
	// them secrets: the session headers that the recorder stitches conversations by.
	// RedactHeaders wins over KeepHeaders. Case-insensitive.
	KeepHeaders []string
	// Intercept lists the hosts whose traffic is recorded in forward mode (TLS to them is
	// intercepted with CA; CONNECTs to other hosts are tunnelled untouched when AllowConnect
	// lists them, refused otherwise). An entry is a host
	// name ("api.openai.com"), a wildcard ("*.openai.com") or "*". Empty means every host.
	// Ignored in reverse mode.
	Intercept []string
	// AllowConnect lists where a CONNECT that is not intercepted may be tunnelled untouched
	// in forward mode: "host" (port 443), "host:port" or "host:*", with host a name,
	// "*.domain" or "*" as in Intercept. Other CONNECTs are refused with 403. Empty: none.
	// Ignored in reverse mode.
	AllowConnect []string
	// BodyTimeout is the longest a client may pause while sending a request body: a pause
	// longer than BodyTimeout (and at most 1.5 × BodyTimeout) cuts the connection, and a
	// recordable exchange is recorded as canceled by the client. Default DefaultBodyTimeout;
	// negative disables it. It does not apply inside intercepted (forward-mode TLS)
	// connections.
	BodyTimeout time.Duration
	// CA signs the certificates presented to clients for intercepted hosts in forward mode
	// (see LoadOrCreateCA). Required in forward mode; ignored in reverse mode.
	CA *tls.Certificate
	// UpstreamTLS is the TLS configuration for connections to upstream servers; nil uses the
	// system roots. Set RootCAs to trust a private upstream.
	UpstreamTLS *tls.Config
	// Recordable decides whether a request is recorded; nil means DefaultRecordable.
	Recordable func(r *http.Request) bool
	// Logf receives rare operational messages (never per chunk). Nil discards them.
	Logf func(format string, args ...any)
}

// DefaultRecordable reports whether a request is an OpenAI-style completion call worth
// recording: POST to a path ending in /chat/completions or /completions (so that a base path
// such as /api/v1/chat/completions is recognised).
func DefaultRecordable(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	return strings.HasSuffix(p, "/completions")
}

// Stats are the proxy's counters since New.
type Stats struct {
	Exchanges  int64 `json:"exchanges"`   // recordable exchanges seen (each one handed to the Sink)
	Passed     int64 `json:"passed"`      // requests forwarded without recording
	Errors     int64 `json:"errors"`      // recordable exchanges that ended with Err set
	ClientGone int64 `json:"client_gone"` // recordable exchanges whose client went away early
	InFlight   int64 `json:"in_flight"`   // recordable exchanges not finished yet
	Refused    int64 `json:"refused"`     // forward mode: CONNECTs refused (not intercepted, not allowed)
	Stalled    int64 `json:"stalled"`     // requests cut because the client paused mid-body over BodyTimeout
	// UpstreamReconnects counts requests (recorded or passed) sent again on a new connection because
	// the upstream had closed the reused one before answering (not errors; see docs/record.md).
	UpstreamReconnects int64 `json:"upstream_reconnects"`
}

// Proxy is the recording HTTP(S) proxy. It is an http.Handler; Serve runs it on a listener.
type Proxy struct {
	cfg        Config
	upstream   *url.URL
	recordable func(*http.Request) bool
	redact     redact.Rule // header names never copied into an Exchange
	transport  *http.Transport
	fresh      *http.Transport // never pools: re-sent requests, upstreams that close after each answer
	habits     habits
	handler    http.Handler

	// abortCtx is cancelled when a drain times out: every upstream request of a recordable
	// exchange is derived from it so that hijacked (forward-mode) streams end too.
	abortCtx context.Context
	abort    context.CancelFunc

	exchanges, passed, errs, gone, refused, stalled, reconnects atomic.Int64

	mu       sync.Mutex
	inflight int64
	idle     []chan struct{} // closed when inflight drops to 0
	srvs     []*http.Server
	shutdown bool // Shutdown was called: Serve starts no server
}

// New returns a proxy for cfg.
func New(cfg Config) (*Proxy, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeReverse
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	p := &Proxy{cfg: cfg, recordable: cfg.Recordable, redact: redact.New(cfg.RedactHeaders, cfg.KeepHeaders)}
	if p.recordable == nil {
		p.recordable = DefaultRecordable
	}
	p.abortCtx, p.abort = context.WithCancel(context.Background())
	p.transport = &http.Transport{
		Proxy:                 nil, // never send upstream traffic to $HTTP_PROXY (it may be us)
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg.UpstreamTLS,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The client's Accept-Encoding goes to the upstream as sent and the answer comes back
		// as sent: no transparent gzip. Recorded bodies are decoded after the fact.
		DisableCompression: true,
		// Default 4 KiB connection buffers: an event is far smaller, and 500 streams in
		// flight should not cost 32 MiB of buffers that sit idle between events.
	}
	p.fresh = p.transport.Clone()
	p.fresh.DisableKeepAlives = true
	switch cfg.Mode {
	case ModeReverse:
		if cfg.Upstream == "" {
			return nil, errors.New("new proxy: reverse mode needs an upstream URL")
		}
		u, err := url.Parse(cfg.Upstream)
		if err != nil {
			return nil, fmt.Errorf("new proxy: upstream: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("new proxy: upstream %q: want http://host[:port][/base] or https://…", cfg.Upstream)
		}
		p.upstream = u
		p.handler = http.HandlerFunc(p.serveReverse)
	case ModeForward:
		if cfg.CA == nil {
			return nil, errors.New("new proxy: forward mode needs a CA (see LoadOrCreateCA)")
		}
		h, err := p.newForward()
		if err != nil {
			return nil, err
		}
		p.handler = h
	default:
		return nil, fmt.Errorf("new proxy: mode %q: want %q or %q", cfg.Mode, ModeReverse, ModeForward)
	}
	return p, nil
}

// ServeHTTP proxies one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.cfg.BodyTimeout <= 0 || r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodConnect {
		p.handler.ServeHTTP(w, r)
		return
	}
	sb := &stallBody{rc: r.Body, ctl: http.NewResponseController(w), d: p.cfg.BodyTimeout, p: p}
	r.Body = sb
	p.handler.ServeHTTP(w, r)
	if sb.stalled.Load() {
		// The rest of the body is not coming; net/http would keep the connection and wait
		// for a next request on it. Send what was written (the 408) and close it.
		_ = sb.ctl.Flush()
		panic(http.ErrAbortHandler)
	}
}

// Serve accepts connections on l until Shutdown. It returns nil after Shutdown, at once (closing
// l) when Shutdown has already been called.
func (p *Proxy) Serve(l net.Listener) error {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          nil,
	}
	p.mu.Lock()
	if p.shutdown {
		// Shutdown came first (a Serve goroutine scheduled late): it could not stop this
		// server, so never start it.
		p.mu.Unlock()
		_ = l.Close()
		return nil
	}
	p.srvs = append(p.srvs, srv)
	p.mu.Unlock()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve proxy: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits until every recordable exchange in flight
// has finished and been handed to the Sink, then closes the idle upstream connections. When ctx ends first, the upstream requests still
// running are cancelled (their exchanges are captured with what had arrived, ErrClass
// "canceled"), connections are closed, and ctx's error is returned.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.shutdown = true
	srvs := append([]*http.Server(nil), p.srvs...)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Shutdown(ctx)
		}()
	}
	err := p.waitIdle(ctx)
	wg.Wait()
	// The transport keeps idle upstream connections (two goroutines each) for IdleConnTimeout;
	// nothing will use them now.
	defer p.transport.CloseIdleConnections()
	if err == nil {
		return nil
	}
	p.abort()
	for _, s := range srvs {
		_ = s.Close()
	}
	// Aborted streams finish promptly; bound the wait anyway.
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.waitIdle(wctx)
	return fmt.Errorf("drain proxy: %w", err)
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	n := p.inflight
	p.mu.Unlock()
	return Stats{
		Exchanges:  p.exchanges.Load(),
		Passed:     p.passed.Load(),
		Errors:     p.errs.Load(),
		ClientGone: p.gone.Load(),
		InFlight:   n,
		Refused:    p.refused.Load(),
		Stalled:    p.stalled.Load(),

		UpstreamReconnects: p.reconnects.Load(),
	}
}

func (p *Proxy) begin() {
	p.mu.Lock()
	p.inflight++
	p.mu.Unlock()
}

func (p *Proxy) done() {
	p.mu.Lock()
	p.inflight--
	if p.inflight == 0 {
		for _, c := range p.idle {
			close(c)
		}
		p.idle = nil
	}
	p.mu.Unlock()
}

// waitIdle returns when no recordable exchange is in flight, or ctx's error.
func (p *Proxy) waitIdle(ctx context.Context) error {
	p.mu.Lock()
	if p.inflight == 0 {
		p.mu.Unlock()
		return nil
	}
	c := make(chan struct{})
	p.idle = append(p.idle, c)
	p.mu.Unlock()
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Proxy) logf(format string, args ...any) {
	if p.cfg.Logf != nil {
		p.cfg.Logf(format, args...)
	}
}
