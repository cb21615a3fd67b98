package metrics_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

func TestTurnBucket(t *testing.T) {
	tests := []struct {
		index int
		want  string
	}{
		{-1, ""}, {0, "1"}, {1, "2"}, {2, "3"}, {3, "4-7"}, {6, "4-7"}, {7, "8-15"},
		{14, "8-15"}, {15, "16+"}, {1000, "16+"},
	}
	for _, tt := range tests {
		if got := metrics.TurnBucket(tt.index); got != tt.want {
			t.Errorf("TurnBucket(%d) = %q, want %q", tt.index, got, tt.want)
		}
	}
}

func TestSetRecordAndDist(t *testing.T) {
	s := metrics.NewSet()
	for i := 1; i <= 100; i++ {
		s.Record(metrics.TTFT, 0, time.Duration(i)*time.Millisecond)
	}
	s.Record(metrics.TTFT, 5, 500*time.Millisecond)
	s.Record(metrics.TTFT, -1, -time.Second) // negative: recorded overall as 0
	s.Record(metrics.E2E, 20, 2*time.Hour)   // clamped to 1 h
	d := s.Dist(metrics.TTFT, "")
	if d.Count != 102 {
		t.Fatalf("count = %d, want 102", d.Count)
	}
	if b := s.Dist(metrics.TTFT, "1"); b.Count != 100 || math.Abs(b.P50-50) > 0.05 ||
		math.Abs(b.P99-99) > 0.1 || math.Abs(b.Max-100) > 0.1 || math.Abs(b.Min-1) > 0.01 {
		t.Errorf("bucket 1 dist = %+v", b)
	}
	if b := s.Dist(metrics.TTFT, "4-7"); b.Count != 1 || math.Abs(b.Max-500) > 0.5 {
		t.Errorf("bucket 4-7 dist = %+v", b)
	}
	if s.Hist(metrics.TTFT, "2") != nil || s.Hist(metrics.ITL, "") != nil || s.Hist(metrics.TTFT, "x") != nil {
		t.Error("Hist of an unrecorded bucket, metric or unknown bucket is not nil")
	}
	if e := s.Dist(metrics.E2E, "16+"); e.Count != 1 || math.Abs(e.Max-3600000) > 3600 {
		t.Errorf("clamped e2e = %+v", e)
	}
	if got := strings.Join(s.Names(), ","); got != "e2e_ms,ttft_ms" {
		t.Errorf("Names = %s", got)
	}
}

func TestRecordITLSplitsChunks(t *testing.T) {
	s := metrics.NewSet()
	ms := time.Millisecond
	s.RecordITL(0, []tape.Chunk{{Offset: 50 * ms, Tokens: 1}, {Offset: 60 * ms, Tokens: 1},
		{Offset: 90 * ms, Tokens: 3}, {Offset: 100 * ms, Tokens: 0}})
	d := s.Dist(metrics.ITL, "")
	if d.Count != 5 {
		t.Fatalf("ITL samples = %d, want 5 (1 + 3 + 1)", d.Count)
	}
	if math.Abs(d.Min-10) > 0.01 || math.Abs(d.Max-10) > 0.01 {
		t.Errorf("ITL dist = %+v, want every sample 10 ms", d)
	}
}

