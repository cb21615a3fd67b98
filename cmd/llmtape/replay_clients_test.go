package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// Tests of the vLLM preset (--clients, --active-conversations, --conversation-sampling): the
// order of requests equals that of vLLM's multi-turn benchmark.

// vllmStep is one request of vLLM's benchmark: conversation (index in the input file), turn
// (0-based request of that conversation) and the client that sent it.
type vllmStep struct{ conv, turn, client int }

// vllmOrder is the reference: the order in which vLLM's benchmark_serving_multi_turn.py
// (client_main, vllm-project/vllm benchmarks/multi_turn) sends the requests of conversations
// with lens[i] messages, transcribed line by line for --num-clients clients,
// --max-active-conversations active, --conversation-sampling round_robin, --no-early-stop,
// no --max-turns, no warmup, every request succeeding. vLLM's clients are processes that race;
// the reference fixes the one race-free interleaving: the clients take turns, one loop
// iteration (one request) each, in client order, so client 0 takes its share of the queue
// first. It also returns the turns vLLM never sends: a client leaves its loop when it draws
// the queue's end signal, abandoning the conversations it still has.
func vllmOrder(lens []int, clients, active int) (order []vllmStep, abandoned map[[2]int]bool) {
	per := active / clients // max_active_conv_per_client
	queue := 0              // task_queue: conversations in file order, then TERM_SIGNAL per client
	type client struct {
		active     []int       // active_convs (a dict: insertion order)
		line       []int       // conv_id_queue: pop() takes the last, appendleft puts first
		turns      map[int]int // turns_count: messages used
		queueEmpty bool        // task_queue_empty
		done       bool
	}
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = &client{turns: map[int]int{}}
	}
	owner := map[int]int{}
	for live := clients; live > 0; {
		for id, c := range cs {
			if c.done {
				continue
			}
			for len(c.active) < per && !c.queueEmpty {
				if queue == len(lens) { // conv_id is TERM_SIGNAL
					c.queueEmpty = true
					break
				}
				conv := queue
				queue++
				if c.turns[conv] < lens[conv] { // turns_count[conv_id] < len(messages)
					c.active = append(c.active, conv)
					c.line = append(c.line, conv)
					owner[conv] = id
				}
			}
			if len(c.active) == 0 || c.queueEmpty {
				c.done = true
				live--
				continue
			}
			conv := c.line[len(c.line)-1] // conv_id_queue.pop()
			c.line = c.line[:len(c.line)-1]
			c.turns[conv]++ // the user message
			order = append(order, vllmStep{conv: conv, turn: c.turns[conv] / 2, client: id})
			c.turns[conv]++ // the answer
			if c.turns[conv] >= lens[conv] {
				c.active = slices.DeleteFunc(c.active, func(v int) bool { return v == conv })
			} else {
				c.line = slices.Insert(c.line, 0, conv) // conv_id_queue.appendleft
			}
		}
	}
	abandoned = map[[2]int]bool{}
	for _, c := range cs {
		for _, conv := range c.active {
			for turn := c.turns[conv] / 2; turn < (lens[conv]+1)/2; turn++ {
				abandoned[[2]int{conv, turn}] = true
			}
		}
	}
	return order, abandoned
}

// orderGate is a target on 127.0.0.1 in front of a sim that answers the replayer's requests
// one at a time in the reference order: it answers the next request of the order only when
// every client that has requests left in the order has sent its next one, so no client's
// choice can depend on timing. A request that is not the next one of its conversation's
// client in the order is a mismatch; the gate then opens, so the run ends. Requests after the
// order (vLLM's abandoned turns) are answered when the order is done.
type orderGate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	order    []vllmStep
	pos      int
	owner    map[int]int    // conversation → client
	index    map[uint64]int // store conversation id → index in the file
	sent     map[int]int    // requests received per conversation
	pending  map[[2]int]bool
	mismatch string
	answered [][2]int // in the order answered
}

func (g *orderGate) nextOf(client int) int {
	for i := g.pos; i < len(g.order); i++ {
		if g.order[i].client == client {
			return i
		}
	}
	return -1
}

// ready says whether every client with requests left in the order has sent its next one.
func (g *orderGate) ready() bool {
	for c := range len(g.owner) {
		if i := g.nextOf(c); i >= 0 && !g.pending[[2]int{g.order[i].conv, g.order[i].turn}] {
			return false
		}
	}
	return true
}

