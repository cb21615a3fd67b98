package sim_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/sim"
)

// measured is what a client saw of one streamed request.
type measured struct {
	status int
	ttft   time.Duration
	gaps   []time.Duration // between consecutive token events
	usage  *openai.Usage
	e2e    time.Duration
	done   bool  // got [DONE]
	err    error // reading the body failed (a cut stream)
	body   []byte
	// firstStamp and lastStamp are the sim's send stamps (Config.Stamp) of the first output event
	// and of the last event, 0 without stamps.
	firstStamp, lastStamp int64
	sent                  time.Time // when the request was sent (wall clock, like the stamps)
}

// measure sends body and reads the stream, timing each event as it is read.
func measure(client *http.Client, url, body string) measured {
	var m measured
	start := time.Now()
	m.sent = start
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		m.err = err
		return m
	}
	defer resp.Body.Close()
	m.status = resp.StatusCode
	if resp.StatusCode != 200 {
		m.body, m.err = io.ReadAll(resp.Body)
		return m
	}
	dec := openai.NewDecoder(resp.Body)
	var c openai.Chunk
	var last time.Time
	for {
		ev, err := dec.Next()
		now := time.Now()
		m.e2e = now.Sub(start)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				m.err = err
			}
			return m
		}
		if ev.Done {
			m.done = true
			continue
		}
		stamp := stampOf(ev.Data)
		if stamp > m.lastStamp {
			m.lastStamp = stamp
		}
		if err := openai.ParseChunk(ev.Data, &c); err != nil {
			m.err = err
			return m
		}
		if c.Usage != nil {
			u := *c.Usage
			m.usage = &u
		}
		if !c.HasOutput() {
			continue
		}
		if last.IsZero() {
			m.ttft = now.Sub(start)
			m.firstStamp = stamp
		} else {
			m.gaps = append(m.gaps, now.Sub(last))
		}
		last = now
	}
}

func chatBody(messages []json.RawMessage, maxTokens int) string {
	b, _ := json.Marshal(map[string]any{
		"model": "m", "messages": messages, "stream": true, "max_tokens": maxTokens,
		"stream_options": map[string]any{"include_usage": true},
	})
	return string(b)
}

// TestPrefixCacheThreeTurns: a three-turn conversation (a real client's, from llama.cpp's
// transcript) sent twice: the later turns report cached tokens and a smaller TTFT than the same
// prompts with the cache off.
func TestPrefixCacheThreeTurns(t *testing.T) {
	raw, err := os.ReadFile("testdata/llamacpp_three_turn_conversation.json")
	if err != nil {
		t.Fatal(err)
	}
	var turns []struct {
		Request struct {
			Messages []json.RawMessage `json:"messages"`
		} `json:"request"`
	}
	if err := json.Unmarshal(raw, &turns); err != nil || len(turns) != 3 {
		t.Fatalf("conversation: %v (%d turns)", err, len(turns))
	}
	// A slow prefill makes the cache's effect large next to scheduling noise on a busy machine.
	base := sim.Config{TTFT: 5 * time.Millisecond, PrefillPerToken: time.Millisecond, BlockSize: 4}
	withCache := base
	withCache.CacheBlocks = 1024
	cached := MustStart(t, withCache)
	uncached := MustStart(t, base)

	client := &http.Client{}
	for pass := 1; pass <= 2; pass++ {
		for i, turn := range turns {
			body := chatBody(turn.Request.Messages, 5)
			a := measure(client, cached.URL()+"/v1/chat/completions", body)
			b := measure(client, uncached.URL()+"/v1/chat/completions", body)
			if a.err != nil || b.err != nil || a.usage == nil || b.usage == nil {
				t.Fatalf("pass %d turn %d: errors %v, %v", pass, i+1, a.err, b.err)
			}
			t.Logf("pass %d turn %d: prompt %d tokens, cached %d; TTFT %v with cache, %v without",
				pass, i+1, a.usage.PromptTokens, a.usage.Cached(), a.ttft.Round(time.Microsecond), b.ttft.Round(time.Microsecond))
			if b.usage.Cached() != 0 {
				t.Errorf("pass %d turn %d: %d cached tokens with the cache off", pass, i+1, b.usage.Cached())
			}
			if pass == 1 && i == 0 {
				continue // nothing to reuse yet
			}
			if a.usage.Cached() == 0 {
				t.Errorf("pass %d turn %d: no cached tokens", pass, i+1)
			}
			// One pair of TTFTs can swap on a busy machine (a late wake-up adds tens of ms to
			// either); the least of a few, never below the model's figure since timers are
			// never early, cannot.
			minA, minB := a.ttft, b.ttft
			for try := 1; try < 5 && minA >= minB; try++ {
				minA = min(minA, measure(client, cached.URL()+"/v1/chat/completions", body).ttft)
				minB = min(minB, measure(client, uncached.URL()+"/v1/chat/completions", body).ttft)
			}
			if minA >= minB {
				t.Errorf("pass %d turn %d: TTFT %v with cache is not below %v without (least of 5)", pass, i+1, minA, minB)
			}
		}
	}
	st := cached.Stats()
	if st.CachedTokens == 0 || st.CacheBlocks == 0 {
		t.Errorf("stats %+v", st)
	}
}

