// Package randx draws from the distributions that math/rand/v2 lacks, for the seeded
// generators of dataset (synthetic arrivals) and replay (gamma arrival schedules), and holds
// the one 64-bit mixer (SplitMix64) that hashes ids for sharding, sampling, synthetic block
// ids and prefix keys. Every draw is a pure function of the generator's stream, so a seed
// always gives the same values.
package randx

import (
	"math"
	"math/rand/v2"
)

// Gamma draws from Gamma(shape, 1), whose mean is shape and coefficient of variation
// 1/√shape, by Marsaglia and Tsang's method. A shape below 1 is boosted:
// Gamma(k) = Gamma(k+1) · U^(1/k), drawing the Gamma(k+1) variate before U. Shape must be
// above 0.
func Gamma(rng *rand.Rand, shape float64) float64 {
	if shape < 1 {
		return Gamma(rng, shape+1) * math.Pow(rng.Float64(), 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// golden is SplitMix64's increment, 2^64 divided by the golden ratio.
const golden = 0x9e3779b97f4a7c15

// SplitMix64 is the output function of Steele, Lea and Flood's SplitMix64 generator for the
// state x+golden: a bijective, well-spread 64-bit hash. Calling it with 0, golden, 2·golden, …
// gives the generator's sequence for seed 0. Its values are part of stored and exported
// data (synthetic block ids, shard choice): they never change.
func SplitMix64(x uint64) uint64 { return Mix64(x + golden) }

// Mix64 is SplitMix64's finaliser alone (MurmurHash3's fmix64 with Stafford's Mix13
// constants), for callers that add their own increment.
func Mix64(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
