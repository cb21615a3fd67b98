package merge_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/llmtape/llmtape/merge"
	"github.com/llmtape/llmtape/tape"
)

// BenchmarkStores merges a store of 500 conversations (2,001 turns with the fork) and a run
// with one result per turn into a new store, as one shard's merge does: figures per merge and
// in turns and results written per second.
func BenchmarkStores(b *testing.B) {
	src := newSource(b, 500, 4)
	src.addRun(b, "bench", func(int) bool { return true })
	dir := b.TempDir()
	b.ReportAllocs()
	b.ResetTimer()
	var st merge.Stats
	for i := range b.N {
		b.StopTimer()
		dst, err := tape.Open(filepath.Join(dir, fmt.Sprintf("dst-%d.db", i)), &tape.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		st, err = merge.Stores(context.Background(), dst, src.s)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = dst.Close()
		b.StartTimer()
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(st.Turns*b.N)/sec, "turns/s")
	b.ReportMetric(float64(st.Results*b.N)/sec, "results/s")
}