var waitingRe = regexp.MustCompile(`(?m)^vllm:num_requests_waiting\{[^}]*\} (\d+)$`)

func scrapeWaiting(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := waitingRe.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no waiting gauge in /metrics:\n%s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestQueueFIFO: with --max-running 4 and 16 concurrent requests the waiting gauge goes above
// zero, the requests run in waves of 4 in arrival order, and TTFT grows with queue position.
func TestQueueFIFO(t *testing.T) {
	// Asserted on the order of the sim's own stamps, not on wall-clock gaps, so that it holds on
	// a busy machine: with 4 slots and FIFO admission, the i-th request (from 0) gets its first
	// token only after at least i-3 earlier slots were given back, so at least i-3 requests
	// wrote their last event before its first one. A queue that let a later request jump ahead
	// breaks this for the requests it passed.
	const slots, n, tokens = 4, 16, 8
	// 100 ms gaps hold each slot for 0.7 s, so the queue is still there when /metrics is read.
	s := MustStart(t, sim.Config{TTFT: 10 * time.Millisecond, ITL: 100 * time.Millisecond, MaxRunning: slots, Stamp: true})
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 32, MaxIdleConnsPerHost: 32}}
	type stamps struct {
		first, last int64 // the sim's send stamps of the first output event and the last event
		err         error
	}
	results := make([]stamps, n)
	var wg sync.WaitGroup
	waiting := 0 // the /metrics gauge once the first request is queued
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := measure(client, s.URL()+"/v1/chat/completions",
				fmt.Sprintf(`{"messages":[{"role":"user","content":"request %d"}],"stream":true,"max_tokens":%d}`, i, tokens))
			if m.err != nil || !m.done {
				results[i].err = fmt.Errorf("status %d, done %v: %v", m.status, m.done, m.err)
				return
			}
			results[i].first, results[i].last = m.firstStamp, m.lastStamp
		}()
		// Send in a known order: wait until this request holds a slot or a place in the queue.
		for st := s.Stats(); int64(st.Running+st.Waiting)+st.Completed < int64(i+1); st = s.Stats() {
			time.Sleep(100 * time.Microsecond)
		}
		if i == slots {
			waiting = scrapeWaiting(t, s.URL())
		}
	}
	wg.Wait()
	if waiting == 0 {
		t.Errorf("waiting gauge was 0 with %d requests on %d slots", n, slots)
	}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if r.first == 0 || r.last < r.first {
			t.Fatalf("request %d: stamps first %d last %d", i, r.first, r.last)
		}
	}
	for i := slots; i < n; i++ {
		ended := 0
		for _, r := range results {
			if r.last < results[i].first {
				ended++
			}
		}
		if ended < i-slots+1 {
			t.Errorf("request %d got its first token when %d requests had ended, want at least %d (FIFO on %d slots)", i, ended, i-slots+1, slots)
		}
	}
	for i := range slots {
		if results[i].first > results[slots].first {
			t.Errorf("request %d (a first slot) started after request %d (queued)", i, slots)
		}
	}
	if st := s.Stats(); st.Running != 0 || st.Waiting != 0 || st.Completed != n {
		t.Errorf("stats after: %+v", st)
	}
}

