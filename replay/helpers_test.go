package replay_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// convSpec shapes one test conversation: its arrival offset and the recorded think time
// before each turn after the first.
type convSpec struct {
	arrival time.Duration
	turns   int
	think   time.Duration
}

// recorded is a store with one recording of known conversations.
type recorded struct {
	store *tape.Store
	rec   *tape.Recording
	chats []*tapetest.Chat
}

// recordedReply is how long each recorded reply lasted (from its start to its end).
const recordedReply = 100 * time.Millisecond

func makeStore(t testing.TB, specs []convSpec) *recorded {
	t.Helper()
	st := tapetest.MustOpen(t)
	rec := tapetest.Recording(t, st)
	rng := rand.New(rand.NewPCG(1, 2))
	out := &recorded{store: st, rec: rec}
	err := st.Update(func(tx *tape.Tx) error {
		for _, s := range specs {
			c := tapetest.NewChat(rng, rec.ID, st.NextConversationID(), tapetest.Config{
				Turns: s.turns, MessageBytes: 60, Chunks: 4})
			c.Conversation.Arrival = s.arrival
			start := rec.Started.Add(s.arrival)
			for _, turn := range c.Turns {
				turn.Timing.Start = start
				turn.Timing.End = recordedReply
				turn.Tokens.Completion = 5
				start = start.Add(recordedReply + s.think)
			}
			if err := c.Write(tx); err != nil {
				return err
			}
			out.chats = append(out.chats, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("write conversations: %v", err)
	}
	return out
}

// received is one request as the test target saw it.
type received struct {
	body     []byte
	messages []json.RawMessage
	tag      string // the last user message's content
	reply    string // what the target answered
	header   http.Header
	path     string
	at, end  time.Time
}

// target is a minimal OpenAI-compatible streaming server that keeps what it received. Each
// reply is "live <n>" in a few events, Delay apart.
type target struct {
	url   string
	delay time.Duration
	mu    sync.Mutex
	reqs  []*received
	n     int
}

func newTarget(t testing.TB, delay time.Duration) *target {
	t.Helper()
	tg := &target{delay: delay}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: tg}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	tg.url = "http://" + ln.Addr().String()
	return tg
}

func (tg *target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := &received{at: time.Now(), header: r.Header.Clone(), path: r.URL.Path}
	rc.body, _ = io.ReadAll(r.Body)
	req, err := openai.ParseRequest(rc.body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	rc.messages = req.Messages
	for i := len(req.Messages) - 1; i >= 0; i-- {
		m, _ := openai.ParseMessage(req.Messages[i])
		if m.Role == "user" {
			rc.tag = m.Content
			break
		}
	}
	tg.mu.Lock()
	tg.n++
	n := tg.n
	tg.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	words := []string{"live", " ", fmt.Sprint(n), "."}
	rc.reply = strings.Join(words, "")
	for _, wd := range words {
		if tg.delay > 0 {
			time.Sleep(tg.delay)
		}
		b, _ := json.Marshal(wd)
		fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%s}}]}\n\n", b)
		fl.Flush()
	}
	fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":4,\"total_tokens\":14}}\n\n")
	// Stamp the end before the last write: the client cannot see the reply end before it.
	rc.end = time.Now()
	fmt.Fprintf(w, "data: [DONE]\n\n")
	fl.Flush()
	tg.mu.Lock()
	tg.reqs = append(tg.reqs, rc)
	tg.mu.Unlock()
}

func (tg *target) received() []*received {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]*received(nil), tg.reqs...)
}

// byTag indexes what the target received by the last user message.
func (tg *target) byTag() map[string]*received {
	m := map[string]*received{}
	for _, r := range tg.received() {
		m[r.tag] = r
	}
	return m
}

func lastUser(t testing.TB, msgs []json.RawMessage) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		m, err := openai.ParseMessage(msgs[i])
		if err != nil {
			t.Fatal(err)
		}
		if m.Role == "user" {
			return m.Content
		}
	}
	return ""
}

func results(t testing.TB, st *tape.Store, run uint64) []*tape.Result {
	t.Helper()
	var out []*tape.Result
	if err := st.Results(run, func(r *tape.Result) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func (tg *target) reset() {
	tg.mu.Lock()
	tg.reqs = nil
	tg.mu.Unlock()
}

// loadavg returns the 1-minute load average, for logs of timing tests.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
