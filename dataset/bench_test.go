package dataset_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

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
