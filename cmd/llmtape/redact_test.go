package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
)

// recAnyAdminRe finds the admin address also when it is "[::]:port" (--admin 0.0.0.0:0).
var recAnyAdminRe = regexp.MustCompile(`admin on http://(\S+) `)

// recProc is an in-process `llmtape record` started by recRun.
type recProc struct {
	addr, admin string // the proxy's and the admin listener's host:port ("" without --admin)
	out, errb   *simBuffer
	code        chan int           // its exit status, once it has returned
	cancel      context.CancelFunc // stops it as SIGTERM does
	done        chan struct{}      // closed when it has returned (and closed its store)
}

// recRun runs `llmtape record args...` in process and waits until it prints its addresses
// (the admin's too when args has --admin). The test's cleanup stops it and waits for it to
// return, so that the store is closed.
func recRun(t *testing.T, args ...string) *recProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &recProc{out: &simBuffer{}, errb: &simBuffer{}, code: make(chan int, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.code <- run(ctx, append([]string{"record"}, args...), p.out, p.errb)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	wantAdmin := slices.Contains(args, "--admin")
	recWaitFor(t, "the proxy's address", func() bool {
		select {
		case c := <-p.code:
			t.Fatalf("record exited with %d: %s", c, p.errb.String())
		default:
		}
		m, a := recordProxyRe.FindStringSubmatch(p.out.String()), recAnyAdminRe.FindStringSubmatch(p.out.String())
		if m == nil || (wantAdmin && a == nil) {
			return false
		}
		p.addr = m[1]
		if a != nil {
			p.admin = a[1]
		}
		return true
	})
	return p
}

// stop sends the in-process record its SIGTERM and wants exit status 0.
func (p *recProc) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	if c := <-p.code; c != 0 {
		t.Fatalf("record exited %d: %s", c, p.errb.String())
	}
}

// headerSpy is a simulator that remembers every value of the headers it was asked to watch, so
// a test can see that a secret reached the server although it never reached the store.
type headerSpy struct {
	h     http.Handler
	watch []string
	mu    sync.Mutex
	seen  map[string]string
}

func (s *headerSpy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	for _, k := range s.watch {
		if v := r.Header.Get(k); v != "" {
			s.seen[k] = v
		}
	}
	s.mu.Unlock()
	s.h.ServeHTTP(w, r)
}

func (s *headerSpy) got(k string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[k]
}

// Every secret of issue 12 stays out of the store file, out of every export format and out of
// the replay's run options, while the session id is kept and the secrets still reach the server.
func TestRecordAndReplayStoreNoSecrets(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.TTFT, cfg.ITL, cfg.ITLPerRunning, cfg.PrefillPerToken, cfg.MaxRunning = 0, 0, 0, 0, 0
	cfg.Tokenizer = "approx"
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	spy := &headerSpy{h: s.Handler(), watch: []string{"X-Goog-Api-Key", "X-My-Token", "X-Tenant"}, seen: map[string]string{}}
	up := httptest.NewServer(spy)
	defer up.Close()
	hostPort := strings.TrimPrefix(up.URL, "http://")

	store := filepath.Join(t.TempDir(), "secrets.db")
	rp := recRun(t, "--upstream", "http://user:upstream-pw@"+hostPort, "--listen", "127.0.0.1:0",
		"--redact-header", "X-Tenant", "--store", store)
	addr, out, errb := rp.addr, rp.out, rp.errb
	hdr := map[string]string{
		"X-Goog-Api-Key": "goog-secret-1",
		"X-My-Token":     "mytoken-secret-2",
		"X-Tenant":       "tenant-secret-3",
		"X-Session-ID":   "sess-kept-4",
	}
	for _, q := range []string{"first question", "second question"} {
		if _, err := recChat(http.DefaultClient, "http://"+addr, q, 8, hdr); err != nil {
			t.Fatal(err)
		}
	}
	rp.stop(t)
	for _, k := range spy.watch {
		if spy.got(k) != hdr[k] {
			t.Errorf("upstream got %s %q, want %q", k, spy.got(k), hdr[k])
		}
	}
	if !strings.Contains(out.String(), "http://user:xxxxx@"+hostPort) || strings.Contains(out.String()+errb.String(), "upstream-pw") {
		t.Errorf("startup output shows the upstream password or not its redacted form: %s%s", out.String(), errb.String())
	}

	recorded := []string{"goog-secret-1", "mytoken-secret-2", "tenant-secret-3", "upstream-pw"}
	noneIn := func(what string, b []byte, secrets []string) {
		t.Helper()
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains %q", what, s)
			}
		}
	}
	raw, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	noneIn("store file", raw, recorded)
	if !bytes.Contains(raw, []byte("sess-kept-4")) {
		t.Error("store file lacks the session id header's value")
	}
	for _, f := range dataset.ExportFormats {
		c, stdout, stderr := execCmd(context.Background(), "export", "--format", f, "--store", store)
		if c != 0 || stdout == "" {
			t.Fatalf("export %s: exit %d, %d bytes, stderr %s", f, c, len(stdout), stderr)
		}
		noneIn("export "+f, []byte(stdout), recorded)
	}

	// Replay with a password in the target and a key in a --header.
	spy.mu.Lock()
	clear(spy.seen)
	spy.mu.Unlock()
	c, stdout, stderr := execCmd(context.Background(), "replay", "--store", store, "--target", "http://user:target-pw@"+hostPort,
		"--header", "X-Goog-Api-Key: replay-goog-5", "--header", "X-Trace: visible-6", "--think", "none", "--arrival", "all")
	if c != 0 {
		t.Fatalf("replay: exit %d: %s %s", c, stdout, stderr)
	}
	if spy.got("X-Goog-Api-Key") != "replay-goog-5" {
		t.Errorf("target got X-Goog-Api-Key %q, want the --header value", spy.got("X-Goog-Api-Key"))
	}
	noneIn("replay output", []byte(stdout+stderr), []string{"target-pw", "replay-goog-5"})
	raw, err = os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	noneIn("store file after replay", raw, append(recorded, "target-pw", "replay-goog-5"))
	st, err := tape.Open(store, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs := 0
	err = st.Runs(func(r *tape.Run) error {
		runs++
		opts := string(r.Options)
		for _, want := range []string{"X-Goog-Api-Key: <redacted>", "X-Trace: visible-6", "user:xxxxx@" + hostPort} {
			if !strings.Contains(opts, want) {
				t.Errorf("run options lack %q: %s", want, opts)
			}
		}
		if strings.Contains(r.Target, "target-pw") {
			t.Errorf("run target %q", r.Target)
		}
		return nil
	})
	if err != nil || runs != 1 {
		t.Fatalf("runs: %d, %v", runs, err)
	}
}

func TestRecordSessionHeaderCannotBeRedacted(t *testing.T) {
	c, _, stderr := execCmd(context.Background(), "record", "--upstream", "http://127.0.0.1:1", "--session-header", "X-Chat",
		"--redact-header", "x-chat", "--store", filepath.Join(t.TempDir(), "s.db"))
	if c != 2 || !strings.Contains(stderr, "--session-header X-Chat is also a --redact-header") {
		t.Errorf("exit %d, stderr %q", c, stderr)
	}
}
