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

// Tests of what replay sends: turns without a request, recorded failed turns, session headers,
// and --recording by name.

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

func TestReplaySessionHeaderFlag(t *testing.T) {
	path := replayStore(t, 3, 3)
	target, got := captureTarget(t)
	code, out, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", target,
		"--think", "none", "--speed", "1000", "--session-header", "X-Conv", "--name", "conv ids")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut, out)
	}
	reqs := got()
	if len(reqs) != 9 {
		t.Fatalf("target received %d requests, want 9", len(reqs))
	}
	// The conversations of replayStore differ in their first user message.
	byConv := map[string]map[string]bool{}
	values := map[string]bool{}
	for _, r := range reqs {
		v := r.header.Get("X-Conv")
		if !strings.HasPrefix(v, "llmtape-1-") {
			t.Errorf("X-Conv %q, want llmtape-1-<conversation>", v)
		}
		first := string(r.messages(t)[1])
		if byConv[first] == nil {
			byConv[first] = map[string]bool{}
		}
		byConv[first][v] = true
		values[v] = true
	}
	if len(byConv) != 3 || len(values) != 3 {
		t.Errorf("%d conversations with %d X-Conv values, want 3 and 3", len(byConv), len(values))
	}
	for _, vs := range byConv {
		if len(vs) != 1 {
			t.Errorf("a conversation was sent with X-Conv values %v, want one", vs)
		}
	}
}

// A conversation recorded with X-Session-ID keeps its identity through a replay into a second
// llmtape record: store B holds one session conversation per conversation of store A.
func TestReplaySessionHeaderThroughRecord(t *testing.T) {
	dir := t.TempDir()
	storeA, storeB := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	recA := recRun(t, "--upstream", recStartSim(t, 0, 0), "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--store", storeA)
	// Every turn sends one unrelated message: only the header ties a conversation together.
	const convs, turns = 3, 3
	for k := range turns {
		for c := range convs {
			hdr := map[string]string{"X-Session-ID": fmt.Sprintf("client-session-%d", c)}
			if _, err := recChat(http.DefaultClient, "http://"+recA.addr, fmt.Sprintf("conversation %d turn %d", c, k), 4, hdr); err != nil {
				t.Fatal(err)
			}
		}
	}
	stopRecord(t, recA)
	checkSessions(t, storeA, convs, turns, "client-session-")
	if code, out, errOut := execCmd(context.Background(), "show", "--store", storeA, "1"); code != 0 ||
		!strings.Contains(out, "session client-session-0 (header X-Session-Id)") {
		t.Errorf("show: exit %d %s\n%s", code, errOut, out)
	}

	recB := recRun(t, "--upstream", recStartSim(t, 0, 0), "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--store", storeB)
	code, out, errOut := execCmd(context.Background(), "replay", "--store", storeA,
		"--target", "http://"+recB.addr, "--think", "none", "--speed", "1000")
	if code != 0 {
		t.Fatalf("replay exit %d: %s\n%s", code, errOut, out)
	}
	stopRecord(t, recB) // drains: every exchange is in store B
	checkSessions(t, storeB, convs, turns, "llmtape-1-")
}

// stopRecord stops an in-process record as SIGTERM does and checks that it exited 0.
func stopRecord(t *testing.T, rp *recProc) {
	t.Helper()
	rp.cancel()
	<-rp.done
	if c := <-rp.code; c != 0 {
		t.Fatalf("record exited %d: %s", c, rp.errb.String())
	}
}

// checkSessions checks that the store's one recording holds convs conversations grouped by
// the X-Session-ID header, of turns turns each, with distinct ids that start with prefix.
func checkSessions(t *testing.T, path string, convs, turns int, prefix string) {
	t.Helper()
	st, err := tape.Open(path, &tape.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := tape.FindRecording(st, "latest")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	err = st.Conversations(rec.ID, func(c *tape.Conversation) error {
		if c.Grouping != tape.GroupSession || c.SessionHeader != "X-Session-Id" || c.Turns != turns ||
			!strings.HasPrefix(c.Session, prefix) {
			t.Errorf("%s: conversation %+v, want %d turns grouped by X-Session-Id %s…", path, *c, turns, prefix)
		}
		ids[c.Session] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != convs {
		t.Errorf("%s: session ids %v, want %d", path, ids, convs)
	}
}

func TestReplayRecordingByNameAndLatest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "two.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i, name := range []string{"morning", "evening"} {
		rec := &tape.Recording{Name: name, Source: "test", Started: time.Unix(1_790_000_000, 0), Complete: true}
		if err := s.CreateRecording(rec); err != nil {
			t.Fatal(err)
		}
		err := s.Update(func(tx *tape.Tx) error {
			for range i + 1 { // morning has 1 conversation, evening 2
				c := tapetest.NewChat(rng, rec.ID, s.NextConversationID(), tapetest.Config{Turns: 1, MessageBytes: 40})
				c.Conversation.Arrival = 0
				c.Turns[0].Tokens.Completion = 3
				if err := c.Write(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	target := replaySim(t, sim.Config{TTFT: time.Millisecond})
	tests := []struct {
		ref  string
		code int
		want string
	}{
		{"morning", 0, "replaying 1 conversations (1 requests) of recording 1"},
		{"latest", 0, "replaying 2 conversations (2 requests) of recording 2"},
		{"1", 0, "of recording 1"},
		{"night", 1, `find recording "night": no recording of that id or name`},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			code, out, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", target,
				"--think", "none", "--recording", tc.ref)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want %d; stderr lacks %q:\n%s\n%s", code, tc.code, tc.want, errOut, out)
			}
		})
	}
}
