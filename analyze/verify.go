package analyze

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

// OutputMatch is the --fail-on figure of output verification: the target's exact-match share
// of the compared replies (docs/analyze.md, "Output verification").
const OutputMatch = "output_match"

// snippetBytes bounds each snippet of a first divergence.
const snippetBytes = 80

// OutputVerification compares the replies of matched requests turn by turn (compare
// --verify-output): a recorded turn's reply is its Response (content and tool calls), a run's
// is its Result.Reply (kept by replay --keep-replies). Only pairs that succeeded on both sides
// are compared; tokens are counted with openai.CountTokens' encoding.
type OutputVerification struct {
	// Compared is the number of pairs that succeeded on both sides with a reply on both.
	Compared int `json:"compared"`
	// MissingReply counts pairs that succeeded on both sides but have no reply kept on a side
	// (a result written without its reply); they are not compared, and not counted as matches.
	MissingReply int `json:"missing_reply"`
	// Exact is the number of compared pairs whose replies are equal: the same content and the
	// same tool calls (as compact JSON).
	Exact int `json:"exact"`
	// ExactMatch is Exact / Compared (0 when nothing was compared).
	ExactMatch float64 `json:"exact_match"`
	// MeanCommonPrefixTokens is the mean length, in tokens, of the common prefix of the two
	// replies' token sequences (an exact match counts its whole length).
	MeanCommonPrefixTokens float64 `json:"mean_common_prefix_tokens"`
	// Length is the drift of the replies' lengths in tokens (base, target, mean change, mean
	// absolute change, share of pairs whose length differs).
	Length TokenDrift `json:"length_tokens"`
	// FirstDivergence is the first pair, by conversation and turn, whose replies differ; nil
	// when every compared pair matches.
	FirstDivergence *Divergence `json:"first_divergence"`
	// Sampled counts compared pairs whose requests were not deterministic: TemperatureAbove0
	// with temperature > 0, TemperatureUnset without one (servers default to 1).
	Sampled struct {
		TemperatureAbove0 int `json:"temperature_above_0"`
		TemperatureUnset  int `json:"temperature_unset"`
	} `json:"sampled"`
}

// Divergence is where two replies first differ.
type Divergence struct {
	Conversation uint64 `json:"conversation"`
	Turn         int    `json:"turn"`  // 0-based
	Token        int    `json:"token"` // 0-based index of the first differing token (= the common prefix's length)
	// Base and Target are each reply from its first differing character, at most 80 bytes.
	Base   string `json:"base"`
	Target string `json:"target"`
}

// reply is one side's reply to a request, as compared: the content, then the tool calls as
// compact JSON when there are any.
type reply struct {
	content string
	tools   string
}

// text is what is tokenized: the content, and the tool calls on a line of their own.
func (r reply) text() string {
	if r.tools == "" {
		return r.content
	}
	return r.content + "\n" + r.tools
}

func replyOf(content string, toolCalls json.RawMessage) reply {
	r := reply{content: content}
	if len(toolCalls) > 0 && !bytes.Equal(bytes.TrimSpace(toolCalls), []byte("null")) {
		var b bytes.Buffer
		if json.Compact(&b, toolCalls) == nil {
			r.tools = b.String()
		} else {
			r.tools = string(toolCalls)
		}
	}
	return r
}

// temperature is a request's sampling temperature as far as it is known: set is false when
// the request had none (the server's default applies, 1 for OpenAI and vLLM).
type temperature struct {
	v   float64
	set bool
}

func (t temperature) sampled() bool { return !t.set || t.v > 0 }

// temperatureOf reads "temperature" from a request's params (a JSON object).
func temperatureOf(params json.RawMessage) temperature {
	var p struct {
		Temperature *float64 `json:"temperature"`
	}
	if len(params) == 0 || json.Unmarshal(params, &p) != nil || p.Temperature == nil {
		return temperature{}
	}
	return temperature{v: *p.Temperature, set: true}
}

// runOptions are the replay options output verification reads from a run.
type runOptions struct {
	KeepReplies bool            `json:"keep_replies"`
	ExtraBody   json.RawMessage `json:"extra_body"`
}

// checkKeptReplies returns an error naming replay --keep-replies for the first run that was
// made without it: such a run has no replies to compare, and must not read as a match.
func checkKeptReplies(runs []*tape.Run) error {
	for _, r := range runs {
		var o runOptions
		if len(r.Options) > 0 {
			_ = json.Unmarshal(r.Options, &o)
		}
		if !o.KeepReplies {
			return fmt.Errorf("--verify-output: run %d (%s) has no replies to compare: it was replayed without replay --keep-replies", r.ID, r.Name)
		}
	}
	return nil
}

