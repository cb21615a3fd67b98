package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Distribution is a random distribution of vLLM's generation config:
//
//	{"distribution": "constant", "value": V}
//	{"distribution": "uniform", "min": A, "max": B}           integers inclusive when A and B are
//	{"distribution": "lognormal", "average": M [, "median_ratio": R] [, "max": X]}
//	{"distribution": "lognormal", "mean": MU, "sigma": S [, "max": X]}
//	{"distribution": "zipf", "alpha": A [, "max": X]}
//	{"distribution": "poisson", "alpha": L [, "max": X]}
//
// The semantics are vLLM's (benchmarks/multi_turn/bench_dataset.py): a lognormal given by
// its average is sampled with mu = ln(M*R), sigma = sqrt(2 ln(1/R)) (R defaults to 0.85), and
// each batch of samples is scaled so that its mean is exactly M, before the cap at max; zipf
// and poisson samples are capped at max (not truncated). A Distribution may also be built in
// code: set Kind and the fields of its kind (a lognormal by Average needs no Mean and Sigma).
type Distribution struct {
	Kind        string  // constant, uniform, lognormal, zipf or poisson
	Value       float64 // constant
	Min, Max    float64 // uniform; Max is also the cap of lognormal, zipf and poisson (0: none)
	Integer     bool    // uniform: min and max were both integers
	Average     float64 // lognormal by average (0 when mean and sigma are given)
	MedianRatio float64 // lognormal by average; default 0.85
	Mean, Sigma float64 // lognormal: of the underlying normal
	Alpha       float64 // zipf exponent (> 1) or poisson mean (≥ 0)
}

// distFields are the JSON fields of a distribution, as numbers kept as written.
type distFields struct {
	Distribution *string         `json:"distribution"`
	Value        json.RawMessage `json:"value"`
	Min          json.RawMessage `json:"min"`
	Max          json.RawMessage `json:"max"`
	Average      json.RawMessage `json:"average"`
	MedianRatio  json.RawMessage `json:"median_ratio"`
	Mean         json.RawMessage `json:"mean"`
	Sigma        json.RawMessage `json:"sigma"`
	Alpha        json.RawMessage `json:"alpha"`
}

// maxSample bounds what a distribution may be asked to produce, so a bad config cannot make
// the generator run away.
const maxSample = 1e9

// num reads an optional number field; ok is false when it is missing or null.
func num(raw json.RawMessage, name string) (v float64, ok bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false, fmt.Errorf("%s: expected a number, got %s", name, kind(raw))
	}
	n := json.Number(raw)
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > maxSample {
		return 0, false, fmt.Errorf("%s: expected a number up to %g, got %s", name, maxSample, n)
	}
	return f, true, nil
}

func isInt(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.ContainsAny(raw, ".eE")
}

// need reads a number field that a distribution of kind must have.
func need(kind string, raw json.RawMessage, name string) (float64, error) {
	v, ok, err := num(raw, name)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%s distribution: missing field %q, expected a number", kind, name)
	}
	return v, nil
}

// distParsers read the fields of each kind of distribution into d; maxv is the "max" field
// (0 when missing), already checked to be > 0 when given for any kind but uniform.
var distParsers = map[string]func(d *Distribution, f *distFields, maxv float64) error{
	"constant":  parseConstant,
	"uniform":   parseUniform,
	"lognormal": parseLognormal,
	"zipf":      alphaParser(func(a float64) bool { return a > 1 }, "a number > 1 for zipf"),
	"poisson":   alphaParser(func(a float64) bool { return a >= 0 && a <= 1e7 }, "a number from 0 to 1e7 for poisson"),
}

