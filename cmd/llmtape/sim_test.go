package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// simBuffer is a bytes.Buffer safe for the command's goroutine and the test's.
type simBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *simBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *simBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var simURLRe = regexp.MustCompile(`listening on (http://[0-9.:]+) `)

// startSimCmd runs `llmtape sim args...` in-process and returns its base URL, a cancel that
// acts as SIGTERM, and the exit status channel.
func startSimCmd(t *testing.T, args ...string) (url string, stop context.CancelFunc, code <-chan int, stderr *simBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out, errb := &simBuffer{}, &simBuffer{}
	c := make(chan int, 1)
	go func() { c <- run(ctx, append([]string{"sim", "--listen", "127.0.0.1:0"}, args...), out, errb) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := simURLRe.FindStringSubmatch(out.String()); m != nil {
			return m[1], cancel, c, errb
		}
		select {
		case st := <-c:
			t.Fatalf("sim exited with %d: %s", st, errb.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatalf("sim did not print its address; stdout %q", out.String())
	return "", nil, nil, nil
}

// TestSimCommandShutdown: the stop signal (the command's context, which main cancels on
// SIGTERM or Ctrl-C) lets a stream in flight finish, then the command exits 0.
func TestSimCommandShutdown(t *testing.T) {
	url, stop, code, stderr := startSimCmd(t, "--ttft", "1ms", "--itl", "2ms")
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":50}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	stop() // as SIGTERM
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream in flight was cut: %v", err)
	}
	if !bytes.HasSuffix(body, []byte("data: [DONE]\n\n")) {
		t.Fatalf("stream in flight did not finish: ...%q", body[max(0, len(body)-100):])
	}
	select {
	case st := <-code:
		if st != 0 {
			t.Fatalf("exit status %d, stderr %q", st, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not exit after the stop signal")
	}
	if !strings.Contains(stderr.String(), "stopped after 1 requests (1 completed") {
		t.Fatalf("stderr %q", stderr.String())
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestSimCommandBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"sim", "--output-len", "10-2"},
		{"sim", "--fail-rate", "2"},
		{"sim", "--tokenizer", "nope"},
		{"sim", "--fail-status", "200"},
		{"sim", "extra-arg"},
		{"sim", "--tokens-per-chunk", "0"},
		{"sim", "--block-size", "0"},
		{"sim", "--max-running", "-1"},
		{"sim", "--itl", "-1ms"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if st := run(context.Background(), args, &out, &errb); st != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", st, errb.String())
			}
			if strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Fatalf("error is not one line: %q", errb.String())
			}
		})
	}
}

func TestSimCommandHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if st := run(context.Background(), []string{"sim", "--help"}, &out, &errb); st != 0 {
		t.Fatalf("exit %d: %s", st, errb.String())
	}
	for _, want := range []string{"--ttft duration", "(default 20ms)", "--prefill-per-token", "(default 20µs)",
		"--itl duration", "(default 10ms)", "--max-running", "--cache-blocks", "Example"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// TestSimCommandFlags: the flags reach the server (fault flags, model, /metrics).
func TestSimCommandFlags(t *testing.T) {
	url, stop, code, _ := startSimCmd(t, "--fail-rate", "1", "--fail-status", "503", "--retry-after", "3s",
		"--model", "flag-model", "--tokenizer", "approx", "--output-len", "5")
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("status %d, Retry-After %q; want 503 and 3", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, err = http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `llmtape_sim_failed_total{model_name="flag-model",status="503"} 1`) {
		t.Fatalf("metrics lack the injected failure:\n%s", body)
	}
	stop()
	if st := <-code; st != 0 {
		t.Fatalf("exit %d", st)
	}
}

// TestSimHelperProcess is not a test: TestSimCommandSIGTERM runs the test binary with
// LLMTAPE_SIM_HELPER set, and this then runs `llmtape sim` as main does, with a context that
// SIGTERM cancels.
func TestSimHelperProcess(t *testing.T) {
	if os.Getenv("LLMTAPE_SIM_HELPER") == "" {
		t.Skip("helper process for TestSimCommandSIGTERM")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, []string{"sim", "--listen", "127.0.0.1:0", "--ttft", "1ms", "--itl", "5ms"}, os.Stdout, os.Stderr))
}

// TestSimCommandSIGTERM: a real SIGTERM to a process running `llmtape sim` lets the stream in
// flight finish and exits 0.
func TestSimCommandSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimHelperProcess$")
	cmd.Env = append(os.Environ(), "LLMTAPE_SIM_HELPER=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr simBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("no address from the sim: %v, stderr %q", err, stderr.String())
	}
	m := simURLRe.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q", line)
	}
	resp, err := http.Post(m[1]+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":40}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.HasSuffix(body, []byte("data: [DONE]\n\n")) {
		t.Fatalf("stream in flight did not finish after SIGTERM: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v, stderr %q", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped after 1 requests (1 completed") {
		t.Fatalf("stderr %q", stderr.String())
	}
}

// --vary-output reaches the server: the same prompt twice gets two different texts.
func TestSimCommandVaryOutput(t *testing.T) {
	url, stop, code, _ := startSimCmd(t, "--vary-output", "--tokenizer", "approx", "--ttft", "0s", "--itl", "0s", "--output-len", "8")
	var texts []string
	for range 2 {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_, text, ok := strings.Cut(string(body), `"content":"`)
		text, _, ok2 := strings.Cut(text, `"`)
		if !ok || !ok2 || text == "" {
			t.Fatalf("status %d, no content: %s", resp.StatusCode, body)
		}
		texts = append(texts, text) // the content only: ids differ per request anyway
	}
	if texts[0] == texts[1] {
		t.Errorf("same text twice with --vary-output: %s", texts[0])
	}
	stop()
	if st := <-code; st != 0 {
		t.Fatalf("exit %d", st)
	}
}
