package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/llmtape/llmtape/internal/randx"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// GenerateConfig is vLLM's synthetic-conversation config (benchmarks/multi_turn,
// generate_multi_turn.json), unchanged, plus two optional extensions: Arrival and ThinkTime.
type GenerateConfig struct {
	// NumConversations is how many conversations to generate (> 0).
	NumConversations int
	// TextFiles are the text files prompts are cut from, relative to the config file; the
	// caller reads them (TextPaths) into GenerateOptions.Text.
	TextFiles []string
	// PrintStats asks for statistics of what was generated (the command prints them).
	PrintStats bool
	// NumTurns is the number of messages per conversation (user and assistant, as in vLLM):
	// at least 2, rounded up to even.
	NumTurns *Distribution
	// CommonPrefixTokens is the length of a prefix shared by every conversation's first
	// message (sampled once); optional, default 0.
	CommonPrefixTokens *Distribution
	// PrefixTokens is the length of each conversation's own context at its first message.
	PrefixTokens *Distribution
	// UserTokens is the length of each user message (the first one's common prefix and
	// opening count towards it; its own context does not).
	UserTokens *Distribution
	// OutputTokens is the length of each assistant message.
	OutputTokens *Distribution

	// Arrival (extension) spreads the conversations' starts; nil starts them all at once.
	Arrival *Arrival
	// ThinkTime (extension) is the pause before each later user message, in seconds; nil is
	// no pause.
	ThinkTime *Distribution
}

// Arrival is the "arrival" extension of the generate config:
// {"process": "poisson" | "gamma" | "constant", "rate": conversations per second,
// "cv": coefficient of variation of the gaps (gamma only; default 1)}.
type Arrival struct {
	Process string
	Rate    float64
	CV      float64
}

// generateFields are the config's JSON fields.
type generateFields struct {
	Filetype         *string         `json:"filetype"`
	NumConversations json.RawMessage `json:"num_conversations"`
	TextFiles        json.RawMessage `json:"text_files"`
	PrintStats       json.RawMessage `json:"print_stats"`
	PromptInput      json.RawMessage `json:"prompt_input"`
	PromptOutput     json.RawMessage `json:"prompt_output"`
	Arrival          json.RawMessage `json:"arrival"`
	ThinkTime        json.RawMessage `json:"think_time"`
}

// maxConversations bounds num_conversations.
const maxConversations = 10_000_000

// maxTurns bounds the messages of one conversation.
const maxTurns = 100_000

// ParseGenerateConfig reads a generate config. file names it in errors. Faults are
// *InputError values naming the field and what was expected.
func ParseGenerateConfig(data []byte, file string) (*GenerateConfig, error) {
	fail := func(field string, err error) error {
		return &InputError{File: file, Element: field, Err: err}
	}
	f, err := decodeGenerateFields(data, file, fail)
	if err != nil {
		return nil, err
	}
	c := &GenerateConfig{}
	if c.NumConversations, err = numConversations(f.NumConversations); err != nil {
		return nil, fail("num_conversations", err)
	}
	if c.TextFiles, err = textFiles(f.TextFiles, fail); err != nil {
		return nil, err
	}
	if len(f.PrintStats) > 0 && !bytes.Equal(f.PrintStats, []byte("null")) {
		if err := json.Unmarshal(f.PrintStats, &c.PrintStats); err != nil {
			return nil, fail("print_stats", fmt.Errorf("expected true or false, got %s", kind(f.PrintStats)))
		}
	}
	if err := c.parseLengths(&f, fail); err != nil {
		return nil, err
	}
	if len(f.Arrival) > 0 && !bytes.Equal(f.Arrival, []byte("null")) {
		if c.Arrival, err = parseArrival(f.Arrival); err != nil {
			return nil, fail("arrival", err)
		}
	}
	if len(f.ThinkTime) > 0 && !bytes.Equal(f.ThinkTime, []byte("null")) {
		if c.ThinkTime, err = parseDistribution(f.ThinkTime); err != nil {
			return nil, fail("think_time", err)
		}
	}
	return c, nil
}

