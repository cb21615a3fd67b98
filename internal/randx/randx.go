// Package randx draws from the distributions that math/rand/v2 lacks, for the seeded
// generators of dataset (synthetic arrivals) and replay (gamma arrival schedules). Every draw
// is a pure function of the generator's stream, so a seed always gives the same values.
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
