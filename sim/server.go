package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/llmtape/llmtape/internal/jsonstr"
	"github.com/llmtape/llmtape/openai"
)

// maxBody bounds a request body.
const maxBody = 64 << 20

// Server is a simulated OpenAI-compatible server. Create it with New, run it with Serve or
// Start, stop it with Shutdown or Close. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	tokenize tokenizerFunc
	cache    *prefixCache
	lim      *limiter
	ctr      *counters
	created  int64  // Unix seconds of New, the "created" of /v1/models
	idSeed   uint64 // makes response ids unique to this instance
	http     *http.Server
	closing  chan struct{} // closed by Close: handlers stop waiting at once

	mu        sync.Mutex
	url       string
	serveDone chan struct{} // closed when Start's Serve returns
	closeOnce sync.Once
}

// New checks cfg, fills its structural defaults and returns a server that is not yet serving.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("sim config: %w", err)
	}
	tok, err := newTokenizer(cfg.Tokenizer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		tokenize: tok,
		lim:      newLimiter(cfg.MaxRunning),
		ctr:      newCounters(),
		created:  time.Now().Unix(),
		idSeed:   uint64(time.Now().UnixNano()),
		closing:  make(chan struct{}),
	}
	if cfg.CacheBlocks > 0 {
		s.cache = newPrefixCache(cfg.CacheBlocks)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { s.handleCompletion(w, r, true) })
	mux.HandleFunc("/v1/completions", func(w http.ResponseWriter, r *http.Request) { s.handleCompletion(w, r, false) })
	mux.HandleFunc("/v1/models", s.handleModels)
	mux.HandleFunc("/health", s.handleHealth)
	mux.HandleFunc("/metrics", s.handleMetrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route "+r.Method+" "+r.URL.Path, "invalid_request_error", nil)
	})
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Config returns the configuration in effect (defaults filled in).
func (s *Server) Config() Config { return s.cfg }

// Serve answers requests on ln until Shutdown or Close; it then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.url == "" {
		s.url = "http://" + ln.Addr().String()
	}
	s.mu.Unlock()
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Start listens on addr (127.0.0.1 on a free port when addr is empty), serves in a goroutine
// and returns the base URL, for example "http://127.0.0.1:40123" (clients add "/v1").
func (s *Server) Start(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s: %w", addr, err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.url = "http://" + ln.Addr().String()
	s.serveDone = done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = s.Serve(ln) // Serve's only errors come from ln, which Close closes
	}()
	return s.URL(), nil
}

// URL returns the base URL ("http://host:port") once Serve or Start has been called.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Shutdown stops accepting connections and waits for the requests in flight (queued ones
// included) to finish. If ctx ends first, it cuts the rest as Close does and returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.Close()
		return fmt.Errorf("shutdown sim: %w", err)
	}
	s.waitServe()
	return nil
}

// Close stops the server at once: listeners and connections are closed and streams in flight
// are cut (counted as canceled).
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	err := s.http.Close()
	s.waitServe()
	if err != nil {
		return fmt.Errorf("close sim: %w", err)
	}
	return nil
}

func (s *Server) waitServe() {
	s.mu.Lock()
	done := s.serveDone
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Stats returns a snapshot of the exact counters.
func (s *Server) Stats() Stats {
	c := s.ctr
	st := Stats{
		Requests:         c.requests.Load(),
		BadRequests:      c.bad.Load(),
		Stalled:          c.stalled.Load(),
		Disconnected:     c.disconnected.Load(),
		Completed:        c.completed.Load(),
		Canceled:         c.canceled.Load(),
		PromptTokens:     c.prompt.Load(),
		CompletionTokens: c.completion.Load(),
		CachedTokens:     c.cached.Load(),
		CacheBlocks:      s.cache.len(),
		Failed:           map[int]int64{},
	}
	c.failedMu.Lock()
	for k, v := range c.failed {
		st.Failed[k] = v
	}
	c.failedMu.Unlock()
	st.Running, st.Waiting = s.lim.counts()
	return st
}

// Handler returns the server's HTTP handler, for mounting it elsewhere (httptest).
func (s *Server) Handler() http.Handler { return s.http.Handler }

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeMethodNotAllowed(w, "GET")
		return
	}
	b := []byte(`{"object":"list","data":[{"id":`)
	b = jsonstr.Append(b, s.cfg.Model)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, s.created, 10)
	b = append(b, `,"owned_by":"llmtape"}]}`...)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeMethodNotAllowed(w, "GET")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeMethodNotAllowed(w, "GET")
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.writeMetrics(w)
}

func writeMethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed: use "+allow, "invalid_request_error", nil)
}

// writeError sends an OpenAI error body (openai.ErrorJSON). code is a string, a number or nil.
func writeError(w http.ResponseWriter, status int, msg, typ string, code any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(openai.ErrorJSON(msg, typ, code))
}
