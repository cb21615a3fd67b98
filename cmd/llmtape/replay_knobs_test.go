package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// Tests of the request knobs that users of vLLM's multi-turn benchmark look for: --max-turns,
// --min-tokens, --extra-body; usage errors of those and of the client preset.

// TestReplayRequestKnobs: --max-turns sends the first N turns, --min-tokens sets min_tokens
// (capped at the output length), --extra-body is merged into every body.
func TestReplayRequestKnobs(t *testing.T) {
	path := replayStore(t, 3, 4)
	base, got := captureTarget(t)
	code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", base,
		"--think", "none", "--speed", "100", "--max-turns", "2", "--min-tokens", "9", "--output-len", "5",
		"--extra-body", `{"chat_template_kwargs":{"enable_thinking":false},"temperature":0}`,
		"--format", "json", "-o", filepath.Join(t.TempDir(), "s.json"))
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	reqs := got()
	if len(reqs) != 3*2 {
		t.Fatalf("%d requests, want 2 turns of 3 conversations", len(reqs))
	}
	for _, r := range reqs {
		var b struct {
			Stream    bool            `json:"stream"`
			MaxTokens int             `json:"max_tokens"`
			MinTokens int             `json:"min_tokens"`
			Temp      *float64        `json:"temperature"`
			Kwargs    json.RawMessage `json:"chat_template_kwargs"`
		}
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
		if !b.Stream || b.MaxTokens != 5 || b.MinTokens != 5 || b.Temp == nil || *b.Temp != 0 ||
			!sameJSON(t, b.Kwargs, json.RawMessage(`{"enable_thinking":false}`)) {
			t.Errorf("body %s: want stream, max_tokens 5, min_tokens 5 (9 capped), temperature 0 and the kwargs", r.body)
		}
	}
	// Below the output length, --min-tokens is sent as given.
	base, got = captureTarget(t)
	code, _, errOut = execCmd(context.Background(), "replay", "--store", path, "--target", base,
		"--think", "none", "--speed", "100", "--max-turns", "1", "--min-tokens", "3",
		"--format", "json", "-o", filepath.Join(t.TempDir(), "s.json"))
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	for _, r := range got() {
		if !strings.Contains(string(r.body), `"min_tokens":3`) {
			t.Errorf("body %s: want min_tokens 3", r.body)
		}
	}
}

// TestReplayKnobsUsage: bad values and combinations of the vLLM knobs are one-line usage
// errors that name the flag.
func TestReplayKnobsUsage(t *testing.T) {
	path := replayStore(t, 2, 2)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--extra-body", "[1]"}, "want a JSON object"},
		{[]string{"--extra-body", "{"}, "want a JSON object"},
		{[]string{"--extra-body", "null"}, "want a JSON object"},
		{[]string{"--extra-body", `{"messages":[]}`}, `"messages" is set by the replayer`},
		{[]string{"--extra-body", `{"stream":false}`}, `"stream" is set by the replayer`},
		{[]string{"--extra-body", `{"max_tokens":"many"}`}, "--extra-body set max_tokens"},
		{[]string{"--min-tokens", "3", "--ignore-eos"}, "--min-tokens and --ignore-eos"},
		{[]string{"--min-tokens", "-1"}, "--min-tokens -1"},
		{[]string{"--max-turns", "-2"}, "--max-turns -2"},
		{[]string{"--active-conversations", "4"}, "--active-conversations is for --clients"},
		{[]string{"--conversation-sampling", "random"}, "--conversation-sampling is for --clients"},
		{[]string{"--clients", "-1"}, "--clients -1"},
		{[]string{"--clients", "2", "--arrival", "poisson", "--rate", "2"}, "--arrival does not go with --clients"},
		{[]string{"--clients", "2", "--max-concurrency", "2"}, "--max-concurrency does not go with --clients"},
		{[]string{"--clients", "2", "--max-conversations", "4"}, "--max-conversations does not go with --clients"},
		{[]string{"--clients", "2", "--active-conversations", "1"}, "--active-conversations 1: want at least --clients (2)"},
		{[]string{"--clients", "2", "--conversation-sampling", "lru"}, `--conversation-sampling "lru"`},
	} {
		args := append([]string{"replay", "--store", path, "--target", "http://127.0.0.1:1"}, tc.args...)
		code, _, errOut := execCmd(context.Background(), args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, code, errOut, tc.want)
		}
	}
	code, out, _ := execCmd(context.Background(), "replay", "--help")
	for _, flag := range []string{"--max-turns", "--min-tokens", "--extra-body", "--clients", "--active-conversations", "--conversation-sampling"} {
		if code != 0 || !strings.Contains(out, flag) {
			t.Errorf("replay --help lacks %s", flag)
		}
	}
}
