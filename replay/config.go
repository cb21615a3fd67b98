package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/tape"
)

// Arrival is how conversations are started.
type Arrival string

// The arrival processes.
const (
	// ArrivalOriginal starts each conversation at its recorded arrival offset divided by Speed.
	ArrivalOriginal Arrival = "original"
	// ArrivalPoisson starts conversations at exponentially distributed gaps at Rate per second.
	ArrivalPoisson Arrival = "poisson"
	// ArrivalGamma starts conversations at gamma-distributed gaps at Rate per second with shape
	// Burstiness (1 is Poisson; below 1 is burstier, above 1 more regular).
	ArrivalGamma Arrival = "gamma"
	// ArrivalAll starts conversations as soon as a conversation slot is free.
	ArrivalAll Arrival = "all"
)

// Think is how the gap between a reply and the next turn is chosen.
type Think string

// The think-time modes.
const (
	// ThinkOriginal waits the recorded think time times ThinkScale.
	ThinkOriginal Think = "original"
	// ThinkNone sends the next turn as soon as the previous reply ended.
	ThinkNone Think = "none"
	// ThinkFixed waits ThinkTime.
	ThinkFixed Think = "fixed"
)

// History is which assistant messages the replayed message lists carry.
type History string

// The history modes.
const (
	// HistoryRecorded sends exactly the recorded message lists.
	HistoryRecorded History = "recorded"
	// HistoryLive replaces each earlier reply with the target's own reply in this replay.
	HistoryLive History = "live"
)

// Output is how the output length of a request is set.
type Output string

// The output-length modes.
const (
	// OutputRecorded sets max_tokens (or max_completion_tokens when the request used it) to the
	// recorded completion tokens.
	OutputRecorded Output = "recorded"
	// OutputRequest keeps the request's own limit.
	OutputRequest Output = "request"
	// OutputFixed sets the limit to OutputTokens.
	OutputFixed Output = "fixed"
)

// Stream is which requests are sent as streams.
type Stream string

// The streaming modes.
const (
	// StreamRecorded streams the requests that were streamed when recorded (every imported or
	// generated turn) and sends the others whole, as their clients did.
	StreamRecorded Stream = "recorded"
	// StreamAlways streams every request.
	StreamAlways Stream = "always"
	// StreamNever sends every request without streaming: only E2E is measured.
	StreamNever Stream = "never"
)

// Sampling is how a client of the vLLM preset (Config.Clients) picks the conversation of its
// next request among its active ones.
type Sampling string

// The conversation-sampling modes of the vLLM preset.
const (
	// SamplingRoundRobin takes vLLM's round robin: the conversation that became active last
	// goes first, and a conversation that is not finished goes to the back of the line.
	SamplingRoundRobin Sampling = "round-robin"
	// SamplingRandom picks one of the active conversations at random (seeded by Seed and the
	// client's number, as vLLM seeds each client).
	SamplingRandom Sampling = "random"
)

// OnError is what a conversation does after a request failed (after its retries).
type OnError string

// The error policies.
const (
	// OnErrorContinue goes on with the next turn, with the recorded reply in the history.
	OnErrorContinue OnError = "continue"
	// OnErrorStop ends the conversation.
	OnErrorStop OnError = "stop-conversation"
)

// Failed is what is done with the turns that failed when they were recorded (an error class,
// an error body or a status of 400 or more: tape.Turn.Failed).
type Failed string

// The policies for recorded failed turns.
const (
	// FailedSend sends them: they were part of the load the server had.
	FailedSend Failed = "send"
	// FailedSkip skips them; they are counted as skipped.
	FailedSkip Failed = "skip"
)

// Defaults of Config fields whose zero value means "default".
const (
	DefaultSpeed      = 1.0
	DefaultBurstiness = 1.0
	DefaultTimeout    = 10 * time.Minute
	DefaultAPIKeyEnv  = "OPENAI_API_KEY"
)

// The bounds of Speed and of a given ThinkScale. Outside them a replay is either absurdly slow
// (a speed of 1e-300 stretches a one-second gap past the age of the universe, and the replay
// hangs) or a waste of the recorded timing; a think scale of exactly 0 is also allowed (no think
// time). The default think scale, 1/Speed, is not held to these bounds.
const (
	MinSpeed = 1e-3
	MaxSpeed = 1e6
)