func TestRecordResult(t *testing.T) {
	ms := time.Millisecond
	s := metrics.NewSet()
	chunks := []tape.Chunk{{Offset: 40 * ms, Tokens: 1}, {Offset: 50 * ms, Tokens: 1}, {Offset: 70 * ms, Tokens: 2}}
	s.RecordResult(&tape.Result{Turn: 1, Status: 200, TTFT: 40 * ms, E2E: 80 * ms, OutputTokens: 4, Chunks: chunks})
	// Failed results add nothing; a result without a TTFT (not streamed) adds no TTFT sample.
	s.RecordResult(&tape.Result{Turn: 1, Status: 503, ErrorClass: "http", TTFT: 9 * ms, E2E: 9 * ms})
	s.RecordResult(&tape.Result{Turn: 1, Status: 200, ErrorClass: "stream", TTFT: 9 * ms, E2E: 9 * ms})
	s.RecordResult(&tape.Result{Turn: 1, Status: 200, E2E: 30 * ms, OutputTokens: 1})
	for _, c := range []struct {
		metric string
		count  int64
		min    float64
	}{{metrics.TTFT, 1, 40}, {metrics.E2E, 2, 30}, {metrics.TPOT, 1, 40.0 / 3}, {metrics.ITL, 3, 10}} {
		d := s.Dist(c.metric, "")
		if d.Count != c.count || math.Abs(d.Min-c.min) > 0.01 {
			t.Errorf("%s: %d samples, min %.3f; want %d, %.3f", c.metric, d.Count, d.Min, c.count, c.min)
		}
		if b := s.Dist(c.metric, metrics.TurnBuckets[metrics.TurnBucketIndex(1)]); b.Count != c.count {
			t.Errorf("%s: turn bucket has %d samples, want %d", c.metric, b.Count, c.count)
		}
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	s := metrics.NewSet()
	s.Record(metrics.TTFT, 3, time.Millisecond)
	allocs := testing.AllocsPerRun(1000, func() {
		s.Record(metrics.TTFT, 3, 1234*time.Microsecond)
	})
	if allocs != 0 {
		t.Errorf("Record allocates %.1f times per call", allocs)
	}
}

func fill(s *metrics.Set, seed, n int) {
	for i := 0; i < n; i++ {
		v := time.Duration((i*7919+seed*104729)%50000+1) * time.Microsecond
		s.Record(metrics.TTFT, i%20, v)
		s.Record(metrics.E2E, i%3, 10*v)
	}
}

func TestMergeIsExact(t *testing.T) {
	a, b, all := metrics.NewSet(), metrics.NewSet(), metrics.NewSet()
	fill(a, 1, 1000)
	fill(b, 2, 700)
	fill(all, 1, 1000)
	fill(all, 2, 700)
	a.Merge(b)
	a.Merge(nil)
	for _, m := range []string{metrics.TTFT, metrics.E2E} {
		for _, bucket := range append([]string{""}, metrics.TurnBuckets...) {
			x, y := a.Hist(m, bucket), all.Hist(m, bucket)
			if (x == nil) != (y == nil) || (x != nil && !x.Equals(y)) {
				t.Errorf("%s/%s: merged differs from recorded together", m, bucket)
			}
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	s := metrics.NewSet()
	fill(s, 3, 500)
	enc, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := enc["ttft_ms"]; !ok {
		t.Fatalf("no overall key in %v", keys(enc))
	}
	if _, ok := enc["ttft_ms/16+"]; !ok {
		t.Fatalf("no bucket key in %v", keys(enc))
	}
	got, err := metrics.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{metrics.TTFT, metrics.E2E} {
		for _, bucket := range append([]string{""}, metrics.TurnBuckets...) {
			x, y := s.Hist(m, bucket), got.Hist(m, bucket)
			if (x == nil) != (y == nil) || (x != nil && !x.Equals(y)) {
				t.Errorf("%s/%s: decoded differs", m, bucket)
			}
		}
	}
	// Through JSON, as the store keeps it.
	raw, _ := json.Marshal(enc)
	var back map[string][]byte
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.Decode(back); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string][]byte) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	return k
}

func TestDecodeErrors(t *testing.T) {
	good, _ := func() (map[string][]byte, error) { s := metrics.NewSet(); fill(s, 1, 10); return s.Encode() }()
	tests := map[string]map[string][]byte{
		"bad bucket": {"ttft_ms/9": good["ttft_ms"]},
		"empty name": {"/1": good["ttft_ms"]},
		"not base64": {"ttft_ms": []byte("%%%")},
		"short":      {"ttft_ms": []byte("AAAA")},
		"garbage":    {"ttft_ms": []byte("SGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYSBoaXN0b2dyYW0=")},
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := metrics.Decode(m); err == nil {
				t.Error("no error")
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	s := metrics.NewSet()
	fill(s, 1, 50)
	enc, _ := s.Encode()
	f.Add("ttft_ms", enc["ttft_ms"])
	f.Add("e2e_ms/2", []byte("HISTFAAAACB4nJNpmSzMwMDAxgABzFCaEUzOmNZg/wEiAhQAPhgDAA=="))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		got, err := metrics.Decode(map[string][]byte{key: b})
		if err == nil {
			got.Dist(metrics.TTFT, "")
			if _, err := got.Encode(); err != nil {
				t.Fatalf("decoded set does not encode: %v", err)
			}
		}
	})
}

func TestValuesDist(t *testing.T) {
	// numpy: np.percentile([1,2,3,4,10], [25,50,75,90,99]) = 2, 3, 4, 7.6, 9.76; std 3.1623
	d := metrics.ValuesDist([]float64{10, 2, 4, 3, 1, math.NaN()})
	want := metrics.Dist{Count: 5, Mean: 4, Std: math.Sqrt(10), Min: 1, P25: 2, P50: 3, P75: 4,
		P90: 7.6, P95: 8.8, P99: 9.76, P999: 9.976, Max: 10}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"count", float64(d.Count), 5}, {"mean", d.Mean, want.Mean}, {"std", d.Std, want.Std},
		{"min", d.Min, 1}, {"p25", d.P25, 2}, {"p50", d.P50, 3}, {"p75", d.P75, 4},
		{"p90", d.P90, 7.6}, {"p95", d.P95, 8.8}, {"p99", d.P99, 9.76}, {"p999", d.P999, 9.976},
		{"max", d.Max, 10}} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if z := metrics.ValuesDist(nil); z != (metrics.Dist{}) {
		t.Errorf("empty = %+v", z)
	}
}