// parseDistribution reads one distribution object.
func parseDistribution(raw json.RawMessage) (*Distribution, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("expected an object {\"distribution\": …}, got %s", kind(raw))
	}
	var f distFields
	if err := json.Unmarshal(raw, &f); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s: expected %s, got %s", te.Field, typeName(te.Type.String()), te.Value)
		}
		return nil, fmt.Errorf("malformed JSON: %v", err)
	}
	if f.Distribution == nil {
		return nil, errors.New(`missing field "distribution", expected one of constant, uniform, lognormal, zipf, poisson`)
	}
	d := &Distribution{Kind: *f.Distribution}
	maxv, hasMax, err := num(f.Max, "max")
	if err != nil {
		return nil, err
	}
	if hasMax && maxv <= 0 && d.Kind != "uniform" {
		return nil, fmt.Errorf("max: expected a number > 0, got %s", f.Max)
	}
	parse, ok := distParsers[d.Kind]
	if !ok {
		return nil, fmt.Errorf("distribution: unknown %q, expected one of constant, uniform, lognormal, zipf, poisson", d.Kind)
	}
	if err := parse(d, &f, maxv); err != nil {
		return nil, err
	}
	return d, nil
}

func parseConstant(d *Distribution, f *distFields, _ float64) error {
	var err error
	if d.Value, err = need(d.Kind, f.Value, "value"); err != nil {
		return err
	}
	if d.Value < 0 {
		return fmt.Errorf("value: expected a number ≥ 0, got %s", f.Value)
	}
	return nil
}

func parseUniform(d *Distribution, f *distFields, _ float64) error {
	var err error
	if d.Min, err = need(d.Kind, f.Min, "min"); err != nil {
		return err
	}
	if d.Max, err = need(d.Kind, f.Max, "max"); err != nil {
		return err
	}
	if d.Min <= 0 {
		return fmt.Errorf("min: expected a number > 0, got %s", f.Min)
	}
	if d.Min > d.Max {
		return fmt.Errorf("max: expected a number ≥ min (%s), got %s", f.Min, f.Max)
	}
	d.Integer = isInt(f.Min) && isInt(f.Max)
	return nil
}

// parseLognormal reads a lognormal given by its average (and median ratio) or by the mean and
// sigma of the underlying normal.
func parseLognormal(d *Distribution, f *distFields, maxv float64) error {
	d.Max = maxv
	var has bool
	var err error
	if d.Average, has, err = num(f.Average, "average"); err != nil {
		return err
	}
	if has {
		return lognormalByAverage(d, f)
	}
	const want = "lognormal distribution: expected average, or mean and sigma"
	if d.Mean, err = need(d.Kind, f.Mean, "mean"); err != nil {
		return errors.New(want)
	}
	if d.Sigma, err = need(d.Kind, f.Sigma, "sigma"); err != nil {
		return errors.New(want)
	}
	if d.Mean <= 0 || d.Sigma < 0 {
		return fmt.Errorf("lognormal distribution: expected mean > 0 and sigma ≥ 0, got mean %s and sigma %s", f.Mean, f.Sigma)
	}
	if d.Mean > 40 || d.Sigma > 10 {
		return fmt.Errorf("lognormal distribution: mean %s, sigma %s: too large (mean ≤ 40, sigma ≤ 10)", f.Mean, f.Sigma)
	}
	return nil
}

// lognormalByAverage reads the median ratio of a lognormal given by its average, and sets
// the normal's mean and sigma as vLLM does.
func lognormalByAverage(d *Distribution, f *distFields) error {
	if len(f.Mean) > 0 || len(f.Sigma) > 0 {
		return errors.New("lognormal distribution: give either average (and median_ratio) or mean and sigma, not both")
	}
	if d.Average < 1 {
		return fmt.Errorf("average: expected a number ≥ 1, got %s", f.Average)
	}
	d.MedianRatio = 0.85
	if r, ok, err := num(f.MedianRatio, "median_ratio"); err != nil {
		return err
	} else if ok {
		if r <= 0 || r >= 1 {
			return fmt.Errorf("median_ratio: expected a number in (0, 1), got %s", f.MedianRatio)
		}
		d.MedianRatio = r
	}
	d.Mean = math.Log(d.Average * d.MedianRatio)
	d.Sigma = math.Sqrt(2 * math.Log(1/d.MedianRatio))
	return nil
}

// alphaParser reads the alpha of a zipf or poisson distribution, which ok must accept (want
// says what it accepts).
func alphaParser(ok func(alpha float64) bool, want string) func(d *Distribution, f *distFields, maxv float64) error {
	return func(d *Distribution, f *distFields, maxv float64) error {
		d.Max = maxv
		var err error
		if d.Alpha, err = need(d.Kind, f.Alpha, "alpha"); err != nil {
			return err
		}
		if !ok(d.Alpha) {
			return fmt.Errorf("alpha: expected %s, got %s", want, f.Alpha)
		}
		return nil
	}
}

