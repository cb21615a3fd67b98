package analyze

import (
	"math/rand/v2"
	"testing"
)

func TestU64TableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tab := newU64Table(4)
	ref := map[uint64]int32{}
	for step := 0; step < 30000; step++ {
		// Small key space, half the keys differing only in the top bit, to force collisions,
		// long probe runs and wrap-around.
		k := uint64(1+rng.IntN(3000)) | uint64(rng.IntN(2))<<63
		v := int32(rng.IntN(1000))
		_, had := ref[k]
		if isNew := tab.put(k, v); isNew == had {
			t.Fatalf("put %d: new=%v, map had=%v", k, isNew, had)
		}
		ref[k] = v
		if step%3000 == 0 {
			if tab.n != len(ref) {
				t.Fatalf("step %d: %d entries, want %d", step, tab.n, len(ref))
			}
			for rk, rv := range ref {
				if v, ok := tab.get(rk); !ok || v != rv {
					t.Fatalf("step %d: get %d = %d %v, want %d", step, rk, v, ok, rv)
				}
			}
		}
	}
}

func TestU64SetMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	s := newU64Set(1)
	ref := map[uint64]bool{}
	for i := 0; i < 20000; i++ {
		k := uint64(1+rng.IntN(20000)) | uint64(rng.IntN(2))<<63
		if isNew := s.add(k); isNew == ref[k] {
			t.Fatalf("add %d: new=%v, map had=%v", k, isNew, ref[k])
		}
		ref[k] = true
	}
	if s.n != len(ref) {
		t.Fatalf("%d keys, want %d", s.n, len(ref))
	}
}