// decodeGenerateFields decodes a config's object and checks its filetype.
func decodeGenerateFields(data []byte, file string, fail func(string, error) error) (generateFields, error) {
	var f generateFields
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return f, fail("", errors.New(`empty file, expected a JSON object {"filetype": "generate_conversations", …}`))
	}
	if trimmed[0] != '{' {
		return f, fail("", fmt.Errorf(`expected a JSON object {"filetype": "generate_conversations", …}, got %s`, kind(trimmed)))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return f, jsonError(data, file, 0, "", err)
	}
	if dec.More() {
		return f, fail("", errors.New("unexpected data after the config object"))
	}
	if f.Filetype == nil {
		return f, fail("filetype", errors.New(`missing, expected "generate_conversations"`))
	}
	if *f.Filetype != "generate_conversations" {
		return f, fail("filetype", fmt.Errorf(`expected "generate_conversations", got %q (a conversations file is imported with "llmtape import --format vllm")`, *f.Filetype))
	}
	return f, nil
}

// numConversations reads num_conversations: an integer from 1 to maxConversations.
func numConversations(raw json.RawMessage) (int, error) {
	if len(raw) == 0 {
		return 0, errors.New("missing, expected an integer > 0")
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil || n <= 0 || n > maxConversations {
		return 0, fmt.Errorf("expected an integer from 1 to %d, got %s", maxConversations, raw)
	}
	return n, nil
}

// textFiles reads text_files: a non-empty array of non-empty names.
func textFiles(raw json.RawMessage, fail func(string, error) error) ([]string, error) {
	if len(raw) == 0 {
		return nil, fail("text_files", errors.New("missing, expected an array of file names"))
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return nil, fail("text_files", fmt.Errorf("expected an array of file names, got %s", kind(raw)))
	}
	if len(names) == 0 {
		return nil, fail("text_files", errors.New("expected at least one file name"))
	}
	for i, name := range names {
		if name == "" {
			return nil, fail(fmt.Sprintf("text_files[%d]", i), errors.New("expected a file name, got an empty string"))
		}
	}
	return names, nil
}

// parseLengths reads the distributions of prompt_input and prompt_output.
func (c *GenerateConfig) parseLengths(f *generateFields, fail func(string, error) error) error {
	section := func(raw json.RawMessage, name string) (map[string]json.RawMessage, error) {
		if len(raw) == 0 {
			return nil, fail(name, errors.New("missing, expected an object"))
		}
		obj, err := object(raw)
		if err != nil {
			return nil, fail(name, err)
		}
		return obj, nil
	}
	in, err := section(f.PromptInput, "prompt_input")
	if err != nil {
		return err
	}
	out, err := section(f.PromptOutput, "prompt_output")
	if err != nil {
		return err
	}
	for _, l := range []struct {
		sec           map[string]json.RawMessage
		secName, name string
		optional      bool
		into          **Distribution
	}{
		{in, "prompt_input", "num_turns", false, &c.NumTurns},
		{in, "prompt_input", "common_prefix_num_tokens", true, &c.CommonPrefixTokens},
		{in, "prompt_input", "prefix_num_tokens", false, &c.PrefixTokens},
		{in, "prompt_input", "num_tokens", false, &c.UserTokens},
		{out, "prompt_output", "num_tokens", false, &c.OutputTokens},
	} {
		raw, ok := l.sec[l.name]
		switch {
		case !ok && l.optional:
			*l.into = &Distribution{Kind: "constant"}
		case !ok:
			return fail(l.secName+"."+l.name, errors.New(`missing, expected a distribution {"distribution": …}`))
		default:
			if *l.into, err = parseDistribution(raw); err != nil {
				return fail(l.secName+"."+l.name, err)
			}
		}
	}
	return nil
}

func parseArrival(raw json.RawMessage) (*Arrival, error) {
	obj, err := object(raw)
	if err != nil {
		return nil, fmt.Errorf(`%v (expected {"process": "poisson", "rate": conversations per second})`, err)
	}
	a := &Arrival{Process: "poisson", CV: 1}
	if p, ok := obj["process"]; ok {
		if err := json.Unmarshal(p, &a.Process); err != nil {
			return nil, fmt.Errorf("process: expected a string, got %s", kind(p))
		}
	}
	switch a.Process {
	case "poisson", "gamma", "constant":
	default:
		return nil, fmt.Errorf("process: expected poisson, gamma or constant, got %q", a.Process)
	}
	r, ok := obj["rate"]
	if !ok {
		return nil, errors.New("rate: missing, expected conversations per second (a number > 0)")
	}
	if err := json.Unmarshal(r, &a.Rate); err != nil || !(a.Rate > 0) || a.Rate > 1e9 {
		return nil, fmt.Errorf("rate: expected conversations per second (a number > 0), got %s", bytes.TrimSpace(r))
	}
	if cv, ok := obj["cv"]; ok {
		if err := json.Unmarshal(cv, &a.CV); err != nil || !(a.CV > 0) || a.CV > 100 {
			return nil, fmt.Errorf("cv: expected a number from 0 (exclusive) to 100, got %s", bytes.TrimSpace(cv))
		}
		if a.Process != "gamma" {
			return nil, fmt.Errorf("cv: only for the gamma process, not %q", a.Process)
		}
	}
	return a, nil
}

// GenerateOptions are the choices of one generation that the config does not hold.
type GenerateOptions struct {
	// Seed makes generation deterministic: equal seeds and configs give equal datasets.
	Seed uint64
	// Text is the text prompts are cut from: the contents of the config's text_files (see
	// GenerateConfig.TextPaths), or the command's --text-file. Generate reads no files: the
	// caller does. Ignored when Materializer is set; one of the two is needed.
	Text []byte
	// Materializer, when not nil, replaces Text (and Tokenizer).
	Materializer *synth.Materializer
	// Tokenizer names the tiktoken encoding lengths are measured in; default o200k_base.
	Tokenizer string
	// Model is put in every request's "model" field; default none.
	Model string
	// Name is the recording's name; default "generate".
	Name string
	// Now is the recording's start; default time.Now.
	Now func() time.Time
}

// TextPaths returns the paths of the config's text_files, those that are relative taken
// relative to dir (the config file's directory), for the caller to read into
// GenerateOptions.Text.
func (c *GenerateConfig) TextPaths(dir string) []string {
	paths := make([]string, len(c.TextFiles))
	for i, name := range c.TextFiles {
		paths[i] = name
		if !filepath.IsAbs(name) {
			paths[i] = filepath.Join(dir, name)
		}
	}
	return paths
}

// generateCheckEvery is how many conversations Generate makes between checks of its context:
// a conversation is tokenized as it is made, so fewer than checkEvery.
const generateCheckEvery = 64

// basePrompt is the request vLLM's generator puts in every user message.
const basePrompt = " Please rewrite the following text and add more content:"

// Generate makes a Dataset of synthetic conversations following vLLM's generator:
// conversations of NumTurns messages (user and assistant alternating); every user message
// starts with an opening unique to its conversation; the first one of each conversation
// starts with the common prefix, and carries the conversation's own context after the
// opening; then comes the request (basePrompt) and text up to the sampled length.
//
// Unlike vLLM's, no two stretches of text overlap (every piece is cut from the text after
// the previous one), and assistant messages are text of their sampled length. Lengths are
// exact under the tokenizer: pieces are cut at word boundaries where no token crosses.
//
// It runs in phases: sampling the shape (messages per conversation, context lengths, the
// common prefix), sampling arrivals, then per conversation sampling message lengths and
// think times, cutting its text, and building and scheduling its turns. Generate checks ctx
// every few conversations and returns its error, and no dataset, once it is done.
func Generate(ctx context.Context, cfg *GenerateConfig, opts GenerateOptions) (*Dataset, error) {
	if err := checkGenerateConfig(cfg); err != nil {
		return nil, err
	}
	m, err := opts.materializer(ctx)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x6c6c6d74617065))
	sh, err := sampleShape(rng, cfg)
	if err != nil {
		return nil, err
	}
	g := &generator{cfg: cfg, m: m, rng: rng, shape: sh, available: int64(m.Tokens()), baseTokens: m.Count(basePrompt)}
	if sh.need+sh.messages > g.available {
		return nil, fmt.Errorf("generate: the text files have %d tokens, not enough for %d conversations (%d messages, %d tokens of prefixes); add text files", g.available, cfg.NumConversations, sh.messages, sh.need)
	}
	start := time.Now()
	if opts.Now != nil {
		start = opts.Now()
	}
	arrivals := sampleArrivals(rng, cfg.Arrival, cfg.NumConversations)
	if err := g.cutCommon(); err != nil {
		return nil, err
	}
	d := newGenerated(opts.Name, start)
	var last time.Time
	for ci := range cfg.NumConversations {
		if ci%generateCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("generate: %w", err)
			}
		}
		msgs, thinks, err := g.conversation(ci)
		if err != nil {
			return nil, err
		}
		turns := textTurns(msgs, opts.Model, start.Add(arrivals[ci]))
		last = later(last, schedule(turns, start.Add(arrivals[ci]), thinks))
		d.Conversations = append(d.Conversations, Conversation{
			Conversation: tape.Conversation{
				Grouping: tape.GroupImport,
				Session:  "CONV_ID_" + strconv.Itoa(ci),
				Arrival:  arrivals[ci],
			},
			Turns: turns,
		})
	}
	d.Recording.Ended = last
	return d, nil
}

