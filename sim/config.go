package sim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Defaults of the command line (DefaultConfig). In a Config literal the latency, cache and fault
// knobs mean exactly what they say, so Config{} is an instant server without a prefix cache;
// only the structural knobs (Model, TokensPerChunk, OutputLen, BlockSize, Tokenizer, FailStatus,
// RetryAfter, Stall) fall back to these when zero.
const (
	DefaultModel           = "llmtape-sim"
	DefaultTTFT            = 20 * time.Millisecond
	DefaultPrefillPerToken = 20 * time.Microsecond
	DefaultITL             = 10 * time.Millisecond
	DefaultITLPerRunning   = time.Duration(0)
	DefaultMaxRunning      = 256
	DefaultBlockSize       = 16
	DefaultCacheBlocks     = 16384
	DefaultTokensPerChunk  = 1
	DefaultFailStatus      = 429
	DefaultRetryAfter      = time.Second
	DefaultStall           = 500 * time.Millisecond
	DefaultTokenizer       = "o200k_base"
	// DefaultShutdownTimeout bounds how long Shutdown-on-signal waits for streams in flight
	// (used by the command).
	DefaultShutdownTimeout = 10 * time.Second
)

// DefaultOutputLen is the output length drawn when a request gives no max_tokens: uniform in
// 64..256 tokens.
var DefaultOutputLen = LenRange{Min: 64, Max: 256}

// LenRange is an inclusive range of token counts; Min == Max is a fixed length.
type LenRange struct {
	Min, Max int
}

// ParseLenRange parses "N" or "MIN-MAX" (for example "128" or "64-256").
func ParseLenRange(s string) (LenRange, error) {
	s = strings.TrimSpace(s)
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil {
		return LenRange{}, fmt.Errorf("output length %q: want N or MIN-MAX", s)
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
			return LenRange{}, fmt.Errorf("output length %q: want N or MIN-MAX", s)
		}
	}
	r := LenRange{Min: a, Max: b}
	if err := r.validate(); err != nil {
		return LenRange{}, err
	}
	return r, nil
}

func (r LenRange) validate() error {
	if r.Min < 1 || r.Max < r.Min {
		return fmt.Errorf("output length %s: want 1 <= MIN <= MAX", r)
	}
	return nil
}

// String formats the range as ParseLenRange reads it.
func (r LenRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(r.Min)
	}
	return strconv.Itoa(r.Min) + "-" + strconv.Itoa(r.Max)
}

// Config is the simulated server's behaviour. See DefaultConfig for the command's defaults and
// docs/sim.md for the latency model.
type Config struct {
	// Model is the model id listed by /v1/models and used in replies to requests that name no
	// model (a request's own model is echoed). Default DefaultModel.
	Model string
	// Seed makes the output text, output lengths, jitter and faults reproducible.
	Seed int64
	// VaryOutput makes the output text depend on the request's index (its arrival order among
	// well-formed requests) as well as on the prompt and the seed, as a server that samples
	// (temperature > 0) gives different replies to the same prompt. Still deterministic per
	// seed and index. Output lengths and timing do not change. Default off: the same prompt
	// gets the same text.
	VaryOutput bool
	// TokensPerChunk is the number of output tokens per stream event. Default 1.
	TokensPerChunk int
	// OutputLen is the natural output length, drawn per request (seeded by the prompt) when a
	// request does not run to its max_tokens. Default DefaultOutputLen.
	OutputLen LenRange

	// TTFT is the base time to first token, measured from the request's arrival. Zero is zero.
	TTFT time.Duration
	// PrefillPerToken is added to the TTFT per prompt token not found in the prefix cache.
	PrefillPerToken time.Duration
	// ITL is the base gap between stream events (per token; a chunk of N tokens waits N gaps).
	ITL time.Duration
	// ITLPerRunning is added to every gap per request decoding at that moment.
	ITLPerRunning time.Duration
	// Jitter adds a seeded uniform offset in [-Jitter, +Jitter] to the TTFT and to every gap
	// (never making a delay negative). Zero disables it.
	Jitter time.Duration
	// MaxRunning is how many requests run (prefill or decode) at once; the rest wait in FIFO
	// order and their wait is part of their TTFT. Zero or negative means no limit.
	MaxRunning int

	// BlockSize is the prefix cache's block size in tokens. Default 16.
	BlockSize int
	// CacheBlocks is the prefix cache's capacity in blocks (LRU). Zero disables the cache.
	CacheBlocks int
	// Tokenizer counts prompt tokens: "o200k_base" (tiktoken, default) or "approx"
	// (4 bytes a token, much faster).
	Tokenizer string

	// FailRate is the fraction of requests answered at once with FailStatus and an OpenAI
	// error body.
	FailRate float64
	// FailStatus is the status of injected failures. Default 429.
	FailStatus int
	// RetryAfter is sent as Retry-After (whole seconds, at least 1) with injected 429s and 503s.
	// Default 1s.
	RetryAfter time.Duration
	// StallRate is the fraction of requests that pause for Stall once mid-stream.
	StallRate float64
	// Stall is the length of an injected pause. Default 500ms.
	Stall time.Duration
	// DisconnectRate is the fraction of requests whose connection is cut mid-stream.
	DisconnectRate float64

	// Stamp adds "llmtape_sent_unix_ns" (the wall clock just before the write) to every
	// stream event's JSON.
	Stamp bool

	// PreciseTimers waits for every token on the precise pacer (see pacer.go), not only the
	// first: the server's own inter-token drift drops (p99 about 0.9 ms instead of 1.3 ms at
	// 10,000 events/s here) for about twice the CPU per event, which on a small machine shared
	// with the client can cost the client more than it saves. Ignored where the platform has no
	// precise clock (timers are used throughout).
	PreciseTimers bool

	// CloseAfterStream closes the connection right after every streamed answer that ran to its
	// end (after the final flush and the end of the chunked body), although the response
	// headers promise keep-alive, as llama.cpp's llama-server does. A client or proxy that
	// reuses the connection can then lose the race with the close. Non-streamed answers and
	// errors keep the connection. Default off.
	CloseAfterStream bool
}

