package tape

import (
	"encoding/json"
	"time"

	"github.com/llmtape/llmtape/errclass"
)

// Recording is one run of "llmtape record", one import or one "generate": a set of
// conversations captured or made together.
type Recording struct {
	ID       uint64    // assigned by the store
	Name     string    // human name: the import file's base name, or "record <time>"
	Source   string    // how it was made: "record", "import:vllm", "import:mooncake", "generate", …
	Upstream string    // upstream URL for recordings made by the proxy; empty otherwise
	Mode     string    // proxy mode ("reverse" or "forward"); empty for imports
	Started  time.Time // wall clock of the first exchange (or of the import)
	Ended    time.Time // wall clock of the last exchange; zero while recording goes on
	// Complete is true when the recording was closed with every exchange stored. It is false
	// while a recording or import is being written, after a crash, and when exchanges were not
	// stored (NotRecorded > 0); an import that fails leaves it false and is then deleted.
	Complete bool
	// Counters kept by the store: putting a new conversation or turn increments them in the
	// same transaction; the values in a put or update of the recording are ignored.
	Conversations int
	Turns         int
	// NotRecorded is how many captured exchanges are not in the store: dropped because the
	// recorder was behind, or lost because the store could not take them (disk full, I/O
	// error). The recorder writes it when it closes; 0 in stores written before it existed.
	NotRecorded int
}

// Status values of a recording (Recording.Status).
const (
	StatusComplete   = "complete"   // closed with every exchange stored
	StatusIncomplete = "incomplete" // still being written, cut short, or missing exchanges
)

// Status is StatusComplete for a complete recording, else StatusIncomplete: one that is still
// being written, was cut short (crash, kill -9) or is missing NotRecorded exchanges.
func (r *Recording) Status() string {
	if r.Complete && r.NotRecorded == 0 {
		return StatusComplete
	}
	return StatusIncomplete
}

// Grouping says how a conversation's turns were found to belong together.
type Grouping string

// The ways a turn is matched to a conversation, kept per turn in Turn.Match. A conversation's
// Grouping is how its first turn was matched, except that a "single" conversation that a later
// turn continued by prefix matching becomes "prefix".
const (
	GroupSession Grouping = "session" // an explicit session id from a header or body field
	GroupPrefix  Grouping = "prefix"  // its messages extend an earlier turn's messages and reply
	GroupSingle  Grouping = "single"  // nothing matched: a conversation of its own
	GroupFork    Grouping = "fork"    // it re-sent an earlier state of a conversation
	GroupImport  Grouping = "import"  // grouped by the imported file
)

// Conversation is an ordered list of turns that belong together.
type Conversation struct {
	ID        uint64 // unique in the store; assigned with Store.NextConversationID
	Recording uint64
	// Arrival is the start of the first turn relative to the recording's first arrival.
	Arrival  time.Duration
	Grouping Grouping
	Session  string // the explicit session id, when Grouping is GroupSession
	// Parent and ForkTurn are set on a fork: the conversation it branched from and the index of
	// the parent's turn whose messages (plus reply) it re-sent a prefix of. Parent is 0 otherwise.
	Parent   uint64
	ForkTurn int
	Turns    int // number of turns, kept by the store (the value put is ignored)
	// SessionHeader is the name of the request header that carried Session, when the
	// conversation was grouped by a session header (never its value: Session has that); ""
	// otherwise. Replay re-sends it with a value of its own (docs/replay.md).
	SessionHeader string
}

// TokenSource says where a turn's token counts came from.
type TokenSource string

// The sources of token counts.
const (
	TokensServer   TokenSource = "server"   // the server's usage object
	TokensCounted  TokenSource = "tiktoken" // counted with tiktoken off the hot path
	TokensImported TokenSource = "import"   // given by an imported trace
	TokensNone     TokenSource = ""         // unknown
)

// Turn is one request and its response within a conversation.
type Turn struct {
	Conversation uint64
	Index        int      // 0-based position in the conversation
	Match        Grouping // how this turn was matched to its conversation
	Request      Request
	Response     Response
	Timing       Timing
	Tokens       Tokens
}

// Failed reports whether the turn failed as recorded: an error class, an error body or an
// HTTP status of 400 or more.
func (t *Turn) Failed() bool {
	return t.Response.ErrorClass != "" || t.Response.Error != "" || t.Response.Status >= 400
}

// FailureClass is the error class of a turn that failed (Failed): its own, or "http" when it has
// none (a turn imported with only a failing status); "" for a turn that did not fail.
func (t *Turn) FailureClass() errclass.Class {
	switch {
	case !t.Failed():
		return ""
	case t.Response.ErrorClass != "":
		return t.Response.ErrorClass
	}
	return errclass.HTTP
}

