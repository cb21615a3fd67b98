package metrics

import (
	"fmt"
	"iter"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/llmtape/llmtape/tape"
)

// Metric names: the keys of a Set, of the encoded histograms and of the JSON summary.
const (
	TTFT = "ttft_ms"
	ITL  = "itl_ms"
	TPOT = "tpot_ms"
	// TPOTFirstChunk is vLLM's TPOT (ResultTPOTFirstChunk): it differs from TPOT when events
	// carry several tokens.
	TPOTFirstChunk = "tpot_first_chunk_ms"
	E2E            = "e2e_ms"
	ScheduleLag    = "schedule_lag_ms"
)

// Metrics lists the latency metrics in the order reports show them.
var Metrics = []string{TTFT, TPOT, TPOTFirstChunk, ITL, E2E, ScheduleLag}

// Histogram range and precision: microseconds from 1 µs to 1 h, 3 significant digits.
const (
	LowestMicros  = 1
	HighestMicros = int64(time.Hour / time.Microsecond)
	SigFigs       = 3
)

// TurnBuckets are the per-turn buckets, in order. A turn index i (0-based) falls in
// TurnBuckets[TurnBucketIndex(i)].
var TurnBuckets = []string{"1", "2", "3", "4-7", "8-15", "16+"}

const numBuckets = 6

// TurnBucketIndex returns the position in TurnBuckets of the 0-based turn index, or -1 for a
// negative index.
func TurnBucketIndex(index int) int {
	switch {
	case index < 0:
		return -1
	case index < 3:
		return index
	case index < 7:
		return 3
	case index < 15:
		return 4
	default:
		return 5
	}
}

// TurnBucket returns the name of the bucket of the 0-based turn index: "1", "2", "3", "4-7",
// "8-15" or "16+" (turn numbers in the names are 1-based). A negative index gives "".
func TurnBucket(index int) string {
	b := TurnBucketIndex(index)
	if b < 0 {
		return ""
	}
	return TurnBuckets[b]
}

func bucketPos(bucket string) (int, bool) {
	if bucket == "" {
		return 0, true
	}
	for i, b := range TurnBuckets {
		if b == bucket {
			return i + 1, true
		}
	}
	return 0, false
}

// group is one metric's histograms: [0] overall, [1+i] turn bucket i. Nil until recorded.
type group [numBuckets + 1]*hdrhistogram.Histogram

// Set is a set of HDR histograms: per metric, one overall and one per turn bucket. The zero
// value is not usable; call NewSet. A Set is not safe for concurrent use.
type Set struct {
	m map[string]*group
}

// NewSet returns an empty Set.
func NewSet() *Set { return &Set{m: make(map[string]*group)} }

// NewHistogram returns an empty histogram with the package's range and precision.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(LowestMicros, HighestMicros, SigFigs)
}

func (s *Set) group(metric string) *group {
	g := s.m[metric]
	if g == nil {
		g = new(group)
		s.m[metric] = g
	}
	return g
}

func micros(d time.Duration) int64 {
	v := int64(d / time.Microsecond)
	if v < 0 {
		return 0
	}
	if v > HighestMicros {
		return HighestMicros
	}
	return v
}

// Record adds one sample of d to the metric's overall histogram and to the histogram of the
// bucket of turnIndex (0-based; a negative index records overall only). It does not allocate
// once the metric's histograms exist.
func (s *Set) Record(metric string, turnIndex int, d time.Duration) {
	s.RecordN(metric, turnIndex, d, 1)
}

// RecordN adds n samples of d, like Record; n <= 0 records nothing.
func (s *Set) RecordN(metric string, turnIndex int, d time.Duration, n int64) {
	if n <= 0 {
		return
	}
	g := s.group(metric)
	v := micros(d)
	if g[0] == nil {
		g[0] = NewHistogram()
	}
	_ = g[0].RecordValues(v, n) // v is clamped into range: cannot fail
	if b := TurnBucketIndex(turnIndex); b >= 0 {
		h := g[b+1]
		if h == nil {
			h = NewHistogram()
			g[b+1] = h
		}
		_ = h.RecordValues(v, n)
	}
}

// ITLSamples yields the inter-token latency samples of a stream's output events: for each event
// after the first, the gap since the previous event divided evenly over the tokens the event
// carries (an event with Tokens <= 0 counts as one token), and n, how many samples of that
// value the event gives (its tokens). It is the one split of events into ITL samples, for the
// histograms (RecordITL) and for exports of every sample.
func ITLSamples(chunks []tape.Chunk) iter.Seq2[time.Duration, int64] {
	return func(yield func(time.Duration, int64) bool) {
		for i := 1; i < len(chunks); i++ {
			n := int64(chunks[i].Tokens)
			if n < 1 {
				n = 1
			}
			gap := chunks[i].Offset - chunks[i-1].Offset
			if !yield(gap/time.Duration(n), n) {
				return
			}
		}
	}
}

