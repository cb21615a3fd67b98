package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newRecordCmd) }

// recordOptions binds the flags of `llmtape record`.
type recordOptions struct {
	upstream       string
	listen         string
	mode           string
	intercept      []string
	caDir          string
	upstreamCA     string
	maxBody        string
	redact         []string
	sessionHeaders []string
	name           string
	drainTimeout   time.Duration
	commitInterval time.Duration
	queueSize      int
	admin          string
	adminTokenEnv  string
	allowConnect   []string
	bodyTimeout    time.Duration
}

func (o *recordOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.upstream, "upstream", "", "reverse mode: the server to forward to, e.g. http://127.0.0.1:8000 (a base path such as http://host/api is kept)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&o.mode, "mode", proxy.ModeReverse, "reverse (clients set their base URL to the proxy) or forward (clients set HTTPS_PROXY/HTTP_PROXY)")
	f.StringSliceVar(&o.intercept, "intercept", nil, "forward mode: host to intercept and record, repeatable (name, *.domain or *; default every host); other CONNECTs are tunnelled untouched")
	f.StringVar(&o.caDir, "ca-dir", defaultCADir(), "forward mode: directory of the interception CA (generated on first use; key mode 0600)")
	f.StringVar(&o.upstreamCA, "upstream-ca", "", "PEM file of extra CA certificates to trust for HTTPS upstreams (added to the system roots)")
	f.StringVar(&o.maxBody, "max-body", "32MiB", "largest request or response body kept (bigger bodies pass through and are recorded truncated); bytes, or with KiB/MiB/GiB/KB/MB/GB")
	f.StringSliceVar(&o.redact, "redact-header", nil, "header never stored, repeatable (any header whose name contains auth, key, token, secret, password, cookie or signature never is)")
	f.StringSliceVar(&o.sessionHeaders, "session-header", nil, "extra request header that names a conversation, repeatable (X-Session-ID, X-Conversation-ID and Helicone-Session-Id always do); its value is stored")
	f.StringVar(&o.name, "name", "", `name of the recording (default "record <start time>")`)
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM or Ctrl-C, how long streams in flight may run before they are cut")
	f.DurationVar(&o.commitInterval, "commit-interval", 0, "longest a recorded turn waits before its store transaction (0: the store's default, 50ms); a kill -9 loses at most this much")
	f.IntVar(&o.queueSize, "queue", recorder.DefaultQueueSize, "exchanges that may wait to be recorded; beyond it they are counted as not recorded and still served")
	f.StringVar(&o.admin, "admin", "", "address of the admin listener (/health, /stats, /snapshot), e.g. 127.0.0.1:8081 (default off)")
	f.StringVar(&o.adminTokenEnv, "admin-token-env", "", "environment variable holding the admin listener's token: requests then need Authorization: Bearer <token> (required when --admin is not a loopback address)")
	f.StringSliceVar(&o.allowConnect, "allow-connect", nil, "forward mode: HOST[:PORT] (port 443 if not given, * for any) that a CONNECT may reach untouched besides the --intercept hosts, repeatable; other CONNECTs are refused with 403")
	f.DurationVar(&o.bodyTimeout, "body-timeout", proxy.DefaultBodyTimeout, "longest a client may pause while sending a request body before its connection is cut (recorded as canceled)")
}

// defaultCADir is $XDG_CONFIG_HOME/llmtape (or the platform's config directory).
func defaultCADir() string {
	d, err := os.UserConfigDir()
	if err != nil {
		return ".llmtape-ca"
	}
	return filepath.Join(d, "llmtape")
}

