package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/tape"
)

// DefaultListen is the default SessionConfig.Listen: a free port on loopback.
const DefaultListen = "127.0.0.1:0"

// adminShutdownTimeout bounds how long Stop waits for admin requests (a snapshot download)
// before it closes their connections.
const adminShutdownTimeout = time.Second

// SessionConfig configures a Session: a recording proxy with its recorder, store and admin
// listener.
type SessionConfig struct {
	// Store is the store to record into; the caller opens it and closes it after Stop. When
	// nil, Start opens StorePath and Stop closes it.
	Store     *tape.Store
	StorePath string
	// Listen is the proxy's address (host:port; port 0 picks a free one). Default
	// DefaultListen.
	Listen string
	// Admin is the address of the admin listener (see AdminHandler); "" runs none. Its
	// requests must name it (or localhost) as their Host, which defeats DNS rebinding.
	Admin string
	// AdminToken, when set, is the token every admin request must carry as
	// "Authorization: Bearer <token>". Set it when Admin is reachable from other machines:
	// /snapshot serves the whole store.
	AdminToken string
	// Proxy configures the proxy. Its Sink must be nil: the session's recorder is the sink.
	Proxy proxy.Config
	// Recorder configures the recorder. Left empty, its Mode is Proxy.Mode (default
	// reverse), its Upstream is Proxy.Upstream (or the Intercept hosts joined by commas in
	// forward mode), its SessionHeaders are Proxy.KeepHeaders, its RedactHeaders are
	// Proxy.RedactHeaders, and its Workers leave one CPU to the proxy's copy loops
	// (GOMAXPROCS-1, at least 1).
	Recorder Config
}

// Summary is what a session did: its recording and counters, and how it stopped. Before Stop
// the counters are live; after it they are final.
type Summary struct {
	Recording uint64      `json:"recording"` // the recording's id (0 before Start)
	Proxy     proxy.Stats `json:"proxy"`
	Recorder  Stats       `json:"recorder"`
	// DrainErr is set when Stop's context ended before the streams in flight finished: they
	// were cut, and are recorded as canceled with what had arrived.
	DrainErr error `json:"-"`
	// CloseErr is the first error of closing the recorder (flushing, writing the recording's
	// end: it then wraps ErrStatusNotWritten) or the store the session opened.
	CloseErr error `json:"-"`
}

// MarshalJSON writes the errors as strings, "drain_error" and "close_error", left out when nil.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary
	text := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	return json.Marshal(struct {
		plain
		DrainError string `json:"drain_error,omitempty"`
		CloseError string `json:"close_error,omitempty"`
	}{plain(s), text(s.DrainErr), text(s.CloseErr)})
}

// Session is one recording session, what "llmtape record" runs: a proxy on a listener whose
// exchanges a Recorder adds to one recording in a store, and an optional admin listener.
// NewSession only builds; Start opens the store and the listeners and creates the recording;
// Stop lets the streams in flight finish (until its context ends), records everything
// captured and closes what Start opened.
type Session struct {
	cfg   SessionConfig
	proxy *proxy.Proxy
	sink  sink

	// Set by Start.
	store    *tape.Store
	rec      *Recorder
	ln       net.Listener
	admin    *http.Server
	adminLn  net.Listener
	served   chan struct{} // closed when Serve has returned
	serveErr error         // Serve's error, read after served is closed
	stopped  chan struct{} // closed when Stop has returned
	stopErr  error         // Stop's error, read after stopped is closed

	mu       sync.Mutex
	state    int // 0 built, 1 started, 2 stopping or stopped
	drainErr error
	closeErr error
}

// sink hands exchanges to the recorder, which Start creates after the proxy: rec is set
// before the proxy serves, so reading it needs no lock.
type sink struct{ rec *Recorder }

func (s *sink) Capture(x *proxy.Exchange) { s.rec.Capture(x) }

