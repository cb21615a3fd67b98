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
	bs := cfg.blockSize()
	started := cfg.now()
	d := &Dataset{}
	d.Recording.Started = started
	sessions := map[string]int{} // session id -> index in d.Conversations
	lastStart := map[int]time.Duration{}
	var minTS, maxTS time.Duration = math.MaxInt64, 0
	fresh := uint64(freshIDBase)
	filled := 0
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		if lineNo%checkEvery == 1 { // the first and every checkEvery-th
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		fail := func(field string, err error) error {
			return &InputError{File: file, Line: lineNo, Element: field, Err: err}
		}
		if line[0] != '{' {
			return nil, fail("", fmt.Errorf("expected a JSON object per line, got %s", kind(line)))
		}
		var l mooncakeLine
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := dec.Decode(&l); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, fail(te.Field, fmt.Errorf("expected %s, got %s", typeName(te.Type.String()), te.Value))
			}
			return nil, fail("", fmt.Errorf("malformed JSON: %v", err))
		}
		if dec.More() {
			return nil, fail("", errors.New("malformed JSON: more than one value on the line"))
		}
		if l.InputLength == nil {
			return nil, fail("", errors.New(`missing field "input_length", expected an integer`))
		}
		if l.OutputLength == nil {
			return nil, fail("", errors.New(`missing field "output_length", expected an integer`))
		}
		in, out := *l.InputLength, *l.OutputLength
		if in < 0 || in > maxTraceTokens {
			return nil, fail("input_length", fmt.Errorf("expected an integer from 0 to %d, got %d", maxTraceTokens, in))
		}
		if out < 0 || out > maxTraceTokens {
			return nil, fail("output_length", fmt.Errorf("expected an integer from 0 to %d, got %d", maxTraceTokens, out))
		}
		var ids []uint64
		if len(l.HashIDs) > 0 && !bytes.Equal(l.HashIDs, []byte("null")) {
			if err := json.Unmarshal(l.HashIDs, &ids); err != nil {
				return nil, fail("hash_ids", fmt.Errorf("expected an array of non-negative integers"))
			}
		}
		need, err := blockCount(in, bs)
		if err != nil {
			return nil, fail("input_length", err)
		}
		if len(ids) > need {
			return nil, fail("hash_ids", fmt.Errorf("%d block ids, but input_length %d fills only %d blocks of %d tokens (is the block size right? see --block-size)", len(ids), in, need, bs))
		}
		if len(ids) < need {
			filled++
			for len(ids) < need {
				ids = append(ids, fresh)
				fresh++
			}
		}
		var ts, delay time.Duration
		hasTS := l.Timestamp != nil
		if hasTS {
			var err error
			if ts, err = msDuration(*l.Timestamp); err != nil {
				return nil, fail("timestamp", err)
			}
		}
		if l.Delay != nil {
			var err error
			if delay, err = msDuration(*l.Delay); err != nil {
				return nil, fail("delay", err)
			}
		}
		session, err := idString(l.SessionID)
		if err != nil {
			return nil, fail("session_id", err)
		}
		ci := -1
		if session != "" {
			if i, ok := sessions[session]; ok {
				ci = i
			}
		}
		if !hasTS {
			if ci < 0 {
				return nil, fail("", errors.New(`missing field "timestamp" (ms), expected a number (only later turns of a session may give just "delay")`))
			}
			ts = lastStart[ci] + delay
		}
		minTS, maxTS = min(minTS, ts), max(maxTS, ts)
		t := syntheticTurn(cfg.Model, bs, ids, int(in), int(out), started.Add(ts))
		if ci < 0 {
			c := tape.Conversation{Grouping: tape.GroupSingle}
			if session != "" {
				c.Grouping, c.Session = tape.GroupSession, session
				sessions[session] = len(d.Conversations)
			}
			ci = len(d.Conversations)
			d.Conversations = append(d.Conversations, Conversation{Conversation: c})
		}
		c := &d.Conversations[ci]
		t.Index = len(c.Turns)
		c.Turns = append(c.Turns, t)
		lastStart[ci] = ts
	}
	for i := range d.Conversations {
		c := &d.Conversations[i]
		c.Conversation.Arrival = c.Turns[0].Timing.Start.Sub(started) - minTS
	}
	if len(d.Conversations) > 0 {
		d.Recording.Ended = started.Add(maxTS)
	}
	if filled > 0 {
		d.Notes = append(d.Notes, fmt.Sprintf("%d requests had fewer hash_ids than blocks of %d tokens; their missing blocks got ids of their own (no sharing)", filled, bs))
	}
	return d, nil
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