func TestDistJSONKeys(t *testing.T) {
	raw, _ := json.Marshal(metrics.Dist{})
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	for _, k := range []string{"count", "mean", "std", "min", "p25", "p50", "p75", "p90", "p95",
		"p99", "p999", "p9999", "max"} {
		if _, ok := m[k]; !ok {
			t.Errorf("Dist JSON lacks %q", k)
		}
	}
	if len(m) != 13 {
		t.Errorf("Dist JSON has %d keys, want 13", len(m))
	}
	for _, p := range metrics.Percentiles {
		if _, ok := m[p.Key]; !ok {
			t.Errorf("Dist JSON lacks percentile key %q", p.Key)
		}
	}
}

func TestParseSLO(t *testing.T) {
	tests := []struct {
		in      string
		want    metrics.SLO
		wantErr bool
	}{
		{"", metrics.SLO{}, false},
		{"ttft=500ms,tpot=50ms,e2e=10s", metrics.SLO{TTFT: 500 * time.Millisecond,
			TPOT: 50 * time.Millisecond, E2E: 10 * time.Second}, false},
		{" E2E = 2s ", metrics.SLO{E2E: 2 * time.Second}, false},
		{"ttft", metrics.SLO{}, true},
		{"ttft=fast", metrics.SLO{}, true},
		{"ttft=-1s", metrics.SLO{}, true},
		{"itl=1ms", metrics.SLO{}, true},
		{"ttft=1s,ttft=2s", metrics.SLO{}, true},
	}
	for _, tt := range tests {
		got, err := metrics.ParseSLO(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSLO(%q) = %+v, %v", tt.in, got, err)
		}
		if err == nil {
			again, _ := metrics.ParseSLO(got.String())
			if again != got {
				t.Errorf("String round trip of %q: %q", tt.in, got.String())
			}
		}
	}
}

// FuzzParseSLO: any --slo value gives an SLO that String writes back as the same SLO, or a
// one-line error; never a panic.
func FuzzParseSLO(f *testing.F) {
	for _, s := range []string{"", "ttft=500ms,tpot=50ms,e2e=10s", " E2E = 2s ", "ttft", "ttft=-1s",
		"ttft=1s,ttft=2s", "tpot=1e3h", ",", "ttft=9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := metrics.ParseSLO(in)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(in, "\n") {
				t.Fatalf("ParseSLO(%q): error of several lines: %v", in, err)
			}
			return
		}
		again, err := metrics.ParseSLO(got.String())
		if err != nil || again != got {
			t.Fatalf("ParseSLO(%q) = %+v; String %q reads back as %+v, %v", in, got, got.String(), again, err)
		}
	})
}

