package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
)

// waitGoroutines waits until at most n goroutines run, and fails with their stacks if they do
// not end within a few seconds (goroutines end asynchronously after Close).
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Shutdown, %d before:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// After Shutdown, no goroutine of the proxy is left: not the server's, and not the
// transport's for its idle upstream connections (two per connection until IdleConnTimeout).
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	srv := simtest.MustStart(t, sim.Config{Tokenizer: "approx", OutputLen: sim.LenRange{Min: 3, Max: 3}})
	up := srv.URL()
	// One request straight to the sim starts its process-wide pacer goroutine.
	resp, err := http.Post(up+"/v1/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	waitGoroutines(t, 5) // the test's, the sim's server and its pacer, and a connection still closing
	before := runtime.NumGoroutine()
	p, err := proxy.New(proxy.Config{Upstream: up, Sink: &proxytest.Collector{}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	client := &http.Client{Transport: &http.Transport{}}
	for i := range 8 {
		body := `{"messages":[{"role":"user","content":"hi"}],"stream":` + map[bool]string{true: "true", false: "false"}[i%2 == 0] + `}`
		resp, err := client.Post("http://"+l.Addr().String()+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resp, err = client.Get("http://" + l.Addr().String() + "/v1/models") // passed through
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, before) // the sim still runs: it does not close the upstream connections
}
