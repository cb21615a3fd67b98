package recorder_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/sim"
)

// A record session in front of a simulated server: a client sends one chat request through
// the proxy, and Stop leaves a complete recording in the store.
func ExampleSession() {
	srv, err := sim.New(sim.Config{Tokenizer: "approx"})
	if err != nil {
		log.Fatal(err)
	}
	upstream, err := srv.Start("")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	dir, err := os.MkdirTemp("", "session-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := recorder.NewSession(recorder.SessionConfig{
		StorePath: filepath.Join(dir, "llmtape.db"),
		Proxy:     proxy.Config{Upstream: upstream},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	resp, err := http.Post("http://"+s.Addr().String()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"Hi!"}],"stream":true}`))
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// The drain lets streams in flight finish for up to 30 s; "llmtape record" also cancels
	// this context on a second Ctrl-C.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	sum := s.Summary()
	fmt.Printf("recording %d: %d exchanges, %d recorded, %d not recorded\n",
		sum.Recording, sum.Proxy.Exchanges, sum.Recorder.Recorded, sum.Recorder.NotRecorded)
	// Output:
	// recording 1: 1 exchanges, 1 recorded, 0 not recorded
}
