package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/tape/tapetest"
)

// Tests of the request knobs that users of vLLM's multi-turn benchmark look for: --max-turns,
// --min-tokens, --extra-body, --stream; usage errors of those and of the client preset.

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
	for _, flag := range []string{"--stream", "--max-turns", "--min-tokens", "--extra-body", "--clients", "--active-conversations", "--conversation-sampling"} {
		if code != 0 || !strings.Contains(out, flag) {
			t.Errorf("replay --help lacks %s", flag)
		}
	}
}

// TestReplayStream: --stream recorded (the default) sends the turns recorded without
// streaming whole and measures them by E2E alone; always streams every request; never none.
func TestReplayStream(t *testing.T) {
	// Chat 0 was streamed when recorded, chat 1 not.
	path := chatStore(t, "whole.db", rand.NewPCG(3, 4), 2, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 3, MessageBytes: 60},
			arrival: time.Duration(i) * time.Millisecond, completion: 4, whole: i == 1}
	})
	for _, tc := range []struct {
		mode     string
		streamed int // requests sent as streams, of 6
	}{
		{"recorded", 3},
		{"always", 6},
		{"never", 0},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			base, got := captureTarget(t)
			sum := filepath.Join(t.TempDir(), "s.json")
			code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", base,
				"--think", "none", "--speed", "100", "--stream", tc.mode, "--format", "json", "-o", sum)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			streamed := 0
			for _, r := range got() {
				var b map[string]json.RawMessage
				if err := json.Unmarshal(r.body, &b); err != nil {
					t.Fatal(err)
				}
				switch s, opts := string(b["stream"]), b["stream_options"]; {
				case s == "true" && opts != nil:
					streamed++
				case s == "true" || opts != nil:
					t.Errorf("body %s: stream_options without a stream, or a stream without usage", r.body)
				}
			}
			if streamed != tc.streamed {
				t.Errorf("%d requests streamed, want %d", streamed, tc.streamed)
			}
			var s struct {
				Requests struct{ OK int }
				TTFT     struct{ Count int } `json:"ttft_ms"`
				E2E      struct{ Count int } `json:"e2e_ms"`
				ITL      struct{ Count int } `json:"itl_ms"`
			}
			if err := json.Unmarshal(mustRead(t, sum), &s); err != nil {
				t.Fatal(err)
			}
			if s.Requests.OK != 6 || s.E2E.Count != 6 || s.TTFT.Count != tc.streamed || (tc.streamed == 0) != (s.ITL.Count == 0) {
				t.Errorf("summary: %d ok, e2e %d, ttft %d, itl %d; want 6, 6, %d (E2E only when sent whole)",
					s.Requests.OK, s.E2E.Count, s.TTFT.Count, s.ITL.Count, tc.streamed)
			}
			whole := fmt.Sprintf("%d requests were sent without streaming", 6-tc.streamed)
			if tc.streamed < 6 && !strings.Contains(errOut, whole) {
				t.Errorf("stderr %q, want %q", errOut, whole)
			}
		})
	}
	for _, args := range [][]string{
		{"--stream", "sometimes"},
		{"--stream", "never", "--slo", "ttft=1s"},
	} {
		code, _, errOut := execCmd(context.Background(), append([]string{"replay", "--store", path, "--target", "http://127.0.0.1:1"}, args...)...)
		if code != 2 || !strings.Contains(errOut, "--stream") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want a usage error naming --stream", args, code, errOut)
		}
	}
}
