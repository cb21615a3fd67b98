package replay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/tape"
)

func TestApportion(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int
		total int
		want  []int32
	}{
		{"one each", []int{3, 5, 1}, 3, []int32{1, 1, 1}},
		{"by bytes", []int{4, 8, 4}, 8, []int32{2, 4, 2}},
		{"remainder to largest fraction", []int{1, 1, 2}, 5, []int32{1, 1, 3}},
		{"fewer tokens than events", []int{5, 5, 5, 5}, 2, []int32{1, 1, 0, 0}},
		{"no bytes", []int{0, 0}, 5, []int32{3, 2}},
		{"no tokens", []int{3, 3}, 0, []int32{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := make([]tape.Chunk, len(tt.sizes))
			apportion(chunks, tt.sizes, tt.total)
			sum := 0
			for i, c := range chunks {
				sum += int(c.Tokens)
				if c.Tokens != tt.want[i] {
					t.Errorf("chunk %d has %d tokens, want %d (all %v)", i, c.Tokens, tt.want[i], chunks)
				}
			}
			if tt.total > 0 && sum != tt.total {
				t.Errorf("sum %d, want %d", sum, tt.total)
			}
		})
	}
}

func TestJoinPath(t *testing.T) {
	for _, tt := range []struct{ base, p, want string }{
		{"", "/v1/chat/completions", "/v1/chat/completions"},
		{"/v1", "/v1/chat/completions", "/chat/completions"},
		{"/proxy", "/v1/completions", "/v1/completions"},
	} {
		if got := joinPath(tt.base, tt.p); got != tt.want {
			t.Errorf("joinPath(%q, %q) = %q, want %q", tt.base, tt.p, got, tt.want)
		}
	}
}

func TestScheduleRates(t *testing.T) {
	convs := make([]*tape.Conversation, 20000)
	for i := range convs {
		convs[i] = &tape.Conversation{ID: uint64(i + 1), Arrival: time.Duration(i) * time.Second}
	}
	for _, tt := range []struct {
		arrival    Arrival
		burstiness float64
		wantCV     float64 // coefficient of variation of the gaps: 1/sqrt(shape)
	}{
		{ArrivalPoisson, 1, 1},
		{ArrivalGamma, 0.25, 2},
		{ArrivalGamma, 4, 0.5},
	} {
		cfg := Config{Arrival: tt.arrival, Rate: 50, Burstiness: tt.burstiness, Seed: 3}
		out := schedule(convs, &cfg)
		var gaps []float64
		for i := 1; i < len(out); i++ {
			gaps = append(gaps, (out[i] - out[i-1]).Seconds())
		}
		var sum, sq float64
		for _, g := range gaps {
			sum += g
		}
		mean := sum / float64(len(gaps))
		for _, g := range gaps {
			sq += (g - mean) * (g - mean)
		}
		cv := math.Sqrt(sq/float64(len(gaps))) / mean
		if math.Abs(1/mean-50) > 2.5 || math.Abs(cv-tt.wantCV) > 0.1*tt.wantCV {
			t.Errorf("%s(%v): rate %.2f/s cv %.2f, want 50/s cv %.2f", tt.arrival, tt.burstiness, 1/mean, cv, tt.wantCV)
		}
		again := schedule(convs, &cfg)
		for i := range out {
			if out[i] != again[i] {
				t.Fatalf("%s: schedule is not deterministic for a seed", tt.arrival)
			}
		}
	}
	cfg := Config{Arrival: ArrivalOriginal, Speed: 4}
	out := schedule(convs[5:8], &cfg)
	if out[0] != 0 || out[1] != 250*time.Millisecond || out[2] != 500*time.Millisecond {
		t.Errorf("original at speed 4: %v", out)
	}
}

// TestScheduleSeeded pins the first gaps of seeded gamma schedules: a change to the order of
// random draws would change every schedule made with a seed.
func TestScheduleSeeded(t *testing.T) {
	convs := make([]*tape.Conversation, 5)
	for i := range convs {
		convs[i] = &tape.Conversation{ID: uint64(i + 1)}
	}
	for _, tt := range []struct {
		burstiness float64
		want       []time.Duration
	}{
		{0.5, []time.Duration{0, 24810165, 32021049, 56894729, 641420053}},
		{2, []time.Duration{0, 161815100, 325511356, 414292003, 727700018}},
	} {
		cfg := Config{Arrival: ArrivalGamma, Rate: 4, Burstiness: tt.burstiness, Seed: 11}
		if got := schedule(convs, &cfg); !slices.Equal(got, tt.want) {
			t.Errorf("gamma(%v) seed 11: %v, want %v", tt.burstiness, got, tt.want)
		}
	}
}

// newStreamReplayer is a replayer with only what readStream needs.
func newStreamReplayer() *Replayer {
	r := &Replayer{}
	r.abortCtx, r.abort = context.WithCancel(context.Background())
	return r
}

