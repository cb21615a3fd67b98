package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmtape/llmtape/proxy/proxytest"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
	"github.com/llmtape/llmtape/tape"
)

var (
	recordProxyRe = regexp.MustCompile(`proxy listening on http://([0-9.:]+),`)
	recordAdminRe = regexp.MustCompile(`admin on http://([0-9.:]+) `)
)

// recStartSim runs a simulator for the test and returns its base URL.
func recStartSim(t *testing.T, ttft, itl time.Duration) string {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.TTFT, cfg.ITL, cfg.ITLPerRunning, cfg.PrefillPerToken = ttft, itl, 0, 0
	cfg.MaxRunning = 0
	cfg.Tokenizer = "approx"
	return simtest.MustStart(t, cfg).URL()
}

// recChat sends one streamed chat request and returns the body.
func recChat(client *http.Client, base, prompt string, maxTokens int, hdr map[string]string) ([]byte, error) {
	return recChatNotify(client, base, prompt, maxTokens, hdr, nil)
}

// recChatNotify is recChat that calls streaming, if not nil, once the client has received two
// stream events (so the proxy has passed on output of this stream).
func recChatNotify(client *http.Client, base, prompt string, maxTokens int, hdr map[string]string, streaming func()) ([]byte, error) {
	body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}],"stream":true,"max_tokens":%d,"ignore_eos":true}`, prompt, maxTokens)
	req, err := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b []byte
	if streaming != nil {
		br := bufio.NewReader(resp.Body)
		for events := 0; events < 2; {
			line, err := br.ReadBytes('\n')
			b = append(b, line...)
			if err != nil {
				streaming()
				return b, err
			}
			if bytes.HasPrefix(line, []byte("data: ")) {
				events++
			}
		}
		streaming()
		resp.Body = io.NopCloser(br)
	}
	rest, err := io.ReadAll(resp.Body)
	b = append(b, rest...)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return b, err
}

// recCountTurns opens the store read-only and counts the turns of every recording.
func recCountTurns(t *testing.T, path string) int {
	t.Helper()
	st, err := tape.Open(path, &tape.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open store after the proxy: %v", err)
	}
	defer st.Close()
	n := 0
	err = st.Recordings(func(r *tape.Recording) error {
		return st.Conversations(r.ID, func(c *tape.Conversation) error {
			return st.Turns(c.ID, func(*tape.Turn) error { n++; return nil })
		})
	})
	if err != nil {
		t.Fatalf("scan store: %v", err)
	}
	return n
}

// recAdminStats fetches /stats.
func recAdminStats(t *testing.T, admin string) recorder.AdminStats {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st recorder.AdminStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// recWaitFor polls cond (a condition on a running system, not a timing assertion) for up to 60 s,
// a bound for a busy machine.
func recWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRecordInProcessKeepsNoCredentials(t *testing.T) {
	up := recStartSim(t, 0, 0)
	store := filepath.Join(t.TempDir(), "rec.db")
	rp := recRun(t, "--upstream", up, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--store", store)
	addr, admin := rp.addr, rp.admin
	hdr := map[string]string{"Authorization": "Bearer sk-secret-abc123", "Cookie": "sessionid=cookie-secret-xyz", "X-Api-Key": "xk-secret-1"}
	for i := range 5 {
		if _, err := recChat(http.DefaultClient, "http://"+addr, fmt.Sprintf("question %d", i), 8, hdr); err != nil {
			t.Fatal(err)
		}
	}
	if resp, err := http.Get("http://" + addr + "/v1/models"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("pass-through GET: %v", err)
	} else {
		resp.Body.Close()
	}
	recWaitFor(t, "5 turns recorded", func() bool { return recAdminStats(t, admin).Recorded >= 5 })
	st := recAdminStats(t, admin)
	if st.ExchangesSeen != 5 || st.NotRecorded != 0 || st.Proxy.Passed != 1 {
		t.Errorf("stats %+v", st)
	}
	resp, err := http.Get("http://" + admin + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v", err)
	}
	resp.Body.Close()
	snapPath := filepath.Join(t.TempDir(), "snap.db")
	recWaitFor(t, "a snapshot with 5 turns", func() bool {
		resp, err := http.Get("http://" + admin + "/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := os.WriteFile(snapPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return recCountTurns(t, snapPath) == 5
	})

	rp.stop(t) // SIGTERM
	if n := recCountTurns(t, store); n != 5 {
		t.Errorf("store holds %d turns, want 5", n)
	}
	raw, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"sk-secret", "cookie-secret", "xk-secret", "sessionid="} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("store file contains %q", secret)
		}
	}
	if !strings.Contains(rp.out.String(), "5 exchanges (0 failed upstream or client went away), 5 turns recorded, 0 not recorded") {
		t.Errorf("summary: %s", rp.out.String())
	}
}

func TestRecordFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"record"}, "needs --upstream"},
		{[]string{"record", "--upstream", "http://x", "--max-body", "lots"}, "--max-body"},
		{[]string{"record", "--mode", "sideways"}, "--mode"},
		{[]string{"record", "--upstream", "ftp://x"}, "--upstream"},
		{[]string{"record", "--upstream", "http://x", "--queue", "0"}, "--queue"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), append(tc.args, "--store", filepath.Join(t.TempDir(), "s.db")), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q (want 2 and %q)", tc.args, code, errb.String(), tc.want)
		}
	}
}

// A start that fails on bad input (the upstream URL, a port in use) creates no recording in the
// store.
func TestRecordFailedStartLeavesNoRecording(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	store := filepath.Join(t.TempDir(), "s.db")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--upstream", "ftp://x"}, 2},
		{[]string{"--upstream", "http://[::1"}, 2},
		{[]string{"--upstream", "http://127.0.0.1:1", "--listen", busy.Addr().String()}, 1},
		{[]string{"--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", busy.Addr().String()}, 1},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"record", "--store", store}, tc.args...)
		if code := run(context.Background(), args, &out, &errb); code != tc.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errb.String())
		}
	}
	if _, err := os.Stat(store); err != nil {
		return // not even created
	}
	s, err := tape.Open(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	if err := s.Recordings(func(*tape.Recording) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("failed starts left %d recordings in the store", n)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "32MiB": 32 << 20, "1k": 1024, "2MB": 2e6, "1GiB": 1 << 30, "10B": 10} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "MiB", "1.5M", "0"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) accepted", in)
		}
	}
}

var (
	recBinOnce sync.Once
	recBinPath string
	recBinErr  error
)

// recBinary builds the command once per test process.
func recBinary(t *testing.T) string {
	t.Helper()
	recBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "llmtape-bin")
		if err != nil {
			recBinErr = err
			return
		}
		recBinPath = filepath.Join(dir, "llmtape")
		out, err := exec.Command("go", "build", "-o", recBinPath, ".").CombinedOutput()
		if err != nil {
			recBinErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if recBinErr != nil {
		t.Fatal(recBinErr)
	}
	return recBinPath
}

// recStartProcess runs the real binary and returns it with its proxy and admin addresses.
func recStartProcess(t *testing.T, upstream, store string) (*exec.Cmd, string, string, *simBuffer) {
	t.Helper()
	// The drain timeout is a bound for a busy machine: streams that a test lets finish during the
	// drain must not be cut because timers ran late.
	cmd := exec.Command(recBinary(t), "record", "--upstream", upstream, "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--store", store, "--commit-interval", "20ms", "--drain-timeout", "2m")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errb := &simBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	var addr, admin string
	for (addr == "" || admin == "") && sc.Scan() {
		if m := recordProxyRe.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
		if m := recordAdminRe.FindStringSubmatch(sc.Text()); m != nil {
			admin = m[1]
		}
	}
	if addr == "" || admin == "" {
		t.Fatalf("record did not print its addresses; stderr %s", errb.String())
	}
	go io.Copy(io.Discard, stdout)
	return cmd, addr, admin, errb
}

// recStreamsInFlight starts n long streams through the proxy and returns once every client has
// received output and the proxy reports them all in flight. The returned wait gives how many ended complete ([DONE]).
func recStreamsInFlight(t *testing.T, addr, admin string, n, tokens int) (wait func() int) {
	t.Helper()
	base := recAdminStats(t, admin).InFlight
	var wg, streaming sync.WaitGroup
	var complete atomic.Int32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for i := range n {
		wg.Add(1)
		streaming.Add(1)
		go func() {
			defer wg.Done()
			b, err := recChatNotify(client, "http://"+addr, fmt.Sprintf("long story %d", i), tokens, nil, streaming.Done)
			if err == nil && bytes.HasSuffix(b, []byte("data: [DONE]\n\n")) {
				complete.Add(1)
			}
		}()
	}
	streaming.Wait()
	recWaitFor(t, fmt.Sprintf("%d streams in flight", n), func() bool { return recAdminStats(t, admin).InFlight >= base+int64(n) })
	return func() int { wg.Wait(); return int(complete.Load()) }
}

// recCompleteShort sends n short requests and waits until the store has committed them (seen in
// an admin snapshot, which reads only committed data).
func recCompleteShort(t *testing.T, addr, admin string, n int, store string) {
	t.Helper()
	for i := range n {
		if _, err := recChat(http.DefaultClient, "http://"+addr, fmt.Sprintf("short %d", i), 3, nil); err != nil {
			t.Fatal(err)
		}
	}
	snap := store + ".snap"
	recWaitFor(t, "committed turns in a snapshot", func() bool {
		resp, err := http.Get("http://" + admin + "/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := os.WriteFile(snap, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return recCountTurns(t, snap) >= n
	})
}

func TestRecordSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	up := recStartSim(t, 0, 20*time.Millisecond)
	store := filepath.Join(t.TempDir(), "kill.db")
	cmd, addr, admin, errb := recStartProcess(t, up, store)
	recCompleteShort(t, addr, admin, 20, store)
	// Keep exchanges completing (and being written) while 50 long streams are in flight.
	stopBg := make(chan struct{})
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		for i := 0; ; i++ {
			select {
			case <-stopBg:
				return
			default:
			}
			if _, err := recChat(http.DefaultClient, "http://"+addr, fmt.Sprintf("bg %d", i), 2, nil); err != nil {
				return // the proxy is gone
			}
		}
	}()
	wait := recStreamsInFlight(t, addr, admin, 50, 1000) // 20 s streams: the kill ends them
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	close(stopBg)
	<-bgDone
	wait()
	if n := recCountTurns(t, store); n < 20 {
		t.Fatalf("after kill -9 the store holds %d turns, want at least the 20 committed before; stderr %s", n, errb.String())
	}
}

func TestRecordSIGTERMKeepsEveryExchange(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	// 300 tokens × 20 ms: 6 s streams, so that all 50 are in flight together even when starting
	// them is slow on a busy machine.
	up := recStartSim(t, 0, 20*time.Millisecond)
	store := filepath.Join(t.TempDir(), "term.db")
	cmd, addr, admin, errb := recStartProcess(t, up, store)
	recCompleteShort(t, addr, admin, 20, store)
	wait := recStreamsInFlight(t, addr, admin, 50, 300)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("record after SIGTERM: %v; stderr %s", err, errb.String())
	}
	if done := wait(); done != 50 {
		t.Errorf("%d of 50 streams completed through the drain", done)
	}
	if n := recCountTurns(t, store); n != 70 {
		t.Errorf("store holds %d turns, want 70 (20 short + 50 drained streams)", n)
	}
}

func TestRecordForwardModeThroughGeneratedCA(t *testing.T) {
	up := httptest.NewTLSServer(&proxytest.Replay{})
	defer up.Close()
	dir := t.TempDir()
	upCA := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(upCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "ca")
	store := filepath.Join(dir, "fwd.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errb := &simBuffer{}, &simBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"record", "--mode", "forward", "--listen", "127.0.0.1:0", "--ca-dir", caDir,
			"--upstream-ca", upCA, "--intercept", "127.0.0.1", "--store", store}, out, errb)
	}()
	var addr string
	recWaitFor(t, "the proxy's address", func() bool {
		select {
		case c := <-code:
			t.Fatalf("record exited with %d: %s", c, errb.String())
		default:
		}
		if m := recordProxyRe.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	for _, want := range []string{"created CA", "SSL_CERT_FILE=" + filepath.Join(caDir, "llmtape-ca.pem"), "NODE_EXTRA_CA_CERTS=", "REQUESTS_CA_BUNDLE="} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, errb.String())
		}
	}
	if fi, err := os.Stat(filepath.Join(caDir, "llmtape-ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v %v", err, fi)
	}
	caPEM, err := os.ReadFile(filepath.Join(caDir, "llmtape-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	pu, _ := url.Parse("http://" + addr)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}}
	client := openai.NewClient(option.WithBaseURL(up.URL+"/v1"), option.WithHTTPClient(hc), option.WithAPIKey("sk-secret-forward"), option.WithMaxRetries(0))
	s := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "tiny-llama",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Plan a weekend trip to Lisbon.")},
	})
	n := 0
	for s.Next() {
		n++
	}
	if err := s.Err(); err != nil || n == 0 {
		t.Fatalf("stream through forward proxy: %v (%d chunks)", err, n)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("record exited %d: %s", c, errb.String())
	}
	if got := recCountTurns(t, store); got != 1 {
		t.Errorf("store holds %d turns, want 1", got)
	}
	raw, _ := os.ReadFile(store)
	if bytes.Contains(raw, []byte("sk-secret")) {
		t.Error("store holds the API key")
	}
}

func TestRecordSecondSignalCutsStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	up := recStartSim(t, 0, 20*time.Millisecond)
	store := filepath.Join(t.TempDir(), "cut.db")
	cmd, addr, admin, errb := recStartProcess(t, up, store)
	wait := recStreamsInFlight(t, addr, admin, 5, 2000) // 40 s streams: only a cut ends them soon
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	recWaitFor(t, "the drain to start", func() bool { return strings.Contains(errb.String(), "stopping;") })
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("record after a second signal: %v; stderr %s", err, errb.String())
	}
	if done := wait(); done != 0 {
		t.Errorf("%d cut streams ended with [DONE]", done)
	}
	st, err := tape.Open(store, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	canceled := 0
	_ = st.Recordings(func(r *tape.Recording) error {
		return st.Conversations(r.ID, func(c *tape.Conversation) error {
			return st.Turns(c.ID, func(tu *tape.Turn) error {
				if tu.Response.ErrorClass == "canceled" && tu.Response.Content != "" {
					canceled++
				}
				return nil
			})
		})
	})
	if canceled != 5 {
		t.Errorf("%d cut turns recorded as canceled with their content so far, want 5", canceled)
	}
}