// runTemperature is the temperature the runs' --extra-body set on every request, if any
// (the largest when shards differ).
func runTemperature(runs []*tape.Run) (temperature, bool) {
	var out temperature
	found := false
	for _, r := range runs {
		var o runOptions
		if len(r.Options) == 0 || json.Unmarshal(r.Options, &o) != nil {
			continue
		}
		if t := temperatureOf(o.ExtraBody); t.set && (!found || t.v > out.v) {
			out, found = t, true
		}
	}
	return out, found
}

// recordedTemperatures reads the temperature of each recorded request in want.
func recordedTemperatures(ctx context.Context, src Source, recording uint64, want map[key]sample) (map[key]temperature, error) {
	out := map[key]temperature{}
	err := wantedTurns(ctx, src, recording, want, func(k key, t *tape.Turn) { out[k] = temperatureOf(t.Request.Params) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sideTemperatures fills d.temps for a side of runs: the recorded request's temperature,
// unless the runs' --extra-body set one.
func sideTemperatures(ctx context.Context, src Source, d *sideData, runs []*tape.Run, cache map[uint64]map[key]temperature) error {
	if t, ok := runTemperature(runs); ok {
		for k := range d.samples {
			d.temps[k] = t
		}
		return nil
	}
	rec := runs[0].Recording
	temps, ok := cache[rec]
	if !ok {
		var err error
		if temps, err = recordedTemperatures(ctx, src, rec, d.samples); err != nil {
			return err
		}
		cache[rec] = temps
	}
	for k := range d.samples {
		d.temps[k] = temps[k]
	}
	return nil
}

// verifyOutput compares the replies of the pairs that succeeded on both sides.
func (c *Comparison) verifyOutput(b, t *sideData) {
	v := &OutputVerification{}
	var length tokAcc
	var prefix int64
	for _, p := range c.pairs {
		if !p.base.ok || !p.target.ok {
			continue
		}
		br, bok := b.replies[p.k]
		tr, tok := t.replies[p.k]
		if !bok || !tok {
			v.MissingReply++
			continue
		}
		v.Compared++
		if b.temps[p.k].sampled() || t.temps[p.k].sampled() {
			if !b.temps[p.k].set || !t.temps[p.k].set {
				v.Sampled.TemperatureUnset++
			} else {
				v.Sampled.TemperatureAbove0++
			}
		}
		bt, tt := br.text(), tr.text()
		bn, tn := openai.CountTokens(bt), openai.CountTokens(tt)
		length.add(bn, tn)
		if br == tr {
			v.Exact++
			prefix += int64(bn)
			continue
		}
		n := commonTokens(bt, tt)
		prefix += int64(n)
		if v.FirstDivergence == nil {
			at := commonBytes(bt, tt)
			v.FirstDivergence = &Divergence{Conversation: p.k.conv, Turn: p.k.turn, Token: n,
				Base: snippet(bt, at), Target: snippet(tt, at)}
		}
	}
	if v.Compared > 0 {
		v.ExactMatch = float64(v.Exact) / float64(v.Compared)
		v.MeanCommonPrefixTokens = float64(prefix) / float64(v.Compared)
	}
	v.Length = length.drift(v.Compared)
	c.VerifyOutput = v
	if n := v.Sampled.TemperatureAbove0 + v.Sampled.TemperatureUnset; n > 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("output verification is only meaningful with deterministic sampling: %d of %d compared requests were sampled "+
			"(temperature > 0: %d, no temperature, servers default to 1: %d); their replies may differ without a regression",
			n, v.Compared, v.Sampled.TemperatureAbove0, v.Sampled.TemperatureUnset))
	}
	if v.MissingReply > 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("output verification: %d matched requests have no reply kept on a side: not compared", v.MissingReply))
	}
}

// commonTokens is the length of the common prefix of a's and b's token sequences, in the
// encoding openai.CountTokens uses.
func commonTokens(a, b string) int {
	codec, err := openai.Tokenizer(openai.DefaultEncoding)
	if err != nil {
		return openai.CountTokens(a[:commonBytes(a, b)])
	}
	ai, _, errA := codec.Encode(a)
	bi, _, errB := codec.Encode(b)
	if errA != nil || errB != nil {
		return openai.CountTokens(a[:commonBytes(a, b)])
	}
	n := 0
	for n < len(ai) && n < len(bi) && ai[n] == bi[n] {
		n++
	}
	return n
}

// commonBytes is the length of a's and b's common prefix, backed up to a character's start.
func commonBytes(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	for n > 0 && n < len(a) && !utf8.RuneStart(a[n]) {
		n--
	}
	return n
}

