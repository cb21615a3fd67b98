package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// The benchmarks run the simulator in a child process (simtest.StartChild), so that the
// client's CPU time (getrusage of this process) is the replayer's alone and the server does
// not compete with the client's garbage collector.
func TestMain(m *testing.M) {
	if code, served := simtest.ServeChild(); served {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// benchStore writes n conversations of the given turns, arrivals spaced by gap, each turn's
// recorded completion tokens out and think time think; the first user message of each
// conversation is "bench <id>" so that a target can tell them apart.
func benchStore(b *testing.B, n, turns int, gap, think time.Duration, out int) *tape.Store {
	b.Helper()
	st := tapetest.MustOpen(b)
	rec := tapetest.Recording(b, st)
	rng := rand.New(rand.NewPCG(9, 9))
	const perTx = 2000
	for lo := 0; lo < n; lo += perTx {
		err := st.Update(func(tx *tape.Tx) error {
			for i := lo; i < min(lo+perTx, n); i++ {
				c := tapetest.NewChat(rng, rec.ID, st.NextConversationID(), tapetest.Config{
					Turns: turns, MessageBytes: 40, Chunks: 2})
				c.Conversation.Arrival = time.Duration(i) * gap
				start := rec.Started.Add(c.Conversation.Arrival)
				for _, t := range c.Turns {
					t.Request.Messages[len(t.Request.Messages)-1] = json.RawMessage(
						fmt.Sprintf(`{"role":"user","content":"bench %d %d"}`, c.Conversation.ID, t.Index))
					t.Tokens.Completion = out
					t.Timing.Start = start
					t.Timing.End = time.Millisecond
					start = start.Add(time.Millisecond + think)
				}
				if err := c.Write(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return st
}

// teeTransport keeps a copy of every response body, by the request's last user message, so
// the benchmark can read the simulator's stamps after the run. Copying is a memmove per read.
type teeTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	body map[string]*bytes.Buffer
}

func (t *teeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rb, _ := req.GetBody()
	raw, _ := io.ReadAll(rb)
	pr, _ := openai.ParseRequest(raw)
	m, _ := openai.ParseMessage(pr.Messages[len(pr.Messages)-1])
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	buf := &bytes.Buffer{}
	t.mu.Lock()
	t.body[m.Content] = buf
	t.mu.Unlock()
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(resp.Body, buf), resp.Body}
	return resp, nil
}

// simStamps returns the simulator's send stamps of the output events of a recorded stream.
func simStamps(body []byte) []int64 {
	var out []int64
	dec := openai.NewDecoder(bytes.NewReader(body))
	var c openai.Chunk
	for {
		ev, err := dec.Next()
		if err != nil || ev.Done {
			return out
		}
		if openai.ParseChunk(ev.Data, &c) != nil || !c.HasOutput() {
			continue
		}
		var s struct {
			Stamp int64 `json:"llmtape_sent_unix_ns"`
		}
		_ = json.Unmarshal(ev.Data, &s)
		out = append(out, s.Stamp)
	}
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(p/100*float64(len(s))))]
}

// BenchmarkMeasurementError compares, event by event, when the replayer saw each output event
// with when the simulator wrote it (--stamp), at 200 concurrent streams (--ttft 50ms --itl
// 10ms, 50 tokens). ttft_err is the first event's error; itl_err is the error of each gap.
func BenchmarkMeasurementError(b *testing.B) {
	const streams, tokens = 200, 50
	url := simtest.StartChild(b, sim.Config{TTFT: 50 * time.Millisecond, ITL: 10 * time.Millisecond,
		Stamp: true, Tokenizer: "approx", OutputLen: sim.LenRange{Min: tokens, Max: tokens},
		MaxRunning: streams}).URL
	st := benchStore(b, streams, 1, 0, 0, tokens)
	var ttftErr, itlErr, eventErr []float64
	b.ReportAllocs()
	for b.Loop() {
		tee := &teeTransport{base: &http.Transport{MaxIdleConnsPerHost: streams, DisableCompression: true},
			body: map[string]*bytes.Buffer{}}
		r, err := replay.New(st, replay.Config{Target: url, Arrival: replay.ArrivalAll,
			Client: &http.Client{Transport: tee}})
		if err != nil {
			b.Fatal(err)
		}
		rep, err := r.Run(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		started := rep.Run.Started
		err = st.Results(rep.Run.ID, func(res *tape.Result) error {
			buf := tee.body[fmt.Sprintf("bench %d %d", res.Conversation, res.Turn)]
			if buf == nil || res.ErrorClass != "" {
				return fmt.Errorf("result %d: %s %s", res.Seq, res.ErrorClass, res.Error)
			}
			stamps := simStamps(buf.Bytes())
			if len(stamps) != len(res.Chunks) {
				return fmt.Errorf("result %d: %d chunks, %d stamped events", res.Seq, len(res.Chunks), len(stamps))
			}
			for i, c := range res.Chunks {
				seen := started.Add(res.Sent + c.Offset).UnixNano()
				e := float64(seen-stamps[i]) / 1e6
				eventErr = append(eventErr, e)
				if i == 0 {
					ttftErr = append(ttftErr, e)
				} else {
					ours := c.Offset - res.Chunks[i-1].Offset
					truth := time.Duration(stamps[i] - stamps[i-1])
					itlErr = append(itlErr, float64((ours-truth).Abs())/1e6)
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(pct(ttftErr, 50), "ttft_err_p50_ms")
	b.ReportMetric(pct(ttftErr, 99), "ttft_err_p99_ms")
	b.ReportMetric(pct(itlErr, 50), "itl_err_p50_ms")
	b.ReportMetric(pct(itlErr, 99), "itl_err_p99_ms")
	b.ReportMetric(pct(eventErr, 99), "event_err_p99_ms")
	b.ReportMetric(pct(eventErr, 100), "event_err_max_ms")
	b.ReportMetric(load1(), "load1")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkClientCPU measures the replayer's own CPU time (getrusage of this process; the
// simulator runs in a child) over LLMTAPE_BENCH_REQUESTS (default 20,000) short requests, at
// two output lengths, and solves cpu = a·requests + b·events for the cost per request and per
// stream event. Everything the client does is counted: scheduling, building bodies, reading
// and parsing streams, histograms and writing every result to the store.
// eventsPerStream is the number of SSE events without output the simulator sends per stream:
// the finish reason with the usage, and [DONE].
const eventsPerStream = 2

func BenchmarkClientCPU(b *testing.B) {
	n := envInt("LLMTAPE_BENCH_REQUESTS", 20000)
	url := simtest.StartChild(b, sim.Config{Tokenizer: "approx", OutputLen: sim.LenRange{Min: 1, Max: 1},
		MaxRunning: 0, CacheBlocks: 0}).URL
	type point struct {
		cpu              time.Duration
		requests, events float64
	}
	measure := func(tokens int) point {
		st := benchStore(b, n, 1, 0, 0, tokens)
		r, err := replay.New(st, replay.Config{Target: url, Arrival: replay.ArrivalAll,
			MaxConcurrency: 32, IgnoreEOS: true})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		c0 := simtest.SelfCPU()
		rep, err := r.Run(context.Background())
		c1 := simtest.SelfCPU()
		if err != nil {
			b.Fatal(err)
		}
		if rep.Summary.Requests.OK != n {
			b.Fatalf("%d of %d ok: %v", rep.Summary.Requests.OK, n, rep.Summary.ErrorsByClass)
		}
		// Events: the output events plus the events without output of each stream
		// (eventsPerStream).
		var ev float64
		_ = st.Results(rep.Run.ID, func(res *tape.Result) error {
			ev += float64(len(res.Chunks) + eventsPerStream)
			return nil
		})
		return point{c1 - c0, float64(n), ev}
	}
	var short, long point
	for b.Loop() {
		short = measure(1)
		long = measure(16)
	}
	perEvent := float64(long.cpu-short.cpu) / (long.events - short.events)
	perRequest := (float64(short.cpu) - perEvent*short.events) / short.requests
	b.ReportMetric(float64(short.cpu)/short.requests/1e3, "us_cpu/req_1tok")
	b.ReportMetric(float64(long.cpu)/long.requests/1e3, "us_cpu/req_16tok")
	b.ReportMetric(perRequest/1e3, "us_cpu/request")
	b.ReportMetric(perEvent/1e3, "us_cpu/event")
	b.ReportMetric(load1(), "load1")
}

// BenchmarkOpenLoop offers 1,000 requests/s (single-turn conversations at recorded offsets
// 1 ms apart) for LLMTAPE_BENCH_DURATION (default 5s; the figure is for 60s) and
// reports the schedule lag.
func BenchmarkOpenLoop(b *testing.B) {
	d := envDuration("LLMTAPE_BENCH_DURATION", 5*time.Second)
	const rate = 1000
	url := simtest.StartChild(b, sim.Config{TTFT: 20 * time.Millisecond, ITL: time.Millisecond,
		Tokenizer: "approx", OutputLen: sim.LenRange{Min: 8, Max: 8}, MaxRunning: 0, CacheBlocks: 0}).URL
	n := int(d.Seconds() * rate)
	st := benchStore(b, n, 1, time.Second/rate, 0, 8)
	for b.Loop() {
		r, err := replay.New(st, replay.Config{Target: url})
		if err != nil {
			b.Fatal(err)
		}
		rep, err := r.Run(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		s := rep.Summary
		if s.Requests.OK != n {
			b.Fatalf("%d of %d ok: %v", s.Requests.OK, n, s.ErrorsByClass)
		}
		b.ReportMetric(s.ScheduleLag.P50, "lag_p50_ms")
		b.ReportMetric(s.ScheduleLag.P99, "lag_p99_ms")
		b.ReportMetric(s.ScheduleLag.Max, "lag_max_ms")
		b.ReportMetric(s.Throughput.RequestsPerS, "req/s")
		b.ReportMetric(load1(), "load1")
	}
}

// BenchmarkActiveConversations holds 10,000 conversations active at once (each waits a long
// think time after its first reply) and reports the heap beyond the loaded conversations
// (the message bytes), per conversation and in all.
func BenchmarkActiveConversations(b *testing.B) {
	n := envInt("LLMTAPE_BENCH_CONVERSATIONS", 10000)
	url := simtest.StartChild(b, sim.Config{Tokenizer: "approx", OutputLen: sim.LenRange{Min: 4, Max: 4},
		MaxRunning: 0, CacheBlocks: 0}).URL
	st := benchStore(b, n, 3, 0, time.Hour, 4)
	for b.Loop() {
		runtime.GC()
		var m0, m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m0)
		r, err := replay.New(st, replay.Config{Target: url, Arrival: replay.ArrivalAll,
			MaxConcurrency: 256, MaxConversations: n})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1) // the loaded conversations: message bytes and plans
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := r.Run(ctx); err != nil {
				b.Error(err)
			}
		}()
		for r.Progress().Done < int64(n) {
			time.Sleep(10 * time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&m2)
		active := r.Progress().Active
		cancel()
		<-done
		beyond := float64(m2.HeapInuse+m2.StackInuse) - float64(m1.HeapInuse+m1.StackInuse)
		b.ReportMetric(float64(active), "active")
		b.ReportMetric(float64(m1.HeapInuse-m0.HeapInuse)/1e6, "loaded_MB")
		b.ReportMetric(beyond/1e6, "beyond_MB")
		b.ReportMetric(beyond/float64(n)/1e3, "kB/conversation")
	}
}

// load1 is the machine's 1-minute load average: timing figures mean little when it is well
// above the number of CPUs (other processes take the client's CPU).
func load1() float64 {
	l, _ := strconv.ParseFloat(loadavg(), 64)
	return l
}

// BenchmarkTimerBaseline measures how late the Go runtime wakes a goroutine from a 1 ms timer
// on this machine right now (1,000 concurrent sleepers a second, as the open-loop benchmark
// has): the floor under any schedule lag the replayer can show.
func BenchmarkTimerBaseline(b *testing.B) {
	var late []float64
	var mu sync.Mutex
	for b.Loop() {
		var wg sync.WaitGroup
		for i := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				due := time.Now().Add(time.Duration(i) * time.Millisecond)
				time.Sleep(time.Until(due))
				l := float64(time.Since(due)) / 1e6
				mu.Lock()
				late = append(late, l)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(pct(late, 50), "late_p50_ms")
	b.ReportMetric(pct(late, 99), "late_p99_ms")
	b.ReportMetric(pct(late, 100), "late_max_ms")
	b.ReportMetric(load1(), "load1")
}