// checkGenerateConfig checks what Generate needs of a config built in code.
func checkGenerateConfig(cfg *GenerateConfig) error {
	if cfg == nil || cfg.NumConversations <= 0 || cfg.NumConversations > maxConversations {
		return errors.New("generate: num_conversations: expected 1 to 10000000")
	}
	for _, d := range []struct {
		name string
		d    *Distribution
	}{{"prompt_input.num_turns", cfg.NumTurns}, {"prompt_input.prefix_num_tokens", cfg.PrefixTokens},
		{"prompt_input.num_tokens", cfg.UserTokens}, {"prompt_output.num_tokens", cfg.OutputTokens}} {
		if d.d == nil {
			return fmt.Errorf("generate: %s: missing distribution", d.name)
		}
	}
	return nil
}

// materializer returns the Materializer to cut text with: o.Materializer, or one over o.Text.
func (o *GenerateOptions) materializer(ctx context.Context) (*synth.Materializer, error) {
	if o.Materializer != nil {
		return o.Materializer, nil
	}
	if o.Text == nil {
		return nil, errors.New("generate: no text to cut prompts from (the caller reads the config's text_files into GenerateOptions.Text)")
	}
	m, err := synth.New(ctx, o.Text, o.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("generate: text files: %w", err)
	}
	return m, nil
}