func TestSLOMet(t *testing.T) {
	ms := time.Millisecond
	slo := metrics.SLO{TTFT: 100 * ms, TPOT: 10 * ms, E2E: time.Second}
	tests := []struct {
		name string
		r    tape.Result
		want bool
	}{
		{"fast", tape.Result{Status: 200, TTFT: 50 * ms, E2E: 140 * ms, OutputTokens: 10}, true},
		{"slow ttft", tape.Result{Status: 200, TTFT: 150 * ms, E2E: 160 * ms, OutputTokens: 2}, false},
		{"slow tpot", tape.Result{Status: 200, TTFT: 50 * ms, E2E: 500 * ms, OutputTokens: 10}, false},
		{"one token", tape.Result{Status: 200, TTFT: 50 * ms, E2E: 500 * ms, OutputTokens: 1}, true},
		{"no output", tape.Result{Status: 200, E2E: 50 * ms}, false},
		{"error", tape.Result{Status: 500, ErrorClass: "http", TTFT: ms, E2E: ms}, false},
		{"stream cut", tape.Result{Status: 200, ErrorClass: "stream", TTFT: ms, E2E: ms}, false},
	}
	for _, tt := range tests {
		if got := slo.Met(&tt.r); got != tt.want {
			t.Errorf("%s: Met = %v, want %v", tt.name, got, tt.want)
		}
	}
	if !(metrics.SLO{}).Met(&tests[4].r) {
		t.Error("zero SLO should accept any successful result")
	}
}

func results() []tape.Result {
	ms := time.Millisecond
	var rs []tape.Result
	for i := 0; i < 10; i++ {
		rs = append(rs, tape.Result{Turn: i % 4, Scheduled: time.Duration(i) * ms,
			Sent: time.Duration(i)*ms + 2*ms, TTFT: 100 * ms, E2E: 190 * ms, Status: 200,
			InputTokens: 100, OutputTokens: 10, CachedTokens: 20,
			Chunks: []tape.Chunk{{Offset: 100 * ms, Tokens: 1}, {Offset: 190 * ms, Tokens: 9}}})
	}
	rs[3].TTFT = 300 * ms
	rs[3].E2E = 390 * ms
	rs = append(rs, tape.Result{Turn: 1, Status: 503, ErrorClass: "http", E2E: ms, Retries: 2},
		tape.Result{Turn: 0, Status: 200, ErrorClass: "stream", TTFT: ms, E2E: ms},
		tape.Result{Turn: 0, Warmup: true, Status: 200})
	return rs
}

