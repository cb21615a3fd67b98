package metrics

import (
	"math"
	"sort"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Dist is a distribution's summary. Latencies are in milliseconds; token counts in tokens.
// The zero Dist (Count 0) means no samples. Every percentile of Percentiles is computed from
// any number of samples; those with a MinSamples the Count does not reach are there in JSON
// but not meaningful, and Dist.At reports them as missing.
type Dist struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"`
	Min   float64 `json:"min"`
	P25   float64 `json:"p25"`
	P50   float64 `json:"p50"`
	P75   float64 `json:"p75"`
	P90   float64 `json:"p90"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`  // read through At: meaningful from 1,000 samples
	P9999 float64 `json:"p9999"` // read through At: meaningful from 10,000 samples
	Max   float64 `json:"max"`
}

// HistDist summarizes a histogram of microseconds in milliseconds. Percentiles are the HDR
// histogram's (the highest value equivalent to the rank's sample, within 0.1%). A nil or empty
// histogram gives the zero Dist.
func HistDist(h *hdrhistogram.Histogram) Dist {
	if h == nil || h.TotalCount() == 0 {
		return Dist{}
	}
	ps := h.ValueAtPercentilesSlice([]float64{25, 50, 75, 90, 95, 99, 99.9, 99.99})
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return Dist{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		Std:   h.StdDev() / 1000,
		Min:   ms(h.Min()),
		P25:   ms(ps[0]),
		P50:   ms(ps[1]),
		P75:   ms(ps[2]),
		P90:   ms(ps[3]),
		P95:   ms(ps[4]),
		P99:   ms(ps[5]),
		P999:  ms(ps[6]),
		P9999: ms(ps[7]),
		Max:   ms(h.Max()),
	}
}

// ValuesDist summarizes values exactly: population standard deviation and percentiles by
// linear interpolation between closest ranks (numpy's default, as in vLLM's benchmark). v is
// not changed. NaN values are ignored.
func ValuesDist(v []float64) Dist {
	s := make([]float64, 0, len(v))
	for _, x := range v {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return Dist{}
	}
	sort.Float64s(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	mean := sum / float64(len(s))
	var dev float64
	for _, x := range s {
		dev += (x - mean) * (x - mean)
	}
	q := func(p float64) float64 {
		r := p / 100 * float64(len(s)-1)
		lo := int(math.Floor(r))
		hi := int(math.Ceil(r))
		return s[lo] + (s[hi]-s[lo])*(r-float64(lo))
	}
	return Dist{
		Count: int64(len(s)),
		Mean:  mean,
		Std:   math.Sqrt(dev / float64(len(s))),
		Min:   s[0],
		P25:   q(25),
		P50:   q(50),
		P75:   q(75),
		P90:   q(90),
		P95:   q(95),
		P99:   q(99),
		P999:  q(99.9),
		P9999: q(99.99),
		Max:   s[len(s)-1],
	}
}
