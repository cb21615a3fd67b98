package dataset_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// vllmExampleDir returns a directory holding vLLM's example config and, under the name the
// config gives (pg1184.txt), the embedded excerpt of that book.
func vllmExampleDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	cfg, err := os.ReadFile("testdata/generate_multi_turn.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "generate_multi_turn.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pg1184.txt"), synth.DefaultText(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func generateFrom(t testing.TB, dir string, seed uint64) *dataset.Dataset {
	t.Helper()
	path := filepath.Join(dir, "generate_multi_turn.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dataset.ParseGenerateConfig(data, path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Generate(context.Background(), cfg, dataset.GenerateOptions{Seed: seed, Text: readTexts(t, cfg, dir), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// readTexts reads the config's text_files from dir, as the command does.
func readTexts(t testing.TB, cfg *dataset.GenerateConfig, dir string) []byte {
	t.Helper()
	var text []byte
	for _, p := range cfg.TextPaths(dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text = append(append(text, b...), '\n')
	}
	return text
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

type stat struct {
	n             int
	sum, min, max float64
}

func (s *stat) add(v float64) {
	if s.n == 0 || v < s.min {
		s.min = v
	}
	if s.n == 0 || v > s.max {
		s.max = v
	}
	s.n++
	s.sum += v
}

func (s *stat) mean() float64 { return s.sum / float64(s.n) }

func TestGenerateVLLMExample(t *testing.T) {
	dir := vllmExampleDir(t)
	d := generateFrom(t, dir, 1)
	a, _ := json.Marshal(d.Conversations) // before Write sets the ids
	st := mustStore(t)
	rec, err := d.Write(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Conversations != 24 || rec.Source != "generate" {
		t.Fatalf("recording %+v, want 24 conversations", rec)
	}

	// Measure what the store holds with tiktoken.
	var msgsPer, first, prefix, user, assistant stat
	var firsts []string
	seenAssistant := map[string]bool{}
	common := -1
	err = st.Conversations(rec.ID, func(c *tape.Conversation) error {
		var last []json.RawMessage
		var lastTurn *tape.Turn
		err := st.TurnMessages(c.ID, func(tr *tape.Turn, msgs []json.RawMessage) error {
			last, lastTurn = msgs, tr
			return nil
		})
		if err != nil {
			return err
		}
		full := append(last, tape.ReplyMessage(lastTurn))
		msgsPer.add(float64(len(full)))
		for i, raw := range full {
			m, err := openai.ParseMessage(raw)
			if err != nil {
				return err
			}
			n := float64(openai.CountTokens(m.Content))
			switch {
			case i == 0:
				first.add(n)
				firsts = append(firsts, m.Content)
			case m.Role == "user":
				user.add(n)
			default:
				assistant.add(n)
				if seenAssistant[m.Content] {
					t.Errorf("assistant text repeated: conversations share filler text")
				}
				seenAssistant[m.Content] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The common prefix: the longest prefix all first messages share.
	lcp := firsts[0]
	for _, f := range firsts[1:] {
		for !strings.HasPrefix(f, lcp) {
			lcp = lcp[:len(lcp)-1]
		}
	}
	common = openai.CountTokens(lcp)
	opening := openai.CountTokens(" 10 is a nice number...")
	base := openai.CountTokens(" Please rewrite the following text and add more content:")
	for _, f := range firsts {
		prefix.add(float64(openai.CountTokens(f)) - 500 - float64(opening) - float64(base))
	}
	t.Logf("messages per conversation: mean %.2f min %g max %g", msgsPer.mean(), msgsPer.min, msgsPer.max)
	t.Logf("common prefix: %d tokens", common)
	t.Logf("first user message: mean %.1f min %g max %g", first.mean(), first.min, first.max)
	t.Logf("conversation prefix: mean %.1f min %g max %g", prefix.mean(), prefix.min, prefix.max)
	t.Logf("later user messages: n %d mean %.1f min %g max %g", user.n, user.mean(), user.min, user.max)
	t.Logf("assistant messages: n %d mean %.1f min %g max %g", assistant.n, assistant.mean(), assistant.min, assistant.max)

	if msgsPer.min < 12 || msgsPer.max > 18 || math.Abs(msgsPer.mean()-15.4) > 2 {
		t.Errorf("messages per conversation %v, want 12-18 (even), mean about 15.4", msgsPer)
	}
	if common < 500 || common > 502 {
		t.Errorf("common prefix %d tokens, want 500 (+ at most the shared start of the openings)", common)
	}
	// Lognormal average 1000 (scaled to exactly 1000 before the cap at 5000), max 5000; a
	// conversation's prefix may be a token off where the opening's number ends.
	if prefix.max > 5001 || math.Abs(prefix.mean()-1000) > 25 || prefix.min < 1 {
		t.Errorf("conversation prefixes %+v, want mean about 1000, max 5000", prefix)
	}
	if user.min < 120 || user.max > 160 || math.Abs(user.mean()-140) > 4 {
		t.Errorf("later user messages %+v, want 120-160, mean 140", user)
	}
	if assistant.min < 80 || assistant.max > 120 || math.Abs(assistant.mean()-100) > 4 {
		t.Errorf("assistant messages %+v, want 80-120, mean 100", assistant)
	}

	// Deterministic by seed (the embedded text is the text file here).
	cfg, err := dataset.ParseGenerateConfig(must(os.ReadFile(filepath.Join(dir, "generate_multi_turn.json"))), "g.json")
	if err != nil {
		t.Fatal(err)
	}
	again, err := dataset.Generate(context.Background(), cfg, dataset.GenerateOptions{Seed: 1, Materializer: synth.Default(), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	other, err := dataset.Generate(context.Background(), cfg, dataset.GenerateOptions{Seed: 2, Materializer: synth.Default(), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(again.Conversations)
	c, _ := json.Marshal(other.Conversations)
	if string(a) != string(b) {
		t.Error("equal seeds gave different conversations")
	}
	if string(a) == string(c) {
		t.Error("different seeds gave equal conversations")
	}
}

func TestGenerateExtensions(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "t.txt"), synth.DefaultText(), 0o644)
	cfgText := `{"filetype": "generate_conversations", "num_conversations": 200, "text_files": ["t.txt"],
 "prompt_input": {"num_turns": {"distribution": "constant", "value": 4},
   "prefix_num_tokens": {"distribution": "zipf", "alpha": 2, "max": 50},
   "num_tokens": {"distribution": "poisson", "alpha": 30, "max": 40}},
 "prompt_output": {"num_tokens": {"distribution": "lognormal", "mean": 3, "sigma": 0.5, "max": 60}},
 "arrival": {"process": "gamma", "rate": 2, "cv": 2},
 "think_time": {"distribution": "constant", "value": 5}}`
	cfg, err := dataset.ParseGenerateConfig([]byte(cfgText), "c.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Generate(context.Background(), cfg, dataset.GenerateOptions{Seed: 3, Text: readTexts(t, cfg, dir), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Conversations) != 200 {
		t.Fatalf("%d conversations", len(d.Conversations))
	}
	// The arrivals of seed 3 are pinned: a change to the random stream (the order of draws
	// in randx.Gamma) would change every generated dataset.
	for i, want := range []time.Duration{32554619, 32554623, 35404974} {
		if got := d.Conversations[i+1].Conversation.Arrival; got != want {
			t.Errorf("conversation %d arrives at %d ns, want %d (seeded stream changed)", i+1, got, want)
		}
	}
	last := d.Conversations[len(d.Conversations)-1].Conversation.Arrival
	if rate := 199 / last.Seconds(); rate < 1.2 || rate > 3.3 {
		t.Errorf("arrival rate %.2f/s, want about 2", rate)
	}
	for _, c := range d.Conversations {
		if len(c.Turns) != 2 {
			t.Fatalf("%d turns, want 2 (4 messages)", len(c.Turns))
		}
		if gap := c.Turns[1].Timing.Start.Sub(c.Turns[0].Timing.Start); gap != 5*time.Second {
			t.Fatalf("think time %v, want 5s", gap)
		}
		if !c.Turns[0].Timing.Start.Equal(epoch.Add(c.Conversation.Arrival)) {
			t.Fatalf("first turn does not start at the arrival")
		}
	}
}

func TestGenerateConfigErrors(t *testing.T) {
	valid := func(mod string) string {
		return `{"filetype": "generate_conversations", "num_conversations": 2, "text_files": ["t.txt"],
 "prompt_input": {"num_turns": {"distribution": "uniform", "min": 2, "max": 4},
  "prefix_num_tokens": {"distribution": "constant", "value": 10},
  "num_tokens": {"distribution": "constant", "value": 30}},
 "prompt_output": {"num_tokens": {"distribution": "constant", "value": 20}}` + mod + `}`
	}
	tests := []struct{ in, want string }{
		{"", "c.json: empty file"},
		{"[]", "expected a JSON object"},
		{`{"filetype": "x"}`, `filetype: expected "generate_conversations", got "x"`},
		{`{"num_conversations": 1}`, "filetype: missing"},
		{`{"filetype": "generate_conversations", "num_conversations": 0}`, "num_conversations: expected an integer from 1"},
		{`{"filetype": "generate_conversations", "num_conversations": "3"}`, "c.json: num_conversations: expected an integer"},
		{`{"filetype": "generate_conversations", "num_conversations": 1, "text_files": "a.txt"}`, "text_files: expected an array of file names, got a string"},
		{`{"filetype": "generate_conversations", "num_conversations": 1, "text_files": ["a"]}`, "prompt_input: missing"},
		{`{"filetype": "generate_conversations", "num_conversations": 1, "text_files": ["a"], "prompt_input": {}, "prompt_output": {}}`, "prompt_input.num_turns: missing"},
		{strings.Replace(valid(""), `"constant", "value": 10`, `"lognormal", "average": 0.5`, 1), "prompt_input.prefix_num_tokens: average: expected a number ≥ 1"},
		{strings.Replace(valid(""), `"constant", "value": 10`, `"lognormal", "average": 10, "mean": 1`, 1), "give either average"},
		{strings.Replace(valid(""), `"constant", "value": 10`, `"lognormal"`, 1), "expected average, or mean and sigma"},
		{strings.Replace(valid(""), `"min": 2, "max": 4`, `"min": 5, "max": 4`, 1), "max: expected a number ≥ min"},
		{strings.Replace(valid(""), `"min": 2, "max": 4`, `"min": 0, "max": 4`, 1), "min: expected a number > 0"},
		{strings.Replace(valid(""), `"min": 2, "max": 4`, `"max": 4`, 1), `missing field "min"`},
		{strings.Replace(valid(""), `"constant", "value": 10`, `"zipf", "alpha": 1`, 1), "alpha: expected a number > 1"},
		{strings.Replace(valid(""), `"constant", "value": 10`, `"gauss"`, 1), `distribution: unknown "gauss"`},
		{strings.Replace(valid(""), `"constant", "value": 10`, `"constant", "value": "10"`, 1), "value: expected a number"},
		{valid(`, "print_stats": "yes"`), "print_stats: expected true or false"},
		{valid(`, "arrival": {"process": "burst", "rate": 1}`), `arrival: process: expected poisson, gamma or constant, got "burst"`},
		{valid(`, "arrival": {"rate": 0}`), "arrival: rate: expected conversations per second"},
		{valid(`, "arrival": {"rate": 1, "cv": 2}`), "cv: only for the gamma process"},
		{valid(`, "think_time": {"distribution": "uniform", "min": 1}`), `think_time: uniform distribution: missing field "max"`},
		{valid("") + "x", "unexpected data after the config object"},
		{`{"filetype": "generate_conversations",`, "malformed JSON"},
	}
	for _, tc := range tests {
		_, err := dataset.ParseGenerateConfig([]byte(tc.in), "c.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseGenerateConfig(%.60q…): error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
	// A valid config without text (the caller reads text_files), or with too short a text.
	cfg, err := dataset.ParseGenerateConfig([]byte(valid("")), "c.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.TextPaths("/cfg"); len(got) != 1 || got[0] != filepath.Join("/cfg", "t.txt") {
		t.Errorf("TextPaths = %q", got)
	}
	if _, err := dataset.Generate(context.Background(), cfg, dataset.GenerateOptions{}); err == nil || !strings.Contains(err.Error(), "no text") {
		t.Errorf("no text: %v", err)
	}
	if _, err := dataset.Generate(context.Background(), cfg, dataset.GenerateOptions{Text: []byte("too short")}); err == nil || !strings.Contains(err.Error(), "text has") {
		t.Errorf("short text: %v", err)
	}
	big := strings.Replace(valid(""), `"num_conversations": 2`, `"num_conversations": 1000`, 1)
	big = strings.Replace(big, `"value": 10`, `"value": 1000`, 1)
	cfg, _ = dataset.ParseGenerateConfig([]byte(big), "c.json")
	if _, err := dataset.Generate(context.Background(), cfg, dataset.GenerateOptions{Text: synth.DefaultText()}); err == nil || !strings.Contains(err.Error(), "not enough") {
		t.Errorf("text too short for the config: %v", err)
	}
}

// TestCanceled: Generate and Parse return the context's error once it is done, and nothing.
func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := vllmExampleDir(t)
	path := filepath.Join(dir, "generate_multi_turn.json")
	cfg, err := dataset.ParseGenerateConfig(must(os.ReadFile(path)), path)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := dataset.Generate(ctx, cfg, dataset.GenerateOptions{Materializer: synth.Default()}); !errors.Is(err, context.Canceled) || d != nil {
		t.Errorf("Generate: %v, %v", d, err)
	}
	for _, tc := range []struct{ format, in string }{
		{"vllm", `[{"id": "a", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]`},
		{"sharegpt", `[{"id": "a", "conversations": [{"from": "human", "value": "hi"}]}]`},
		{"mooncake", `{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}`},
		{"azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,4808,10\n"},
	} {
		if d, err := dataset.Parse(ctx, tc.format, strings.NewReader(tc.in), "f", dataset.Config{}); !errors.Is(err, context.Canceled) || d != nil {
			t.Errorf("Parse %s: %v, %v", tc.format, d, err)
		}
	}
}
