package dataset_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// BenchmarkImportMooncake imports the Mooncake conversation trace (12,031 requests, 145 M
// prompt tokens) into a new store with the default (synced) options, and reports the size of
// the store.
func BenchmarkImportMooncake(b *testing.B) {
	data, err := os.ReadFile("testdata/conversation_trace.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var size int64
	for b.Loop() {
		path := filepath.Join(b.TempDir(), "bench.db")
		st, err := tape.Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := dataset.Import(context.Background(), st, "mooncake", bytes.NewReader(data), "conversation_trace.jsonl", dataset.Config{}); err != nil {
			b.Fatal(err)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		size = fi.Size()
	}
	b.ReportMetric(float64(size)/1e6, "store-MB")
}

// BenchmarkParseMooncake parses the trace without writing it.
func BenchmarkParseMooncake(b *testing.B) {
	data, err := os.ReadFile("testdata/conversation_trace.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dataset.Parse(context.Background(), "mooncake", bytes.NewReader(data), "t", dataset.Config{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMaterializeMooncake makes the chat messages of every request of the trace, as a
// replay does: bytes are those of the materialized messages.
func BenchmarkMaterializeMooncake(b *testing.B) {
	f, err := os.Open("testdata/conversation_trace.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	d, err := dataset.Parse(context.Background(), "mooncake", f, "t", dataset.Config{})
	if err != nil {
		b.Fatal(err)
	}
	var syn []*tape.Synthetic
	for _, c := range d.Conversations {
		for _, t := range c.Turns {
			syn = append(syn, t.Request.Synthetic)
		}
	}
	m := synth.Default()
	var total int64
	for _, s := range syn {
		msgs, _ := m.Messages(s)
		total += int64(len(msgs[0]))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range syn {
			if _, err := m.Messages(s); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkExportMooncake exports the imported trace back as Mooncake JSONL.
func BenchmarkExportMooncake(b *testing.B) {
	st := mustStore(b)
	f, err := os.Open("testdata/conversation_trace.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec, _, err := dataset.Import(context.Background(), st, "mooncake", f, "t", dataset.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dataset.Export(context.Background(), st, rec.ID, io.Discard, dataset.ExportConfig{Format: "mooncake"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExportResults exports a run of 1,000,000 results ($LLMTAPE_BENCH_RESULTS for
// another number) as results JSON lines, with every ITL sample: 100,000 conversations of 10
// turns, replies of 100-300 tokens in 16 events, as the replayer stores them. Target: under
// 15 s per million results (s/1M-results).
func BenchmarkExportResults(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("LLMTAPE_BENCH_RESULTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("LLMTAPE_BENCH_RESULTS=%q: want a positive number", s)
		}
		n = v
	}
	st, err := tape.Open(filepath.Join(b.TempDir(), "results.db"), &tape.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	run := benchRun(b, st, n)
	for _, c := range []struct {
		name string
		cfg  dataset.ExportConfig
	}{
		{"jsonl", dataset.ExportConfig{Format: dataset.FormatResults}},
		{"no-itl", dataset.ExportConfig{Format: dataset.FormatResults, NoITL: true}},
		{"csv", dataset.ExportConfig{Format: dataset.FormatResultsCSV}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var w countWriter
			b.ReportAllocs()
			for b.Loop() {
				w = 0
				stats, err := dataset.ExportRun(context.Background(), st, run, &w, c.cfg)
				if err != nil {
					b.Fatal(err)
				}
				if stats.Turns != n {
					b.Fatalf("%d results exported, want %d", stats.Turns, n)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e6/float64(n), "s/1M-results")
			b.ReportMetric(float64(w)/float64(n), "bytes/result")
		})
	}
}

// countWriter counts what is written to it.
type countWriter int64

func (w *countWriter) Write(p []byte) (int, error) {
	*w += countWriter(len(p))
	return len(p), nil
}

// benchRun writes a recording of n/10 conversations and a run of n results through the
// batched writer, and returns the run's id.
func benchRun(b *testing.B, st *tape.Store, n int) uint64 {
	b.Helper()
	rec := &tape.Recording{Name: "bench", Source: "generate"}
	if err := st.CreateRecording(rec); err != nil {
		b.Fatal(err)
	}
	run := &tape.Run{Name: "bench", Recording: rec.ID}
	if err := st.CreateRun(run); err != nil {
		b.Fatal(err)
	}
	w := st.NewWriter(tape.WriterConfig{MaxBatch: 20_000})
	rng := rand.New(rand.NewPCG(15, 1))
	const turns = 10
	var convs []uint64
	for i := range (n + turns - 1) / turns {
		c := &tape.Conversation{ID: st.NextConversationID(), Recording: rec.ID, Arrival: time.Duration(i) * 50 * time.Millisecond}
		convs = append(convs, c.ID)
		if err := w.Put(c); err != nil {
			b.Fatal(err)
		}
	}
	chunks := make([]tape.Chunk, 16)
	for i := range n {
		out := 100 + rng.IntN(200)
		ttft := time.Duration(50+rng.IntN(200)) * time.Millisecond
		for c := range chunks {
			chunks[c] = tape.Chunk{Offset: ttft + time.Duration(c*out/16)*15*time.Millisecond + time.Duration(rng.IntN(1000))*time.Microsecond, Tokens: int32(out / 16)}
		}
		sched := time.Duration(i) * time.Millisecond
		res := &tape.Result{Run: run.ID, Seq: uint64(i + 1), Conversation: convs[i/turns], Turn: i % turns, Scheduled: sched,
			Sent: sched + time.Duration(rng.IntN(500))*time.Microsecond, TTFT: ttft, Chunks: chunks,
			E2E: chunks[15].Offset + time.Millisecond, InputTokens: 300 + i%turns*250, OutputTokens: out,
			TokenSource: tape.TokensServer, Status: 200}
		if err := w.Put(res); err != nil { // encoded in this goroutine: chunks may be reused
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return run.ID
}