func TestReadStream(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		class     errclass.Class
		chunks    int
		out, tok  int
		wantReply string
	}{
		{"usage", "data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"cd\"}}]}\n\n" +
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\ndata: [DONE]\n\n",
			"", 2, 2, 7, `{"role":"assistant","content":"abcd"}`},
		{"no done but finish", "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n", "", 1, 0, 0, ""},
		{"cut", "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n", "stream", 1, 0, 0, ""},
		{"malformed", "data: {nope\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n", "stream", 1, 0, 0, ""},
		{"error object", "data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: [DONE]\n\n", "stream", 0, 0, 0, ""},
		{"comments and role", ": ping\n\ndata: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n", "", 1, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newStreamReplayer()
			x := &exchange{}
			r.readStream(context.Background(), bytes.NewReader([]byte(tt.in)), time.Now(), x)
			if x.res.ErrorClass != tt.class || len(x.res.Chunks) != tt.chunks {
				t.Errorf("class %q (%s), %d chunks; want %q, %d", x.res.ErrorClass, x.res.Error,
					len(x.res.Chunks), tt.class, tt.chunks)
			}
			if tt.out > 0 && (x.res.OutputTokens != tt.out || x.res.InputTokens != tt.tok || x.res.CachedTokens != 3 ||
				x.res.TokenSource != tape.TokensServer) {
				t.Errorf("tokens %+v", x.res)
			}
			if tt.wantReply != "" && !tape.JSONEqual(x.reply, []byte(tt.wantReply)) {
				t.Errorf("reply %s", x.reply)
			}
		})
	}
}

func TestTokensWithoutUsage(t *testing.T) {
	r := newStreamReplayer()
	x := &exchange{msgs: nil, prompt: []byte(`"count these words please"`)}
	in := "data: {\"choices\":[{\"text\":\"hello\"}]}\n\ndata: {\"choices\":[{\"text\":\" there, friend\"}]}\n\ndata: [DONE]\n\n"
	r.readStream(context.Background(), bytes.NewReader([]byte(in)), time.Now(), x)
	r.tokens(x)
	if x.res.TokenSource != tape.TokensCounted || x.res.InputTokens == 0 || x.res.OutputTokens < 2 {
		t.Errorf("counted tokens: %+v", x.res)
	}
	var sum int32
	for _, c := range x.res.Chunks {
		sum += c.Tokens
	}
	if int(sum) != x.res.OutputTokens {
		t.Errorf("chunk tokens sum %d, output %d", sum, x.res.OutputTokens)
	}
}

// FuzzReadStream: any bytes from a server give a result with a class, never a panic.
func FuzzReadStream(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}\n\n"))
	f.Add([]byte("event: x\r\ndata: {\"usage\":{\"completion_tokens\":\"7\"}}\r\n\r\n"))
	f.Add([]byte("data: {\"choices\":null,\"error\":\"boom\"}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := newStreamReplayer()
		x := &exchange{}
		r.readStream(context.Background(), bytes.NewReader(in), time.Now(), x)
		if x.res.ErrorClass == "" {
			r.tokens(x)
			var sum int32
			for _, c := range x.res.Chunks {
				if c.Tokens < 0 {
					t.Fatalf("negative tokens %v", x.res.Chunks)
				}
				sum += c.Tokens
			}
			if len(x.res.Chunks) > 0 && x.res.OutputTokens > 0 && int(sum) != x.res.OutputTokens {
				t.Fatalf("chunk tokens sum %d, output %d", sum, x.res.OutputTokens)
			}
		}
	})
}

func TestReplyMessageToolCalls(t *testing.T) {
	in := "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n"
	r := newStreamReplayer()
	x := &exchange{}
	r.readStream(context.Background(), bytes.NewReader([]byte(in)), time.Now(), x)
	want := `{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":"{\"a\":1}"}}]}`
	if x.res.ErrorClass != "" || !tape.JSONEqual(x.reply, []byte(want)) {
		t.Errorf("reply %s (%s), want %s", x.reply, x.res.Error, want)
	}
}

// BenchmarkReadStream measures the stream reader's own cost per event (the decoder, the chunk
// parser, the accumulator and the stamps), without a network: allocs/op over 256 events shows
// what is allocated per event rather than per stream.
func BenchmarkReadStream(b *testing.B) {
	const events = 256
	var sb strings.Builder
	sb.WriteString("data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n")
	for i := range events {
		fmt.Fprintf(&sb, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" w%d\"}}]}\n\n", i)
	}
	sb.WriteString("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":256}}\n\ndata: [DONE]\n\n")
	body := []byte(sb.String())
	r := newStreamReplayer()
	rd := bytes.NewReader(body)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		rd.Reset(body)
		x := &exchange{events: events}
		r.readStream(context.Background(), rd, time.Now(), x)
		if len(x.res.Chunks) != events || x.res.ErrorClass != "" {
			b.Fatalf("%d chunks, %q", len(x.res.Chunks), x.res.Error)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/events, "ns/event")
}

