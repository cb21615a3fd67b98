package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// compareJSON runs compare with args and --format json, wants exit status 0 and returns the
// comparison.
func compareJSON(t *testing.T, args ...string) analyze.Comparison {
	t.Helper()
	code, out, errOut := execCmd(context.Background(), append(append([]string{"compare"}, args...), "--format", "json")...)
	if code != 0 {
		t.Fatalf("compare %v: exit %d: %s", args, code, errOut)
	}
	var c analyze.Comparison
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("compare's JSON: %v\n%s", err, out)
	}
	if c.VerifyOutput == nil {
		t.Fatalf("compare %v: no verify_output in\n%s", args, out)
	}
	return c
}

func hasWarning(c analyze.Comparison, part string) bool {
	for _, w := range c.Warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

// TestVerifyOutputRecordingAgainstSims records conversations through llmtape record in front
// of a sim, replays them with --keep-replies against the same sim and against a sim with
// --vary-output, and verifies the replies against the recording: every reply equal for the
// same sim; below 100 % with the first divergence named, and --fail-on 'output_match<99%'
// exiting 1, for the varied one. The recorded requests had no temperature, so the output says
// that the verification assumes deterministic sampling.
func TestVerifyOutputRecordingAgainstSims(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.TTFT, cfg.ITL, cfg.ITLPerRunning, cfg.PrefillPerToken, cfg.MaxRunning = time.Millisecond, 100*time.Microsecond, 0, 0, 0
	cfg.Tokenizer = "approx"
	up := simtest.MustStart(t, cfg).URL()
	cfg.VaryOutput = true
	varied := simtest.MustStart(t, cfg).URL()

	const convs, turns = 3, 3
	store := recConversations(t, up, "verify.db", convs, turns)

	ctx := context.Background()
	for name, target := range map[string]string{"same": up, "varied": varied} {
		if code, _, errOut := execCmd(ctx, "replay", "--store", store, "--target", target, "--think", "none",
			"--keep-replies", "--max-concurrency", "1", "--name", name); code != 0 {
			t.Fatalf("replay %s: exit %d: %s", name, code, errOut)
		}
	}

	same := compareJSON(t, "recording", "same", "--store", store, "--verify-output")
	v := same.VerifyOutput
	if v.Compared != convs*turns || v.Exact != v.Compared || v.ExactMatch != 1 || v.MissingReply != 0 || v.FirstDivergence != nil {
		t.Errorf("against the same sim: %+v, want all %d replies equal", v, convs*turns)
	}
	if v.MeanCommonPrefixTokens <= 0 || v.Length.Base != v.Length.Target || v.Length.ChangedRatio != 0 {
		t.Errorf("against the same sim: prefix %v tokens, length %+v", v.MeanCommonPrefixTokens, v.Length)
	}
	if v.Sampled.TemperatureUnset != convs*turns || !hasWarning(same, "only meaningful with deterministic sampling") {
		t.Errorf("no temperature in the requests: sampled %+v, warnings %q", v.Sampled, same.Warnings)
	}
	code, out, errOut := execCmd(ctx, "compare", "recording", "same", "--store", store, "--verify-output", "--fail-on", "output_match<99%")
	if code != 0 || !strings.Contains(out, "output: 100% of replies equal (9 of 9)") || !strings.Contains(out, "fail-on PASSED") {
		t.Errorf("gate against the same sim: exit %d: %s\n%s", code, errOut, out)
	}
	if !strings.Contains(errOut, "llmtape: warning: output verification is only meaningful with deterministic sampling") {
		t.Errorf("stderr has no temperature warning: %s", errOut)
	}

	vary := compareJSON(t, "recording", "varied", "--store", store, "--verify-output")
	v = vary.VerifyOutput
	if v.Compared != convs*turns || v.ExactMatch >= 1 || v.FirstDivergence == nil {
		t.Fatalf("against the varied sim: %+v, want some replies to differ", v)
	}
	if v.Length.Base != v.Length.Target {
		t.Errorf("--vary-output keeps lengths: %+v", v.Length)
	}
	// The first divergence is the first pair (by conversation, turn) whose replies differ, and
	// its snippets are those replies from the first differing character.
	d := v.FirstDivergence
	recorded, answered := verifyReplies(t, store, "varied")
	first := ""
	for _, k := range sortedKeys(recorded) {
		if recorded[k] != answered[k] {
			first = k
			break
		}
	}
	if got := fmt.Sprintf("%d/%d", d.Conversation, d.Turn); got != first {
		t.Errorf("first divergence at %s, want %s", got, first)
	}
	if b, a := recorded[first], answered[first]; !strings.Contains(b, strings.TrimSuffix(d.Base, "…")) ||
		!strings.Contains(a, strings.TrimSuffix(d.Target, "…")) || d.Base == d.Target {
		t.Errorf("snippets %q / %q of replies %q / %q", d.Base, d.Target, b, a)
	}
	for _, cond := range []string{"output_match<99%", "output_match<0.99"} {
		code, out, errOut = execCmd(ctx, "compare", "recording", "varied", "--store", store, "--verify-output", "--fail-on", cond)
		if code != 1 || !strings.Contains(errOut, "llmtape: compare: fail-on: output_match is ") {
			t.Errorf("--fail-on %s against the varied sim: exit %d, stderr %s", cond, code, errOut)
		}
		want := fmt.Sprintf("first divergence: conversation %d turn %d token %d", d.Conversation, d.Turn+1, d.Token)
		if !strings.Contains(out, want) || !strings.Contains(out, "output verification") {
			t.Errorf("table does not name the first divergence (%s):\n%s", want, out)
		}
	}
}

// verifyReplies reads the recorded replies and the run's kept replies, by "conversation/turn".
func verifyReplies(t *testing.T, store, run string) (recorded, answered map[string]string) {
	t.Helper()
	st, err := tape.Open(store, &tape.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.FindRun(run)
	if err != nil {
		t.Fatal(err)
	}
	recorded, answered = map[string]string{}, map[string]string{}
	err = st.Conversations(r.Recording, func(c *tape.Conversation) error {
		return st.Turns(c.ID, func(tu *tape.Turn) error {
			recorded[fmt.Sprintf("%d/%d", tu.Conversation, tu.Index)] = tu.Response.Content
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Results(r.ID, func(res *tape.Result) error {
		if res.Reply != nil {
			answered[fmt.Sprintf("%d/%d", res.Conversation, res.Turn)] = res.Reply.Content
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recorded, answered
}

// sortedKeys orders "conversation/turn" keys numerically.
func sortedKeys(m map[string]string) []string {
	num := func(k string) [2]int {
		var n [2]int
		fmt.Sscanf(k, "%d/%d", &n[0], &n[1])
		return n
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		x, y := num(a), num(b)
		return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1]))
	})
	return keys
}

// TestVerifyOutputRuns compares two runs' kept replies: two runs against the same sim with
// --extra-body '{"temperature":0}' match 100 % with no sampling warning; a run made without
// --keep-replies is a clear error naming replay --keep-replies, never a silent 100 %; and a
// gate on output_match without --verify-output is a usage error.
func TestVerifyOutputRuns(t *testing.T) {
	path := chatStore(t, "runs.db", rand.NewPCG(15, 4), 4, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 3, MessageBytes: 60}, completion: 12}
	})
	simURL := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond, TokensPerChunk: 2})
	ctx := context.Background()
	for _, r := range []struct {
		name string
		args []string
	}{
		{"a", []string{"--keep-replies", "--extra-body", `{"temperature":0}`}},
		{"b", []string{"--keep-replies", "--extra-body", `{"temperature":0}`}},
		{"bare", nil},
	} {
		args := append([]string{"replay", "--store", path, "--target", simURL, "--think", "none", "--name", r.name}, r.args...)
		if code, _, errOut := execCmd(ctx, args...); code != 0 {
			t.Fatalf("replay %s: exit %d: %s", r.name, code, errOut)
		}
	}
	c := compareJSON(t, "a", "b", "--store", path, "--verify-output")
	if v := c.VerifyOutput; v.Compared != 12 || v.ExactMatch != 1 || v.FirstDivergence != nil ||
		v.Sampled.TemperatureAbove0+v.Sampled.TemperatureUnset != 0 || hasWarning(c, "deterministic") {
		t.Errorf("a vs b: %+v, warnings %q", v, c.Warnings)
	}
	// The recorded requests had temperature 0.7: the runs' --extra-body set 0, so against the
	// recording the recorded side was sampled.
	rc := compareJSON(t, "recording", "a", "--store", path, "--verify-output")
	if v := rc.VerifyOutput; v.Sampled.TemperatureAbove0 != 12 || !hasWarning(rc, "temperature > 0: 12") {
		t.Errorf("recording vs a: sampled %+v, warnings %q", v.Sampled, rc.Warnings)
	}

	for _, args := range [][]string{{"a", "bare"}, {"recording", "bare"}, {"bare", "a"}} {
		code, out, errOut := execCmd(ctx, "compare", args[0], args[1], "--store", path, "--verify-output", "--fail-on", "output_match<99%")
		if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 ||
			!strings.Contains(errOut, "run 3 (bare) has no replies to compare: it was replayed without replay --keep-replies") {
			t.Errorf("compare %v without kept replies: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	code, _, errOut := execCmd(ctx, "compare", "a", "b", "--store", path, "--fail-on", "output_match<99%")
	if code != 2 || !strings.Contains(errOut, "needs --verify-output") {
		t.Errorf("output_match without --verify-output: exit %d: %s", code, errOut)
	}
	// The page has an output_match card among the verdict's; CSV has every figure.
	var out string
	code, out, errOut = execCmd(ctx, "compare", "a", "b", "--store", path, "--verify-output", "--format", "html")
	if code != 0 || !strings.Contains(out, "output_match") || !strings.Contains(out, "100% equal") {
		t.Errorf("html: exit %d: %s, no output_match card", code, errOut)
	}
	code, out, errOut = execCmd(ctx, "compare", "a", "b", "--store", path, "--verify-output", "--format", "csv")
	if code != 0 || !strings.Contains(out, "output verification,exact_match,value,1\n") || !strings.Contains(out, "output verification,compared,value,12\n") {
		t.Errorf("csv: exit %d: %s\n%s", code, errOut, out)
	}
	// Without --verify-output, compare's JSON has no verify_output.
	code, out, _ = execCmd(ctx, "compare", "a", "b", "--store", path, "--format", "json")
	if code != 0 || strings.Contains(out, "verify_output") {
		t.Errorf("compare without --verify-output: exit %d, verify_output present: %v", code, strings.Contains(out, "verify_output"))
	}
}