// shape is what Generate samples before it cuts any text: the messages of each conversation,
// the tokens of each one's own context and of the common prefix, and the totals that the
// text must hold (need: the prefixes and contexts; messages: at least a token each).
type shape struct {
	turns, prefixes []int
	common          int
	messages, need  int64
}

// sampleShape samples the messages per conversation (at least 2, rounded up to even), each
// conversation's context tokens, then the common prefix's tokens.
func sampleShape(rng *rand.Rand, cfg *GenerateConfig) (shape, error) {
	n := cfg.NumConversations
	sh := shape{turns: cfg.NumTurns.Ints(rng, n)}
	for i, t := range sh.turns {
		t = max(t, 2)
		t += t % 2
		if t > maxTurns {
			return shape{}, fmt.Errorf("generate: prompt_input.num_turns: sampled %d messages, more than the limit %d (give a max)", t, maxTurns)
		}
		sh.turns[i] = t
		sh.messages += int64(t)
	}
	sh.prefixes = cfg.PrefixTokens.Ints(rng, n)
	if cfg.CommonPrefixTokens != nil {
		sh.common = cfg.CommonPrefixTokens.Ints(rng, 1)[0]
	}
	sh.need = int64(sh.common)
	for _, p := range sh.prefixes {
		sh.need += int64(max(p, 0))
	}
	return sh, nil
}

// sampleArrivals returns each conversation's arrival from the first: all 0 without an
// arrival process.
func sampleArrivals(rng *rand.Rand, a *Arrival, n int) []time.Duration {
	arrivals := make([]time.Duration, n)
	if a == nil {
		return arrivals
	}
	var t float64
	for i := range arrivals {
		if i > 0 {
			t += gap(rng, a)
		}
		arrivals[i] = time.Duration(t * float64(time.Second))
	}
	return arrivals
}

// generator cuts the text of generated conversations: consecutive, non-overlapping pieces of
// the Materializer's text, counting the tokens taken against what the text holds.
type generator struct {
	cfg        *GenerateConfig
	m          *synth.Materializer
	rng        *rand.Rand
	shape      shape
	available  int64  // tokens of the text
	baseTokens int    // tokens of basePrompt
	commonText string // the common prefix
	cursor     int    // next word of the text
	used       int64  // tokens taken so far, the prefixes and contexts counted up front
}