// Config is everything a replay needs. The zero value of each field is its default unless its
// doc says otherwise. Flags of "llmtape replay" bind to these fields.
type Config struct {
	// Target is the base URL of the server (e.g. http://127.0.0.1:8000 or .../v1); each
	// request goes to its recorded path under it, with the target's query (Azure's
	// ?api-version=…) kept. Required.
	Target string `json:"target"`
	// Recording is the recording to replay; 0 means the latest complete one.
	Recording uint64 `json:"recording"`
	// Name names the run; default "replay <start time>", plus " shard i/n" for a shard.
	Name string `json:"name"`

	// Arrival is the arrival process; default ArrivalOriginal.
	Arrival Arrival `json:"arrival"`
	// Rate is conversations per second for ArrivalPoisson and ArrivalGamma (required there);
	// ignored otherwise.
	Rate float64 `json:"rate,omitempty"`
	// Burstiness is the gamma shape for ArrivalGamma; default 1.
	Burstiness float64 `json:"burstiness,omitempty"`
	// Speed divides recorded arrival offsets (and, by default, think times); default 1;
	// between MinSpeed and MaxSpeed.
	Speed float64 `json:"speed"`
	// Think is the think-time mode; default ThinkOriginal.
	Think Think `json:"think"`
	// ThinkScale multiplies recorded think times under ThinkOriginal; nil means 1/Speed;
	// 0 or between MinSpeed and MaxSpeed.
	ThinkScale *float64 `json:"think_scale,omitempty"`
	// ThinkTime is the fixed think time under ThinkFixed.
	ThinkTime time.Duration `json:"think_time,omitempty"`
	// History is the history mode; default HistoryRecorded.
	History History `json:"history"`
	// KeepReplies stores each reply's text and tool calls with its result (tape.Result.Reply),
	// so that the run's conversations can be exported as the target answered them. Default
	// false: results hold timing and tokens only.
	KeepReplies bool `json:"keep_replies,omitempty"`
	// Output is the output-length mode; default OutputRecorded.
	Output Output `json:"output"`
	// OutputTokens is the limit under OutputFixed.
	OutputTokens int `json:"output_tokens,omitempty"`
	// IgnoreEOS adds vLLM's ignore_eos and min_tokens (= the limit) so that the server
	// generates exactly the limit; ignored under OutputRequest without a limit.
	IgnoreEOS bool `json:"ignore_eos,omitempty"`
	// Stream says which requests are streamed; default StreamRecorded. A request sent
	// without streaming is measured by its E2E alone: its result has no TTFT, no stream
	// events (so no ITL or TPOT), and it fails a TTFT objective of SLO.
	Stream Stream `json:"stream"`
	// MinTokens sets vLLM's min_tokens on every request, capped at the request's output limit
	// so that min_tokens never exceeds max_tokens; 0 leaves min_tokens as recorded. Not with
	// IgnoreEOS, which sets min_tokens to the limit.
	MinTokens int `json:"min_tokens,omitempty"`
	// ExtraBody is a JSON object whose members are set on every request body after every
	// other option (they replace recorded members and the output length of the same name).
	// It may not hold the members the replayer owns: messages, prompt, stream,
	// stream_options. Parse a flag's value with ParseExtraBody.
	ExtraBody json.RawMessage `json:"extra_body,omitempty"`
	// Model replaces the model of every request when not empty.
	Model string `json:"model,omitempty"`
	// MaxTurns sends only the first MaxTurns recorded turns of each conversation (skipped
	// turns count); 0 sends every turn.
	MaxTurns int `json:"max_turns,omitempty"`

	// Clients, when above 0, replays with vLLM's load model instead of the arrival process:
	// Clients closed-loop clients, each keeping up to ActiveConversations/Clients active
	// conversations and sending one request at a time (see docs/replay.md, "vLLM's load
	// model"). Arrival must be ArrivalOriginal (it is not used) and MaxConcurrency and
	// MaxConversations 0.
	Clients int `json:"clients,omitempty"`
	// ActiveConversations is the active conversations of all clients together; each client
	// keeps ActiveConversations/Clients (rounded down, as vLLM does); default Clients; at
	// least Clients. Ignored without Clients.
	ActiveConversations int `json:"active_conversations,omitempty"`
	// Sampling is how a client picks its next conversation; default SamplingRoundRobin.
	// Ignored without Clients.
	Sampling Sampling `json:"conversation_sampling,omitempty"`
	// MaxConcurrency limits the requests in flight; 0 means no limit.
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// MaxConversations limits the active conversations; 0 means no limit.
	MaxConversations int `json:"max_conversations,omitempty"`
	// Duration stops scheduling this long after the run's time zero (in-flight requests
	// finish); 0 means no limit.
	Duration time.Duration `json:"duration,omitempty"`
	// MaxRequests stops scheduling after this many requests; 0 means no limit.
	MaxRequests int `json:"max_requests,omitempty"`
	// Warmup marks requests scheduled in the first Warmup of the run as warmup (excluded
	// from statistics, still stored).
	Warmup time.Duration `json:"warmup,omitempty"`
	// WarmupRequests marks the first WarmupRequests requests sent as warmup.
	WarmupRequests int `json:"warmup_requests,omitempty"`
	// Sample keeps a fraction (0 < Sample < 1) of the conversations, chosen by a hash of the
	// conversation id and Seed, so that shards agree; 0 or 1 keeps all.
	Sample float64 `json:"sample,omitempty"`
	// SampleCount keeps at most this many conversations (the first by the same hash); 0 keeps
	// all. Applied before sharding.
	SampleCount int `json:"sample_count,omitempty"`
	// Shard and Shards select the conversations whose id hashes to Shard modulo Shards;
	// Shards 0 or 1 means no sharding.
	Shard  int `json:"shard,omitempty"`
	Shards int `json:"shards,omitempty"`
	// StartAt is the run's time zero, a wall-clock time shared by shards on several machines;
	// zero starts at once. Scheduled send times, Duration and Warmup count from it. Run waits
	// for it when it lies ahead; when it has passed, Run starts at once without shifting the
	// schedule, so the lateness shows as schedule lag.
	StartAt time.Time `json:"start_at,omitempty"`
	// Seed seeds the arrival process and sampling.
	Seed int64 `json:"seed"`

	// Header is added to every request (after the recorded headers are dropped). The values
	// of secret headers (names containing auth, key, token, secret, password, cookie or
	// signature) are sent but stored in the run's options as "<redacted>".
	Header http.Header `json:"-"`
	// APIKey is sent as a bearer token; never stored.
	APIKey string `json:"-"`
	// Timeout bounds each request attempt, from sending it to the last byte of the reply;
	// default DefaultTimeout.
	Timeout time.Duration `json:"timeout"`
	// Retries is how many times a failed request is tried again (not after cancellation).
	Retries int `json:"retries,omitempty"`
	// OnError is the error policy; default OnErrorContinue.
	OnError OnError `json:"on_error"`
	// Failed says whether turns that failed when recorded are sent; default FailedSend. A
	// client's retry of a failed turn is a turn of its own and is sent either way.
	Failed Failed `json:"failed"`
	// SessionHeader, when not empty, is a header sent with every request carrying an id of its
	// conversation in this run (the same value on every turn of a conversation, see
	// SessionID), as vLLM's benchmark does with --send-conversation-id. Conversations recorded
	// with a session header get theirs (tape.Conversation.SessionHeader) in any case.
	SessionHeader string `json:"session_header,omitempty"`
	// SLO sets the objectives for goodput.
	SLO metrics.SLO `json:"-"`

	// Client sends the requests; nil makes one with a transport sized for the run. A request
	// lost to a closed kept-alive connection is re-sent (docs/replay.md) only when the client's
	// transport is an *http.Transport (it is cloned without keep-alive for that).
	Client *http.Client `json:"-"`
	// Synthesize gives the messages of a synthetic turn (Mooncake/Azure imports); nil uses
	// package synth's default text.
	Synthesize func(*tape.Synthetic) ([]json.RawMessage, error) `json:"-"`
	// Writer tunes the store's batched writer of results.
	Writer tape.WriterConfig `json:"-"`
}

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("invalid replay config")

func cfgErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// withDefaults fills defaults and checks the values, in the order of the Config's fields:
// target, pacing (arrival, speed, think time), modes, limits.
func (c Config) withDefaults() (Config, error) {
	if err := checkTarget(c.Target); err != nil {
		return c, err
	}
	if err := c.pacingDefaults(); err != nil {
		return c, err
	}
	if err := c.modeDefaults(); err != nil {
		return c, err
	}
	if err := c.limitDefaults(); err != nil {
		return c, err
	}
	return c, nil
}

// checkTarget checks that target is an http(s) base URL.
func checkTarget(target string) error {
	if target == "" {
		return cfgErr("no target URL")
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfgErr("target %q is not an http(s) URL", redact.URL(target))
	}
	if u.Fragment != "" {
		return cfgErr("target %q: want a base URL without #fragment", redact.URL(target))
	}
	return nil
}

// oneOf sets an empty *v to the first of values (the default) and checks that *v is one of
// them; name and want name the setting and its values in the error.
func oneOf[T ~string](v *T, name, want string, values ...T) error {
	if *v == "" {
		*v = values[0]
	}
	if !slices.Contains(values, *v) {
		return cfgErr("unknown %s %q (want %s)", name, *v, want)
	}
	return nil
}

// pacingDefaults fills and checks the arrival process, Speed and the think time.
func (c *Config) pacingDefaults() error {
	if err := oneOf(&c.Arrival, "arrival", "original, poisson, gamma or all",
		ArrivalOriginal, ArrivalPoisson, ArrivalGamma, ArrivalAll); err != nil {
		return err
	}
	if (c.Arrival == ArrivalPoisson || c.Arrival == ArrivalGamma) && (!(c.Rate > 0) || math.IsInf(c.Rate, 1)) {
		return cfgErr("arrival %s needs a finite rate above 0", c.Arrival)
	}
	if c.Burstiness == 0 {
		c.Burstiness = DefaultBurstiness
	}
	if !(c.Burstiness > 0) || math.IsInf(c.Burstiness, 1) {
		return cfgErr("burstiness must be a finite number above 0")
	}
	if c.Speed == 0 {
		c.Speed = DefaultSpeed
	}
	if !(c.Speed >= MinSpeed && c.Speed <= MaxSpeed) {
		return cfgErr("speed %v out of range: want %g to %g", c.Speed, MinSpeed, MaxSpeed)
	}
	if err := oneOf(&c.Think, "think mode", "original, none or a duration",
		ThinkOriginal, ThinkNone, ThinkFixed); err != nil {
		return err
	}
	if c.Think == ThinkFixed && c.ThinkTime < 0 {
		return cfgErr("think time must not be negative")
	}
	if c.ThinkScale == nil {
		s := 1 / c.Speed
		c.ThinkScale = &s
	} else if s := *c.ThinkScale; s != 0 && !(s >= MinSpeed && s <= MaxSpeed) {
		return cfgErr("think scale %v out of range: want 0 or %g to %g", s, MinSpeed, MaxSpeed)
	}
	return nil
}

