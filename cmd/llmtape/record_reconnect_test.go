package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/sim/simtest"
	"github.com/llmtape/llmtape/tape"
)

// TestRecordAbsorbsUpstreamClosingKeptAliveConnections: `llmtape record` in front of a server
// that closes every connection after its stream (llama.cpp's habit) gives its clients no
// failure; /stats and the exit summary count the requests it sent again.
func TestRecordAbsorbsUpstreamClosingKeptAliveConnections(t *testing.T) {
	cfg := simtest.Fast()
	cfg.CloseAfterStream = true
	up := simtest.MustStart(t, cfg).URL()
	store := filepath.Join(t.TempDir(), "rec.db")
	rp := recRun(t, "--upstream", up, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--store", store)
	addr, admin, out := rp.addr, rp.admin, rp.out
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	sent, convs := 0, 0
	// 16 conversations of 4 turns, each turn as soon as the previous reply ended and carrying
	// that reply, until the proxy has met the race (it is lost often, but it is a race).
	for round := 0; round < 20 && recAdminStats(t, admin).UpstreamReconnects == 0; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for c := range 16 {
			wg.Go(func() {
				msgs := []map[string]string{{"role": "user", "content": fmt.Sprintf("round %d conversation %d", round, c)}}
				for k := range 4 {
					reply, err := recConverse(client, "http://"+addr, msgs)
					if err != nil {
						errs <- fmt.Errorf("conversation %d turn %d: %w", c, k, err)
						return
					}
					msgs = append(msgs, map[string]string{"role": "assistant", "content": reply},
						map[string]string{"role": "user", "content": fmt.Sprintf("turn %d", k+1)})
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		sent += 64
		convs += 16
	}
	recWaitFor(t, "every turn recorded", func() bool { return recAdminStats(t, admin).Recorded >= uint64(sent) })
	st := recAdminStats(t, admin)
	if st.UpstreamReconnects == 0 || st.UpstreamReconnects != st.Proxy.UpstreamReconnects || st.Errors != 0 {
		t.Fatalf("stats %+v: want reconnects > 0 (top level and proxy's) and no errors", st)
	}
	rp.stop(t)
	// Every conversation stitched whole: one conversation of 4 turns per client conversation.
	stored, err := tape.Open(store, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stored.Close()
	var got, whole int
	err = stored.Recordings(func(r *tape.Recording) error {
		return stored.Conversations(r.ID, func(c *tape.Conversation) error {
			got++
			if c.Turns == 4 {
				whole++
			}
			return nil
		})
	})
	if err != nil || got != convs || whole != convs {
		t.Errorf("store: %d conversations, %d of 4 turns, want %d of 4 turns (%v)", got, whole, convs, err)
	}
	want := fmt.Sprintf("llmtape record: %d requests sent again on a new connection", st.UpstreamReconnects)
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "(0 failed upstream or client went away)") {
		t.Errorf("summary: %s", out.String())
	}
}

// recConverse sends one streamed chat turn with msgs and returns the reply's text; a status
// other than 200 or a stream that does not end with [DONE] is an error.
func recConverse(client *http.Client, base string, msgs []map[string]string) (string, error) {
	body, err := json.Marshal(map[string]any{"model": "m", "stream": true, "max_tokens": 4, "messages": msgs})
	if err != nil {
		return "", err
	}
	resp, err := client.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	dec := openai.NewDecoder(resp.Body)
	var c openai.Chunk
	var reply strings.Builder
	for {
		ev, err := dec.Next()
		if err != nil {
			return "", fmt.Errorf("stream ended without [DONE]: %w", err)
		}
		if ev.Done {
			_, err := io.Copy(io.Discard, resp.Body) // to the body's end, as SDKs read it
			return reply.String(), err
		}
		if err := openai.ParseChunk(ev.Data, &c); err != nil {
			return "", err
		}
		reply.WriteString(c.OutputText())
	}
}
