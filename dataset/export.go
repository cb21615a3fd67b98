package dataset

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/llmtape/llmtape/internal/randx"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// FormatRequests is the export-only format of JSON lines of the exact request bodies with
// their offsets.
const FormatRequests = "requests"

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
	// NoITL leaves the ITL samples out of the results format's lines (they are most of a
	// line's bytes: one value per output token).
	NoITL bool
}

// ExportStats counts what Export wrote.
type ExportStats struct {
	Conversations int
	Turns         int // turns, or for the results formats lines (requests)
}

// Export writes recording rec of st to w in cfg.Format, with that format's Encoder (see
// ExportHelp for what each writes). Synthetic prompts are materialized with
// cfg.Materializer. Export checks ctx every conversation and returns its error.
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
	f, ok := lookup(cfg.Format)
	if !ok || f.Encode == nil {
		return ExportStats{}, fmt.Errorf("export: %w %q (want one of %s)", ErrUnknownFormat, cfg.Format, strings.Join(ExportFormats, ", "))
	}
	return encode(w, &cfg, func(bw *bufio.Writer) (ExportStats, error) { return f.Encode(ctx, st, r, bw, &cfg) })
}

// ExportRun writes run of st to w in cfg.Format, one of RunExportFormats, with that format's
// RunEncoder: the run's results, or the conversations as its target answered them. It checks
// ctx every conversation or every few thousand results and returns its error.
func ExportRun(ctx context.Context, st *tape.Store, run uint64, w io.Writer, cfg ExportConfig) (ExportStats, error) {
	if cfg.Materializer == nil {
		cfg.Materializer = synth.Default()
	}
	r, err := st.Run(run)
	if err != nil {
		return ExportStats{}, fmt.Errorf("export: run %d: %w", run, err)
	}
	f, ok := lookup(cfg.Format)
	if !ok || f.EncodeRun == nil {
		return ExportStats{}, fmt.Errorf("export: %w %q for a run (want one of %s)", ErrUnknownFormat, cfg.Format, strings.Join(RunExportFormats, ", "))
	}
	return encode(w, &cfg, func(bw *bufio.Writer) (ExportStats, error) { return f.EncodeRun(ctx, st, r, bw, &cfg) })
}

