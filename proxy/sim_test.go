package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
	"github.com/llmtape/llmtape/sim"
)

// tapWriter keeps every byte a handler writes (after optional gzip) and flushes through.
type tapWriter struct {
	http.ResponseWriter
	wire  bytes.Buffer // what went on the wire (compressed when gz)
	plain bytes.Buffer // what the handler wrote
	gz    *gzip.Writer
	wrote bool
}

func (t *tapWriter) WriteHeader(code int) {
	t.wrote = true
	if t.gz != nil {
		t.Header().Set("Content-Encoding", "gzip")
		t.Header().Del("Content-Length")
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *tapWriter) Write(b []byte) (int, error) {
	if !t.wrote {
		t.WriteHeader(http.StatusOK)
	}
	t.plain.Write(b)
	if t.gz != nil {
		return t.gz.Write(b)
	}
	t.wire.Write(b)
	return t.ResponseWriter.Write(b)
}

func (t *tapWriter) Flush() {
	if !t.wrote {
		t.WriteHeader(http.StatusOK)
	}
	if t.gz != nil {
		_ = t.gz.Flush()
	}
	t.ResponseWriter.(http.Flusher).Flush()
}

type wireTap struct{ tw *tapWriter }

func (w wireTap) Write(b []byte) (int, error) {
	w.tw.wire.Write(b)
	return w.tw.ResponseWriter.Write(b)
}

// tappedSim serves the simulator and keeps, per X-Test-ID, the bytes it sent; with gz it
// compresses (flushing per event) for clients that accept gzip, as a compressing server would.
type tappedSim struct {
	h  http.Handler
	gz bool
	mu sync.Mutex
	by map[string]*tapWriter
}

func (s *tappedSim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &tapWriter{ResponseWriter: w}
	if s.gz && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		tw.gz = gzip.NewWriter(wireTap{tw})
	}
	s.h.ServeHTTP(tw, r)
	if tw.gz != nil {
		_ = tw.gz.Close()
	}
	s.mu.Lock()
	s.by[r.Header.Get("X-Test-ID")] = tw
	s.mu.Unlock()
}

func (s *tappedSim) sent(id string) *tapWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.by[id]
}

func TestSimulatorPassThroughIsByteExact(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.TTFT, cfg.ITL, cfg.ITLPerRunning, cfg.PrefillPerToken = time.Millisecond, time.Millisecond, 0, 0
	cfg.Tokenizer = "approx"
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, gz := range []bool{false, true} {
		tap := &tappedSim{h: s.Handler(), gz: gz, by: map[string]*tapWriter{}}
		up := httptest.NewServer(tap)
		defer up.Close()
		col := &proxytest.Collector{}
		_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})
		n := 0
		for _, stream := range []bool{false, true} {
			for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
				name := fmt.Sprintf("gzip=%v/stream=%v%s", gz, stream, path)
				t.Run(name, func(t *testing.T) {
					body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"tell me about %s"}],"prompt":"once upon","stream":%v,"max_tokens":40}`, name, stream)
					req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
					req.Header.Set("X-Test-ID", name)
					if gz {
						req.Header.Set("Accept-Encoding", "gzip")
					}
					resp, err := rawClient().Do(req)
					if err != nil {
						t.Fatal(err)
					}
					got, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatal(err)
					}
					n++
					sent := tap.sent(name)
					if sent == nil {
						t.Fatal("upstream saw no request")
					}
					if !bytes.Equal(got, sent.wire.Bytes()) {
						t.Fatalf("client got %d bytes, simulator sent %d; they differ", len(got), sent.wire.Len())
					}
					if gz != (resp.Header.Get("Content-Encoding") == "gzip") {
						t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
					}
					x := col.Wait(t, n)[n-1]
					if !bytes.Equal(x.Body, sent.plain.Bytes()) {
						t.Fatalf("recorded body is not what the simulator wrote")
					}
					checkReads(t, x)
				})
			}
		}
	}
}
