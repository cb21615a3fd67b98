package metrics

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Percentile is one percentile a Dist holds: Q (99.9), its JSON key ("p999") and the samples
// it needs to mean what it says. The list and the thresholds live here and nowhere else.
type Percentile struct {
	Q   float64 // the percentile, 0-100
	Key string  // the Dist's JSON key and the name of a column or figure: "p999"
	// MinSamples is the fewest samples with which the percentile is shown, gated and judged:
	// 1,000 for p99.9 and 10,000 for p99.99 (as vLLM's benchmark prints them); 0 for the rest.
	// With fewer, Dist still holds a number (the highest ranks), but renderers leave it out
	// and Dist.At reports it as not there.
	MinSamples int64
}

// Percentiles are every percentile a Dist holds, in order.
var Percentiles = []Percentile{
	{Q: 25, Key: "p25"}, {Q: 50, Key: "p50"}, {Q: 75, Key: "p75"}, {Q: 90, Key: "p90"},
	{Q: 95, Key: "p95"}, {Q: 99, Key: "p99"},
	{Q: 99.9, Key: "p999", MinSamples: 1000},
	{Q: 99.99, Key: "p9999", MinSamples: 10000},
}

// TablePercentiles are the percentiles of a distribution table when none are chosen (vLLM's
// summary's 25%, 50%, 75%, 90%, 99%); ShownPercentiles adds p99.9 and p99.99 where the
// samples suffice.
var TablePercentiles = []float64{25, 50, 75, 90, 99}

// PercentileOf returns the Percentile of q (99.9), or false when a Dist does not hold it.
func PercentileOf(q float64) (Percentile, bool) {
	for _, p := range Percentiles {
		if p.Q == q {
			return p, true
		}
	}
	return Percentile{}, false
}

// Label is the percentile as people write it: "p99.9".
func (p Percentile) Label() string { return "p" + strconv.FormatFloat(p.Q, 'f', -1, 64) }

// ParsePercentiles reads a --percentiles list such as "50,90,95,99,99.9" (a leading "p" is
// allowed): each must be one of Percentiles, given once. The empty string is nil, which means
// each table's own default.
func ParsePercentiles(s string) ([]float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []float64
	for _, part := range strings.Split(s, ",") {
		v := strings.TrimPrefix(strings.TrimSpace(part), "p")
		q, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(q) {
			return nil, fmt.Errorf("percentiles %q: %q is not a number (want e.g. 50,90,95,99,99.9)", s, part)
		}
		if _, ok := PercentileOf(q); !ok {
			return nil, fmt.Errorf("percentiles %q: %s is not one of %s", s, strings.TrimSpace(part), percentileList())
		}
		for _, x := range out {
			if x == q {
				return nil, fmt.Errorf("percentiles %q: %s is given twice", s, strings.TrimSpace(part))
			}
		}
		out = append(out, q)
	}
	return out, nil
}

func percentileList() string {
	qs := make([]string, len(Percentiles))
	for i, p := range Percentiles {
		qs[i] = strconv.FormatFloat(p.Q, 'f', -1, 64)
	}
	return strings.Join(qs, ", ")
}

// At returns the percentile q of the distribution and true, or false when the Dist does not
// hold q or has fewer samples than q needs (MinSamples; no samples at all for any q). Read
// percentiles through At wherever a missing one must not pass for 0.
func (d Dist) At(q float64) (float64, bool) {
	p, ok := PercentileOf(q)
	if !ok || d.Count == 0 || d.Count < p.MinSamples {
		return 0, false
	}
	return d.Value(q), true
}

// Value returns the stored percentile q whatever the samples (what JSON holds), 0 for a q
// the Dist does not hold. Prefer At.
func (d Dist) Value(q float64) float64 {
	switch q {
	case 25:
		return d.P25
	case 50:
		return d.P50
	case 75:
		return d.P75
	case 90:
		return d.P90
	case 95:
		return d.P95
	case 99:
		return d.P99
	case 99.9:
		return d.P999
	case 99.99:
		return d.P9999
	}
	return 0
}

// ShownPercentiles are the percentile columns of a table of the dists: chosen (from
// ParsePercentiles) when not nil, else def followed by each percentile with a MinSamples
// that some dist reaches (p99.9 from 1,000 samples, p99.99 from 10,000).
func ShownPercentiles(chosen, def []float64, dists ...Dist) []Percentile {
	var out []Percentile
	if chosen != nil {
		for _, q := range chosen {
			if p, ok := PercentileOf(q); ok {
				out = append(out, p)
			}
		}
		return out
	}
	for _, q := range def {
		if p, ok := PercentileOf(q); ok {
			out = append(out, p)
		}
	}
	for _, p := range Percentiles {
		if p.MinSamples == 0 || containsQ(def, p.Q) {
			continue
		}
		for _, d := range dists {
			if d.Count >= p.MinSamples {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

func containsQ(qs []float64, q float64) bool {
	for _, x := range qs {
		if x == q {
			return true
		}
	}
	return false
}