// modeDefaults fills and checks the history, output-length, error and failed-turn modes and
// the session header.
func (c *Config) modeDefaults() error {
	if err := oneOf(&c.History, "history", "recorded or live", HistoryRecorded, HistoryLive); err != nil {
		return err
	}
	if err := oneOf(&c.Output, "output mode", "recorded, request or a number",
		OutputRecorded, OutputRequest, OutputFixed); err != nil {
		return err
	}
	if c.Output == OutputFixed && c.OutputTokens <= 0 {
		return cfgErr("output length must be above 0")
	}
	if err := oneOf(&c.OnError, "on-error", "continue or stop-conversation", OnErrorContinue, OnErrorStop); err != nil {
		return err
	}
	if err := oneOf(&c.Failed, "failed policy", "send or skip", FailedSend, FailedSkip); err != nil {
		return err
	}
	if c.SessionHeader != "" && !httpguts.ValidHeaderFieldName(c.SessionHeader) {
		return cfgErr("session header %q is not a valid header name", c.SessionHeader)
	}
	if err := oneOf(&c.Stream, "stream mode", "recorded, always or never", StreamRecorded, StreamAlways, StreamNever); err != nil {
		return err
	}
	if c.MinTokens < 0 || c.MaxTurns < 0 {
		return cfgErr("min tokens and max turns must not be negative")
	}
	if c.MinTokens > 0 && c.IgnoreEOS {
		return cfgErr("min tokens and ignore-eos both set min_tokens: give one")
	}
	if len(c.ExtraBody) > 0 {
		if _, err := ParseExtraBody(string(c.ExtraBody)); err != nil {
			return cfgErr("extra body: %v", err)
		}
	}
	return nil
}

// reservedBody are the members of a request body that ExtraBody may not set: the replayer
// builds them (the conversation's messages, the stream it measures).
var reservedBody = []string{"messages", "prompt", "stream", "stream_options"}