// Sample returns n samples.
func (d *Distribution) Sample(rng *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	switch d.Kind {
	case "constant":
		for i := range out {
			out[i] = d.Value
		}
	case "uniform":
		d.sampleUniform(rng, out)
	case "lognormal":
		d.sampleLognormal(rng, out)
	case "zipf":
		z := rand.NewZipf(rng, d.Alpha, 1, math.MaxUint32)
		for i := range out {
			out[i] = float64(z.Uint64() + 1)
		}
	case "poisson":
		for i := range out {
			out[i] = poisson(rng, d.Alpha)
		}
	}
	if d.Kind != "uniform" && d.Kind != "constant" && d.Max > 0 {
		for i := range out {
			out[i] = math.Min(out[i], d.Max)
		}
	}
	for i := range out {
		out[i] = math.Min(out[i], maxSample)
	}
	return out
}

// sampleUniform fills out with uniform samples: integers from Min to Max inclusive when both
// were integers, else reals.
func (d *Distribution) sampleUniform(rng *rand.Rand, out []float64) {
	for i := range out {
		if d.Integer {
			lo, hi := int64(d.Min), int64(d.Max)
			out[i] = float64(lo + rng.Int64N(hi-lo+1))
		} else {
			out[i] = d.Min + rng.Float64()*(d.Max-d.Min)
		}
	}
}

// sampleLognormal fills out with lognormal samples; by average, the batch is scaled so that
// its mean is exactly Average (as vLLM does).
func (d *Distribution) sampleLognormal(rng *rand.Rand, out []float64) {
	mu, sigma := d.Mean, d.Sigma
	if d.Average > 0 {
		// By average (also for a Distribution built in code without Mean and Sigma).
		r := d.MedianRatio
		if !(r > 0 && r < 1) {
			r = 0.85
		}
		mu, sigma = math.Log(d.Average*r), math.Sqrt(2*math.Log(1/r))
	}
	if d.Average <= 0 && mu == 0 && sigma == 0 {
		return // the zero lognormal (only when built in code): all zeros
	}
	var sum float64
	for i := range out {
		out[i] = math.Exp(mu + sigma*rng.NormFloat64())
		sum += out[i]
	}
	if d.Average > 0 && sum > 0 {
		scale := d.Average / (sum / float64(len(out)))
		for i := range out {
			out[i] *= scale
		}
	}
}

// Ints returns n samples rounded to integers, ties to even (as numpy's round).
func (d *Distribution) Ints(rng *rand.Rand, n int) []int {
	f := d.Sample(rng, n)
	out := make([]int, n)
	for i, v := range f {
		out[i] = int(math.RoundToEven(v))
	}
	return out
}

// poisson samples a Poisson variate of mean lambda by Knuth's method, in pieces of mean ≤ 30
// (a sum of Poisson variates is Poisson).
func poisson(rng *rand.Rand, lambda float64) float64 {
	var k float64
	for lambda > 0 {
		l := math.Min(lambda, 30)
		lambda -= l
		limit := math.Exp(-l)
		p := rng.Float64()
		for p > limit {
			k++
			p *= rng.Float64()
		}
	}
	return k
}

// String describes the distribution as the config gives it.
func (d *Distribution) String() string {
	switch d.Kind {
	case "constant":
		return fmt.Sprintf("constant %g", d.Value)
	case "uniform":
		return fmt.Sprintf("uniform %g-%g", d.Min, d.Max)
	case "lognormal":
		if d.Average > 0 {
			return fmt.Sprintf("lognormal average %g median_ratio %g max %g", d.Average, d.MedianRatio, d.Max)
		}
		return fmt.Sprintf("lognormal mean %g sigma %g max %g", d.Mean, d.Sigma, d.Max)
	case "zipf":
		return fmt.Sprintf("zipf alpha %g max %g", d.Alpha, d.Max)
	case "poisson":
		return fmt.Sprintf("poisson alpha %g max %g", d.Alpha, d.Max)
	}
	return d.Kind
}