// encode runs an encoder on a buffered w and flushes it.
func encode(w io.Writer, cfg *ExportConfig, fn func(*bufio.Writer) (ExportStats, error)) (ExportStats, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	stats, err := fn(bw)
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

// conversationWriter writes one conversation of a JSON-array format: its id and full message
// list, including the last reply.
type conversationWriter func(w *bufio.Writer, id string, msgs []json.RawMessage) error

// encodeConversations is the Encoder of a JSON array of conversations (vllm, sharegpt) whose
// elements write writes.
func encodeConversations(write conversationWriter) Encoder {
	return func(ctx context.Context, st *tape.Store, r *tape.Recording, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
		return writeConversations(ctx, st, r.ID, w, write, func(c *tape.Conversation) ([]json.RawMessage, int, error) {
			return conversationList(st, c, cfg.Materializer)
		})
	}
}

// encodeRunConversations is the RunEncoder of a JSON array of conversations (vllm, sharegpt):
// the run's recording's conversations as the run's target answered them (answeredList), from
// the replies the run kept (replay --keep-replies).
func encodeRunConversations(write conversationWriter) RunEncoder {
	return func(ctx context.Context, st *tape.Store, run *tape.Run, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
		replies, err := runReplies(ctx, st, run)
		if err != nil {
			return ExportStats{}, err
		}
		if len(replies) == 0 {
			return ExportStats{}, fmt.Errorf("run %d has no successful request with a kept reply (replay with --keep-replies keeps them)", run.ID)
		}
		return writeConversations(ctx, st, run.Recording, w, write, func(c *tape.Conversation) ([]json.RawMessage, int, error) {
			return answeredList(st, c, cfg.Materializer, replies[c.ID])
		})
	}
}

// runReplies returns the replies that run kept of its successful requests, by conversation
// and turn index.
func runReplies(ctx context.Context, st *tape.Store, run *tape.Run) (map[uint64]map[int]*tape.Reply, error) {
	replies := map[uint64]map[int]*tape.Reply{}
	n := 0
	err := st.Results(run.ID, func(r *tape.Result) error {
		if n++; n%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if r.Reply == nil || !metrics.OK(r) {
			return nil
		}
		if replies[r.Conversation] == nil {
			replies[r.Conversation] = map[int]*tape.Reply{}
		}
		replies[r.Conversation][r.Turn] = r.Reply
		return nil
	})
	return replies, err
}

// answeredList returns the message list of conversation c as the run's target answered it,
// and the turns it covers: each turn's messages as the client sent them, with every assistant
// message that was the reply of an earlier turn replaced by the target's reply to that turn
// (as replay --history live sends them), and the target's last reply. It ends before the
// first turn without a reply (not sent, failed, or its body not kept by the proxy).
func answeredList(st *tape.Store, c *tape.Conversation, m *synth.Materializer, replies map[int]*tape.Reply) (list []json.RawMessage, turns int, err error) {
	err = fullMessages(st, c, m, func(t *tape.Turn, msgs []json.RawMessage) error {
		reply := replies[t.Index]
		if reply == nil || t.Request.Truncated {
			return tape.ErrStop
		}
		sent := msgs
		switch q := &t.Request; {
		case q.Synthetic != nil: // whole prompts: each adds a user message
			sent = append(slices.Clip(list), msgs...)
		case list != nil && len(q.Messages)+q.Kept > 0 && q.Kept <= len(list):
			sent = append(slices.Clip(list[:q.Kept]), q.Messages...)
		}
		list = append(slices.Clip(sent), reply.Message())
		turns++
		return nil
	})
	return list, turns, err
}

// writeConversations writes the conversations of recording rec as a JSON array whose elements
// write writes, each with the message list that listOf gives (none: left out).
func writeConversations(ctx context.Context, st *tape.Store, rec uint64, w *bufio.Writer, write conversationWriter,
	listOf func(*tape.Conversation) ([]json.RawMessage, int, error)) (ExportStats, error) {
	var stats ExportStats
	names := conversationNames{}
	w.WriteString("[")
	err := st.Conversations(rec, func(c *tape.Conversation) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		list, turns, err := listOf(c)
		if err != nil || len(list) == 0 {
			return err
		}
		if stats.Conversations > 0 {
			w.WriteString(",")
		}
		w.WriteString("\n")
		if err := write(w, names.unique(c), list); err != nil {
			return fmt.Errorf("conversation %d: %w", c.ID, err)
		}
		stats.Conversations++
		stats.Turns += turns
		return nil
	})
	if err != nil {
		return stats, err
	}
	w.WriteString("\n]\n")
	return stats, nil
}

// conversationNames gives each conversation of an export a name no other one has.
type conversationNames map[string]bool

// unique returns conversationName(c), with "-<id>" added when an earlier conversation had it.
func (used conversationNames) unique(c *tape.Conversation) string {
	name := conversationName(c)
	if used[name] {
		name += "-" + strconv.FormatUint(c.ID, 10)
	}
	used[name] = true
	return name
}

