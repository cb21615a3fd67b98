// Package proxytest holds test helpers for the proxy: a Sink that collects exchanges, a
// helper that runs a proxy on 127.0.0.1, and an upstream that replays real llama.cpp
// transcripts byte for byte.
package proxytest

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/llmtape/llmtape/proxy"
)

// Collector is a proxy.Sink that keeps every exchange it is given.
type Collector struct {
	mu      sync.Mutex
	xs      []*proxy.Exchange
	changed chan struct{}
}

var _ proxy.Sink = (*Collector)(nil)

// Capture keeps x.
func (c *Collector) Capture(x *proxy.Exchange) {
	c.mu.Lock()
	c.xs = append(c.xs, x)
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
	c.mu.Unlock()
}

// Exchanges returns the exchanges captured so far, in the order they finished.
func (c *Collector) Exchanges() []*proxy.Exchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*proxy.Exchange(nil), c.xs...)
}

// Wait returns the captured exchanges once there are at least n, failing t after 10 s.
func (c *Collector) Wait(t testing.TB, n int) []*proxy.Exchange {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.xs) >= n {
			xs := append([]*proxy.Exchange(nil), c.xs...)
			c.mu.Unlock()
			return xs
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("proxytest: waited 10s for %d exchanges, have %d", n, len(c.Exchanges()))
		}
	}
}

// SinkFunc adapts a function to proxy.Sink.
type SinkFunc func(x *proxy.Exchange)

// Capture calls f(x).
func (f SinkFunc) Capture(x *proxy.Exchange) { f(x) }

// MustStart runs a proxy for cfg on 127.0.0.1 (a free port) until the test ends, and returns
// it with its address ("127.0.0.1:port").
func MustStart(t testing.TB, cfg proxy.Config) (*proxy.Proxy, string) {
	t.Helper()
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("proxy serve: %v", err)
		}
	})
	return p, l.Addr().String()
}

//go:embed testdata/llamacpp_*
var files embed.FS

// Transcript is one response a real llama.cpp server sent: status, headers and body bytes.
type Transcript struct {
	Name   string      // e.g. "chat_stream"
	Status int         // HTTP status
	Header http.Header // as the server sent them, without Content-Length/Transfer-Encoding
	Body   []byte      // the body bytes, exactly
}

// Streamed reports whether the transcript is an event stream.
func (tr Transcript) Streamed() bool {
	return strings.HasPrefix(tr.Header.Get("Content-Type"), "text/event-stream")
}