// DefaultConfig returns the defaults of `llmtape sim`.
func DefaultConfig() Config {
	return Config{
		Model:           DefaultModel,
		TokensPerChunk:  DefaultTokensPerChunk,
		OutputLen:       DefaultOutputLen,
		TTFT:            DefaultTTFT,
		PrefillPerToken: DefaultPrefillPerToken,
		ITL:             DefaultITL,
		ITLPerRunning:   DefaultITLPerRunning,
		MaxRunning:      DefaultMaxRunning,
		BlockSize:       DefaultBlockSize,
		CacheBlocks:     DefaultCacheBlocks,
		Tokenizer:       DefaultTokenizer,
		FailStatus:      DefaultFailStatus,
		RetryAfter:      DefaultRetryAfter,
		Stall:           DefaultStall,
	}
}

// withDefaults fills the structural zero values and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.TokensPerChunk == 0 {
		c.TokensPerChunk = DefaultTokensPerChunk
	}
	if c.OutputLen == (LenRange{}) {
		c.OutputLen = DefaultOutputLen
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.Tokenizer == "" {
		c.Tokenizer = DefaultTokenizer
	}
	if c.FailStatus == 0 {
		c.FailStatus = DefaultFailStatus
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.Stall == 0 {
		c.Stall = DefaultStall
	}
	if err := c.OutputLen.validate(); err != nil {
		return c, err
	}
	switch {
	case c.TokensPerChunk < 1:
		return c, fmt.Errorf("tokens per chunk %d: want at least 1", c.TokensPerChunk)
	case c.BlockSize < 1:
		return c, fmt.Errorf("block size %d: want at least 1", c.BlockSize)
	case c.CacheBlocks < 0:
		return c, fmt.Errorf("cache blocks %d: want 0 or more", c.CacheBlocks)
	case c.FailStatus < 400 || c.FailStatus > 599:
		return c, fmt.Errorf("fail status %d: want 400..599", c.FailStatus)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ttft", c.TTFT}, {"prefill per token", c.PrefillPerToken}, {"itl", c.ITL}, {"itl per running", c.ITLPerRunning},
		{"jitter", c.Jitter}, {"stall", c.Stall}, {"retry after", c.RetryAfter}} {
		if d.v < 0 {
			return c, fmt.Errorf("%s %v: must not be negative", d.name, d.v)
		}
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"fail rate", c.FailRate}, {"stall rate", c.StallRate}, {"disconnect rate", c.DisconnectRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return c, fmt.Errorf("%s %v: want 0..1", r.name, r.v)
		}
	}
	if c.Tokenizer != "o200k_base" && c.Tokenizer != "approx" {
		return c, fmt.Errorf("tokenizer %q: want o200k_base or approx", c.Tokenizer)
	}
	return c, nil
}