// Result returns the turn as the result of a request, so that recorded and replayed figures
// come from the same code: TTFT and E2E as Timing defines them (0 where not measured), and the
// turn's tokens, status and failure class.
func (t *Turn) Result() Result {
	r := Result{
		Conversation: t.Conversation,
		Turn:         t.Index,
		Chunks:       t.Timing.Chunks,
		InputTokens:  t.Tokens.Prompt,
		OutputTokens: t.Tokens.Completion,
		CachedTokens: t.Tokens.Cached,
		TokenSource:  t.Tokens.Source,
		Status:       t.Response.Status,
		ErrorClass:   t.FailureClass(),
		Error:        t.Response.Error,
	}
	r.TTFT, _ = t.Timing.TTFT()
	r.E2E, _ = t.Timing.E2E()
	return r
}

// HasRequest reports whether the turn holds a request that can be sent again: messages, a
// prompt, or a synthetic prompt. Turns of older stores, or of a capture that lacked the body,
// have none.
func (t *Turn) HasRequest() bool {
	return t.Request.Kept > 0 || len(t.Request.Messages) > 0 || len(t.Request.Prompt) > 0 ||
		t.Request.Synthetic != nil
}

// Request is what the client sent, stored without repeating earlier turns' messages.
//
// The full message list of a turn is Base[:Kept] followed by Messages, where Base is the
// previous turn's full message list followed by that turn's reply as an assistant message
// (ReplyMessage), or for the first turn of a fork the same sequence of the parent's ForkTurn, or
// empty for the first turn of any other conversation. Store.TurnMessages rebuilds it.
type Request struct {
	Method string
	Path   string // "/v1/chat/completions" or "/v1/completions"
	Model  string
	Stream bool
	// Params is the request body without "messages" (chat) or "prompt" (completions): a JSON
	// object, kept verbatim so the body can be rebuilt JSON-equal to what the client sent.
	Params json.RawMessage
	// Kept is how many messages of the base sequence this turn's message list starts with.
	Kept int
	// Messages are the messages this turn adds, each verbatim JSON.
	Messages []json.RawMessage
	// MessageMeta holds, per entry of Messages, its token count and content hash, computed once
	// when the turn is recorded or imported (prefix-reuse analysis uses them).
	MessageMeta []MessageMeta
	// Prompt is the "prompt" field of a legacy completion request, verbatim JSON.
	Prompt json.RawMessage
	// Synthetic describes a prompt that has no stored text (imported Mooncake/Azure traces):
	// text is materialized from it when needed. Nil for ordinary turns.
	Synthetic *Synthetic
	Headers   map[string]string // request headers with credentials removed
	// Truncated is true when the body was larger than the proxy's --max-body and was not kept.
	Truncated bool
	BodySize  int64 // size of the request body in bytes as received
}

// MessageMeta is what the recorder computes once per added message.
type MessageMeta struct {
	Tokens int32  // tiktoken count of the message's rendered text
	Hash   uint64 // hash of the message's canonical JSON
}

// Synthetic is a prompt known only by its lengths and prefix blocks, as in Mooncake traces.
type Synthetic struct {
	BlockSize   int      // tokens per block (Mooncake: 512)
	HashIDs     []uint64 // block ids; equal ids at equal positions share the text of that block
	InputTokens int      // prompt length; the last block carries the remainder
}

// Response is what the server answered.
type Response struct {
	Status       int
	Headers      map[string]string // response headers with cookies removed
	Content      string
	Reasoning    string
	ToolCalls    json.RawMessage // assembled tool calls as a JSON array; nil when none
	FinishReason string
	// Error is the error body or message when the request failed (HTTP status ≥ 400, an error
	// object in the stream, a connection failure); empty otherwise.
	Error string
	// ErrorClass is the kind of failure (see errclass), or empty.
	ErrorClass errclass.Class
	Streamed   bool
	// Events is the number of SSE data events in the response (0 when not streamed).
	Events int
}

// Chunk is one stream event that carried output: its arrival and the tokens it carried.
type Chunk struct {
	Offset time.Duration // arrival, from the request being sent
	Tokens int32
}

// Timing is when things happened. Start is wall clock; Sent, Headers and End are monotonic
// offsets from Start, and each Chunk's Offset is from Sent (the request being sent). The
// figures derived from them (TTFT, E2E, the end, think time) are computed by the methods below
// and nowhere else.
type Timing struct {
	Start      time.Time
	Sent       time.Duration // from Start: the request was fully received by the proxy and sent upstream
	Headers    time.Duration // from Start: upstream response headers arrived
	Chunks     []Chunk       // every output-carrying stream event, in order (offsets from Sent)
	End        time.Duration // from Start: last byte of the response (0: no response timing)
	ClientGone bool          // the client went away before the response ended
}

