// Package tapetest helps tests that need a store: a store in a temporary directory and
// generated conversations whose full message lists are known.
package tapetest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/tape"
)

// MustOpen opens a new read-write store in a temporary directory (without fsync) and closes it
// when the test ends.
func MustOpen(tb testing.TB) *tape.Store {
	tb.Helper()
	s, err := tape.Open(filepath.Join(tb.TempDir(), "llmtape.db"), &tape.Options{NoSync: true})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// Config shapes the conversations made by Chat.
type Config struct {
	Turns        int // turns in the conversation; at least 1
	MessageBytes int // approximate size of each user message's text; default 200
	ReplyBytes   int // approximate size of each reply's text; default MessageBytes
	Chunks       int // stream events per reply; default 16
}

// Chat is a generated conversation: the records to store and, per turn, the full message
// list that the client sent (what Store.TurnMessages must give back).
type Chat struct {
	Conversation *tape.Conversation
	Turns        []*tape.Turn
	Full         [][]json.RawMessage
}

// NewChat makes a chat conversation with the given ID in a recording. Each turn adds one user
// message (the first also a system message) and keeps everything before it, including the
// previous reply, as a client that echoes the history does. rng makes it deterministic.
func NewChat(rng *rand.Rand, recording, id uint64, cfg Config) *Chat {
	if cfg.Turns < 1 {
		cfg.Turns = 1
	}
	if cfg.MessageBytes <= 0 {
		cfg.MessageBytes = 200
	}
	if cfg.ReplyBytes <= 0 {
		cfg.ReplyBytes = cfg.MessageBytes
	}
	if cfg.Chunks <= 0 {
		cfg.Chunks = 16
	}
	c := &Chat{Conversation: &tape.Conversation{
		ID:        id,
		Recording: recording,
		Arrival:   time.Duration(rng.Int64N(int64(time.Hour))),
		Grouping:  tape.GroupPrefix,
	}}
	start := time.Unix(1_790_000_000, 0).Add(c.Conversation.Arrival)
	var base []json.RawMessage
	for i := range cfg.Turns {
		t := &tape.Turn{
			Conversation: id,
			Index:        i,
			Match:        tape.GroupPrefix,
			Request: tape.Request{
				Method: "POST",
				Path:   "/v1/chat/completions",
				Model:  "llama-3.1-8b",
				Stream: true,
				Params: json.RawMessage(`{"model":"llama-3.1-8b","stream":true,"temperature":0.7}`),
				Kept:   len(base),
				Headers: map[string]string{
					"Content-Type": "application/json",
					"User-Agent":   "OpenAI/Python 1.54.0",
				},
			},
		}
		if i == 0 {
			t.Request.Messages = append(t.Request.Messages, message("system", "You are a helpful assistant."))
			t.Match = tape.GroupSingle
		}
		t.Request.Messages = append(t.Request.Messages, message("user", Text(rng, cfg.MessageBytes)))
		for _, m := range t.Request.Messages {
			t.Request.MessageMeta = append(t.Request.MessageMeta, tape.MessageMeta{
				Tokens: int32(len(m) / 4), Hash: rng.Uint64()})
			t.Request.BodySize += int64(len(m))
		}
		full := append(append([]json.RawMessage(nil), base...), t.Request.Messages...)

		reply := Text(rng, cfg.ReplyBytes)
		t.Response = tape.Response{
			Status:       200,
			Headers:      map[string]string{"Content-Type": "text/event-stream"},
			Content:      reply,
			FinishReason: "stop",
			Streamed:     true,
			Events:       cfg.Chunks + 2,
		}
		t.Timing.Start = start
		t.Timing.Sent = time.Duration(200+rng.IntN(100)) * time.Microsecond
		t.Timing.Headers = t.Timing.Sent + time.Duration(5+rng.IntN(50))*time.Millisecond
		off := t.Timing.Headers
		for range cfg.Chunks {
			off += time.Duration(rng.IntN(40_000_000))
			// Chunk offsets are from Sent, the others from Start (tape.Timing).
			t.Timing.Chunks = append(t.Timing.Chunks, tape.Chunk{Offset: off - t.Timing.Sent, Tokens: 1 + rng.Int32N(3)})
		}
		t.Timing.End = off + time.Millisecond
		t.Tokens = tape.Tokens{Prompt: 100 * (i + 1), Completion: len(reply) / 4, Cached: 90 * i, Source: tape.TokensServer}
		start = start.Add(t.Timing.End + time.Duration(1+rng.IntN(30))*time.Second)

		c.Turns = append(c.Turns, t)
		c.Full = append(c.Full, full)
		base = append(full, tape.ReplyMessage(t))
	}
	return c
}

func message(role, text string) json.RawMessage {
	b := make([]byte, 0, len(text)+40)
	b = append(b, `{"role":`...)
	b = strconv.AppendQuote(b, role)
	b = append(b, `,"content":`...)
	b = strconv.AppendQuote(b, text) // valid JSON for corpus text: printable UTF-8, \" and \\ only
	return append(b, '}')
}

var words = strings.Fields(`the of and to in is that it for as with was on be by this are
from at or an have not which but had they were their one all would there what so if about
when can more no out up into do time only some could them than other then its also two new
token cache prefix model latency stream reply server client turn conversation "quoted" é ü 日本`)

// corpus is 1 MB of word salad that Text takes slices of.
var corpus = func() string {
	rng := rand.New(rand.NewPCG(42, 42))
	var b strings.Builder
	for b.Len() < 1<<20 {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()
}()

// Text returns about n bytes of word salad (with a quote and non-ASCII letters now and then,
// so that JSON escaping is exercised).
func Text(rng *rand.Rand, n int) string {
	n = min(max(n, 1), len(corpus)/2)
	i := rng.IntN(len(corpus) - n - 64)
	for corpus[i] != ' ' {
		i++
	}
	i++
	j := i + n
	for j < len(corpus)-1 && corpus[j] != ' ' {
		j++
	}
	return corpus[i:j]
}

// Write stores the chat in one transaction (the conversation, then its turns).
func (c *Chat) Write(tx *tape.Tx) error {
	if err := tx.PutConversation(c.Conversation); err != nil {
		return err
	}
	for _, t := range c.Turns {
		if err := tx.PutTurn(t); err != nil {
			return err
		}
	}
	return nil
}

// UniqueBytes is the size of what the chat says: every message added by a turn plus every
// reply's text, each counted once.
func (c *Chat) UniqueBytes() int64 {
	var n int64
	for _, t := range c.Turns {
		for _, m := range t.Request.Messages {
			n += int64(len(m))
		}
		n += int64(len(t.Response.Content))
	}
	return n
}

// Recording creates a recording named after the test and returns it.
func Recording(tb testing.TB, s *tape.Store) *tape.Recording {
	tb.Helper()
	r := &tape.Recording{Name: fmt.Sprintf("test %s", tb.Name()), Source: "test",
		Started: time.Unix(1_790_000_000, 0), Complete: true}
	if err := s.CreateRecording(r); err != nil {
		tb.Fatalf("create recording: %v", err)
	}
	return r
}