// TestStreamMeasurement: TTFT runs to the first event that carries output (not the role-only
// first event), and an event of several tokens gives one ITL sample per token, its gap split
// evenly.
func TestStreamMeasurement(t *testing.T) {
	const gap = 30 * time.Millisecond
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		_, _ = io.WriteString(pw, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n")
		for i := range 3 {
			time.Sleep(gap) // the server's pace, not an assertion
			fmt.Fprintf(pw, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ab%d\"}}]}\n\n", i)
		}
		_, _ = io.WriteString(pw, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n")
	}()
	r := newStreamReplayer()
	x := &exchange{}
	sent := time.Now()
	r.readStream(context.Background(), pr, sent, x)
	r.tokens(x)
	res := &x.res
	if res.ErrorClass != "" || len(res.Chunks) != 3 || res.OutputTokens != 9 {
		t.Fatalf("class %q %s, %d chunks, %d tokens", res.ErrorClass, res.Error, len(res.Chunks), res.OutputTokens)
	}
	if res.TTFT < gap {
		t.Errorf("TTFT %v, want >= %v: the role-only event carries no output", res.TTFT, gap)
	}
	for i, c := range res.Chunks {
		if c.Tokens != 3 {
			t.Errorf("chunk %d has %d tokens, want 3 (9 over 3 equal events)", i, c.Tokens)
		}
	}
	var acc metrics.Accumulator
	res.Status = 200
	acc.Add(res)
	s := acc.Summary(time.Second, metrics.SLO{})
	if s.ITL.Count != 6 {
		t.Errorf("ITL samples %d, want 6: 3 per later event", s.ITL.Count)
	}
	// Each later event's gap is split over its 3 tokens: the samples add up to the time from
	// the first output event to the last (within HDR precision).
	span := float64(res.Chunks[2].Offset-res.Chunks[0].Offset) / 1e6
	if sum := s.ITL.Mean * 6; math.Abs(sum-span) > 0.005*span {
		t.Errorf("ITL samples sum to %.3f ms, want the %.3f ms between first and last event", sum, span)
	}
	wantTPOT := (res.E2E - res.TTFT) / 8
	if s.TPOT.Count != 1 || math.Abs(s.TPOT.Max-float64(wantTPOT)/1e6) > 0.01*float64(wantTPOT)/1e6+0.001 {
		t.Errorf("TPOT %+v, want (E2E-TTFT)/8 = %v", s.TPOT, wantTPOT)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestReadWholeBadBodies: a body that is not a reply (HTML, an endless download) is a stream
// error with a one-line message, read no further than maxWholeBody.
func TestReadWholeBadBodies(t *testing.T) {
	defer func(old int) { maxWholeBody = old }(maxWholeBody)
	maxWholeBody = 2 << 20 // the 64 MiB of a real run, read under -race, took seconds
	for _, tt := range []struct {
		name string
		body io.Reader
		msg  string
	}{
		{"html", strings.NewReader("<html><body>502 Bad Gateway</body></html>"), "malformed response"},
		{"endless", zeros{}, "larger than 2 MiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newStreamReplayer()
			x := &exchange{}
			r.readWhole(context.Background(), tt.body, time.Now(), x)
			if x.res.ErrorClass != errclass.Stream || !strings.Contains(x.res.Error, tt.msg) ||
				strings.Contains(x.res.Error, "\n") {
				t.Errorf("class %q, error %q; want %q containing %q", x.res.ErrorClass, x.res.Error, errclass.Stream, tt.msg)
			}
		})
	}
}

// TestReplyMessageBytes pins the assistant message that live history sends back: it must stay
// the message tape.ReplyMessage builds from a recorded turn (tool calls as
// openai.MarshalToolCalls encodes them), byte for byte.
func TestReplyMessageBytes(t *testing.T) {
	calls := []openai.ToolCall{{Index: 0, ID: "call_1", Function: openai.FunctionCall{Name: "f<>", Arguments: `{"a":"&"}`}}}
	for _, tt := range []struct {
		content string
		calls   []openai.ToolCall
		want    string
	}{
		{"", calls, `{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f\u003c\u003e","arguments":"{\"a\":\"\u0026\"}"}}]}`},
		{"hi <b>\u2028", calls, `{"role":"assistant","content":"hi <b>\u2028","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f\u003c\u003e","arguments":"{\"a\":\"\u0026\"}"}}]}`},
		{"plain", nil, `{"role":"assistant","content":"plain"}`},
	} {
		var x exchange
		x.setReply(tt.content, tt.calls)
		if got := string(x.reply); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}
