package analyze_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/metrics"
)

// TestTableFitsIn100Columns renders figures of a large recording (seven-digit counts, minutes
// of think time, billions of tokens) and checks every line of the table.
func TestTableFitsIn100Columns(t *testing.T) {
	big := metrics.Dist{Count: 9_999_999, Mean: 123456.78, Std: 98765.4, Min: 0.001, P25: 1234.5,
		P50: 65432.1, P75: 999999.9, P90: 1234567.8, P95: 7654321, P99: 12345678.9, P999: 9e9, Max: 3.5e10}
	p := &analyze.Profile{
		Conversations: 9_999_999, Turns: 99_999_999,
		TurnsPerConversation: big, InputTokens: big, OutputTokens: big, ThinkTime: big,
		TTFT: big, TPOT: big, ITL: big, E2E: big,
		Arrivals:    analyze.Arrivals{SpanS: 86400.5, RatePerS: 1234.5678, Interarrival: big, CV: 3.14159},
		PrefixReuse: []analyze.Reuse{{BlockSize: 16, PromptTokens: 123_456_789_012, HitTokens: 98_765_432_109, HitRatio: 0.8, LRUTokens: 1 << 40, LRUHitTokens: 12_345_678_901, LRUHitRatio: 0.1}},
		ByTurn:      []analyze.TurnStats{{Bucket: "8-15", Requests: 9_999_999, InputTokens: big, OutputTokens: big, TTFT: big, ITL: big, E2E: big}},
		Models:      map[string]int{"meta-llama/Llama-3.1-70B-Instruct": 99_999_999},
	}
	var b bytes.Buffer
	if err := p.Write(&b, analyze.FormatTable); err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(b.String(), "\n") {
		if n := len([]rune(l)); n > 100 {
			t.Errorf("line %d has %d columns: %q", i+1, n, l)
		}
	}
}

// TestWriteSummary: a replayer's summary renders in each format; its table is the replayer's.
func TestWriteSummary(t *testing.T) {
	s := &metrics.Summary{Requests: metrics.Requests{Total: 3, OK: 2, Errors: 1},
		ErrorsByClass: map[string]int{"=http": 1}, TTFT: metrics.Dist{Count: 2, Mean: 12.5, P50: 12, Max: 13}}
	var table, want bytes.Buffer
	if err := analyze.WriteSummary(&table, s, analyze.FormatTable); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteTable(&want); err != nil {
		t.Fatal(err)
	}
	if table.String() != want.String() {
		t.Errorf("table:\n%s\nwant:\n%s", table.String(), want.String())
	}
	var js, csv bytes.Buffer
	if err := analyze.WriteSummary(&js, s, analyze.FormatJSON); err != nil || !strings.HasPrefix(js.String(), "{\n  \"requests\": {\n    \"total\": 3,") {
		t.Errorf("json (%v):\n%s", err, js.String())
	}
	if err := analyze.WriteSummary(&csv, s, analyze.FormatCSV); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"section,row,column,value\n", "summary,requests.errors,value,1\n",
		"distributions,ttft_ms,mean,12.5\n", "errors by class,'=http,requests,1\n"} {
		if !strings.Contains(csv.String(), line) {
			t.Errorf("csv lacks %q:\n%s", line, csv.String())
		}
	}
	if err := analyze.WriteSummary(&csv, s, analyze.FormatHTML); err == nil || !strings.Contains(err.Error(), "want table, json or csv") {
		t.Errorf("html: %v", err)
	}
}