// NewSession checks cfg and builds the proxy. It opens nothing and writes nothing; its errors
// are those of proxy.New (a bad upstream URL, mode or CA) and of cfg's own fields.
func NewSession(cfg SessionConfig) (*Session, error) {
	if cfg.Store == nil && cfg.StorePath == "" {
		return nil, errors.New("new session: no store")
	}
	if cfg.Proxy.Sink != nil {
		return nil, errors.New("new session: Proxy.Sink is the session's recorder; leave it nil")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Proxy.Mode == "" {
		cfg.Proxy.Mode = proxy.ModeReverse
	}
	rc := &cfg.Recorder
	if rc.Mode == "" {
		rc.Mode = cfg.Proxy.Mode
	}
	if rc.Upstream == "" {
		rc.Upstream = cfg.Proxy.Upstream
		if cfg.Proxy.Mode == proxy.ModeForward {
			rc.Upstream = strings.Join(cfg.Proxy.Intercept, ",")
		}
	}
	if rc.SessionHeaders == nil {
		rc.SessionHeaders = cfg.Proxy.KeepHeaders
	}
	if rc.RedactHeaders == nil {
		rc.RedactHeaders = cfg.Proxy.RedactHeaders
	}
	if rc.Workers <= 0 {
		// Parsing and token counting are CPU work: leave at least one CPU to the proxy's
		// copy loops so that recording does not add latency under load.
		rc.Workers = max(1, runtime.GOMAXPROCS(0)-1)
	}
	s := &Session{cfg: cfg, served: make(chan struct{}), stopped: make(chan struct{})}
	pc := cfg.Proxy
	pc.Sink = &s.sink
	p, err := proxy.New(pc)
	if err != nil {
		return nil, err
	}
	s.proxy = p
	return s, nil
}

// Start opens the store (unless SessionConfig.Store is set), listens on SessionConfig.Listen
// and Admin, starts the recorder, which creates the recording, and serves. Everything that can
// fail on bad input fails before the recording is created, so a failed start leaves no empty
// recording; what it opened is closed again. ctx bounds the start only: Stop ends the session.
func (s *Session) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != 0 {
		return errors.New("start session: already started")
	}
	var undo []func() error
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				_ = undo[i]()
			}
		}
	}()
	s.store = s.cfg.Store
	if s.store == nil {
		if s.store, err = tape.Open(s.cfg.StorePath, nil); err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		undo = append(undo, s.store.Close)
	}
	var lc net.ListenConfig
	if s.ln, err = lc.Listen(ctx, "tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	undo = append(undo, s.ln.Close)
	if s.cfg.Admin != "" {
		if s.adminLn, err = lc.Listen(ctx, "tcp", s.cfg.Admin); err != nil {
			return fmt.Errorf("listen admin %s: %w", s.cfg.Admin, err)
		}
		undo = append(undo, s.adminLn.Close)
	}
	if s.rec, err = New(s.store, s.cfg.Recorder); err == nil {
		err = s.rec.Start(ctx)
	}
	if err != nil {
		return err
	}
	s.sink.rec = s.rec // before Serve starts: no exchange can arrive earlier
	if s.adminLn != nil {
		h := guardAdmin(s.AdminHandler(), s.cfg.Admin, s.adminLn.Addr(), s.cfg.AdminToken)
		s.admin = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = s.admin.Serve(s.adminLn) }()
	}
	go func() {
		s.serveErr = s.proxy.Serve(s.ln)
		close(s.served)
	}()
	s.state = 1
	return nil
}

// Addr is the proxy's listening address (nil before Start).
func (s *Session) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// AdminAddr is the admin listener's address (nil before Start or without one).
func (s *Session) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// Done is closed when the proxy has stopped serving: once Stop has begun, or earlier on its
// own when accepting connections failed (Stop then returns that error).
func (s *Session) Done() <-chan struct{} { return s.served }

// Summary returns the session's recording and counters; see Summary.
func (s *Session) Summary() Summary {
	sum := Summary{Proxy: s.proxy.Stats()}
	s.mu.Lock()
	sum.DrainErr, sum.CloseErr = s.drainErr, s.closeErr
	rec := s.rec
	s.mu.Unlock()
	if rec != nil {
		sum.Recording, sum.Recorder = rec.Recording(), rec.Stats()
	}
	return sum
}

// Stop ends the session: the proxy stops accepting and the streams in flight finish, or are
// cut when ctx ends (Summary.DrainErr); then the recorder records everything captured and
// writes the recording's end, the admin listener stops, and a store that Start opened is
// closed. It returns the proxy's serving error if it had failed, else an error wrapping
// Summary.CloseErr. A second Stop returns the first one's error.
func (s *Session) Stop(ctx context.Context) error {
	s.mu.Lock()
	state := s.state
	if state == 1 {
		s.state = 2
	}
	s.mu.Unlock()
	switch state {
	case 0:
		return nil
	case 2:
		<-s.stopped
		return s.stopErr
	}
	defer close(s.stopped)
	var serveErr error
	select {
	case <-s.served: // serving failed before Stop
		serveErr = s.serveErr
	default:
	}
	derr := s.proxy.Shutdown(ctx) // a Serve that starts after it (Stop right after Start) returns at once
	<-s.served
	cerr := s.rec.Close()
	if s.admin != nil {
		actx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
		_ = s.admin.Shutdown(actx)
		cancel()
	}
	if s.cfg.Store == nil {
		if err := s.store.Close(); err != nil && cerr == nil {
			cerr = fmt.Errorf("close store: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drainErr, s.closeErr = derr, cerr
	switch {
	case serveErr != nil:
		s.stopErr = serveErr
	case cerr != nil:
		s.stopErr = fmt.Errorf("flush recording: %w", cerr)
	}
	return s.stopErr
}