// ParseExtraBody checks that s is a JSON object whose members may be set on a request body
// (not messages, prompt, stream or stream_options; typed members such as max_tokens of the
// right type) and returns it compacted.
func ParseExtraBody(s string) (json.RawMessage, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &members); err != nil || members == nil {
		return nil, fmt.Errorf("%q: want a JSON object, e.g. {\"chat_template_kwargs\":{\"enable_thinking\":false}}", clip(s))
	}
	for _, k := range reservedBody {
		if _, ok := members[k]; ok {
			return nil, fmt.Errorf("%q is set by the replayer and cannot be replaced (the stream mode chooses streaming)", k)
		}
	}
	req, _ := openai.ParseRequest([]byte(`{}`))
	if err := setExtra(req, members); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(s)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// setExtra sets the extra body's members on req, in the order of their names.
func setExtra(req *openai.Request, members map[string]json.RawMessage) error {
	for _, k := range slices.Sorted(maps.Keys(members)) {
		if err := req.Set(k, members[k]); err != nil {
			return err
		}
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// limitDefaults checks the limits, the sample and the shard, and fills the timeout.
func (c *Config) limitDefaults() error {
	if c.MaxConcurrency < 0 || c.MaxConversations < 0 || c.MaxRequests < 0 || c.Retries < 0 ||
		c.Duration < 0 || c.Warmup < 0 || c.WarmupRequests < 0 || c.SampleCount < 0 {
		return cfgErr("limits must not be negative")
	}
	if c.Sample < 0 || c.Sample > 1 {
		return cfgErr("sample fraction must be in (0, 1]")
	}
	if c.Shards < 0 || c.Shard < 0 || (c.Shards > 1 && c.Shard >= c.Shards) ||
		(c.Shards <= 1 && c.Shard > 0) {
		return cfgErr("shard %d/%d: want 0 <= i < n", c.Shard, c.Shards)
	}
	if err := c.clientDefaults(); err != nil {
		return err
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 0 {
		return cfgErr("timeout must be above 0")
	}
	return nil
}

// clientDefaults fills and checks the vLLM preset: Clients, ActiveConversations, Sampling.
func (c *Config) clientDefaults() error {
	if c.Clients < 0 || c.ActiveConversations < 0 {
		return cfgErr("clients and active conversations must not be negative")
	}
	if c.Clients == 0 {
		if c.ActiveConversations > 0 || c.Sampling != "" {
			return cfgErr("active conversations and conversation sampling need clients")
		}
		return nil
	}
	if c.Arrival != ArrivalOriginal || c.MaxConcurrency > 0 || c.MaxConversations > 0 {
		return cfgErr("clients replace the arrival process and the concurrency limits: give no arrival, max concurrency or max conversations with them")
	}
	if c.ActiveConversations == 0 {
		c.ActiveConversations = c.Clients
	}
	if c.ActiveConversations < c.Clients {
		return cfgErr("active conversations %d below clients %d: each client needs at least one", c.ActiveConversations, c.Clients)
	}
	return oneOf(&c.Sampling, "conversation sampling", "round-robin or random", SamplingRoundRobin, SamplingRandom)
}

// ParseShard parses "i/n" (0 <= i < n).
func ParseShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	if ok {
		i, err = strconv.Atoi(a)
		if err == nil {
			n, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("parse shard %q: want i/n with 0 <= i < n, e.g. 0/3", s)
	}
	return i, n, nil
}

// options returns the JSON kept as tape.Run.Options: every option, with the password of the
// target URL as "xxxxx", the values of secret headers (by the rule of internal/redact) as
// "<redacted>", and no API key.
func (c Config) options() json.RawMessage {
	type opts struct {
		Config
		Headers []string `json:"headers,omitempty"`
		SLO     string   `json:"slo,omitempty"`
		APIKey  bool     `json:"api_key"`
	}
	o := opts{Config: c, SLO: c.SLO.String(), APIKey: c.APIKey != ""}
	o.Target = redact.URL(c.Target)
	for k, vs := range c.Header {
		for _, v := range vs {
			if redact.SecretName(k) {
				v = redact.Placeholder
			}
			o.Headers = append(o.Headers, k+": "+v)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<redacted>", not "\u003credacted\u003e"
	if err := enc.Encode(o); err != nil {
		return json.RawMessage(`{}`)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