func newRecordCmd() *cobra.Command {
	o := &recordOptions{}
	cmd := &cobra.Command{
		Use:   "record",
		Short: "Record chat traffic through a proxy into the store",
		Long: `record runs a proxy between OpenAI-compatible clients and a server and records every
POST …/chat/completions and …/completions into the store as turns of conversations, with the
arrival time of every stream event. Other requests are forwarded unrecorded. The client gets
exactly what the server sent, flushed as it arrives.

Reverse mode (default): clients set their base URL to the proxy, which forwards to --upstream.
Forward mode (--mode forward): clients set HTTPS_PROXY/HTTP_PROXY to the proxy; HTTPS to the
--intercept hosts is decrypted with a CA generated once into --ca-dir, which clients must trust
(the command prints how).

Secret headers (any name containing auth, key, token, secret, password, cookie or signature,
and --redact-header) reach the server but never the store; nor does the password of
--upstream. SIGTERM or Ctrl-C stops accepting, lets streams finish for --drain-timeout, writes
everything captured and exits 0; a second Ctrl-C cuts the streams at once.
See docs/record.md and docs/https.md.`,
		Example: `  llmtape record --upstream http://127.0.0.1:8000 --listen 127.0.0.1:8080 --store llmtape.db
  OPENAI_BASE_URL=http://127.0.0.1:8080/v1 python chat.py

  llmtape record --mode forward --intercept api.openai.com --admin 127.0.0.1:8081
  HTTPS_PROXY=http://127.0.0.1:8080 SSL_CERT_FILE=~/.config/llmtape/llmtape-ca.pem ./agent
  curl -s 127.0.0.1:8081/stats; curl -so snap.db 127.0.0.1:8081/snapshot`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	o.bind(cmd)
	return cmd
}

func (o *recordOptions) run(cmd *cobra.Command) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	maxBody, err := parseByteSize(o.maxBody)
	if err != nil {
		return usageErrorf("--max-body %q: %v", o.maxBody, err)
	}
	if o.drainTimeout < 0 || o.commitInterval < 0 {
		return usageErrorf("--drain-timeout and --commit-interval must not be negative")
	}
	if o.queueSize < 1 {
		return usageErrorf("--queue %d: want at least 1", o.queueSize)
	}
	if o.bodyTimeout <= 0 {
		return usageErrorf("--body-timeout %v: want a positive duration such as 60s", o.bodyTimeout)
	}
	for _, s := range o.sessionHeaders {
		for _, r := range o.redact {
			if strings.EqualFold(strings.TrimSpace(s), strings.TrimSpace(r)) {
				return usageErrorf("--session-header %s is also a --redact-header: a header that is never stored cannot name conversations", s)
			}
		}
	}
	cfg := proxy.Config{Mode: o.mode, MaxBody: maxBody, RedactHeaders: o.redact, KeepHeaders: o.sessionHeaders,
		Intercept: o.intercept, AllowConnect: o.allowConnect, BodyTimeout: o.bodyTimeout}
	switch o.mode {
	case proxy.ModeReverse:
		if o.upstream == "" {
			return usageErrorf("reverse mode needs --upstream URL (or use --mode forward)")
		}
		cfg.Upstream = o.upstream
	case proxy.ModeForward:
		if o.upstream != "" {
			return usageErrorf("--upstream is for reverse mode; in forward mode clients name the server")
		}
	default:
		return usageErrorf("--mode %q: want reverse or forward", o.mode)
	}
	if len(o.allowConnect) > 0 && o.mode != proxy.ModeForward {
		return usageErrorf("--allow-connect is for forward mode")
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return usageErrorf("--listen %q: want host:port", o.listen)
	}
	var adminTok string
	var adminPublic bool
	if o.admin != "" {
		if adminTok, adminPublic, err = adminToken(o.admin, o.adminTokenEnv); err != nil {
			return err
		}
	} else if o.adminTokenEnv != "" {
		return usageErrorf("--admin-token-env is for the --admin listener")
	}
	if o.upstreamCA != "" {
		pem, err := os.ReadFile(o.upstreamCA)
		if err != nil {
			return fmt.Errorf("read upstream ca: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return usageErrorf("--upstream-ca %s: no PEM certificate in it", o.upstreamCA)
		}
		cfg.UpstreamTLS = &tls.Config{RootCAs: roots}
	}
	logw := &recordLogWriter{w: stderr}
	cfg.Logf = func(format string, args ...any) {
		fmt.Fprintf(logw, "llmtape record: "+format+"\n", args...)
	}
	if o.mode == proxy.ModeForward {
		ca, err := proxy.LoadOrCreateCA(o.caDir)
		if err != nil {
			return err
		}
		cfg.CA = &ca.Cert
		if ca.Created {
			fmt.Fprintf(logw, "llmtape record: created CA %s (key %s, mode 0600)\n", ca.CertFile, ca.KeyFile)
		}
		fmt.Fprint(logw, ca.TrustHint())
	}

	// Everything that can fail on bad input (the upstream URL, the listen addresses) is
	// checked before the recorder creates a recording, so a failed start leaves no empty
	// recording in the store.
	sink := &lateSink{}
	cfg.Sink = sink
	p, err := proxy.New(cfg)
	if err != nil {
		if o.mode == proxy.ModeReverse { // the only reverse-mode error left is a bad URL
			return usageErrorf("--upstream %q: want http://host[:port][/base] or https://host[:port][/base]", redact.URL(o.upstream))
		}
		return usageErrorf("%v", err)
	}
	store, err := tape.Open(storePath(cmd), nil)
	if err != nil {
		if errors.Is(err, tape.ErrLocked) {
			return fmt.Errorf("open store: %w (is another llmtape record using it? use another --store, or its --admin /snapshot)", err)
		}
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.listen, err)
	}
	defer ln.Close() // after Serve has closed it: a no-op
	var al net.Listener
	if o.admin != "" {
		if al, err = net.Listen("tcp", o.admin); err != nil {
			return fmt.Errorf("listen admin %s: %w", o.admin, err)
		}
		defer al.Close()
	}
	upstreamName := redact.URL(o.upstream) // never the password, on the terminal or in the store
	if o.mode == proxy.ModeForward {
		upstreamName = strings.Join(o.intercept, ",")
	}
	rcfg := recorder.Config{
		// Parsing and token counting are CPU work: leave at least one CPU to the proxy's
		// copy loops so that recording does not add latency under load.
		Workers:        max(1, runtime.GOMAXPROCS(0)-1),
		QueueSize:      o.queueSize,
		SessionHeaders: o.sessionHeaders,
		RedactHeaders:  o.redact,
		Name:           o.name,
		Upstream:       upstreamName,
		Mode:           o.mode,
		Logger:         slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	rcfg.Writer.MaxDelay = o.commitInterval
	rec, err := recorder.New(store, rcfg)
	if err == nil {
		err = rec.Start(ctx)
	}
	if err != nil {
		return fmt.Errorf("start recorder: %w", err)
	}
	sink.rec = rec // before Serve starts: no exchange can arrive earlier
	var adminSrv *http.Server
	var adminAddr net.Addr
	if al != nil {
		adminAddr = al.Addr()
		h := adminGuard(recordAdminHandler(p, rec, store), o.admin, adminAddr, adminTok)
		adminSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = adminSrv.Serve(al) }()
	}
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(ln) }()

	addr := ln.Addr().String()
	fmt.Fprintf(stdout, "llmtape record: %s proxy listening on http://%s, recording %d into %s\n", o.mode, addr, rec.Recording(), storePath(cmd))
	if o.mode == proxy.ModeReverse {
		fmt.Fprintf(stdout, "  forwarding to %s; point clients at it: export OPENAI_BASE_URL=http://%s/v1\n", upstreamName, addr)
	} else {
		fmt.Fprintf(stdout, "  point clients at it: export HTTPS_PROXY=http://%s HTTP_PROXY=http://%s\n", addr, addr)
	}
	if adminAddr != nil {
		fmt.Fprintf(stdout, "  admin on http://%s (/health, /stats, /snapshot)\n", adminAddr)
		if adminPublic {
			fmt.Fprintf(logw, "llmtape record: warning: admin listener on %s is reachable from other machines; it serves the whole store to anyone holding the token, in clear text over HTTP\n", adminAddr)
		}
	}
	if ip := net.ParseIP(strings.Trim(recordListenHost(addr), "[]")); ip == nil || !ip.IsLoopback() {
		to := "the upstream"
		if o.mode == proxy.ModeForward {
			to = "the --intercept and --allow-connect hosts"
		}
		fmt.Fprintf(logw, "llmtape record: warning: listening on %s, reachable from other machines; anyone who can connect can send requests through it to %s\n", addr, to)
	}

	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}

	// Drain: stop accepting, let streams finish; a second signal cuts them. The second signal is
	// subscribed to before the line that announces the drain, so that one sent on seeing it counts.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	inFlight := p.Stats().InFlight
	fmt.Fprintf(logw, "llmtape record: stopping; %d streams in flight (up to %v to finish)\n", inFlight, o.drainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	go func() {
		select {
		case <-sig:
			cancel()
		case <-dctx.Done():
		}
	}()
	derr := p.Shutdown(dctx)
	signal.Stop(sig)
	cancel()
	if derr != nil {
		fmt.Fprintf(logw, "llmtape record: streams still running were cut: %v\n", derr)
	}
	cerr := rec.Close()
	if adminSrv != nil {
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		_ = adminSrv.Shutdown(actx)
		acancel()
	}
	ps, rs := p.Stats(), rec.Stats()
	fmt.Fprintf(stdout, "llmtape record: %d exchanges (%d failed upstream or client went away), %d turns recorded, %d not recorded, %d recording errors, %d requests passed through\n",
		ps.Exchanges, ps.Errors, rs.Recorded, rs.NotRecorded, rs.Errors, ps.Passed)
	if ps.UpstreamReconnects > 0 {
		fmt.Fprintf(stdout, "llmtape record: %d requests sent again on a new connection because the upstream had closed the reused one (not errors)\n", ps.UpstreamReconnects)
	}
	recordSummaryStatus(logw, rec.Recording(), rs, cerr)
	if err := store.Close(); err != nil && cerr == nil {
		cerr = fmt.Errorf("close store: %w", err)
	}
	if serveErr != nil {
		return serveErr
	}
	if cerr != nil {
		return fmt.Errorf("flush recording: %w", cerr)
	}
	return nil
}

