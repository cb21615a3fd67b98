package analyze

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkU64TableChurn is the LRU's pattern: a fixed population, one insert and one delete
// of the oldest key per step.
func BenchmarkU64TableChurn(b *testing.B) {
	const pop = 65536
	rng := rand.New(rand.NewPCG(1, 1))
	t := newU64Table(16)
	ring := make([]uint64, pop)
	for i := range ring {
		ring[i] = mix64(rng.Uint64())
		t.put(ring[i], int32(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := &ring[i%pop]
		t.del(*k)
		*k = mix64(rng.Uint64())
		t.put(*k, 1)
	}
}
