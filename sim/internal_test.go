package sim

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBlockHashesArePrefixHashes(t *testing.T) {
	a := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	b := []uint32{1, 2, 3, 4, 5, 6, 0, 8, 9, 10}
	ha, hb := blockHashes(a, 3), blockHashes(b, 3)
	if len(ha) != 3 || len(hb) != 3 {
		t.Fatalf("got %d and %d full blocks, want 3 and 3", len(ha), len(hb))
	}
	if ha[0] != hb[0] || ha[1] != hb[1] || ha[2] == hb[2] {
		t.Fatalf("shared prefix blocks must hash equal, the differing block not: %x %x", ha, hb)
	}
	// Chained: the same block content after a different prefix hashes differently.
	c := []uint32{9, 9, 9, 4, 5, 6}
	if hc := blockHashes(c, 3); hc[1] == ha[1] {
		t.Fatal("block 2 hash does not depend on block 1")
	}
	if blockHashes([]uint32{1, 2}, 3) != nil {
		t.Fatal("a partial block has no hash")
	}
}

func TestPrefixCacheLRU(t *testing.T) {
	c := newPrefixCache(4)
	c.insert([]uint64{1, 2, 3})
	if n := c.lookup([]uint64{1, 2, 3, 4}); n != 3 {
		t.Fatalf("lookup found %d leading blocks, want 3", n)
	}
	if n := c.lookup([]uint64{2, 3}); n != 2 {
		t.Fatalf("found %d, want 2", n)
	}
	if n := c.lookup([]uint64{9, 1}); n != 0 {
		t.Fatalf("only leading blocks count; found %d", n)
	}
	// Recency now (most recent first): 2 3 1 ... inserting 10, 11 evicts the least recent.
	c.insert([]uint64{10, 11})
	if c.len() != 4 {
		t.Fatalf("len %d, want capacity 4", c.len())
	}
	if n := c.lookup([]uint64{1}); n != 0 {
		t.Fatalf("block 1 should have been evicted first")
	}
	if n := c.lookup([]uint64{10, 11}); n != 2 {
		t.Fatalf("new blocks missing")
	}
	// A chain's first blocks are kept longest: evicting shortens it from its end.
	d := newPrefixCache(3)
	d.insert([]uint64{1, 2, 3})
	d.insert([]uint64{7})
	if n := d.lookup([]uint64{1, 2, 3}); n != 2 {
		t.Fatalf("after one eviction the chain has %d leading blocks, want 2", n)
	}
	var off *prefixCache
	if off.lookup([]uint64{1}) != 0 || off.len() != 0 {
		t.Fatal("nil cache must be empty")
	}
	off.insert([]uint64{1})
}

func TestLimiterFIFO(t *testing.T) {
	l := newLimiter(1)
	ctx := context.Background()
	if err := l.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	order := make(chan int, 3)
	for i := range 3 {
		go func() {
			l.acquire(ctx)
			order <- i
		}()
		for _, w := l.counts(); w != i+1; _, w = l.counts() {
			time.Sleep(50 * time.Microsecond) // wait for the goroutine to queue
		}
	}
	// A canceled waiter leaves the queue without taking a slot.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error)
	go func() { errc <- l.acquire(cctx) }()
	for _, w := l.counts(); w != 4; _, w = l.counts() {
		time.Sleep(50 * time.Microsecond)
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("canceled acquire returned nil")
	}
	for want := range 3 {
		l.release()
		if got := <-order; got != want {
			t.Fatalf("slot went to waiter %d, want %d (FIFO)", got, want)
		}
	}
	l.release()
	if r, w := l.counts(); r != 0 || w != 0 {
		t.Fatalf("running %d waiting %d after all released", r, w)
	}
	unlimited := newLimiter(0)
	for range 100 {
		unlimited.acquire(ctx)
	}
	if r, _ := unlimited.counts(); r != 100 {
		t.Fatalf("unlimited running %d", r)
	}
}

func TestOutputLen(t *testing.T) {
	tests := []struct {
		name          string
		max, min      int
		ignoreEOS     bool
		natural, want int
		finish        string
	}{
		{"natural, no limit", 0, 0, false, 50, 50, "stop"},
		{"limit cuts", 20, 0, false, 50, 20, "length"},
		{"stops before limit", 100, 0, false, 50, 50, "stop"},
		{"ignore_eos runs to limit", 100, 0, true, 50, 100, "length"},
		{"min_tokens floor", 100, 70, false, 50, 70, "stop"},
		{"min_tokens equals max", 60, 60, false, 50, 60, "length"},
		{"min without max", 0, 80, false, 50, 80, "stop"},
		{"ignore_eos without max", 0, 0, true, 50, 50, "stop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, f := outputLen(&request{MaxTokens: tt.max, MinTokens: tt.min, IgnoreEOS: tt.ignoreEOS}, tt.natural)
			if n != tt.want || f != tt.finish {
				t.Fatalf("got %d %q, want %d %q", n, f, tt.want, tt.finish)
			}
		})
	}
}