// TTFT is the time from the request being sent to the first event that carried output, and
// false when no output event was recorded (not streamed, failed, imported).
func (t *Timing) TTFT() (time.Duration, bool) {
	if len(t.Chunks) == 0 {
		return 0, false
	}
	return t.Chunks[0].Offset, true
}

// E2E is the time from the request being sent to the last byte of the response, and false
// when the turn has no response timing (imported or generated turns).
func (t *Timing) E2E() (time.Duration, bool) {
	if t.End <= t.Sent {
		return 0, false
	}
	return t.End - t.Sent, true
}

// Ended is the wall-clock time of the response's last byte (Start when there is none).
func (t *Timing) Ended() time.Time { return t.Start.Add(t.End) }

// ThinkTime is the gap between the end of prev's response and this turn's start: the time the
// user (or agent) took before sending it. It is 0 when the turn started before prev ended (a
// client that did not wait) and false without a previous turn or start time.
func (t *Timing) ThinkTime(prev *Timing) (time.Duration, bool) {
	if prev == nil || prev.Start.IsZero() || t.Start.IsZero() {
		return 0, false
	}
	return max(t.Start.Sub(prev.Ended()), 0), true
}

// Tokens are a turn's token counts.
type Tokens struct {
	Prompt     int
	Completion int
	Cached     int // prompt tokens the server reported as served from its cache
	Source     TokenSource
}

// Run is one "llmtape replay".
type Run struct {
	ID        uint64
	Name      string
	Target    string
	Recording uint64
	Options   json.RawMessage // every option the run used, as JSON
	Started   time.Time
	Ended     time.Time
	Requests  int  // results written, kept by the store (the value put is ignored)
	Partial   bool // stopped early (Ctrl-C, --duration)
	// Summary is the run's summary as printed (the replayer's JSON summary).
	Summary json.RawMessage
	// Histograms are the run's HDR histograms, encoded, by name (see package metrics).
	Histograms map[string][]byte
}

// Result is one replayed request.
type Result struct {
	Run          uint64
	Seq          uint64 // order of completion within the run, from 1
	Conversation uint64
	Turn         int
	Scheduled    time.Duration // scheduled send time, from the run's start
	Sent         time.Duration // actual send time, from the run's start
	TTFT         time.Duration // 0 when no output arrived
	Chunks       []Chunk       // output events, offsets from Sent
	E2E          time.Duration
	InputTokens  int
	OutputTokens int
	CachedTokens int
	TokenSource  TokenSource
	Status       int
	ErrorClass   errclass.Class // the kind of failure (see errclass), or empty
	Error        string
	Warmup       bool // excluded from statistics
	Retries      int
	// Reply is what the target answered, kept when the run was made with replay
	// --keep-replies (what it received of a request that failed mid-stream); nil otherwise.
	Reply *Reply
	// Attempts are the tries of a request that was retried (Retries > 0), in order, the last
	// being this result's own; nil for a request sent once. Sent above is the first try's.
	Attempts []Attempt
}

// Attempt is one try of a retried request (Result.Attempts).
type Attempt struct {
	Sent       time.Duration // from the run's start
	TTFT       time.Duration // 0 when no output arrived
	E2E        time.Duration
	Status     int
	ErrorClass errclass.Class
	Error      string
}

// AttemptResults returns the request's tries as results, in order: the result itself for a
// request sent once; for a retried one, a result per earlier try (its send time, latency and
// failure, Retries = the tries before it; no events, output or reply) and then this result
// with its last try's send time.
func (r *Result) AttemptResults() []Result {
	if len(r.Attempts) == 0 {
		return []Result{*r}
	}
	out := make([]Result, len(r.Attempts))
	last := len(r.Attempts) - 1
	for i, a := range r.Attempts[:last] {
		out[i] = Result{Run: r.Run, Seq: r.Seq, Conversation: r.Conversation, Turn: r.Turn,
			Scheduled: r.Scheduled, Sent: a.Sent, TTFT: a.TTFT, E2E: a.E2E, InputTokens: r.InputTokens,
			Status: a.Status, ErrorClass: a.ErrorClass, Error: a.Error, Warmup: r.Warmup, Retries: i}
	}
	out[last] = *r
	out[last].Sent, out[last].Retries, out[last].Attempts = r.Attempts[last].Sent, last, nil
	return out
}

// Reply is a target's answer to a replayed request: its text and tool calls.
type Reply struct {
	Content   string
	ToolCalls json.RawMessage // assembled tool calls as a JSON array; nil when none
}

// Message returns the reply as the assistant message a client echoes back, as ReplyMessage
// does for a recorded turn.
func (r *Reply) Message() json.RawMessage { return replyMessage(r.Content, r.ToolCalls) }
