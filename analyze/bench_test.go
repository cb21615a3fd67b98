package analyze_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

// benchSize is the number of turns (and results) the benchmarks generate: 1,000,000 unless
// $LLMTAPE_BENCH_TURNS says otherwise.
func benchSize(b *testing.B) int {
	n := 1_000_000
	if s := os.Getenv("LLMTAPE_BENCH_TURNS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("LLMTAPE_BENCH_TURNS=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

const benchTurnsPerConv = 10

// genStore writes a recording of n turns (conversations of 10 turns, each adding one user
// message, replies of 100-300 tokens in 16 chunks) and, when results is set, a run replaying
// every turn with its histograms and summary, as the replayer stores them.
func genStore(b *testing.B, n int, results bool) (path string, run uint64) {
	b.Helper()
	path = filepath.Join(b.TempDir(), "bench.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rec := &tape.Recording{Name: "bench", Source: "generate", Started: t0}
	if err := s.CreateRecording(rec); err != nil {
		b.Fatal(err)
	}
	var r *tape.Run
	if results {
		r = &tape.Run{Name: "bench", Recording: rec.ID, Started: t0.Add(time.Hour)}
		if err := s.CreateRun(r); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	var acc metrics.Accumulator
	const batch = 20_000
	seq := uint64(0)
	for done := 0; done < n; {
		err := s.Update(func(tx *tape.Tx) error {
			for i := 0; i < batch && done < n; i++ {
				conv := uint64(done/benchTurnsPerConv + 1)
				idx := done % benchTurnsPerConv
				arrival := time.Duration(conv) * 50 * time.Millisecond
				if idx == 0 {
					if err := tx.PutConversation(&tape.Conversation{ID: conv, Recording: rec.ID, Arrival: arrival, Grouping: tape.GroupPrefix}); err != nil {
						return err
					}
				}
				t := &tape.Turn{Conversation: conv, Index: idx, Match: tape.GroupPrefix}
				t.Request = tape.Request{Method: "POST", Path: "/v1/chat/completions", Model: "bench", Stream: true}
				if idx == 0 {
					// A system prompt shared by every conversation, then the first question.
					t.Request.Messages = []json.RawMessage{json.RawMessage(`{"role":"system","content":"s"}`), json.RawMessage(`{"role":"user","content":"q"}`)}
					t.Request.MessageMeta = []tape.MessageMeta{{Tokens: 300, Hash: 1}, {Tokens: int32(40 + rng.IntN(40)), Hash: rng.Uint64()}}
				} else {
					t.Request.Kept = 2*idx + 1
					t.Request.Messages = []json.RawMessage{json.RawMessage(`{"role":"user","content":"q"}`)}
					t.Request.MessageMeta = []tape.MessageMeta{{Tokens: int32(40 + rng.IntN(40)), Hash: rng.Uint64()}}
				}
				out := 100 + rng.IntN(200)
				t.Response = tape.Response{Status: 200, Content: "r" + strconv.Itoa(done), Streamed: true, Events: 17}
				t.Tokens = tape.Tokens{Prompt: 300 + idx*250, Completion: out, Source: tape.TokensServer}
				ttft := time.Duration(50+rng.IntN(200)) * time.Millisecond
				t.Timing.Start = t0.Add(arrival + time.Duration(idx)*20*time.Second)
				t.Timing.Chunks = make([]tape.Chunk, 16)
				for c := range t.Timing.Chunks {
					t.Timing.Chunks[c] = tape.Chunk{Offset: ttft + time.Duration(c)*time.Duration(out/16)*15*time.Millisecond, Tokens: int32(out / 16)}
				}
				t.Timing.End = t.Timing.Chunks[15].Offset + time.Millisecond
				if err := tx.PutTurn(t); err != nil {
					return err
				}
				if results {
					seq++
					res := &tape.Result{Run: r.ID, Seq: seq, Conversation: conv, Turn: idx,
						Scheduled: arrival, Sent: arrival + time.Millisecond, TTFT: ttft, Chunks: t.Timing.Chunks,
						E2E: t.Timing.End, InputTokens: t.Tokens.Prompt, OutputTokens: out, Status: 200}
					acc.Add(res)
					if err := tx.PutResult(res); err != nil {
						return err
					}
				}
				done++
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if results {
		sum := acc.Summary(time.Duration(n/benchTurnsPerConv)*50*time.Millisecond, metrics.SLO{})
		r.Summary, _ = json.Marshal(sum)
		if r.Histograms, err = acc.Set().Encode(); err != nil {
			b.Fatal(err)
		}
		r.Ended = r.Started.Add(time.Duration(sum.Duration * float64(time.Second)))
		if err := s.UpdateRun(r); err != nil {
			b.Fatal(err)
		}
		return path, r.ID
	}
	return path, rec.ID
}

// resetPeakRSS releases what the setup left behind and clears the process's peak resident
// set size (Linux), so that peakRSS measures only what follows.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// procStatus returns a /proc/self/status field in MB (0 when unknown).
func procStatus(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb / 1024
		}
	}
	return 0
}

// peakRSS returns the peak resident set size in MB since the last reset. It includes the pages
// of the store file that bbolt maps and the scan touched (page cache, not process memory).
func peakRSS() float64 { return procStatus("VmHWM") }

// anonSampler tracks the peak of anonymous resident memory (the process's own: heap, stacks),
// which excludes the store's mapped file pages, by sampling every 20 ms.
type anonSampler struct {
	stop chan struct{}
	done chan float64
}

func sampleAnon() *anonSampler {
	s := &anonSampler{stop: make(chan struct{}), done: make(chan float64)}
	go func() {
		peak := 0.0
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, procStatus("RssAnon"))
			select {
			case <-s.stop:
				s.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *anonSampler) peak() float64 {
	close(s.stop)
	return <-s.done
}

// cpuSeconds returns the process's user plus system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func openBench(b *testing.B, path string) *tape.Store {
	s, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAnalyze profiles a recording of 1,000,000 turns with both default block sizes.
// Target: under 15 s and 1 GB.
func BenchmarkAnalyze(b *testing.B) {
	n := benchSize(b)
	path, rec := genStore(b, n, false)
	s := openBench(b, path)
	defer s.Close()
	b.ReportAllocs()
	resetPeakRSS()
	anon := sampleAnon()
	b.ResetTimer()
	start, cpu := time.Now(), cpuSeconds()
	for i := 0; i < b.N; i++ {
		p, err := analyze.Analyze(context.Background(), s, rec, analyze.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if p.Turns != n {
			b.Fatalf("turns = %d, want %d", p.Turns, n)
		}
	}
	b.StopTimer()
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/analyze")
	b.ReportMetric((cpuSeconds()-cpu)/float64(b.N), "cpu-s/analyze")
	b.ReportMetric(peakRSS(), "peak-RSS-MB")
	b.ReportMetric(anon.peak(), "peak-anon-MB")
	if st, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "store-MB")
	}
}

// BenchmarkReport reports a run of 1,000,000 results from its stored histograms and summary
// (target: under 3 s and 1 GB), and with --by conversation, which reads every result.
func BenchmarkReport(b *testing.B) {
	n := benchSize(b)
	path, runID := genStore(b, n, true)
	s := openBench(b, path)
	defer s.Close()
	for _, c := range []struct {
		name string
		cfg  analyze.ReportConfig
	}{{"stored", analyze.ReportConfig{}}, {"by-conversation", analyze.ReportConfig{ByConversation: true}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			resetPeakRSS()
			anon := sampleAnon()
			start, cpu := time.Now(), cpuSeconds()
			for i := 0; i < b.N; i++ {
				run, err := s.FindRun(strconv.FormatUint(runID, 10))
				if err != nil {
					b.Fatal(err)
				}
				rep, err := analyze.BuildReport(context.Background(), s, []*tape.Run{run}, c.cfg)
				if err != nil {
					b.Fatal(err)
				}
				if rep.Requests.Total != n {
					b.Fatalf("requests = %d, want %d", rep.Requests.Total, n)
				}
			}
			b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/report")
			b.ReportMetric((cpuSeconds()-cpu)/float64(b.N), "cpu-s/report")
			b.ReportMetric(peakRSS(), "peak-RSS-MB")
			b.ReportMetric(anon.peak(), "peak-anon-MB")
		})
	}
}
