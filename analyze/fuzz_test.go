package analyze_test

import (
	"strings"
	"testing"

	"github.com/llmtape/llmtape/analyze"
)

// FuzzParseConditions: --fail-on is outside input. Parsing never panics, and what parses has a
// known operator and evaluates without panicking.
func FuzzParseConditions(f *testing.F) {
	for _, s := range []string{"ttft_ms.p99>+10%,errors>0", "e2e_ms.mean>=-5", "errors<1", "a>", ">1",
		"ttft_ms.p99>+1e309%", "ttft_ms.p99>NaN", ",,", "itl_ms.max<=0.5%"} {
		f.Add(s)
	}
	cmp, err := analyze.Compare(twoRunStore(), "1", "2", analyze.CompareConfig{})
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
