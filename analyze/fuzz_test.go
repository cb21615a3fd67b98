package analyze_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/tape"
)

// FuzzParseConditions: --fail-on is outside input. Parsing never panics, and what parses has a
// known operator and evaluates without panicking.
func FuzzParseConditions(f *testing.F) {
	for _, s := range []string{"ttft_ms.p99>+10%,errors>0", "e2e_ms.mean>=-5", "errors<1", "a>", ">1",
		"ttft_ms.p99>+1e309%", "ttft_ms.p99>NaN", ",,", "itl_ms.max<=0.5%"} {
		f.Add(s)
	}
	cmp, err := analyze.Compare(context.Background(), twoRunStore(), "1", "2", analyze.CompareConfig{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		conds, err := analyze.ParseConditions(s)
		if err != nil {
			return
		}
		for _, c := range conds {
			switch c.Op {
			case ">", ">=", "<", "<=":
			default:
				t.Fatalf("%q: operator %q", s, c.Op)
			}
			if reason, ok := c.Eval(cmp); ok && !strings.Contains(reason, c.Name) {
				t.Fatalf("%q: reason %q does not name %s", s, reason, c.Name)
			}
		}
	})
}

func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"table", "JSON", "csv", "html", "", "xml"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, err := analyze.ParseFormat(s); err == nil && strings.ToLower(s) != string(got) {
			t.Fatalf("%q parsed as %q", s, got)
		}
	})
}

// FuzzAnalyze builds a recording from arbitrary bytes (odd Kept values, negative token counts,
// synthetic turns without a block size, forks of missing or later conversations) as a damaged
// store could hold, and wants Analyze not to panic and to stay consistent.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{0xff, 0x80, 0, 3, 200, 17, 5, 5, 5, 1, 0, 0, 9, 9, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(int8(b))
		}
		m := newMem()
		m.recs = []*tape.Recording{{ID: 1}}
		nconv := 1 + (next()&7)%4
		for c := 0; c < nconv; c++ {
			id := uint64(10 + c)
			conv := &tape.Conversation{ID: id, Recording: 1, Arrival: time.Duration(next()) * time.Millisecond}
			if next()&1 == 1 {
				conv.Parent, conv.ForkTurn = uint64(10+(next()&7)), next()
			}
			m.convs = append(m.convs, conv)
			for i, n := 0, (next()&7)%5; i < n; i++ {
				tr := chatTurn(id, i, time.Duration(next())*time.Second, next(), []msg{{int32(next() * 3), uint64(next() & 3)}}, next(), "x")
				if next()&3 == 0 {
					tr.Request.Synthetic = &tape.Synthetic{BlockSize: next(), HashIDs: []uint64{uint64(next() & 3), uint64(next())}, InputTokens: next() * 10}
				}
				m.addTurn(tr)
			}
		}
		p, err := analyze.Analyze(context.Background(), m, 1, analyze.Config{BlockSizes: []int{1 + next()&15, 512}, CacheTokens: int64(1 + next()&255)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.PrefixReuse {
			if r.HitTokens > r.PromptTokens || r.LRUHitTokens > r.HitTokens || r.HitTokens < 0 {
				t.Fatalf("inconsistent reuse %+v", r)
			}
		}
	})
}
