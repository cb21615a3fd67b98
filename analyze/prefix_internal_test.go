package analyze

import (
	"container/list"
	"math/rand/v2"
	"testing"
)

// naiveLRU is the obvious LRU of a token budget, to check the optimized one against.
type naiveLRU struct {
	cap, used int64
	l         *list.List
	m         map[uint64]*list.Element
}

type naiveEntry struct {
	k uint64
	n int64
}

func (c *naiveLRU) add(keys []uint64, sizes []int64) (hit int64) {
	run := true
	for i, k := range keys {
		if _, ok := c.m[k]; ok && run {
			hit += sizes[i]
		} else {
			run = false
		}
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if e, ok := c.m[keys[i]]; ok {
			c.l.MoveToFront(e)
			continue
		}
		if sizes[i] > c.cap {
			continue
		}
		for c.used+sizes[i] > c.cap {
			e := c.l.Back()
			c.l.Remove(e)
			delete(c.m, e.Value.(naiveEntry).k)
			c.used -= e.Value.(naiveEntry).n
		}
		c.m[keys[i]] = c.l.PushFront(naiveEntry{keys[i], sizes[i]})
		c.used += sizes[i]
	}
	return hit
}

// TestReuseSimMatchesNaive drives random conversations (shared heads, kept prefixes,
// regenerations that keep fewer messages) through the optimized simulator and a naive one
// that looks up every block.
func TestReuseSimMatchesNaive(t *testing.T) {
	for _, slack := range []int{4096, 0} {
		old := reindexSlack
		reindexSlack = slack
		testReuseSimMatchesNaive(t)
		reindexSlack = old
	}
}

func testReuseSimMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, bs := range []int{3, 7, 16, 64} {
		for _, budget := range []int64{10, 100, 1000, 1 << 30} {
			sim := newReuseSim(bs, true, budget)
			naive := &naiveLRU{cap: budget, l: list.New(), m: map[uint64]*list.Element{}}
			seen := map[uint64]bool{}
			var wantHit, wantLRU int64
			convs := make([]*prompt, 8)
			for i := range convs {
				convs[i] = &prompt{}
			}
			for step := 0; step < 250; step++ {
				p := convs[rng.IntN(len(convs))]
				kept := len(p.segs) + 1
				if rng.IntN(4) == 0 {
					kept = rng.IntN(kept + 1)
				}
				var added []Segment
				if len(p.segs) == 0 || kept == 0 {
					added = append(added, Segment{Tokens: int64(1 + rng.IntN(40)), Hash: uint64(rng.IntN(3))})
				}
				for n := rng.IntN(3); n >= 0; n-- {
					added = append(added, Segment{Tokens: int64(rng.IntN(50)), Hash: rng.Uint64()})
				}
				p.apply(kept, added, false, Segment{Tokens: int64(rng.IntN(30)), Hash: rng.Uint64()})
				// Naive: every block looked up.
				sim.add(p)
				keys, sizes := append([]uint64(nil), sim.keys...), append([]int64(nil), sim.lengths...)
				run := true
				for i, k := range keys {
					if seen[k] && run {
						wantHit += sizes[i]
					} else {
						run = false
					}
					seen[k] = true
				}
				wantLRU += naive.add(keys, sizes)
				p.counted = true
			}
			got := sim.result()
			if got.HitTokens != wantHit || got.LRUHitTokens != wantLRU {
				t.Errorf("block %d budget %d: hit %d lru %d, want %d %d", bs, budget, got.HitTokens, got.LRUHitTokens, wantHit, wantLRU)
			}
		}
	}
}