// Transcripts returns the llama.cpp transcripts: chat_nostream, chat_stream,
// chat_stream_usage, completions_stream and error_badjson.
func Transcripts() []Transcript {
	names := []struct{ name, ext string }{
		{"chat_nostream", "json"},
		{"chat_stream", "sse"},
		{"chat_stream_usage", "sse"},
		{"completions_stream", "sse"},
		{"error_badjson", "json"},
	}
	out := make([]Transcript, 0, len(names))
	for _, n := range names {
		head, err := files.ReadFile("testdata/llamacpp_" + n.name + ".headers")
		if err != nil {
			panic("proxytest: embedded transcript missing: " + err.Error()) // a build defect, not input
		}
		body, err := files.ReadFile("testdata/llamacpp_" + n.name + "." + n.ext)
		if err != nil {
			panic("proxytest: embedded transcript missing: " + err.Error())
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
		if err != nil {
			panic("proxytest: embedded transcript headers: " + err.Error())
		}
		h := resp.Header.Clone()
		h.Del("Content-Length")
		h.Del("Keep-Alive")
		out = append(out, Transcript{Name: n.name, Status: resp.StatusCode, Header: h, Body: body})
	}
	return out
}

// TranscriptHeader is the request header that picks a transcript by name on a Replay
// upstream.
const TranscriptHeader = "X-Llmtape-Transcript"

// Replay is an upstream that answers with the llama.cpp transcripts byte for byte. The
// transcript is chosen by the TranscriptHeader request header, else by the request: legacy
// completions get completions_stream; chat requests with "stream":true get chat_stream_usage
// when they ask for include_usage and chat_stream otherwise; other chat requests get
// chat_nostream. Event streams are written one event at a time, flushed, Gap apart.
type Replay struct {
	// Gzip compresses the body (flushing after every event) when the request accepts gzip.
	Gzip bool
	// Gap is the pause between events of a stream; 0 sends them back to back.
	Gap time.Duration

	once sync.Once
	byNm map[string]Transcript
}

// ServeHTTP answers one request.
func (rp *Replay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rp.once.Do(func() {
		rp.byNm = make(map[string]Transcript)
		for _, tr := range Transcripts() {
			rp.byNm[tr.Name] = tr
		}
	})
	var body bytes.Buffer
	_, _ = body.ReadFrom(r.Body)
	name := r.Header.Get(TranscriptHeader)
	if name == "" {
		b := body.Bytes()
		switch {
		case strings.HasSuffix(r.URL.Path, "/chat/completions") && bytes.Contains(b, []byte(`"stream":true`)) && bytes.Contains(b, []byte(`"include_usage":true`)):
			name = "chat_stream_usage"
		case strings.HasSuffix(r.URL.Path, "/chat/completions") && bytes.Contains(b, []byte(`"stream":true`)):
			name = "chat_stream"
		case strings.HasSuffix(r.URL.Path, "/chat/completions"):
			name = "chat_nostream"
		case strings.HasSuffix(r.URL.Path, "/completions"):
			name = "completions_stream"
		default:
			http.NotFound(w, r)
			return
		}
	}
	tr, ok := rp.byNm[name]
	if !ok {
		http.Error(w, "no transcript "+strconv.Quote(name), http.StatusNotFound)
		return
	}
	for k, vv := range tr.Header {
		w.Header()[k] = vv
	}
	gz := rp.Gzip && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
	if gz {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
	} else if !tr.Streamed() {
		w.Header().Set("Content-Length", strconv.Itoa(len(tr.Body)))
	}
	w.WriteHeader(tr.Status)
	fl, _ := w.(http.Flusher)
	var out interface {
		Write([]byte) (int, error)
	} = w
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(w)
		out = zw
	}
	flush := func() {
		if zw != nil {
			_ = zw.Flush()
		}
		if fl != nil {
			fl.Flush()
		}
	}
	if tr.Streamed() {
		for i, ev := range SplitEvents(tr.Body) {
			if i > 0 && rp.Gap > 0 {
				select {
				case <-time.After(rp.Gap):
				case <-r.Context().Done():
					return
				}
			}
			if _, err := out.Write(ev); err != nil {
				return
			}
			flush()
		}
	} else {
		_, _ = out.Write(tr.Body)
	}
	if zw != nil {
		_ = zw.Close()
	}
}

// SplitEvents splits an event stream after each blank line; the pieces concatenate to b.
func SplitEvents(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\n\n"))
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i+2])
		b = b[i+2:]
	}
	return out
}

// Target is a TCP listener on 127.0.0.1 that counts the connections it accepts (and closes
// them): a destination the proxy must or must not reach.
type Target struct {
	ln      net.Listener
	accepts atomic.Int64
}

// MustListen starts a Target that is closed at the end of the test.
func MustListen(t testing.TB) *Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &Target{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.accepts.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return tg
}

// Addr is the target's "127.0.0.1:port".
func (tg *Target) Addr() string { return tg.ln.Addr().String() }

// Accepts is how many connections the target has accepted.
func (tg *Target) Accepts() int64 { return tg.accepts.Load() }

// Connect sends "CONNECT target" to the forward proxy at proxyAddr on a new connection and
// returns the status of the answer. A proxy that does not answer within 30 s fails the test.
func Connect(t testing.TB, proxyAddr, target string) int {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // stops a hang; not a timing assertion
	if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
