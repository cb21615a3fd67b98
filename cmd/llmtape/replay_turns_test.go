package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// Tests of what replay sends: turns without a request and recorded failed turns.

// received is one request as a capture target received it.
type received struct {
	header http.Header
	body   []byte
}

// messages returns the request's message list.
func (r received) messages(t *testing.T) []json.RawMessage {
	t.Helper()
	var b struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("request body %s: %v", r.body, err)
	}
	return b.Messages
}

// captureTarget serves on 127.0.0.1 in front of a sim, keeping every request it receives.
// got returns them in the order they arrived.
func captureTarget(t *testing.T) (base string, got func() []received) {
	t.Helper()
	up, err := url.Parse(replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond}))
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(up)
	rp.FlushInterval = -1
	var mu sync.Mutex
	var all []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		all = append(all, received{header: r.Header.Clone(), body: b})
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), all...)
	}
}

// sameJSON reports whether a and b are JSON-equal.
func sameJSON(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// gapStore writes a store of three chats of three turns: chat 0's turn 1 has no request (as
// an older store or a capture without body keeps it; turn 2 then holds its whole message
// list, as the recorder stores it after such a turn), chat 1's turn 2 failed with status 500.
// It returns the path and the chats.
func gapStore(t *testing.T) (string, []*tapetest.Chat) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gap.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := tapetest.Recording(t, s)
	rng := rand.New(rand.NewPCG(11, 12))
	var chats []*tapetest.Chat
	err = s.Update(func(tx *tape.Tx) error {
		for i := range 3 {
			c := tapetest.NewChat(rng, rec.ID, s.NextConversationID(), tapetest.Config{Turns: 3, MessageBytes: 60})
			c.Conversation.Arrival = time.Duration(i) * time.Millisecond
			for _, turn := range c.Turns {
				turn.Tokens.Completion = 4
			}
			switch i {
			case 0:
				gap := &c.Turns[1].Request
				gap.Params, gap.Messages, gap.MessageMeta, gap.Kept, gap.Model = nil, nil, nil, 0, ""
				next := &c.Turns[2].Request
				next.Kept, next.Messages = 0, c.Full[2]
				next.MessageMeta = make([]tape.MessageMeta, len(c.Full[2]))
			case 1:
				c.Turns[2].Response = tape.Response{Status: 500, Error: `{"error":{"message":"boom"}}`}
			}
			if err := c.Write(tx); err != nil {
				return err
			}
			chats = append(chats, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, chats
}

// summaryJSON reads the skipped count and the request total of a --json summary file.
func summaryJSON(t *testing.T, path string) (skipped, total int) {
	t.Helper()
	var sum struct {
		Skipped  *int `json:"skipped"`
		Requests struct{ Total int }
	}
	if err := json.Unmarshal(mustRead(t, path), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Skipped == nil {
		t.Fatalf("%s has no skipped key", path)
	}
	return *sum.Skipped, sum.Requests.Total
}

func TestReplayTurnsWithoutRequestAndFailedTurns(t *testing.T) {
	path, chats := gapStore(t)
	// sent reports whether a request the target received is chat c's turn k: the same
	// message list.
	sent := func(t *testing.T, got []received, c, k int) bool {
		for _, r := range got {
			msgs := r.messages(t)
			if len(msgs) != len(chats[c].Full[k]) {
				continue
			}
			same := true
			for i := range msgs {
				same = same && sameJSON(t, msgs[i], chats[c].Full[k][i])
			}
			if same {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name        string
		args        []string
		sent        int
		skipped     int
		failedSent  bool
		skipReasons []string
	}{
		{name: "default sends failed turns", sent: 8, skipped: 1, failedSent: true,
			skipReasons: []string{"conversation 1 turn 1: no request was recorded"}},
		{name: "failed skip", args: []string{"--failed", "skip"}, sent: 7, skipped: 2,
			skipReasons: []string{"no request was recorded", "conversation 2 turn 2: failed when recorded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target, got := captureTarget(t)
			jsonPath := filepath.Join(t.TempDir(), "summary.json")
			args := append([]string{"replay", "--store", path, "--target", target, "--think", "none",
				"--speed", "1000", "--json", jsonPath}, tc.args...)
			code, out, errOut := execCmd(context.Background(), args...)
			if code != 0 {
				t.Fatalf("exit %d: %s\n%s", code, errOut, out)
			}
			reqs := got()
			if len(reqs) != tc.sent {
				t.Errorf("target received %d requests, want %d", len(reqs), tc.sent)
			}
			for _, r := range reqs {
				var b struct {
					Model     string `json:"model"`
					MaxTokens int    `json:"max_tokens"`
				}
				_ = json.Unmarshal(r.body, &b)
				if len(r.messages(t)) == 0 || b.Model == "" || b.MaxTokens == 0 {
					t.Errorf("target received an empty or unbounded request: %s", r.body)
				}
			}
			// Chat 0's turn 2 follows the turn without request and is sent with its own list.
			for _, ck := range [][2]int{{0, 0}, {0, 2}, {1, 0}, {1, 1}, {2, 0}, {2, 1}, {2, 2}} {
				if !sent(t, reqs, ck[0], ck[1]) {
					t.Errorf("chat %d turn %d was not sent", ck[0], ck[1])
				}
			}
			if s := sent(t, reqs, 1, 2); s != tc.failedSent {
				t.Errorf("recorded failed turn sent %v, want %v", s, tc.failedSent)
			}
			skipped, total := summaryJSON(t, jsonPath)
			if skipped != tc.skipped || total != tc.sent {
				t.Errorf("summary: skipped %d, total %d; want %d, %d", skipped, total, tc.skipped, tc.sent)
			}
			if want := fmt.Sprintf("%d turns skipped", tc.skipped); !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
			for _, want := range tc.skipReasons {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
		})
	}
}