// recordSummaryStatus says loudly, on stderr, when the recording is not complete: exchanges
// were not recorded, or its final state could not even be written to the store.
func recordSummaryStatus(w io.Writer, id uint64, rs recorder.Stats, closeErr error) {
	switch {
	case errors.Is(closeErr, recorder.ErrStatusNotWritten):
		fmt.Fprintf(w, "llmtape record: ERROR: recording %d could not be marked in the store: it shows as incomplete, without its end and without saying that %d exchanges were not recorded (%d lost by the store)\n",
			id, rs.NotRecorded, rs.Lost)
	case rs.NotRecorded > 0:
		fmt.Fprintf(w, "llmtape record: WARNING: recording %d is marked incomplete: %d exchanges were not recorded (%d lost by the store, %d dropped because the recorder was behind)\n",
			id, rs.NotRecorded, rs.Lost, rs.Dropped)
	}
}

// lateSink hands exchanges to a recorder created after the proxy (see run). rec is set before
// the proxy serves, so reading it needs no lock.
type lateSink struct{ rec *recorder.Recorder }

func (s *lateSink) Capture(x *proxy.Exchange) { s.rec.Capture(x) }

func recordListenHost(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// recordAdminStats is the JSON of GET /stats.
type recordAdminStats struct {
	ExchangesSeen     int64          `json:"exchanges_seen"`     // recordable exchanges the proxy captured
	Recorded          uint64         `json:"recorded"`           // turns handed to the store and not lost
	NotRecorded       uint64         `json:"not_recorded"`       // exchanges not in the store: recorder behind, or store lost them
	Errors            uint64         `json:"errors"`             // exchanges that failed upstream or could not be recorded
	OpenConversations int            `json:"open_conversations"` // conversations the stitcher keeps open
	QueueDepth        int            `json:"queue_depth"`        // exchanges captured, not yet recorded
	InFlight          int64          `json:"in_flight"`          // recordable exchanges still streaming
	Proxy             proxy.Stats    `json:"proxy"`
	Recorder          recorder.Stats `json:"recorder"`

	// UpstreamReconnects counts requests sent again on a new connection because the upstream
	// had closed the reused one before answering; they are not errors.
	UpstreamReconnects int64 `json:"upstream_reconnects"`
}

// recordAdminHandler serves /health, /stats and /snapshot.
func recordAdminHandler(p *proxy.Proxy, rec *recorder.Recorder, store *tape.Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		ps, rs := p.Stats(), rec.Stats()
		st := recordAdminStats{
			ExchangesSeen:     ps.Exchanges,
			Recorded:          rs.Recorded,
			NotRecorded:       rs.NotRecorded,
			Errors:            uint64(ps.Errors) + rs.Errors,
			OpenConversations: rs.Open,
			QueueDepth:        rs.QueueDepth,
			InFlight:          ps.InFlight,
			Proxy:             ps,
			Recorder:          rs,

			UpstreamReconnects: ps.UpstreamReconnects,
		}
		w.Header().Set("Content-Type", "application/json")
		_ = writeJSON(w, st)
	})
	// Go's profiler, for "why is the proxy slow" questions (the admin listener is off by
	// default and meant for loopback).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /snapshot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="llmtape-snapshot.db"`)
		if _, err := store.Snapshot(w); err != nil {
			// Headers are gone already when the copy fails midway; the client sees a short body.
			http.Error(w, "snapshot: "+err.Error(), http.StatusInternalServerError)
		}
	})
	return mux
}

// parseByteSize parses a byte size: "1048576", "32MiB", "512KiB", "1GB" (units case-insensitive;
// K, M and G alone are binary).
func parseByteSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive size such as 32MiB or 1048576")
	}
	if n > (1<<62)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// recordLogWriter serialises writes from the proxy's, the recorder's and the command's goroutines.
type recordLogWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *recordLogWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
