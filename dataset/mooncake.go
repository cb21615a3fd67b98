package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/llmtape/llmtape/tape"
)

// mooncakeLine is one request of a Mooncake trace.
type mooncakeLine struct {
	Timestamp    *json.Number    `json:"timestamp"`     // ms from the trace's start
	InputLength  *int64          `json:"input_length"`  // prompt tokens
	OutputLength *int64          `json:"output_length"` // completion tokens
	HashIDs      json.RawMessage `json:"hash_ids"`      // ids of the prompt's blocks
	SessionID    json.RawMessage `json:"session_id"`    // optional: groups turns (AIPerf)
	Delay        *json.Number    `json:"delay"`         // optional: ms after the previous turn
}

// maxTraceTokens bounds a request's lengths, so that a corrupt trace cannot ask for an
// absurd prompt.
const maxTraceTokens = 1 << 30

// maxBlocks bounds the blocks of one request, so that a tiny --block-size cannot make an
// import allocate without bound.
const maxBlocks = 1 << 20

// blockCount returns the blocks of in tokens, or an error past maxBlocks.
func blockCount(in int64, bs int) (int, error) {
	n := (in + int64(bs) - 1) / int64(bs)
	if n > maxBlocks {
		return 0, fmt.Errorf("%d tokens are %d blocks of %d tokens, more than the limit %d (use a larger --block-size)", in, n, bs, maxBlocks)
	}
	return int(n), nil
}

// freshIDBase starts the ids given to blocks a trace line has no hash_ids for; trace ids are
// small, so these never meet them.
const freshIDBase = 1 << 63

// syntheticTurn builds a turn of a trace without text.
func syntheticTurn(model string, blockSize int, ids []uint64, in, out int, start time.Time) tape.Turn {
	return tape.Turn{
		Match: tape.GroupImport,
		Request: tape.Request{
			Method: "POST",
			Path:   "/v1/chat/completions",
			Model:  model,
			Stream: true,
			Params: chatParams(model, map[string]any{"max_tokens": out}),
			Synthetic: &tape.Synthetic{
				BlockSize:   blockSize,
				HashIDs:     ids,
				InputTokens: in,
			},
		},
		Response: tape.Response{Status: 200, FinishReason: "length"},
		Timing:   tape.Timing{Start: start},
		Tokens:   tape.Tokens{Prompt: in, Completion: out, Source: tape.TokensImported},
	}
}

// parseMooncake reads a Mooncake trace: JSON lines of {"timestamp" (ms), "input_length",
// "output_length", "hash_ids"}, with optional "session_id" and "delay" (ms) for multi-turn
// traces. Lines with a session_id form one conversation per session, in file order; other
// lines are conversations of their own.
func parseMooncake(ctx context.Context, data []byte, file string, cfg *Config) (*Dataset, error) {
	mr := &mooncakeReader{
		file: file, cfg: cfg, bs: cfg.blockSize(), started: cfg.now(),
		d:        &Dataset{},
		sessions: map[string]int{},
		minTS:    math.MaxInt64,
		fresh:    freshIDBase,
	}
	mr.d.Recording.Started = mr.started
	err := eachLine(ctx, data, func(n int, line []byte) error {
		mr.line = n
		return mr.add(line)
	})
	if err != nil {
		return nil, err
	}
	return mr.finish(), nil
}

