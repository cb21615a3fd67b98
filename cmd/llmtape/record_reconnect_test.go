package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/llmtape/llmtape/sim/simtest"
)

// TestRecordAbsorbsUpstreamClosingKeptAliveConnections: `llmtape record` in front of a server
// that closes every connection after its stream (llama.cpp's habit) gives its clients no
// failure; /stats and the exit summary count the requests it sent again.
func TestRecordAbsorbsUpstreamClosingKeptAliveConnections(t *testing.T) {
	cfg := simtest.Fast()
	cfg.CloseAfterStream = true
	up := simtest.MustStart(t, cfg).URL()
	store := filepath.Join(t.TempDir(), "rec.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errb := &simBuffer{}, &simBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"record", "--upstream", up, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--store", store}, out, errb)
	}()
	var addr, admin string
	recWaitFor(t, "the proxy's address", func() bool {
		select {
		case c := <-code:
			t.Fatalf("record exited with %d: %s", c, errb.String())
		default:
		}
		m, a := recordProxyRe.FindStringSubmatch(out.String()), recordAdminRe.FindStringSubmatch(out.String())
		if m != nil && a != nil {
			addr, admin = m[1], a[1]
			return true
		}
		return false
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	sent := 0
	// 16 conversations of 4 turns, each turn as soon as the previous reply ended, until the
	// proxy has met the race (it is lost often, but it is a race).
	for round := 0; round < 20 && recAdminStats(t, admin).UpstreamReconnects == 0; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for c := range 16 {
			wg.Go(func() {
				for k := range 4 {
					if _, err := recChat(client, "http://"+addr, fmt.Sprintf("round %d conversation %d turn %d", round, c, k), 4, nil); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		sent += 64
	}
	recWaitFor(t, "every turn recorded", func() bool { return recAdminStats(t, admin).Recorded >= uint64(sent) })
	st := recAdminStats(t, admin)
	if st.UpstreamReconnects == 0 || st.UpstreamReconnects != st.Proxy.UpstreamReconnects || st.Errors != 0 {
		t.Fatalf("stats %+v: want reconnects > 0 (top level and proxy's) and no errors", st)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("record exited %d: %s", c, errb.String())
	}
	want := fmt.Sprintf("llmtape record: %d requests sent again on a new connection", st.UpstreamReconnects)
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "(0 failed upstream or client went away)") {
		t.Errorf("summary: %s", out.String())
	}
}