// TestFaultRates: over 1,000 requests the seeded faults come out at the configured rates
// (within 4 standard deviations), exactly as Stats reports them, and exactly the same counts
// for the same seed whatever the concurrency.
func TestFaultRates(t *testing.T) {
	const n = 1000
	cfg := sim.Config{Seed: 42, FailRate: 0.1, FailStatus: 429, StallRate: 0.05, Stall: time.Millisecond,
		DisconnectRate: 0.05, Tokenizer: "approx"}
	type counts struct{ failed, cut, ok int }
	runOnce := func(concurrency int) (counts, sim.Stats) {
		s := MustStart(t, cfg)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
		var mu sync.Mutex
		var c counts
		var wg sync.WaitGroup
		next := make(chan int)
		for range concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					m := measure(client, s.URL()+"/v1/chat/completions",
						fmt.Sprintf(`{"messages":[{"role":"user","content":"q%d"}],"stream":true,"max_tokens":4}`, i))
					mu.Lock()
					switch {
					case m.status == 429:
						c.failed++
						e, ok := openai.ParseError(m.body)
						if !ok || e.Message == "" {
							t.Errorf("429 body %q is not an OpenAI error", m.body)
						}
					case m.status == 200 && m.done && m.err == nil:
						c.ok++
					case m.status == 200 && !m.done:
						c.cut++
					default:
						t.Errorf("request %d: status %d, err %v", i, m.status, m.err)
					}
					mu.Unlock()
				}
			}()
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		return c, s.Stats()
	}

	c, st := runOnce(16)
	t.Logf("seed 42, 1000 requests: failed %d, stalled %d, disconnected %d, completed %d", c.failed, st.Stalled, c.cut, c.ok)
	if int64(c.failed) != st.Failed[429] || int64(c.cut) != st.Disconnected || int64(c.ok) != st.Completed {
		t.Errorf("client saw %+v, server stats %+v", c, st)
	}
	// Seeded, so exact: these are seed 42's draws for request indexes 0..999.
	if want := (counts{failed: 102, cut: 38, ok: 860}); c != want || st.Stalled != 38 {
		t.Errorf("seed 42: got %+v and %d stalled, want %+v and 38 stalled", c, st.Stalled, want)
	}
	within := func(name string, got int64, rate float64) {
		sd := math.Sqrt(n * rate * (1 - rate))
		if math.Abs(float64(got)-n*rate) > 4*sd {
			t.Errorf("%s: %d of %d, want %v ± %.0f", name, got, n, n*rate, 4*sd)
		}
	}
	within("failed", st.Failed[429], cfg.FailRate)
	// Stalls and disconnects are drawn only for requests that did not fail.
	within("stalled", st.Stalled, cfg.StallRate*(1-cfg.FailRate))
	within("disconnected", st.Disconnected, cfg.DisconnectRate*(1-cfg.FailRate))

	// The same seed gives the same faults to the same request indexes: sequential run, same
	// counts.
	c2, st2 := runOnce(1)
	if c2 != c || st2.Stalled != st.Stalled {
		t.Errorf("seeded faults differ between runs: %+v/%d vs %+v/%d", c, st.Stalled, c2, st2.Stalled)
	}
}