func TestAccumulatorSummary(t *testing.T) {
	var a metrics.Accumulator
	for _, r := range results() {
		a.Add(&r)
	}
	slo, _ := metrics.ParseSLO("ttft=200ms")
	s := a.Summary(2*time.Second, slo)
	if s.Requests != (metrics.Requests{Total: 12, OK: 10, Errors: 2}) {
		t.Errorf("requests = %+v", s.Requests)
	}
	if s.Warmup != 1 || s.Retries != 2 {
		t.Errorf("warmup %d retries %d", s.Warmup, s.Retries)
	}
	if s.ErrorsByClass["http"] != 1 || s.ErrorsByClass["stream"] != 1 {
		t.Errorf("errors by class = %v", s.ErrorsByClass)
	}
	if s.Throughput.RequestsPerS != 5 || s.Throughput.InputTokensPerS != 500 ||
		s.Throughput.OutputTokensPerS != 50 {
		t.Errorf("throughput = %+v", s.Throughput)
	}
	if s.Goodput.Met != 9 || s.Goodput.RequestsPerS != 4.5 || s.Goodput.SLO != "ttft=200ms" ||
		math.Abs(s.Goodput.Ratio-0.75) > 1e-9 {
		t.Errorf("goodput = %+v", s.Goodput)
	}
	if s.TTFT.Count != 10 || s.E2E.Count != 10 || s.ScheduleLag.Count != 12 || s.ITL.Count != 90 ||
		s.TPOT.Count != 10 {
		t.Errorf("counts ttft %d e2e %d lag %d itl %d tpot %d", s.TTFT.Count, s.E2E.Count,
			s.ScheduleLag.Count, s.ITL.Count, s.TPOT.Count)
	}
	if math.Abs(s.TPOT.P50-10) > 0.01 || math.Abs(s.ITL.P50-10) > 0.01 {
		t.Errorf("tpot p50 %v itl p50 %v, want 10 ms", s.TPOT.P50, s.ITL.P50)
	}
	// Ten requests 2 ms late, the two failures on time; the warmup request is not counted.
	if l := s.ScheduleLag; math.Abs(l.P50-2) > 0.01 || math.Abs(l.Max-2) > 0.01 || l.Min != 0 {
		t.Errorf("schedule lag = %+v, want min 0, p50 and max 2 ms", s.ScheduleLag)
	}
	if s.CachedTokens != 200 || s.InputTokens.Mean != 100 || s.OutputTokens.P99 != 10 {
		t.Errorf("tokens: cached %d in %+v out %+v", s.CachedTokens, s.InputTokens, s.OutputTokens)
	}
	if len(s.ByTurn) != 4 || s.ByTurn[0].Bucket != "1" || s.ByTurn[0].Requests != 4 ||
		s.ByTurn[0].Errors != 1 || s.ByTurn[3].Bucket != "4-7" {
		t.Errorf("by turn = %+v", s.ByTurn)
	}
	if s.Duration != 2 {
		t.Errorf("duration = %v", s.Duration)
	}

	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	var top map[string]json.RawMessage
	_ = json.Unmarshal(raw, &top)
	for _, k := range []string{"requests", "throughput", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms",
		"schedule_lag_ms", "goodput", "by_turn", "errors_by_class", "input_tokens",
		"output_tokens", "duration_s", "warmup_excluded", "retries", "cached_tokens"} {
		if _, ok := top[k]; !ok {
			t.Errorf("summary JSON lacks %q", k)
		}
	}
	_ = json.Unmarshal(raw, &struct{}{})
	m = map[string]map[string]any{}
	for _, k := range []string{"requests", "throughput", "ttft_ms", "goodput"} {
		var x map[string]any
		_ = json.Unmarshal(top[k], &x)
		m[k] = x
	}
	for k, sub := range map[string][]string{
		"requests":   {"total", "ok", "errors"},
		"throughput": {"requests_per_s", "input_tokens_per_s", "output_tokens_per_s"},
		"ttft_ms":    {"mean", "p50", "p90", "p99", "max"},
		"goodput":    {"slo", "requests_per_s", "met", "ratio"},
	} {
		for _, s := range sub {
			if _, ok := m[k][s]; !ok {
				t.Errorf("summary JSON lacks %s.%s", k, s)
			}
		}
	}
	var back metrics.Summary
	if err := json.Unmarshal(raw, &back); err != nil || back.Requests != s.Requests {
		t.Errorf("summary JSON does not read back: %v", err)
	}
}

