package sim_test

import (
	"bufio"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
)

// Close cuts streams in flight and leaves no goroutine behind (but the process-wide pacer,
// started by the first sim of the process).
func TestCloseLeavesNoGoroutines(t *testing.T) {
	warm := MustStart(t, sim.Config{Tokenizer: "approx"})
	resp := post(t, warm.URL()+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}`)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	warm.Close()
	http.DefaultClient.CloseIdleConnections()
	before := waitGoroutines(t, -1)

	s, err := sim.New(sim.Config{Tokenizer: "approx", ITL: time.Hour, MaxRunning: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(""); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	// One stream waiting for its second token, one waiting in the queue.
	var bodies []io.ReadCloser
	for range 2 {
		r, err := client.Post(s.URL()+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":5}`))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, r.Body)
	}
	// Either request may win the slot (each is queued when its handler asks for one, after the
	// response headers went out), so wait for the first event on either body.
	var readers sync.WaitGroup
	first := make(chan error, len(bodies))
	for _, b := range bodies {
		readers.Add(1)
		go func() {
			defer readers.Done()
			br := bufio.NewReader(b)
			_, err := br.ReadString('\n')
			first <- err
			io.Copy(io.Discard, br) // until Close cuts the stream
		}()
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	readers.Wait()
	for _, b := range bodies {
		b.Close()
	}
	client.CloseIdleConnections()
	waitGoroutines(t, before)
}

// waitGoroutines waits until at most n goroutines run (n < 0: until the count stops falling)
// and returns the count; it fails with the stacks if they do not end within 30 s (a bound for a
// busy machine, not a speed target).
func waitGoroutines(t *testing.T, n int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	prev := -1
	for {
		c := runtime.NumGoroutine()
		if (n >= 0 && c <= n) || (n < 0 && c == prev) {
			return c
		}
		if time.Now().After(deadline) {
			if n < 0 {
				return c
			}
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", c, n, buf[:runtime.Stack(buf, true)])
		}
		prev = c
		time.Sleep(20 * time.Millisecond)
	}
}