func TestRetryAfterAndErrorBodies(t *testing.T) {
	tests := []struct {
		name       string
		cfg        sim.Config
		path, body string
		status     int
		retryAfter string
		msg        string
	}{
		{"429", sim.Config{FailRate: 1, FailStatus: 429, RetryAfter: 1500 * time.Millisecond}, "/v1/chat/completions",
			`{"messages":[{"role":"user","content":"x"}]}`, 429, "2", "Rate limit"},
		{"503", sim.Config{FailRate: 1, FailStatus: 503}, "/v1/completions", `{"prompt":"x"}`, 503, "1", "overloaded"},
		{"500", sim.Config{FailRate: 1, FailStatus: 500}, "/v1/completions", `{"prompt":"x"}`, 500, "", "Internal Server Error"},
		{"not json", sim.Config{}, "/v1/chat/completions", `{"messages":`, 400, "", "JSON"},
		{"not an object", sim.Config{}, "/v1/chat/completions", `[1,2]`, 400, "", "object"},
		{"no messages", sim.Config{}, "/v1/chat/completions", `{"model":"m"}`, 400, "", "messages"},
		{"messages wrong type", sim.Config{}, "/v1/chat/completions", `{"messages":"hi"}`, 400, "", "messages"},
		{"message not object", sim.Config{}, "/v1/chat/completions", `{"messages":[3]}`, 400, "", "messages[0]"},
		{"no role", sim.Config{}, "/v1/chat/completions", `{"messages":[{"content":"x"}]}`, 400, "", "role"},
		{"content wrong type", sim.Config{}, "/v1/chat/completions", `{"messages":[{"role":"user","content":5}]}`, 400, "", "content"},
		{"max_tokens string", sim.Config{}, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":"a"}`, 400, "", "max_tokens"},
		{"max_tokens zero", sim.Config{}, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":0}`, 400, "", "max_tokens"},
		{"max_tokens too large", sim.Config{}, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":2000000}`, 400, "", "limit"},
		{"min over max", sim.Config{}, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":2,"min_tokens":3}`, 400, "", "min_tokens"},
		{"no prompt", sim.Config{}, "/v1/completions", `{"model":"m"}`, 400, "", "prompt"},
		{"batched prompt", sim.Config{}, "/v1/completions", `{"prompt":["a","b"]}`, 400, "", "one prompt"},
		{"prompt wrong type", sim.Config{}, "/v1/completions", `{"prompt":{"a":1}}`, 400, "", "prompt"},
		{"unknown path", sim.Config{}, "/v1/embeddings", `{}`, 404, "", "no route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := MustStart(t, tt.cfg)
			resp := post(t, s.URL()+tt.path, tt.body)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			e, ok := openai.ParseError(b)
			if !ok || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("body %s: want an OpenAI error mentioning %q", b, tt.msg)
			}
		})
	}
}

// TestDisconnectCutsStream: an injected disconnect ends the body without [DONE], with an error
// for the client (not a clean end).
func TestDisconnectCutsStream(t *testing.T) {
	s := MustStart(t, sim.Config{DisconnectRate: 1})
	resp := post(t, s.URL()+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":10}`)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("cut stream read cleanly: %q", body)
	}
	if strings.Contains(string(body), "[DONE]") || !strings.HasPrefix(string(body), "data: {") {
		t.Fatalf("body %q", body)
	}
	if st := s.Stats(); st.Disconnected != 1 || st.Canceled != 0 || st.Completed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCloseAfterStream: with CloseAfterStream a streamed answer ends whole (the chunked body's
// end, [DONE]) with no "Connection: close", and then the server closes the connection; a
// non-streamed answer keeps it open for the next request.
func TestCloseAfterStream(t *testing.T) {
	s := MustStart(t, sim.Config{CloseAfterStream: true})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	send := func(stream bool) *http.Response {
		t.Helper()
		body := fmt.Sprintf(`{"messages":[{"role":"user","content":"x"}],"stream":%v,"max_tokens":3}`, stream)
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/v1/chat/completions", strings.NewReader(body))
		if err := req.Write(conn); err != nil {
			t.Fatalf("write request: %v", err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || resp.Close {
			t.Fatalf("stream=%v: status %d, close %v, err %v, body %q", stream, resp.StatusCode, resp.Close, err, b)
		}
		if stream && !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
			t.Fatalf("stream body %q", b)
		}
		return resp
	}
	send(false) // keeps the connection
	send(true)  // ends whole, then the server closes
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the stream: read %q, %v; want EOF", n, err)
	}
}

// TestStallPausesOnce: a stalled stream pauses once for about --stall, and only once.
func TestStallPausesOnce(t *testing.T) {
	const stall = 200 * time.Millisecond
	s := MustStart(t, sim.Config{StallRate: 1, Stall: stall})
	m := measure(http.DefaultClient, s.URL()+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":10}`)
	if m.err != nil || !m.done {
		t.Fatalf("stream: %v", m.err)
	}
	if m.e2e < stall {
		t.Errorf("stream took %v, less than the stall %v", m.e2e, stall)
	}
	long := 0
	for _, g := range m.gaps {
		if g >= stall*3/4 {
			long++
		}
	}
	if long > 1 {
		t.Errorf("%d long gaps, want at most one: %v", long, m.gaps)
	}
	if st := s.Stats(); st.Stalled != 1 || st.Completed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestITLPerRunning: token gaps grow with the number of requests decoding at once.
func TestITLPerRunning(t *testing.T) {
	const per = 4 * time.Millisecond
	s := MustStart(t, sim.Config{ITLPerRunning: per})
	body := `{"messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":11}`
	alone := measure(http.DefaultClient, s.URL()+"/v1/chat/completions", body)
	if alone.err != nil || !alone.done {
		t.Fatal(alone.err)
	}
	// 10 gaps of per × 1 decoding.
	if alone.e2e < 10*per {
		t.Fatalf("alone: %v, want at least %v", alone.e2e, 10*per)
	}
	results := make([]measured, 4)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = measure(http.DefaultClient, s.URL()+"/v1/chat/completions", body)
		}()
	}
	wg.Wait()
	slowest := time.Duration(0)
	for _, r := range results {
		slowest = max(slowest, r.e2e)
	}
	t.Logf("one stream %v, slowest of four together %v", alone.e2e.Round(time.Millisecond), slowest.Round(time.Millisecond))
	// Against the model's figure for one stream, not the measured one: timers are never early,
	// so a busy machine only lengthens the four, while it may lengthen one alone just as much.
	if slowest < 2*10*per {
		t.Errorf("four decoding together took %v, want well above one alone (%v by the model)", slowest, 10*per)
	}
}

func TestOtherEndpoints(t *testing.T) {
	s := MustStart(t, sim.Config{Model: "my-model", TokensPerChunk: 4})
	tests := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"models", "GET", "/v1/models", "", 200, `"id":"my-model"`},
		{"health", "GET", "/health", "", 200, ""},
		{"metrics", "GET", "/metrics", "", 200, "vllm:num_requests_waiting{"},
		{"chat by GET", "GET", "/v1/chat/completions", "", 405, "method not allowed"},
		{"models by POST", "POST", "/v1/models", "", 405, "method not allowed"},
		{"non-streamed chunks ignore tokens-per-chunk", "POST", "/v1/chat/completions",
			`{"messages":[{"role":"user","content":"x"}],"max_tokens":6}`, 200, `"completion_tokens":6,`},
		{"model defaults", "POST", "/v1/completions", `{"prompt":"x","max_tokens":2}`, 200, `"model":"my-model"`},
		{"token id prompt", "POST", "/v1/completions", `{"prompt":[1,2,3,4,5],"max_tokens":2}`, 200, `"prompt_tokens":5,`},
		{"one-string array prompt", "POST", "/v1/completions", `{"prompt":["abc"],"max_tokens":2}`, 200, `"object":"text_completion"`},
		{"max_completion_tokens wins", "POST", "/v1/chat/completions",
			`{"messages":[{"role":"user","content":"x"}],"max_tokens":9,"max_completion_tokens":3,"ignore_eos":true}`, 200, `"completion_tokens":3,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, s.URL()+tt.path, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.contains) {
				t.Fatalf("status %d body %s; want %d with %q", resp.StatusCode, b, tt.status, tt.contains)
			}
		})
	}
	// Streamed with 4 tokens a chunk: 10 tokens → 3 events + the final one.
	resp := post(t, s.URL()+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":10,"ignore_eos":true}`)
	defer resp.Body.Close()
	chunks, done := readStream(t, resp.Body)
	if !done || len(chunks) != 4 {
		t.Fatalf("%d chunks (done %v), want 4", len(chunks), done)
	}
	if words := len(strings.Fields(chunks[0].Choices[0].Delta.Content)); words != 4 {
		t.Fatalf("first chunk has %d tokens, want 4", words)
	}
}

// TestPrefixCacheKeepsReplies: a client that sends the reply back in its next turn (live
// history) gets the reply's blocks from the cache too, not only the earlier prompt's.
func TestPrefixCacheKeepsReplies(t *testing.T) {
	s := MustStart(t, sim.Config{CacheBlocks: 1024, BlockSize: 4, Seed: 5})
	msgs := []json.RawMessage{json.RawMessage(`{"role":"user","content":"Tell me about the sea and the harbour."}`)}
	first := measure(http.DefaultClient, s.URL()+"/v1/chat/completions", chatBody(msgs, 40))
	if first.err != nil || first.usage == nil {
		t.Fatal(first.err)
	}
	// Rebuild the reply from a non-streamed copy of the same request (same prompt, same text).
	resp := post(t, s.URL()+"/v1/chat/completions", `{"messages":[{"role":"user","content":"Tell me about the sea and the harbour."}],"max_tokens":40}`)
	var whole struct {
		Choices []struct {
			Message json.RawMessage `json:"message"`
		} `json:"choices"`
	}
	json.NewDecoder(resp.Body).Decode(&whole)
	resp.Body.Close()
	msgs = append(msgs, whole.Choices[0].Message, json.RawMessage(`{"role":"user","content":"And the boats?"}`))
	second := measure(http.DefaultClient, s.URL()+"/v1/chat/completions", chatBody(msgs, 5))
	if second.err != nil || second.usage == nil {
		t.Fatal(second.err)
	}
	t.Logf("turn 1 prompt %d tokens; turn 2 prompt %d tokens, %d cached", first.usage.PromptTokens, second.usage.PromptTokens, second.usage.Cached())
	if second.usage.Cached() < first.usage.PromptTokens+20 {
		t.Errorf("turn 2 cached %d tokens: the reply's 40 tokens after the %d of turn 1's prompt were not reused",
			second.usage.Cached(), first.usage.PromptTokens)
	}
}

// TestPacingModes: with timers after the first token (the default) and with PreciseTimers, a stream keeps
// to its absolute deadlines: every token arrives, and the stream is never early.
func TestPacingModes(t *testing.T) {
	const itl = 3 * time.Millisecond
	for _, precise := range []bool{false, true} {
		t.Run(fmt.Sprintf("precise=%v", precise), func(t *testing.T) {
			s := MustStart(t, sim.Config{ITL: itl, PreciseTimers: precise, Stamp: true})
			m := measure(http.DefaultClient, s.URL()+"/v1/chat/completions",
				`{"messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":21,"ignore_eos":true}`)
			if m.err != nil || !m.done {
				t.Fatalf("stream: %v", m.err)
			}
			if len(m.gaps) != 20 {
				t.Fatalf("%d gaps, want 20", len(m.gaps))
			}
			// From the request's sending to the sim's stamp of its last event: the sim paces on
			// a schedule from the request's arrival and its timers are never early, while a
			// client on a busy machine may read the first event late and the rest at once (and
			// a late first event makes the sim catch up, so stamp-to-stamp can be short too).
			if span, want := time.Duration(m.lastStamp-m.sent.UnixNano()), 20*itl; span < want*9/10 {
				t.Errorf("request to last event took %v by the sim's stamp, want at least %v", span, want)
			}
		})
	}
}