func (g *orderGate) admit(r *http.Request) error {
	v := r.Header.Get("X-Conv") // llmtape-<run>-<conversation id>
	id, err := strconv.ParseUint(v[strings.LastIndex(v, "-")+1:], 10, 64)
	if err != nil {
		return fmt.Errorf("session header %q: %v", v, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	conv, ok := g.index[id]
	if !ok {
		return fmt.Errorf("unknown conversation %d", id)
	}
	key := [2]int{conv, g.sent[conv]}
	g.sent[conv]++
	if i := g.nextOf(g.owner[conv]); i >= 0 && g.mismatch == "" {
		if want := g.order[i]; want.conv != conv || want.turn != key[1] {
			g.mismatch = fmt.Sprintf("at request %d of the order: client %d sent conversation %d turn %d, want conversation %d turn %d",
				i, want.client, conv, key[1], want.conv, want.turn)
		}
	}
	g.pending[key] = true
	g.cond.Broadcast()
	for g.mismatch == "" && g.pos < len(g.order) && !(g.order[g.pos].conv == conv && g.order[g.pos].turn == key[1] && g.ready()) {
		g.cond.Wait()
	}
	delete(g.pending, key)
	if g.pos < len(g.order) && g.order[g.pos].conv == conv && g.order[g.pos].turn == key[1] {
		g.pos++
	}
	g.answered = append(g.answered, key)
	g.cond.Broadcast()
	return nil
}

// TestReplayClientsVLLMOrder: --clients 2 --active-conversations 4 sends the conversations
// generated from vLLM's own example config (generate_multi_turn.json, 24 conversations of 12
// to 18 messages) in the order vLLM's benchmark sends them (vllmOrder), and then the turns
// vLLM abandons.
func TestReplayClientsVLLMOrder(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "pg1184.txt") // the config's text file: the embedded excerpt
	if err := os.WriteFile(text, synth.DefaultText(), 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "g.db")
	if code, _, errOut := dsExec("", "generate", "--store", db, "--seed", "3", "--text-file", text,
		"../../dataset/testdata/generate_multi_turn.json"); code != 0 {
		t.Fatalf("generate: exit %d: %s", code, errOut)
	}
	// vLLM's input: the same conversations as vLLM's JSON.
	code, out, errOut := dsExec("", "export", "--store", db, "--format", "vllm")
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	var convs []struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &convs); err != nil {
		t.Fatal(err)
	}
	lens := make([]int, len(convs))
	for i, c := range convs {
		lens[i] = len(c.Messages)
	}
	order, abandoned := vllmOrder(lens, 2, 4)

	g := &orderGate{order: order, owner: map[int]int{}, index: map[uint64]int{}, sent: map[int]int{}, pending: map[[2]int]bool{}}
	g.cond = sync.NewCond(&g.mu)
	for _, s := range order {
		g.owner[s.conv] = s.client
	}
	st, err := tape.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tape.FindRecording(st, "latest")
	if err != nil {
		t.Fatal(err)
	}
	err = st.Conversations(rec.ID, func(c *tape.Conversation) error {
		g.index[c.ID] = len(g.index)
		return nil
	})
	st.Close()
	if err != nil || len(g.index) != len(lens) {
		t.Fatalf("%d conversations in the store, %d exported: %v", len(g.index), len(lens), err)
	}

	up, err := url.Parse(replaySim(t, sim.Config{TTFT: 100 * time.Microsecond, ITL: 10 * time.Microsecond}))
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(up)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.admit(r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	code, _, errOut = execCmd(context.Background(), "replay", "--store", db, "--target", srv.URL,
		"--clients", "2", "--active-conversations", "4", "--history", "live", "--output-len", "2",
		"--think", "none", "--session-header", "X-Conv", "--format", "json", "-o", filepath.Join(dir, "s.json"))
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mismatch != "" {
		t.Fatalf("not vLLM's order: %s", g.mismatch)
	}
	if len(g.answered) != len(order)+len(abandoned) {
		t.Fatalf("%d requests, want vLLM's %d and the %d turns vLLM abandons", len(g.answered), len(order), len(abandoned))
	}
	for i, s := range order {
		if got := g.answered[i]; got != [2]int{s.conv, s.turn} {
			t.Fatalf("request %d: conversation %d turn %d, want %+v", i, got[0], got[1], s)
		}
	}
	for _, k := range g.answered[len(order):] {
		if !abandoned[k] {
			t.Errorf("after vLLM's order: conversation %d turn %d, which vLLM sent or does not have", k[0], k[1])
		}
	}
	t.Logf("%d requests in vLLM's order, then %d turns vLLM abandons", len(order), len(abandoned))
}

// TestReplayClientsRandom: --conversation-sampling random sends every turn of every
// conversation once, each conversation's turns in order. (Its choices come from Go's
// generator, not Python's, so no order of vLLM's is checked.)
func TestReplayClientsRandom(t *testing.T) {
	path := replayStore(t, 6, 3)
	base, got := captureTarget(t)
	code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", base,
		"--clients", "2", "--active-conversations", "5", "--conversation-sampling", "random",
		"--think", "none", "--session-header", "X-Conv", "--format", "json", "-o", filepath.Join(t.TempDir(), "s.json"))
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	msgs := map[string][]int{}
	for _, r := range got() {
		id := r.header.Get("X-Conv")
		msgs[id] = append(msgs[id], len(r.messages(t)))
	}
	if len(msgs) != 6 {
		t.Fatalf("%d conversations sent, want 6", len(msgs))
	}
	for id, n := range msgs {
		if len(n) != 3 || !slices.IsSorted(n) || n[0] == n[1] || n[1] == n[2] {
			t.Errorf("conversation %s: message counts %v, want 3 turns in order", id, n)
		}
	}
}