func TestSummaryEmpty(t *testing.T) {
	var a metrics.Accumulator
	s := a.Summary(0, metrics.SLO{})
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"by_turn":[]`)) || !bytes.Contains(raw, []byte(`"errors_by_class":{}`)) {
		t.Errorf("empty summary JSON = %s", raw)
	}
	var buf bytes.Buffer
	if err := s.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
}

func TestWriteTable(t *testing.T) {
	var a metrics.Accumulator
	for _, r := range results() {
		a.Add(&r)
	}
	r := tape.Result{Turn: 30, Status: 200, TTFT: 40 * time.Minute, E2E: time.Hour,
		InputTokens: 123456789, OutputTokens: 99999}
	a.Add(&r)
	s := a.Summary(time.Second, metrics.SLO{E2E: time.Second})
	s.Reconnects = 3
	var buf bytes.Buffer
	if err := s.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "input_tokens",
		"output_tokens", "throughput", "goodput", "errors", "http=1", "stream=1",
		"schedule lag", "16+", "25%", "99%", ", 3 reconnects"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 100 {
			t.Errorf("line of %d columns: %q\n%s", len(l), l, out)
		}
	}
}

func BenchmarkRecord(b *testing.B) {
	s := metrics.NewSet()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Record(metrics.ITL, i&15, time.Duration(i&4095)*time.Microsecond)
	}
}

func TestResultTPOTFirstChunk(t *testing.T) {
	ms := time.Millisecond
	ev := func(tokens ...int32) []tape.Chunk {
		c := make([]tape.Chunk, len(tokens))
		for i, n := range tokens {
			c[i] = tape.Chunk{Offset: time.Duration(i+1) * ms, Tokens: n}
		}
		return c
	}
	for _, tc := range []struct {
		name       string
		r          tape.Result
		ours, vllm time.Duration // 0: no sample
	}{
		{"one token per event", tape.Result{TTFT: ms, E2E: 5 * ms, OutputTokens: 5, Chunks: ev(1, 1, 1, 1, 1)}, ms, ms},
		{"four tokens per event", tape.Result{TTFT: ms, E2E: 4 * ms, OutputTokens: 16, Chunks: ev(4, 4, 4, 4)}, 200 * time.Microsecond, 250 * time.Microsecond},
		{"unknown tokens count as one", tape.Result{TTFT: ms, E2E: 3 * ms, OutputTokens: 3, Chunks: ev(0, 0, 0)}, ms, ms},
		{"first event with every token, slow end", tape.Result{TTFT: ms, E2E: 2 * ms, OutputTokens: 4, Chunks: ev(4)}, ms / 3, 0},
		{"one token", tape.Result{TTFT: ms, E2E: ms, OutputTokens: 1, Chunks: ev(1)}, 0, 0},
		{"no events", tape.Result{E2E: ms, OutputTokens: 8}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, ok := metrics.ResultTPOT(&tc.r)
			if ok != (tc.ours > 0) || ours != tc.ours {
				t.Errorf("ResultTPOT = %v, %v; want %v", ours, ok, tc.ours)
			}
			vllm, ok := metrics.ResultTPOTFirstChunk(&tc.r)
			if ok != (tc.vllm > 0) || vllm != tc.vllm {
				t.Errorf("ResultTPOTFirstChunk = %v, %v; want %v", vllm, ok, tc.vllm)
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		want    []float64
	}{
		{"", "", nil},
		{"50,90,95,99,99.9", "", []float64{50, 90, 95, 99, 99.9}},
		{" p50 , p99.99", "", []float64{50, 99.99}},
		{"50,abc", `"abc" is not a number`, nil},
		{"101", "101 is not one of 25, 50, 75, 90, 95, 99, 99.9, 99.99", nil},
		{"97", "not one of", nil},
		{"50,50", "given twice", nil},
	} {
		got, err := metrics.ParsePercentiles(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ParsePercentiles(%q) error %v, want one line with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("ParsePercentiles(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParsePercentiles(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}

	// p99.9 and p99.99 are there from 1,000 and 10,000 samples, never as a 0 before.
	v := make([]float64, 10000)
	for i := range v {
		v[i] = float64(i + 1)
	}
	for _, tc := range []struct {
		n              int
		p999, p9999    bool
		shownByDefault int
	}{{999, false, false, 5}, {1000, true, false, 6}, {9999, true, false, 6}, {10000, true, true, 7}} {
		d := metrics.ValuesDist(v[:tc.n])
		if _, ok := d.At(99.9); ok != tc.p999 {
			t.Errorf("%d samples: p99.9 there = %v", tc.n, ok)
		}
		if x, ok := d.At(99.99); ok != tc.p9999 || (!ok && x != 0) {
			t.Errorf("%d samples: p99.99 = %v, %v", tc.n, x, ok)
		}
		if got := metrics.ShownPercentiles(nil, metrics.TablePercentiles, metrics.Dist{}, d); len(got) != tc.shownByDefault {
			t.Errorf("%d samples: %d columns by default, want %d", tc.n, len(got), tc.shownByDefault)
		}
		if got := metrics.ShownPercentiles([]float64{50, 99.99}, metrics.TablePercentiles, d); len(got) != 2 || got[1].Key != "p9999" {
			t.Errorf("%d samples: chosen columns %v", tc.n, got)
		}
	}
	if _, ok := (metrics.Dist{}).At(50); ok {
		t.Error("no samples: p50 there")
	}
	h := metrics.NewSet()
	for i := range 10000 {
		h.Record(metrics.TTFT, 0, time.Duration(i+1)*time.Microsecond)
	}
	if d := h.Dist(metrics.TTFT, ""); d.P9999 < d.P999 || d.P999 < d.P99 || d.P9999 > d.Max {
		t.Errorf("histogram percentiles out of order: %+v", d)
	}
}