// snippet is s from byte at, at most snippetBytes, cut at a character's start.
func snippet(s string, at int) string {
	s = s[min(at, len(s)):]
	if len(s) <= snippetBytes {
		return s
	}
	n := snippetBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// evalOutputMatch evaluates a condition on OutputMatch: its value is the target's exact-match
// share, in percent with "%" (99%) or as a fraction without (0.99). It fails when nothing was
// verified or compared.
func (cond Condition) evalOutputMatch(c *Comparison) (string, bool) {
	v := c.VerifyOutput
	switch {
	case v == nil:
		return fmt.Sprintf("%s was not measured: compare without --verify-output [%s]", OutputMatch, cond.text), true
	case v.Compared == 0:
		return fmt.Sprintf("%s has no replies compared (%d matched requests without a reply) [%s]", OutputMatch, v.MissingReply, cond.text), true
	}
	share, limit := v.ExactMatch, cond.Value
	if cond.Percent {
		limit /= 100
	}
	if !cond.holds(share, limit) {
		return "", false
	}
	return fmt.Sprintf("%s is %s%% (%d of %d replies equal) [%s]", OutputMatch, sharePct(share), v.Exact, v.Compared, cond.text), true
}

// sharePct writes a share in percent with one decimal, rounded down so that a share below
// 1 never reads as 100%.
func sharePct(v float64) string {
	return strconv.FormatFloat(math.Floor(v*1000+1e-9)/10, 'f', -1, 64)
}

// outputLine is the verification's line in the verdict: the share, the pairs and where the
// replies first differ.
func (v *OutputVerification) line() string {
	s := fmt.Sprintf("output: %s%% of replies equal (%d of %d), mean common prefix %s tokens", sharePct(v.ExactMatch),
		v.Exact, v.Compared, output.FormatNum(v.MeanCommonPrefixTokens))
	if d := v.FirstDivergence; d != nil {
		s += fmt.Sprintf(", first divergence: conversation %d turn %d token %d", d.Conversation, d.Turn+1, d.Token)
	}
	return s
}

// section is the verification as a table section.
func (v *OutputVerification) section() output.Section {
	s := output.Section{Title: "output verification", Cols: []string{"figure", "value"}}
	add := func(name string, c output.Cell) { s.Rows = append(s.Rows, []output.Cell{output.Text(name), c}) }
	add("compared", output.Int(v.Compared))
	add("missing_reply", output.Int(v.MissingReply))
	add("exact", output.Int(v.Exact))
	add("exact_match", output.Num(v.ExactMatch))
	add("mean_common_prefix_tokens", output.Num(v.MeanCommonPrefixTokens))
	add("length_tokens.base_total", output.Int(v.Length.Base))
	add("length_tokens.target_total", output.Int(v.Length.Target))
	add("length_tokens.mean_delta", output.Num(v.Length.MeanDelta))
	add("length_tokens.mean_abs_delta", output.Num(v.Length.MeanAbsDelta))
	add("length_tokens.changed_ratio", output.Num(v.Length.ChangedRatio))
	add("sampled.temperature_above_0", output.Int(v.Sampled.TemperatureAbove0))
	add("sampled.temperature_unset", output.Int(v.Sampled.TemperatureUnset))
	if d := v.FirstDivergence; d != nil {
		add("first_divergence.conversation", output.Text(fmt.Sprint(d.Conversation)))
		add("first_divergence.turn", output.Int(d.Turn+1))
		add("first_divergence.token", output.Int(d.Token))
		add("first_divergence.base", output.Text(quoteSnippet(d.Base)))
		add("first_divergence.target", output.Text(quoteSnippet(d.Target)))
	}
	return s
}

// quoteSnippet writes a snippet on one line.
func quoteSnippet(s string) string {
	q := fmt.Sprintf("%q", s)
	return strings.ReplaceAll(q, `\"`, `"`)
}

// card is the verification's card at the head of the compare page: the share of equal
// replies, red below 100 %.
func (v *OutputVerification) card() card {
	tone, delta := output.Same, "all equal"
	switch {
	case v.Compared == 0:
		tone, delta = output.Warn, "no replies compared"
	case v.Exact < v.Compared:
		tone, delta = output.Worse, fmt.Sprintf("%d of %d differ", v.Compared-v.Exact, v.Compared)
		if d := v.FirstDivergence; d != nil {
			delta += fmt.Sprintf("; first: conversation %d turn %d token %d", d.Conversation, d.Turn+1, d.Token)
		}
	}
	return card{key: OutputMatch, value: sharePct(v.ExactMatch) + "% equal", delta: delta, tone: tone}
}
