package dataset

import (
	"bufio"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/llmtape/llmtape/internal/randx"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// The export formats (FormatVLLM, FormatShareGPT and FormatMooncake, and this one).
const (
	FormatRequests = "requests" // JSONL of the exact request bodies with their offsets
)

// ExportFormats lists the formats Export writes.
var ExportFormats = []string{FormatVLLM, FormatShareGPT, FormatMooncake, FormatRequests}

// ExportConfig says how to export a recording.
type ExportConfig struct {
	// Format is one of ExportFormats.
	Format string
	// BlockSize is the tokens per hash_ids block of the mooncake format; default 512.
	BlockSize int
	// Materializer makes the text of synthetic prompts (imported Mooncake or Azure traces)
	// and counts tokens for the mooncake format; default synth.Default().
	Materializer *synth.Materializer
	// Salt keys the hash of real prompt tokens into hash_ids (mooncake format); it is never
	// written. Default: 16 random bytes per export.
	Salt []byte
}

// ExportStats counts what Export wrote.
type ExportStats struct {
	Conversations int
	Turns         int
}

// Export writes recording rec of st to w in cfg.Format.
//
//   - vllm: a JSON array of {"id", "messages"}, each conversation's full message list
//     including the last reply, as vLLM's multi-turn benchmark reads it;
//   - sharegpt: a JSON array of {"id", "conversations": [{"from", "value"}]};
//   - mooncake: JSON lines of {"timestamp" (ms), "input_length", "output_length", "hash_ids"},
//     plus "session_id" on every turn of a multi-turn conversation and "delay" (ms, the think
//     time) on its later turns, in order of time;
//   - requests: JSON lines of {"offset_ms", "conversation", "turn", "method", "path", "body"},
//     the exact request bodies with their start relative to the recording, in order of time.
//
// Synthetic prompts are materialized with cfg.Materializer.
func Export(ctx context.Context, st *tape.Store, rec uint64, w io.Writer, cfg ExportConfig) (ExportStats, error) {
	if cfg.Materializer == nil {
		cfg.Materializer = synth.Default()
	}
	if cfg.BlockSize < 0 {
		return ExportStats{}, fmt.Errorf("export: block size %d, want > 0", cfg.BlockSize)
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	r, err := st.Recording(rec)
	if err != nil {
		return ExportStats{}, fmt.Errorf("export: recording %d: %w", rec, err)
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var stats ExportStats
	switch cfg.Format {
	case FormatVLLM, FormatShareGPT:
		err = exportConversations(ctx, st, r, bw, &cfg, &stats)
	case FormatMooncake, FormatRequests:
		err = exportTurns(ctx, st, r, bw, &cfg, &stats)
	default:
		return stats, fmt.Errorf("export: %w %q (want one of %s)", ErrUnknownFormat, cfg.Format, strings.Join(ExportFormats, ", "))
	}
	if err != nil {
		return stats, fmt.Errorf("export %s: %w", cfg.Format, err)
	}
	if err := bw.Flush(); err != nil {
		return stats, fmt.Errorf("export %s: write: %w", cfg.Format, err)
	}
	return stats, nil
}

// conversationName is a conversation's id in exported files: its session id (or the id it
// was imported with), else "conv-<id>".
func conversationName(c *tape.Conversation) string {
	if c.Session != "" {
		return c.Session
	}
	return "conv-" + strconv.FormatUint(c.ID, 10)
}

// hasReply reports whether a turn has a reply to put in a message list.
func hasReply(t *tape.Turn) bool {
	return t.Response.Error == "" && (t.Response.Content != "" || len(t.Response.ToolCalls) > 0)
}

// fullMessages returns each turn's full message list of conversation c: rebuilt from the
// store, or for synthetic turns materialized.
func fullMessages(st *tape.Store, c *tape.Conversation, m *synth.Materializer, fn func(t *tape.Turn, msgs []json.RawMessage) error) error {
	return st.TurnMessages(c.ID, func(t *tape.Turn, msgs []json.RawMessage) error {
		if t.Request.Synthetic != nil {
			var err error
			if msgs, err = m.Messages(t.Request.Synthetic); err != nil {
				return fmt.Errorf("conversation %d turn %d: %w", c.ID, t.Index, err)
			}
		} else if msgs == nil && len(t.Request.Prompt) > 0 {
			// A legacy completion: its prompt as one user message.
			var p string
			if json.Unmarshal(t.Request.Prompt, &p) != nil {
				p = string(t.Request.Prompt)
			}
			msgs = []json.RawMessage{chatMessage("user", p)}
		}
		return fn(t, msgs)
	})
}

// syntheticReply is the text of a synthetic turn's reply: completion tokens of text, its id
// derived from the turn's place.
func syntheticReply(m *synth.Materializer, t *tape.Turn) string {
	return m.Block(randx.SplitMix64(t.Conversation<<20^uint64(t.Index))|1<<62, t.Tokens.Completion)
}

// exportConversations writes the vllm or sharegpt format.
func exportConversations(ctx context.Context, st *tape.Store, r *tape.Recording, w *bufio.Writer, cfg *ExportConfig, stats *ExportStats) error {
	used := map[string]bool{}
	w.WriteString("[")
	first := true
	err := st.Conversations(r.ID, func(c *tape.Conversation) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var list []json.RawMessage
		turns := 0
		err := fullMessages(st, c, cfg.Materializer, func(t *tape.Turn, msgs []json.RawMessage) error {
			if t.Request.Truncated {
				return nil // its messages were not kept: the conversation ends at the turn before
			}
			turns++
			if t.Request.Synthetic != nil {
				// Synthetic prompts are whole: each turn is a user message and a reply.
				list = append(list, msgs...)
				if t.Tokens.Completion > 0 {
					list = append(list, chatMessage("assistant", syntheticReply(cfg.Materializer, t)))
				}
				return nil
			}
			list = append(list[:0], msgs...)
			if hasReply(t) {
				list = append(list, tape.ReplyMessage(t))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return nil
		}
		name := conversationName(c)
		if used[name] {
			name += "-" + strconv.FormatUint(c.ID, 10)
		}
		used[name] = true
		if !first {
			w.WriteString(",")
		}
		first = false
		w.WriteString("\n")
		if cfg.Format == FormatVLLM {
			err = writeVLLM(w, name, list)
		} else {
			err = writeShareGPT(w, name, list)
		}
		if err != nil {
			return fmt.Errorf("conversation %d: %w", c.ID, err)
		}
		stats.Conversations++
		stats.Turns += turns
		return nil
	})
	if err != nil {
		return err
	}
	w.WriteString("\n]\n")
	return nil
}

// writeVLLM writes one conversation. Stored messages are written verbatim; one that is not
// valid JSON (a damaged store) is an error rather than a broken output file.
func writeVLLM(w *bufio.Writer, id string, msgs []json.RawMessage) error {
	b, _ := json.Marshal(id)
	w.WriteString(`{"id":`)
	w.Write(b)
	w.WriteString(`,"messages":[`)
	for i, m := range msgs {
		if !json.Valid(m) {
			return fmt.Errorf("message %d: not valid JSON: %w", i, tape.ErrCorrupt)
		}
		if i > 0 {
			w.WriteString(",")
		}
		w.Write(m)
	}
	w.WriteString("]}")
	return nil
}

// shareGPTFrom maps a chat role to a ShareGPT speaker.
func shareGPTFrom(role string) string {
	switch role {
	case "user":
		return "human"
	case "assistant":
		return "gpt"
	}
	return role
}

func writeShareGPT(w *bufio.Writer, id string, msgs []json.RawMessage) error {
	type turn struct {
		From  string `json:"from"`
		Value string `json:"value"`
	}
	conv := struct {
		ID            string `json:"id"`
		Conversations []turn `json:"conversations"`
	}{ID: id}
	for i, raw := range msgs {
		if !json.Valid(raw) {
			return fmt.Errorf("message %d: not valid JSON: %w", i, tape.ErrCorrupt)
		}
		m, err := openai.ParseMessage(raw)
		if err != nil {
			continue // valid JSON but no chat message (a client's oddity): no ShareGPT turn
		}
		conv.Conversations = append(conv.Conversations, turn{From: shareGPTFrom(m.Role), Value: m.Content})
	}
	b, err := json.Marshal(conv)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// turnRef is a turn waiting to be written in time order: its line, ready.
type turnRef struct {
	start time.Time
	seq   int // order of reading, for ties
	conv  int // index in the conversations read so far
	line  []byte
	// keys are the mooncake hash_ids before numbering: the line ends with `"hash_ids":[`
	// and write completes it.
	keys []uint64
}

// turnHeap orders turnRefs by start, then by reading order.
type turnHeap []*turnRef

func (h turnHeap) Len() int { return len(h) }
func (h turnHeap) Less(i, j int) bool {
	if !h[i].start.Equal(h[j].start) {
		return h[i].start.Before(h[j].start)
	}
	return h[i].seq < h[j].seq
}
func (h turnHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *turnHeap) Push(x any)   { *h = append(*h, x.(*turnRef)) }
func (h *turnHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// exportTurns writes the mooncake or requests format in order of time. Conversations come
// from the store in arrival order and the turns of each in order, so a turn can be written
// as soon as the next conversation's first turn starts after it: only the turns of
// conversations that overlap in time are held in memory, never the whole recording.
func exportTurns(ctx context.Context, st *tape.Store, r *tape.Recording, w *bufio.Writer, cfg *ExportConfig, stats *ExportStats) error {
	origin := r.Started
	if origin.IsZero() {
		// A recording without a start: offsets from its first conversation's first turn.
		err := st.Conversations(r.ID, func(c *tape.Conversation) error {
			t, err := st.Turn(c.ID, 0)
			if err != nil {
				return err
			}
			origin = t.Timing.Start
			return tape.ErrStop
		})
		if err != nil && !errors.Is(err, tape.ErrStop) {
			return err
		}
	}
	hasher := newBlockHasher(cfg)
	renumber := map[uint64]uint64{}
	var pending turnHeap
	seenConv := map[int]bool{}
	write := func(ref *turnRef) error {
		if cfg.Format == FormatMooncake {
			for k, key := range ref.keys {
				n, ok := renumber[key]
				if !ok {
					n = uint64(len(renumber))
					renumber[key] = n
				}
				if k > 0 {
					ref.line = append(ref.line, ',')
				}
				ref.line = strconv.AppendUint(ref.line, n, 10)
			}
			ref.line = append(ref.line, "]}\n"...)
		}
		if _, err := w.Write(ref.line); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if !seenConv[ref.conv] {
			seenConv[ref.conv] = true
			stats.Conversations++
		}
		stats.Turns++
		return nil
	}
	flush := func(before time.Time, all bool) error {
		for len(pending) > 0 && (all || pending[0].start.Before(before)) {
			if err := write(heap.Pop(&pending).(*turnRef)); err != nil {
				return err
			}
		}
		return nil
	}
	ci, seq := -1, 0
	err := st.Conversations(r.ID, func(c *tape.Conversation) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ci++
		name, _ := json.Marshal(conversationName(c))
		session := c.Turns > 1 || c.Grouping == tape.GroupSession
		hasher.reset()
		var prevEnd time.Time
		return st.TurnMessages(c.ID, func(t *tape.Turn, msgs []json.RawMessage) error {
			if t.Index == 0 {
				if err := flush(t.Timing.Start, false); err != nil {
					return err
				}
			}
			var think time.Duration
			if t.Index > 0 {
				think = max(t.Timing.Start.Sub(prevEnd), 0)
			}
			prevEnd = t.Timing.Start.Add(t.Timing.End)
			offset := t.Timing.Start.Sub(origin)
			var buf []byte
			var keys []uint64
			if cfg.Format == FormatMooncake {
				syn, err := hasher.blocks(t, msgs)
				if err != nil {
					return err
				}
				buf = append(buf, `{"timestamp":`...)
				buf = appendMillis(buf, offset)
				if session {
					buf = append(buf, `,"session_id":`...)
					buf = append(buf, name...)
					if t.Index > 0 {
						buf = append(buf, `,"delay":`...)
						buf = appendMillis(buf, think)
					}
				}
				buf = append(buf, `,"input_length":`...)
				buf = strconv.AppendInt(buf, int64(syn.InputTokens), 10)
				buf = append(buf, `,"output_length":`...)
				buf = strconv.AppendInt(buf, int64(t.Tokens.Completion), 10)
				buf = append(buf, `,"hash_ids":[`...)
				keys = syn.HashIDs // numbered when written, in order of time
			} else {
				body := []byte("null") // a body the proxy did not keep (larger than --max-body)
				if !t.Request.Truncated {
					var err error
					if body, err = requestBody(t, msgs, cfg.Materializer); err != nil {
						return fmt.Errorf("conversation %d turn %d: %w", t.Conversation, t.Index, err)
					}
				}
				buf = append(buf, `{"offset_ms":`...)
				buf = appendMillis(buf, offset)
				buf = append(buf, `,"conversation":`...)
				buf = append(buf, name...)
				buf = append(buf, `,"turn":`...)
				buf = strconv.AppendInt(buf, int64(t.Index), 10)
				method := t.Request.Method
				if method == "" {
					method = "POST"
				}
				b, _ := json.Marshal(method)
				buf = append(buf, `,"method":`...)
				buf = append(buf, b...)
				b, _ = json.Marshal(t.Request.Path)
				buf = append(buf, `,"path":`...)
				buf = append(buf, b...)
				buf = append(buf, `,"body":`...)
				buf = append(buf, body...)
				if t.Request.Truncated {
					buf = append(buf, `,"truncated":true`...)
				}
				buf = append(buf, "}\n"...)
			}
			heap.Push(&pending, &turnRef{start: t.Timing.Start, seq: seq, conv: ci, line: buf, keys: keys})
			seq++
			return nil
		})
	})
	if err != nil {
		return err
	}
	return flush(time.Time{}, true)
}

// appendMillis appends d in milliseconds: an integer when whole, else a decimal.
func appendMillis(b []byte, d time.Duration) []byte {
	if d%time.Millisecond == 0 {
		return strconv.AppendInt(b, int64(d/time.Millisecond), 10)
	}
	return strconv.AppendFloat(b, float64(d)/float64(time.Millisecond), 'f', -1, 64)
}

// requestBody rebuilds the exact request body of a turn.
func requestBody(t *tape.Turn, msgs []json.RawMessage, m *synth.Materializer) ([]byte, error) {
	params := t.Request.Params
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	if s := t.Request.Synthetic; s != nil {
		if strings.HasSuffix(t.Request.Path, "/completions") && !strings.HasSuffix(t.Request.Path, "/chat/completions") {
			p, err := m.Prompt(s)
			if err != nil {
				return nil, err
			}
			b, _ := json.Marshal(p)
			return openai.BuildRequest(params, nil, b)
		}
		var err error
		if msgs, err = m.Messages(s); err != nil {
			return nil, err
		}
	}
	if msgs == nil {
		if len(t.Request.Prompt) > 0 {
			return openai.BuildRequest(params, nil, t.Request.Prompt)
		}
		msgs = []json.RawMessage{}
	}
	return openai.BuildRequest(params, msgs, nil)
}

// blockHasher computes Mooncake hash_ids of turns, one conversation at a time.
type blockHasher struct {
	cfg  *ExportConfig
	salt uint64
	// Per message of the current conversation's last full list: its raw bytes and tokens.
	msgRaw    []json.RawMessage
	msgTokens [][]uint
	scratch   []uint
}

func newBlockHasher(cfg *ExportConfig) *blockHasher {
	salt := cfg.Salt
	if len(salt) == 0 {
		salt = make([]byte, 16)
		_, _ = rand.Read(salt)
	}
	h := fnv.New64a()
	h.Write(salt)
	return &blockHasher{cfg: cfg, salt: h.Sum64()}
}

func (h *blockHasher) reset() {
	h.msgRaw, h.msgTokens = h.msgRaw[:0], h.msgTokens[:0]
}

// blocks returns the keys of the blocks of cfg.BlockSize tokens of t's prompt (renumbered by
// the caller) and the prompt length, as a Synthetic.
func (h *blockHasher) blocks(t *tape.Turn, msgs []json.RawMessage) (*tape.Synthetic, error) {
	bs := h.cfg.BlockSize
	if s := t.Request.Synthetic; s != nil {
		in := s.InputTokens
		n := (in + bs - 1) / bs
		keys := make([]uint64, n)
		chain, chained := h.salt, 0 // chain covers source blocks 0 .. chained-1
		for j := range keys {
			if s.BlockSize == bs {
				// Same blocks: the trace's own ids, keyed.
				keys[j] = randx.SplitMix64(h.salt ^ randx.SplitMix64(synth.BlockID(s, j)))
				continue
			}
			// Other blocks: key by the source blocks up to the block's end and how far
			// into the last one it reaches. The block ends grow with j, so the chain is
			// extended, not recomputed (linear in the blocks, even for tiny block sizes).
			end := min((j+1)*bs, in)
			k := (end - 1) / s.BlockSize
			into := end - k*s.BlockSize
			for ; chained <= k; chained++ {
				chain = randx.SplitMix64(chain ^ randx.SplitMix64(synth.BlockID(s, chained)))
			}
			keys[j] = randx.SplitMix64(chain ^ uint64(into)<<1 ^ 1)
		}
		return &tape.Synthetic{BlockSize: bs, HashIDs: keys, InputTokens: in}, nil
	}
	// Real text: tokens of each message's text, reusing the lists of messages that the
	// previous turn had at the same place.
	codec := h.cfg.Materializer
	var tokens []uint
	tokens = h.scratch[:0]
	for i, raw := range msgs {
		if i < len(h.msgRaw) && string(h.msgRaw[i]) == string(raw) {
			tokens = append(tokens, h.msgTokens[i]...)
			continue
		}
		ids := codec.Encode(openai.MessageText(raw))
		if i < len(h.msgRaw) {
			h.msgRaw, h.msgTokens = h.msgRaw[:i], h.msgTokens[:i]
		}
		h.msgRaw = append(h.msgRaw, raw)
		h.msgTokens = append(h.msgTokens, ids)
		tokens = append(tokens, ids...)
	}
	if len(msgs) < len(h.msgRaw) {
		h.msgRaw, h.msgTokens = h.msgRaw[:len(msgs)], h.msgTokens[:len(msgs)]
	}
	if len(msgs) == 0 && len(t.Request.Prompt) > 0 {
		var p string
		if json.Unmarshal(t.Request.Prompt, &p) != nil {
			p = string(t.Request.Prompt)
		}
		tokens = append(tokens, codec.Encode(p)...)
	}
	h.scratch = tokens
	in := t.Tokens.Prompt
	if in <= 0 {
		in = len(tokens)
	}
	n := (in + bs - 1) / bs
	keys := make([]uint64, n)
	chain := h.salt
	if t.Request.Truncated {
		// The proxy did not keep the body: its blocks are unknown, so they share nothing
		// (without this, all such prompts of one length would look identical).
		chain = randx.SplitMix64(chain ^ randx.SplitMix64(t.Conversation) ^ uint64(t.Index))
	}
	var b [8]byte
	for j := range keys {
		f := fnv.New64a()
		binary.LittleEndian.PutUint64(b[:], chain)
		f.Write(b[:])
		lo, hi := j*bs, min((j+1)*bs, in)
		if lo < len(tokens) {
			for _, tok := range tokens[lo:min(hi, len(tokens))] {
				binary.LittleEndian.PutUint64(b[:], uint64(tok))
				f.Write(b[:])
			}
		}
		binary.LittleEndian.PutUint64(b[:], uint64(hi-lo))
		f.Write(b[:])
		chain = randx.SplitMix64(f.Sum64())
		keys[j] = chain
	}
	return &tape.Synthetic{BlockSize: bs, HashIDs: keys, InputTokens: in}, nil
}