// eachLine calls fn with each line of data that is not blank, white space trimmed, and its
// 1-based number. It checks ctx at the first line and every checkEvery-th.
func eachLine(ctx context.Context, data []byte, fn func(n int, line []byte) error) error {
	for n := 1; len(data) > 0; n++ {
		if n%checkEvery == 1 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return nil
}

// mooncakeReader builds a Dataset from a Mooncake trace, one line at a time.
type mooncakeReader struct {
	file    string
	line    int // the line being read
	cfg     *Config
	bs      int
	started time.Time
	d       *Dataset

	sessions     map[string]int  // session id -> index in d.Conversations
	lastStart    []time.Duration // per conversation: its last turn's timestamp
	minTS, maxTS time.Duration   // the trace's first and last timestamps
	fresh        uint64          // the next id for a block without hash_id
	filled       int             // lines that had fewer hash_ids than blocks
}

// fail is a fault of the line being read.
func (mr *mooncakeReader) fail(field string, err error) error {
	return &InputError{File: mr.file, Line: mr.line, Element: field, Err: err}
}

// add reads one line into a turn of its conversation.
func (mr *mooncakeReader) add(line []byte) error {
	l, err := mr.decode(line)
	if err != nil {
		return err
	}
	in, out := *l.InputLength, *l.OutputLength
	ids, err := mr.blockIDs(l.HashIDs, in)
	if err != nil {
		return err
	}
	ts, delay, err := mr.times(&l)
	if err != nil {
		return err
	}
	session, err := idString(l.SessionID)
	if err != nil {
		return mr.fail("session_id", err)
	}
	ci := -1
	if i, ok := mr.sessions[session]; ok && session != "" {
		ci = i
	}
	if l.Timestamp == nil {
		// A later turn of a session may give only its delay after the previous turn.
		if ci < 0 {
			return mr.fail("", errors.New(`missing field "timestamp" (ms), expected a number (only later turns of a session may give just "delay")`))
		}
		ts = mr.lastStart[ci] + delay
	}
	mr.minTS, mr.maxTS = min(mr.minTS, ts), max(mr.maxTS, ts)
	if ci < 0 {
		ci = mr.newConversation(session)
	}
	t := syntheticTurn(mr.cfg.Model, mr.bs, ids, int(in), int(out), mr.started.Add(ts))
	c := &mr.d.Conversations[ci]
	t.Index = len(c.Turns)
	c.Turns = append(c.Turns, t)
	mr.lastStart[ci] = ts
	return nil
}

// decode decodes one line and checks its lengths.
func (mr *mooncakeReader) decode(line []byte) (mooncakeLine, error) {
	var l mooncakeLine
	if line[0] != '{' {
		return l, mr.fail("", fmt.Errorf("expected a JSON object per line, got %s", kind(line)))
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&l); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return l, mr.fail(te.Field, fmt.Errorf("expected %s, got %s", typeName(te.Type.String()), te.Value))
		}
		return l, mr.fail("", fmt.Errorf("malformed JSON: %v", err))
	}
	if dec.More() {
		return l, mr.fail("", errors.New("malformed JSON: more than one value on the line"))
	}
	if l.InputLength == nil {
		return l, mr.fail("", errors.New(`missing field "input_length", expected an integer`))
	}
	if l.OutputLength == nil {
		return l, mr.fail("", errors.New(`missing field "output_length", expected an integer`))
	}
	if in := *l.InputLength; in < 0 || in > maxTraceTokens {
		return l, mr.fail("input_length", fmt.Errorf("expected an integer from 0 to %d, got %d", maxTraceTokens, in))
	}
	if out := *l.OutputLength; out < 0 || out > maxTraceTokens {
		return l, mr.fail("output_length", fmt.Errorf("expected an integer from 0 to %d, got %d", maxTraceTokens, out))
	}
	return l, nil
}

// blockIDs returns the ids of the blocks of a prompt of in tokens: the line's hash_ids, and
// for blocks it has none for, fresh ids that nothing shares.
func (mr *mooncakeReader) blockIDs(raw json.RawMessage, in int64) ([]uint64, error) {
	var ids []uint64
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, mr.fail("hash_ids", fmt.Errorf("expected an array of non-negative integers"))
		}
	}
	need, err := blockCount(in, mr.bs)
	if err != nil {
		return nil, mr.fail("input_length", err)
	}
	if len(ids) > need {
		return nil, mr.fail("hash_ids", fmt.Errorf("%d block ids, but input_length %d fills only %d blocks of %d tokens (is the block size right? see --block-size)", len(ids), in, need, mr.bs))
	}
	if len(ids) < need {
		mr.filled++
		for len(ids) < need {
			ids = append(ids, mr.fresh)
			mr.fresh++
		}
	}
	return ids, nil
}

// times returns the line's timestamp and delay, 0 when missing.
func (mr *mooncakeReader) times(l *mooncakeLine) (ts, delay time.Duration, err error) {
	if l.Timestamp != nil {
		if ts, err = msDuration(*l.Timestamp); err != nil {
			return 0, 0, mr.fail("timestamp", err)
		}
	}
	if l.Delay != nil {
		if delay, err = msDuration(*l.Delay); err != nil {
			return 0, 0, mr.fail("delay", err)
		}
	}
	return ts, delay, nil
}

// newConversation starts a conversation: of the session, or of one turn when session is "".
func (mr *mooncakeReader) newConversation(session string) int {
	c := tape.Conversation{Grouping: tape.GroupSingle}
	ci := len(mr.d.Conversations)
	if session != "" {
		c.Grouping, c.Session = tape.GroupSession, session
		mr.sessions[session] = ci
	}
	mr.d.Conversations = append(mr.d.Conversations, Conversation{Conversation: c})
	mr.lastStart = append(mr.lastStart, 0)
	return ci
}

// finish sets the arrivals (from the trace's first timestamp) and the recording's end.
func (mr *mooncakeReader) finish() *Dataset {
	d := mr.d
	for i := range d.Conversations {
		c := &d.Conversations[i]
		c.Conversation.Arrival = c.Turns[0].Timing.Start.Sub(mr.started) - mr.minTS
	}
	if len(d.Conversations) > 0 {
		d.Recording.Ended = mr.started.Add(mr.maxTS)
	}
	if mr.filled > 0 {
		d.Notes = append(d.Notes, fmt.Sprintf("%d requests had fewer hash_ids than blocks of %d tokens; their missing blocks got ids of their own (no sharing)", mr.filled, mr.bs))
	}
	return d
}

// msDuration converts a number of milliseconds to a duration.
func msDuration(n json.Number) (time.Duration, error) {
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("expected a number of milliseconds, got %s", n)
	}
	if f < 0 || f > float64(math.MaxInt64/int64(time.Millisecond)) {
		return 0, fmt.Errorf("expected a non-negative number of milliseconds (up to about 292 years), got %s", n)
	}
	return time.Duration(math.Round(f * float64(time.Millisecond))), nil
}