// conversationList returns the full message list of conversation c with its last reply, and
// the turns it covers. Its text ends at a turn whose messages were not kept (a body larger
// than the proxy's --max-body); synthetic turns (whole prompts) each add a user message and
// a reply.
func conversationList(st *tape.Store, c *tape.Conversation, m *synth.Materializer) (list []json.RawMessage, turns int, err error) {
	err = fullMessages(st, c, m, func(t *tape.Turn, msgs []json.RawMessage) error {
		if t.Request.Truncated {
			return nil // its messages were not kept: the conversation ends at the turn before
		}
		turns++
		if t.Request.Synthetic != nil {
			list = append(list, msgs...)
			if t.Tokens.Completion > 0 {
				list = append(list, chatMessage("assistant", syntheticReply(m, t)))
			}
			return nil
		}
		list = append(list[:0], msgs...)
		if hasReply(t) {
			list = append(list, tape.ReplyMessage(t))
		}
		return nil
	})
	return list, turns, err
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

// exportOrigin is time zero of a turn export's offsets: the recording's start, or for a
// recording without one its first conversation's first turn.
func exportOrigin(st *tape.Store, r *tape.Recording) (time.Time, error) {
	origin := r.Started
	if !origin.IsZero() {
		return origin, nil
	}
	err := st.Conversations(r.ID, func(c *tape.Conversation) error {
		t, err := st.Turn(c.ID, 0)
		if err != nil {
			return err
		}
		origin = t.Timing.Start
		return tape.ErrStop
	})
	if err != nil && !errors.Is(err, tape.ErrStop) {
		return time.Time{}, err
	}
	return origin, nil
}

// turnHead is what the lines of the turn formats (mooncake, requests) say of a turn's place:
// its conversation's exported name (JSON), whether that is a multi-turn session, the turn's
// offset from the export's origin and its think time after the previous turn.
type turnHead struct {
	name    []byte
	session bool
	index   int
	offset  time.Duration
	think   time.Duration
}

// turnHeads gives the turnHead of each turn of a conversation, in order.
type turnHeads struct {
	origin  time.Time
	name    []byte
	session bool
	prev    tape.Timing // the previous turn's start and end
}

// begin starts conversation c.
func (h *turnHeads) begin(c *tape.Conversation) {
	h.name, _ = json.Marshal(conversationName(c))
	h.session = c.Turns > 1 || c.Grouping == tape.GroupSession
}

// next returns the turnHead of t, the conversation's next turn.
func (h *turnHeads) next(t *tape.Turn) turnHead {
	th := turnHead{name: h.name, session: h.session, index: t.Index, offset: t.Timing.Start.Sub(h.origin)}
	if t.Index > 0 {
		th.think, _ = t.Timing.ThinkTime(&h.prev)
	}
	h.prev = tape.Timing{Start: t.Timing.Start, End: t.Timing.End}
	return th
}

// mooncakeRow is one line of the mooncake format before its hash_ids are numbered: the line
// up to `"hash_ids":[`, and the keys of the prompt's blocks.
type mooncakeRow struct {
	line []byte
	keys []uint64
}

// encodeMooncake writes JSON lines of {"timestamp" (ms), "input_length", "output_length",
// "hash_ids"}, plus "session_id" on every turn of a multi-turn conversation and "delay" (ms,
// the think time) on its later turns, in order of time. Block keys are numbered 0, 1, 2, …
// in the order they are first written.
func encodeMooncake(ctx context.Context, st *tape.Store, r *tape.Recording, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
	origin, err := exportOrigin(st, r)
	if err != nil {
		return ExportStats{}, err
	}
	heads := turnHeads{origin: origin}
	hasher := newBlockHasher(cfg)
	numbers := map[uint64]uint64{}
	begin := func(c *tape.Conversation) {
		heads.begin(c)
		hasher.reset()
	}
	return inTimeOrder(ctx, st, r, begin, func(t *tape.Turn, msgs []json.RawMessage) (mooncakeRow, error) {
		syn, err := hasher.blocks(t, msgs)
		if err != nil {
			return mooncakeRow{}, err
		}
		return mooncakeRow{line: appendMooncakeHead(nil, heads.next(t), syn.InputTokens, t.Tokens.Completion), keys: syn.HashIDs}, nil
	}, func(row mooncakeRow) error {
		line := row.line
		for k, key := range row.keys {
			n, ok := numbers[key]
			if !ok {
				n = uint64(len(numbers))
				numbers[key] = n
			}
			if k > 0 {
				line = append(line, ',')
			}
			line = strconv.AppendUint(line, n, 10)
		}
		return writeLine(w, append(line, "]}\n"...))
	})
}

// appendMooncakeHead appends a mooncake line up to its hash_ids' opening bracket.
func appendMooncakeHead(buf []byte, h turnHead, in, out int) []byte {
	buf = append(buf, `{"timestamp":`...)
	buf = appendMillis(buf, h.offset)
	if h.session {
		buf = append(buf, `,"session_id":`...)
		buf = append(buf, h.name...)
		if h.index > 0 {
			buf = append(buf, `,"delay":`...)
			buf = appendMillis(buf, h.think)
		}
	}
	buf = append(buf, `,"input_length":`...)
	buf = strconv.AppendInt(buf, int64(in), 10)
	buf = append(buf, `,"output_length":`...)
	buf = strconv.AppendInt(buf, int64(out), 10)
	return append(buf, `,"hash_ids":[`...)
}

// encodeRequests writes JSON lines of {"offset_ms", "conversation", "turn", "method",
// "path", "body"}: the exact request bodies with their start relative to the recording, in
// order of time. A body the proxy did not keep is null, with "truncated": true.
func encodeRequests(ctx context.Context, st *tape.Store, r *tape.Recording, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
	origin, err := exportOrigin(st, r)
	if err != nil {
		return ExportStats{}, err
	}
	heads := turnHeads{origin: origin}
	return inTimeOrder(ctx, st, r, heads.begin, func(t *tape.Turn, msgs []json.RawMessage) ([]byte, error) {
		body := []byte("null") // a body the proxy did not keep (larger than --max-body)
		if !t.Request.Truncated {
			var err error
			if body, err = requestBody(t, msgs, cfg.Materializer); err != nil {
				return nil, fmt.Errorf("conversation %d turn %d: %w", t.Conversation, t.Index, err)
			}
		}
		return appendRequestLine(nil, heads.next(t), &t.Request, body), nil
	}, func(line []byte) error { return writeLine(w, line) })
}

// appendRequestLine appends the requests line of a turn whose request is req and body body.
func appendRequestLine(buf []byte, h turnHead, req *tape.Request, body []byte) []byte {
	buf = append(buf, `{"offset_ms":`...)
	buf = appendMillis(buf, h.offset)
	buf = append(buf, `,"conversation":`...)
	buf = append(buf, h.name...)
	buf = append(buf, `,"turn":`...)
	buf = strconv.AppendInt(buf, int64(h.index), 10)
	method := req.Method
	if method == "" {
		method = "POST"
	}
	b, _ := json.Marshal(method)
	buf = append(buf, `,"method":`...)
	buf = append(buf, b...)
	b, _ = json.Marshal(req.Path)
	buf = append(buf, `,"path":`...)
	buf = append(buf, b...)
	buf = append(buf, `,"body":`...)
	buf = append(buf, body...)
	if req.Truncated {
		buf = append(buf, `,"truncated":true`...)
	}
	return append(buf, "}\n"...)
}

// writeLine writes one line of a turn format.
func writeLine(w *bufio.Writer, line []byte) error {
	if _, err := w.Write(line); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
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
	if s := t.Request.Synthetic; s != nil {
		return &tape.Synthetic{BlockSize: h.cfg.BlockSize, HashIDs: h.syntheticKeys(s), InputTokens: s.InputTokens}, nil
	}
	tokens := h.tokens(t, msgs)
	in := t.Tokens.Prompt
	if in <= 0 {
		in = len(tokens)
	}
	chain := h.salt
	if t.Request.Truncated {
		// The proxy did not keep the body: its blocks are unknown, so they share nothing
		// (without this, all such prompts of one length would look identical).
		chain = randx.SplitMix64(chain ^ randx.SplitMix64(t.Conversation) ^ uint64(t.Index))
	}
	return &tape.Synthetic{BlockSize: h.cfg.BlockSize, HashIDs: h.tokenKeys(chain, tokens, in), InputTokens: in}, nil
}

// syntheticKeys returns the block keys of a synthetic prompt: with the same block size the
// trace's own ids, keyed; with another, each block is keyed by the source blocks up to its
// end and how far into the last one it reaches.
func (h *blockHasher) syntheticKeys(s *tape.Synthetic) []uint64 {
	bs, in := h.cfg.BlockSize, s.InputTokens
	keys := make([]uint64, (in+bs-1)/bs)
	chain, chained := h.salt, 0 // chain covers source blocks 0 .. chained-1
	for j := range keys {
		if s.BlockSize == bs {
			keys[j] = randx.SplitMix64(h.salt ^ randx.SplitMix64(synth.BlockID(s, j)))
			continue
		}
		// The block ends grow with j, so the chain is extended, not recomputed (linear in
		// the blocks, even for tiny block sizes).
		end := min((j+1)*bs, in)
		k := (end - 1) / s.BlockSize
		into := end - k*s.BlockSize
		for ; chained <= k; chained++ {
			chain = randx.SplitMix64(chain ^ randx.SplitMix64(synth.BlockID(s, chained)))
		}
		keys[j] = randx.SplitMix64(chain ^ uint64(into)<<1 ^ 1)
	}
	return keys
}

// tokens returns the tokens of each message's text of a real prompt, reusing the lists of
// messages that the previous turn had at the same place; a legacy completion's prompt is
// one text. The slice is reused by the next call.
func (h *blockHasher) tokens(t *tape.Turn, msgs []json.RawMessage) []uint {
	codec := h.cfg.Materializer
	tokens := h.scratch[:0]
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
	return tokens
}

// tokenKeys returns the chained keys of the blocks of a prompt of in tokens whose known
// tokens are tokens (fewer when the prompt was not all kept), starting from chain.
func (h *blockHasher) tokenKeys(chain uint64, tokens []uint, in int) []uint64 {
	bs := h.cfg.BlockSize
	keys := make([]uint64, (in+bs-1)/bs)
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
	return keys
}