// take cuts the next tokens tokens of text.
func (g *generator) take(tokens int) (string, error) {
	if tokens <= 0 {
		return "", nil
	}
	g.used += int64(tokens)
	if g.used > g.available {
		return "", fmt.Errorf("generate: the text files have %d tokens, not enough for this config (%d conversations); add text files", g.available, g.cfg.NumConversations)
	}
	s, next := g.m.Slice(g.cursor, tokens)
	g.cursor = next
	return s, nil
}

// cutCommon cuts the common prefix, counted up front in shape.need.
func (g *generator) cutCommon() error {
	g.used = g.shape.need
	var err error
	g.commonText, err = g.take(g.shape.common)
	g.used -= int64(g.shape.common)
	return err
}

// conversation samples the message lengths and think times of conversation ci and cuts its
// messages: user and assistant alternating.
func (g *generator) conversation(ci int) ([]message, []float64, error) {
	nt := g.shape.turns[ci]
	userTokens := g.cfg.UserTokens.Ints(g.rng, nt)
	outTokens := g.cfg.OutputTokens.Ints(g.rng, nt)
	var thinks []float64
	if g.cfg.ThinkTime != nil {
		thinks = g.cfg.ThinkTime.Sample(g.rng, nt)
	}
	opening := fmt.Sprintf(" %d is a nice number...", ci)
	openTokens := g.m.Count(opening)
	msgs := make([]message, 0, nt)
	for k := range nt {
		role, content := "assistant", ""
		var err error
		if k%2 == 1 {
			content, err = g.take(max(outTokens[k], 1))
		} else {
			role = "user"
			content, err = g.userMessage(ci, k, opening, openTokens, userTokens[k])
		}
		if err != nil {
			return nil, nil, err
		}
		msgs = append(msgs, message{raw: chatMessage(role, content), role: role, content: content})
	}
	return msgs, thinks, nil
}

// userMessage cuts user message k of conversation ci, of sampled tokens: the common prefix
// (first message), the opening, the conversation's own context (first message), the request,
// and text up to the length.
func (g *generator) userMessage(ci, k int, opening string, openTokens, tokens int) (string, error) {
	target := max(tokens, g.baseTokens)
	var b strings.Builder
	if k == 0 && g.shape.common > 0 {
		b.WriteString(g.commonText)
		target -= g.shape.common
	}
	b.WriteString(opening)
	target -= openTokens
	if p := g.shape.prefixes[ci]; k == 0 && p > 0 {
		g.used -= int64(p) // counted up front
		s, err := g.take(p)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	b.WriteString(basePrompt)
	target -= g.baseTokens
	s, err := g.take(target)
	if err != nil {
		return "", err
	}
	b.WriteString(s)
	return b.String(), nil
}

// newGenerated returns the empty Dataset of a generation named name (default "generate").
func newGenerated(name string, start time.Time) *Dataset {
	d := &Dataset{}
	d.Recording.Name = name
	if d.Recording.Name == "" {
		d.Recording.Name = "generate"
	}
	d.Recording.Source = "generate"
	d.Recording.Started = start
	d.Recording.Complete = true
	return d
}

// schedule sets the start of each generated turn: the first at the conversation's arrival at,
// each later one after the think time before its user message (message 2k of thinks; none
// when thinks is nil), since generated turns have no latency. It returns the last start.
func schedule(turns []tape.Turn, at time.Time, thinks []float64) time.Time {
	for k := range turns {
		t := &turns[k]
		t.Match = tape.GroupImport
		t.Tokens.Source = tape.TokensCounted
		if k > 0 && thinks != nil {
			at = at.Add(time.Duration(math.Max(thinks[2*k], 0) * float64(time.Second)))
		}
		t.Timing.Start = at
	}
	return at
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// gap samples the time in seconds between two conversation arrivals.
func gap(rng *rand.Rand, a *Arrival) float64 {
	if !(a.Rate > 0) {
		return 0
	}
	mean := 1 / a.Rate
	switch a.Process {
	case "constant":
		return mean
	case "gamma":
		cv := a.CV
		if !(cv > 0) {
			cv = 1
		}
		k := 1 / (cv * cv) // shape
		return randx.Gamma(rng, k) * mean / k
	}
	return rng.ExpFloat64() * mean
}