func TestParseLenRange(t *testing.T) {
	tests := []struct {
		in   string
		want LenRange
		ok   bool
	}{
		{"128", LenRange{128, 128}, true},
		{"64-256", LenRange{64, 256}, true},
		{" 1 - 2 ", LenRange{1, 2}, true},
		{"0", LenRange{}, false},
		{"10-2", LenRange{}, false},
		{"x", LenRange{}, false},
		{"1-x", LenRange{}, false},
		{"-5", LenRange{}, false},
	}
	for _, tt := range tests {
		got, err := ParseLenRange(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseLenRange(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok && got.String() != tt.want.String() {
			t.Errorf("String round trip %q", got.String())
		}
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []Config{
		{TokensPerChunk: -1},
		{BlockSize: -2},
		{CacheBlocks: -1},
		{TTFT: -time.Second},
		{FailRate: 1.5},
		{StallRate: -0.1},
		{FailStatus: 200},
		{Tokenizer: "gpt2"},
		{OutputLen: LenRange{5, 2}},
	}
	for _, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted a bad config", c)
		}
	}
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Config()
	if c.Model != DefaultModel || c.BlockSize != DefaultBlockSize || c.OutputLen != DefaultOutputLen ||
		c.CacheBlocks != 0 || c.TTFT != 0 || c.TokensPerChunk != 1 || c.FailStatus != 429 {
		t.Fatalf("defaults of Config{}: %+v", c)
	}
}

func TestApproxTokens(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{{"", 0}, {"a", 1}, {"abcd", 1}, {"abcde", 2}, {"abcdefgh", 2}} {
		if got := len(approxTokens(nil, tt.in)); got != tt.want {
			t.Errorf("approxTokens(%q) gave %d tokens, want %d", tt.in, got, tt.want)
		}
	}
	if approxTokens(nil, "ab")[0] == approxTokens(nil, "\x00\x00ab")[0] {
		t.Error("a short tail collides with a full group")
	}
}

// FuzzParseRequest: no input makes the parser panic, and what it accepts is usable.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`), true)
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stream":true,"stream_options":{"include_usage":true}}`), true)
	f.Add([]byte(`{"prompt":[1,2,3],"min_tokens":2,"ignore_eos":true}`), false)
	f.Add([]byte(`{"prompt":["x"]}`), false)
	f.Add([]byte(`{"messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`), true)
	f.Add([]byte(`nope`), true)
	f.Fuzz(func(t *testing.T, body []byte, chat bool) {
		r, err := parseRequest(body, chat)
		if err != nil {
			if _, ok := err.(*badRequest); !ok {
				t.Fatalf("error %T is not a bad request", err)
			}
			return
		}
		if chat && len(r.Segments) == 0 {
			t.Fatal("chat request accepted without messages")
		}
		if !chat && len(r.Segments) == 0 && r.PromptTokens == nil {
			t.Fatal("completion accepted without a prompt")
		}
		if r.MaxTokens < 0 || r.MinTokens < 0 || (r.MaxTokens > 0 && r.MinTokens > r.MaxTokens) {
			t.Fatalf("bad limits accepted: %+v", r)
		}
	})
}

// BenchmarkEventEncode: rendering one stream event allocates nothing.
func BenchmarkEventEncode(b *testing.B) {
	for _, stamp := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "stamped"}[stamp], func(b *testing.B) {
			m := &meta{id: "chatcmpl-x", model: []byte(`"m"`), created: 1}
			st := newStream(true, stamp, false, m, newOutputRand(1, 2))
			b.ReportAllocs()
			for b.Loop() {
				st.event(1)
			}
		})
	}
}

func TestJitterBoundsAndSeed(t *testing.T) {
	a, b := newOutputRand(7, 1), newOutputRand(7, 1)
	for range 1000 {
		d := jitter(10*time.Millisecond, 3*time.Millisecond, a)
		if d < 7*time.Millisecond || d > 13*time.Millisecond {
			t.Fatalf("jittered %v outside 10ms ± 3ms", d)
		}
		if e := jitter(10*time.Millisecond, 3*time.Millisecond, b); e != d {
			t.Fatalf("same seed gave %v and %v", d, e)
		}
	}
	if d := jitter(time.Millisecond, 5*time.Millisecond, a); d < 0 {
		t.Fatalf("negative delay %v", d)
	}
	if d := jitter(time.Millisecond, 0, a); d != time.Millisecond {
		t.Fatalf("no jitter changed the delay to %v", d)
	}
}

// BenchmarkSleepers: 100 goroutines each waking every 10 ms on absolute deadlines, as 100
// streams at --itl 10ms. Reports the lateness of wake-ups and the CPU per wake-up.
func BenchmarkSleepers(b *testing.B) {
	for _, kind := range []string{"timer", "pacer"} {
		b.Run(kind, func(b *testing.B) {
			const streams, period = 100, 10 * time.Millisecond
			rounds := max(b.N/streams, 20)
			lates := make([][]time.Duration, streams)
			var wg sync.WaitGroup
			c0 := cpuNow()
			start := time.Now()
			for i := range streams {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var sl sleeper
					if kind == "timer" {
						sl = newTimerSleeper()
					} else {
						sl = newSleeper()
					}
					defer sl.stop()
					d := start.Add(time.Duration(i) * period / streams)
					for range rounds {
						d = d.Add(period)
						sl.wait(d, nil, nil)
						lates[i] = append(lates[i], time.Since(d))
					}
				}()
			}
			wg.Wait()
			cpu := cpuNow() - c0
			var all []time.Duration
			for _, l := range lates {
				all = append(all, l...)
			}
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)/2])/1e3, "late_p50_us")
			b.ReportMetric(float64(all[len(all)*99/100])/1e3, "late_p99_us")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(all))/1e3, "cpu_us/wake")
		})
	}
}
