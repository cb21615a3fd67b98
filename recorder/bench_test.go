package recorder_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
	"github.com/llmtape/llmtape/tape"
)

// shortExchanges makes n exchanges of 4-turn conversations with 8-event streamed replies, as
// a chat client would send them: turn k echoes the replies of turns 0..k-1.
func shortExchanges(n int) []*proxy.Exchange {
	xs := make([]*proxy.Exchange, 0, n)
	at := t0
	for c := 0; len(xs) < n; c++ {
		msgs := []map[string]any{msg("system", "You are a helpful assistant.")}
		for k := 0; k < 4 && len(xs) < n; k++ {
			msgs = append(msgs, msg("user", fmt.Sprintf("conversation %d, question %d: what next?", c, k)))
			reply := fmt.Sprintf("answer %d %d one two three four five six", c, k)
			xs = append(xs, exchange(at, chatPath, chatBody(msgs...), 200, "text/event-stream", sseOf(reply, true)))
			msgs = append(msgs, msg("assistant", reply))
			at = at.Add(time.Millisecond)
		}
	}
	// Interleave conversations: 64 of them at a time, one turn each in turn.
	out := make([]*proxy.Exchange, 0, n)
	const width = 64 * 4
	for base := 0; base < len(xs); base += width {
		end := min(base+width, len(xs))
		for k := 0; k < 4; k++ {
			for i := base + k; i < end; i += 4 {
				out = append(out, xs[i])
			}
		}
	}
	return out
}

// BenchmarkRecorder measures how many short exchanges a second the recorder parses, stitches
// and commits (to a store on disk with fsync), capturing as fast as it keeps up: the figure
// that matters is exchanges/s with not_recorded 0.
func BenchmarkRecorder(b *testing.B) {
	b.ReportAllocs()
	xs := shortExchanges(b.N)
	s, err := tape.Open(filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := mustNew(b, s, recorder.Config{})
	b.ResetTimer()
	start := time.Now()
	feed(r, xs, false)
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	st := r.Stats()
	if st.Recorded != uint64(b.N) {
		b.Fatalf("recorded %d of %d (%+v)", st.Recorded, b.N, st)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "exchanges/s")
	b.ReportMetric(float64(st.NotRecorded), "not_recorded")
}

// feed captures xs, pacing like live traffic that the recorder keeps up with (a client cannot
// outrun the recorder by more than the queue): the queue stays at most half full. With wait,
// it then waits until the queue is empty.
func feed(r *recorder.Recorder, xs []*proxy.Exchange, wait bool) {
	for _, x := range xs {
		for r.Stats().QueueDepth > recorder.DefaultQueueSize/2 {
			runtime.Gosched()
		}
		r.Capture(x)
	}
	for wait && r.Stats().QueueDepth > 0 {
		runtime.Gosched()
	}
}

// BenchmarkStitchManyOpen measures one continuation while 10,000 conversations are open: the
// index makes it cost O(messages), not O(conversations).
func BenchmarkStitchManyOpen(b *testing.B) {
	b.ReportAllocs()
	s, err := tape.Open(filepath.Join(b.TempDir(), "bench.db"), &tape.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := mustNew(b, s, recorder.Config{})
	all := shortExchanges(10000*4 + b.N)
	warm, xs := all[:10000*4], all[10000*4:]
	feed(r, warm, true)
	b.ResetTimer()
	start := time.Now()
	feed(r, xs, true)
	el := time.Since(start)
	b.StopTimer()
	open := r.Stats().Open
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "exchanges/s")
	b.ReportMetric(float64(open), "open")
}

// BenchmarkRebuild measures Start on a store that holds 2,000 recorded conversations of 4 turns:
// the stitching index is rebuilt from the store each time.
func BenchmarkRebuild(b *testing.B) {
	b.ReportAllocs()
	s, err := tape.Open(filepath.Join(b.TempDir(), "bench.db"), &tape.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := mustNew(b, s, recorder.Config{})
	feed(r, shortExchanges(2000*4), false)
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		r := mustNew(b, s, recorder.Config{})
		if open := r.Stats().Open; open != 2000 {
			b.Fatalf("%d conversations open after rebuild, want 2000", open)
		}
		b.StopTimer()
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRecordThroughProxy drives short 4-turn conversations through the real proxy to an
// instant simulator with 32 concurrent clients and reports recorded exchanges/s and how many
// were not recorded (the target: at least 1,000/s with none lost).
func BenchmarkRecordThroughProxy(b *testing.B) {
	b.ReportAllocs()
	s, err := tape.Open(filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	url := simtest.MustStart(b, sim.Config{Seed: 3, OutputLen: sim.LenRange{Min: 8, Max: 8}, Tokenizer: "approx"}).URL()
	st := startStack(b, s, url, recorder.Config{})
	convs := make([][]string, (b.N+3)/4)
	for i := range convs {
		for k := range 4 {
			convs[i] = append(convs[i], fmt.Sprintf("client question %d of conversation %d", k, i))
		}
	}
	d := &driver{st: st, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	b.ResetTimer()
	start := time.Now()
	d.run(b, convs, 32)
	stats := st.stop()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(stats.Recorded)/el.Seconds(), "exchanges/s")
	b.ReportMetric(float64(stats.NotRecorded), "not_recorded")
	if stats.Recorded != uint64(len(convs)*4) {
		b.Errorf("recorded %d of %d: %+v", stats.Recorded, len(convs)*4, stats)
	}
}