// RecordITL records the inter-token latencies of a stream's output events, as ITL splits them.
func (s *Set) RecordITL(turnIndex int, chunks []tape.Chunk) {
	for itl, n := range ITLSamples(chunks) {
		s.RecordN(ITL, turnIndex, itl, n)
	}
}

// RecordResult adds the latencies of a successful result (OK) to the set: its TTFT and E2E
// where measured (> 0), its TPOT (ResultTPOT), vLLM's TPOT (ResultTPOTFirstChunk) and the ITL
// of its events. A failed result adds
// nothing. It is the one place where a result becomes latency samples, for a replay's results
// and a recording's turns alike.
func (s *Set) RecordResult(r *tape.Result) {
	if !OK(r) {
		return
	}
	if r.TTFT > 0 {
		s.Record(TTFT, r.Turn, r.TTFT)
	}
	if r.E2E > 0 {
		s.Record(E2E, r.Turn, r.E2E)
	}
	if tpot, ok := ResultTPOT(r); ok {
		s.Record(TPOT, r.Turn, tpot)
	}
	if tpot, ok := ResultTPOTFirstChunk(r); ok {
		s.Record(TPOTFirstChunk, r.Turn, tpot)
	}
	s.RecordITL(r.Turn, r.Chunks)
}

// Hist returns the histogram of the metric for the bucket ("" for overall, else one of
// TurnBuckets), or nil when nothing was recorded there. The histogram belongs to the Set: do
// not change it.
func (s *Set) Hist(metric, bucket string) *hdrhistogram.Histogram {
	pos, ok := bucketPos(bucket)
	if !ok {
		return nil
	}
	g := s.m[metric]
	if g == nil {
		return nil
	}
	return g[pos]
}

// Dist returns the distribution of the metric in the bucket ("" for overall), in
// milliseconds; the zero Dist when nothing was recorded.
func (s *Set) Dist(metric, bucket string) Dist { return HistDist(s.Hist(metric, bucket)) }

// Names returns the metrics that have histograms, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.m))
	for k := range s.m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Merge adds every histogram of o into s. Both have the same range, so the merge is exact.
func (s *Set) Merge(o *Set) {
	if o == nil {
		return
	}
	for name, og := range o.m {
		g := s.group(name)
		for i, h := range og {
			if h == nil {
				continue
			}
			if g[i] == nil {
				g[i] = NewHistogram()
			}
			g[i].Merge(h)
		}
	}
}

// Encode returns every histogram in the HdrHistogram V2 compressed, base64 form, keyed by
// metric ("ttft_ms") for the overall histogram and metric "/" bucket ("ttft_ms/4-7") per turn
// bucket. The map is what the store keeps as tape.Run.Histograms.
func (s *Set) Encode() (map[string][]byte, error) {
	out := make(map[string][]byte)
	for name, g := range s.m {
		for i, h := range g {
			if h == nil {
				continue
			}
			b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
			if err != nil {
				return nil, fmt.Errorf("encode histogram %s: %w", name, err)
			}
			key := name
			if i > 0 {
				key += "/" + TurnBuckets[i-1]
			}
			out[key] = b
		}
	}
	return out, nil
}

// Decode reads a map written by Set.Encode. A key with an unknown turn bucket or a value that
// is not an encoded histogram is an error. Histograms of another range are merged into ones of
// the package's range (values outside it are dropped).
func Decode(m map[string][]byte) (*Set, error) {
	s := NewSet()
	for key, b := range m {
		name, bucket, _ := strings.Cut(key, "/")
		pos, ok := bucketPos(bucket)
		if !ok || name == "" {
			return nil, fmt.Errorf("decode histograms: unknown histogram key %q", key)
		}
		h, err := decodeHist(b)
		if err != nil {
			return nil, fmt.Errorf("decode histogram %q: %w", key, err)
		}
		if h.LowestTrackableValue() != LowestMicros || h.HighestTrackableValue() != HighestMicros ||
			h.SignificantFigures() != SigFigs {
			n := NewHistogram()
			n.Merge(h)
			h = n
		}
		g := s.group(name)
		if g[pos] == nil {
			g[pos] = h
		} else {
			g[pos].Merge(h)
		}
	}
	return s, nil
}

// decodeHist decodes one histogram; the library is hardened against bad input, but a panic
// must never escape on stored bytes.
func decodeHist(b []byte) (h *hdrhistogram.Histogram, err error) {
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("corrupt histogram: %v", r)
		}
	}()
	return hdrhistogram.Decode(b)
}
