package metrics

import (
	"fmt"
	"strings"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/tape"
)

// SLO is a set of latency objectives; a zero field is not set.
type SLO struct {
	TTFT time.Duration // time to first token at most this
	TPOT time.Duration // time per output token at most this (ignored under 2 output tokens)
	E2E  time.Duration // end-to-end latency at most this
}

// ParseSLO parses "ttft=500ms,tpot=50ms,e2e=10s" (any subset, any order, Go durations). The
// empty string is the zero SLO.
func ParseSLO(s string) (SLO, error) {
	var o SLO
	s = strings.TrimSpace(s)
	if s == "" {
		return o, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return SLO{}, fmt.Errorf("parse slo %q: want name=duration, e.g. ttft=500ms", part)
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return SLO{}, fmt.Errorf("parse slo %q: want a positive duration such as 500ms", part)
		}
		var field *time.Duration
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "ttft":
			field = &o.TTFT
		case "tpot":
			field = &o.TPOT
		case "e2e":
			field = &o.E2E
		default:
			return SLO{}, fmt.Errorf("parse slo %q: unknown objective %q (want ttft, tpot or e2e)", part, k)
		}
		if *field != 0 {
			return SLO{}, fmt.Errorf("parse slo %q: %s is given twice", s, strings.TrimSpace(k))
		}
		*field = d
	}
	return o, nil
}

// IsZero reports whether no objective is set.
func (o SLO) IsZero() bool { return o == SLO{} }

// String formats the SLO as ParseSLO reads it; "" when no objective is set.
func (o SLO) String() string {
	var parts []string
	if o.TTFT > 0 {
		parts = append(parts, "ttft="+o.TTFT.String())
	}
	if o.TPOT > 0 {
		parts = append(parts, "tpot="+o.TPOT.String())
	}
	if o.E2E > 0 {
		parts = append(parts, "e2e="+o.E2E.String())
	}
	return strings.Join(parts, ",")
}

// OK reports whether a result succeeded: no error class and an HTTP status below 400.
func OK(r *tape.Result) bool { return r.ErrorClass == errclass.None && r.Status < 400 }

// ResultTPOT returns (E2E − TTFT) / (output tokens − 1) and true, or false when the result has
// fewer than 2 output tokens or no first token.
func ResultTPOT(r *tape.Result) (time.Duration, bool) {
	if r.OutputTokens < 2 || r.TTFT <= 0 || r.E2E < r.TTFT {
		return 0, false
	}
	return (r.E2E - r.TTFT) / time.Duration(r.OutputTokens-1), true
}

// ResultTPOTFirstChunk returns vLLM's time per output token and true: (E2E − TTFT) / (output
// tokens − the tokens of the first output event), the time after the first event spread over
// the tokens that came after it (vLLM's benchmarks/multi_turn/benchmark_serving_multi_turn.py,
// send_turn). It is false when there is no first event, or when the first event carried every
// output token (vLLM counts a 0 there; here it is no sample, as ResultTPOT under 2 tokens). An
// event with no token count counts as one token, as in ITLSamples. With one token per event it
// equals ResultTPOT; with several it is larger, since fewer tokens share the same time.
func ResultTPOTFirstChunk(r *tape.Result) (time.Duration, bool) {
	if len(r.Chunks) == 0 || r.TTFT <= 0 || r.E2E < r.TTFT {
		return 0, false
	}
	first := int(r.Chunks[0].Tokens)
	if first < 1 {
		first = 1
	}
	if r.OutputTokens < 2 || r.OutputTokens <= first {
		return 0, false
	}
	return (r.E2E - r.TTFT) / time.Duration(r.OutputTokens-first), true
}

// Met reports whether the result succeeded and met every objective set. A result with no
// first output event fails a TTFT objective; TPOT is not checked under 2 output tokens.
func (o SLO) Met(r *tape.Result) bool {
	return OK(r) && o.met(r.TTFT, r.E2E, r.OutputTokens)
}

func (o SLO) met(ttft, e2e time.Duration, out int) bool {
	if o.TTFT > 0 && (ttft <= 0 || ttft > o.TTFT) {
		return false
	}
	if o.TPOT > 0 {
		r := tape.Result{TTFT: ttft, E2E: e2e, OutputTokens: out}
		if tpot, ok := ResultTPOT(&r); ok && tpot > o.TPOT {
			return false
		}
	}
	if o.E2E > 0 && e2e > o.E2E {
		return false
	}
	return true
}
