package analyze_test

import (
	"strings"
	"testing"

	"github.com/llmtape/llmtape/analyze"
)

// A condition on output_match reads its value as the target's share of equal replies: 99% and
// 0.99 are the same share, not a change; a signed value is refused. Other figures keep their
// meaning: % is a relative change, a sign an absolute change.
func TestOutputMatchCondition(t *testing.T) {
	verified := func(exact, compared int) *analyze.Comparison {
		return &analyze.Comparison{VerifyOutput: &analyze.OutputVerification{Compared: compared, Exact: exact,
			ExactMatch: float64(exact) / float64(compared)}}
	}
	for _, tc := range []struct {
		cond  string
		c     *analyze.Comparison
		fails bool
		why   string
	}{
		{"output_match<99%", verified(197, 200), true, "output_match is 98.5% (197 of 200 replies equal) [output_match<99%]"},
		{"output_match<0.99", verified(197, 200), true, "output_match is 98.5% (197 of 200 replies equal) [output_match<0.99]"},
		{"output_match<98%", verified(197, 200), false, ""},
		{"output_match<0.98", verified(197, 200), false, ""},
		{"output_match<99%", verified(200, 200), false, ""},
		{"output_match<=100%", verified(200, 200), true, "output_match is 100% (200 of 200 replies equal) [output_match<=100%]"},
		{"output_match<99%", &analyze.Comparison{VerifyOutput: &analyze.OutputVerification{MissingReply: 3}}, true,
			"output_match has no replies compared (3 matched requests without a reply) [output_match<99%]"},
		{"output_match<99%", &analyze.Comparison{}, true, "output_match was not measured: compare without --verify-output [output_match<99%]"},
	} {
		t.Run(tc.cond, func(t *testing.T) {
			conds, err := analyze.ParseConditions(tc.cond)
			if err != nil {
				t.Fatal(err)
			}
			why, fails := conds[0].Eval(tc.c)
			if fails != tc.fails || why != tc.why {
				t.Errorf("Eval = %q, %v; want %q, %v", why, fails, tc.why, tc.fails)
			}
		})
	}
	for _, bad := range []string{"output_match<-1%", "output_match>+0.5"} {
		if _, err := analyze.ParseConditions(bad); err == nil || !strings.Contains(err.Error(), "not a change") {
			t.Errorf("ParseConditions(%q) = %v, want an error saying it is not a change", bad, err)
		}
	}
	// Existing figures keep their meaning.
	conds, err := analyze.ParseConditions("ttft_ms.p99>+10%,e2e_ms.p50>+200,errors>0")
	if err != nil {
		t.Fatal(err)
	}
	if c := conds[0]; !c.Percent || !c.Signed || c.Value != 10 {
		t.Errorf("ttft_ms.p99>+10%% parsed as %+v", c)
	}
	if c := conds[1]; c.Percent || !c.Signed || c.Value != 200 {
		t.Errorf("e2e_ms.p50>+200 parsed as %+v", c)
	}
	if c := conds[2]; c.Percent || c.Signed || c.Name != "requests.errors" {
		t.Errorf("errors>0 parsed as %+v", c)
	}
}
