package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/tape"
)

// checkEvery is how many records (lines, conversations) a long loop handles between checks
// of its context: often enough to stop well within a second, rarely enough to cost nothing.
const checkEvery = 1024

// DefaultBlockSize is the tokens per hash_ids block of Mooncake traces.
const DefaultBlockSize = 512

// ErrUnknownFormat is returned for a format name that is not known.
var ErrUnknownFormat = errors.New("unknown format")

// ErrEmpty is returned for an input that holds no conversations.
var ErrEmpty = errors.New("no conversations")

// InputError is a fault in an input file: which file, where, and what was expected.
type InputError struct {
	File    string // the file name as given ("-" is shown as "stdin")
	Line    int    // 1-based line, 0 when not known
	Element string // the element or field, e.g. "element 3: messages[1].role"; may be empty
	Err     error
}

// Error returns "file: line N: element: what was wrong", leaving out what is not known.
func (e *InputError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ": line %d", e.Line)
	}
	if e.Element != "" {
		b.WriteString(": ")
		b.WriteString(e.Element)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error (ErrEmpty, for instance).
func (e *InputError) Unwrap() error { return e.Err }

// Config says how to read an input file. The zero value reads with the defaults.
type Config struct {
	// Name is the recording's name; default the file's base name ("stdin" for "-").
	Name string
	// BlockSize is the tokens per hash_ids block of Mooncake traces, and the block size of the
	// synthetic prompts of Azure traces; default 512.
	BlockSize int
	// Model is put in every imported request's "model" field; default none (the replayer
	// sets its target's model).
	Model string
	// Now is the wall clock of the import, the start of recordings whose format has no
	// absolute times; default time.Now.
	Now func() time.Time
}

func (c *Config) blockSize() int {
	if c.BlockSize <= 0 {
		return DefaultBlockSize
	}
	return c.BlockSize
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Skip is a part of the input that was left out, and why.
type Skip struct {
	Element string // e.g. `element 12 ("abc")`
	Reason  string
}

// Conversation is one conversation of a Dataset with its turns. The IDs (Conversation.ID and
// Recording, Turn.Conversation) are set by Write.
type Conversation struct {
	Conversation tape.Conversation
	Turns        []tape.Turn
}

// Dataset is an imported or generated set of conversations, ready to be written to a store.
type Dataset struct {
	Recording     tape.Recording // Name, Source, Started and Ended are set; the store sets the rest
	Conversations []Conversation
	Skipped       []Skip
	// Notes say what was changed or assumed while reading (for the user; not errors).
	Notes []string
}

// Turns returns the number of turns of all conversations.
func (d *Dataset) Turns() int {
	n := 0
	for i := range d.Conversations {
		n += len(d.Conversations[i].Turns)
	}
	return n
}

// Parse reads an input of the given format from r, which the caller opened, into a Dataset,
// with that format's Decoder. file names the input in errors and in the default recording
// name ("-" is stdin). Faults of the input are *InputError values; an unknown format is
// ErrUnknownFormat; an input without conversations is ErrEmpty. Parsing checks ctx every
// checkEvery records (or every conversation) and returns its error once it is done.
func Parse(ctx context.Context, format string, r io.Reader, file string, cfg Config) (*Dataset, error) {
	f, ok := lookup(format)
	if !ok || f.Decode == nil {
		return nil, fmt.Errorf("%w %q (want one of %s)", ErrUnknownFormat, format, strings.Join(ImportFormats, ", "))
	}
	if cfg.BlockSize < 0 {
		return nil, fmt.Errorf("block size %d, want > 0", cfg.BlockSize)
	}
	shown := displayName(file)
	data, err := readAll(r)
	if err != nil {
		if _, ok := errors.AsType[*fs.PathError](err); ok {
			return nil, err // it names the file
		}
		return nil, fmt.Errorf("read %s: %w", shown, err)
	}
	// A byte order mark (files saved by some Windows tools) is not part of the content.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &InputError{File: shown, Err: errors.New("empty file, expected " + f.Shape)}
	}
	d, err := f.Decode(ctx, data, shown, &cfg)
	if err != nil {
		return nil, err
	}
	if len(d.Conversations) == 0 {
		err := fmt.Errorf("%w to import", ErrEmpty)
		if len(d.Skipped) > 0 {
			s := d.Skipped[len(d.Skipped)-1]
			err = fmt.Errorf("%w to import: %s skipped: %s (%d skipped in all)", ErrEmpty, s.Element, s.Reason, len(d.Skipped))
		}
		return nil, &InputError{File: shown, Err: err}
	}
	d.Recording.Source = "import:" + format
	if d.Recording.Name == "" {
		d.Recording.Name = cfg.Name
	}
	if d.Recording.Name == "" {
		d.Recording.Name = filepath.Base(shown)
	}
	d.Recording.Complete = true
	return d, nil
}

// readAll reads r to its end. When r knows its size (a file, a bytes or strings reader) the
// buffer is allocated once at that size: io.ReadAll's growing would hold two copies of a
// large file for a moment.
func readAll(r io.Reader) ([]byte, error) {
	size := int64(-1)
	switch v := r.(type) {
	case interface{ Stat() (fs.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
	case interface{ Len() int }:
		size = int64(v.Len())
	}
	if size < 0 || size > 1<<40 {
		return io.ReadAll(r)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

func displayName(file string) string {
	if file == "-" || file == "" {
		return "stdin"
	}
	return file
}

// Write puts d into st in one transaction as a new, complete recording, and returns it (with
// its ID and counters). On error nothing of d is left in the store. The conversation and
// recording IDs in d are set.
func (d *Dataset) Write(ctx context.Context, st *tape.Store) (*tape.Recording, error) {
	rec := d.Recording
	rec.ID = 0
	rec.Complete = true
	err := st.Update(func(tx *tape.Tx) error {
		if err := tx.PutRecording(&rec); err != nil {
			return err
		}
		for i := range d.Conversations {
			if i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			c := &d.Conversations[i]
			c.Conversation.ID = 0
			c.Conversation.Recording = rec.ID
			if err := tx.PutConversation(&c.Conversation); err != nil {
				return err
			}
			for j := range c.Turns {
				t := &c.Turns[j]
				t.Conversation = c.Conversation.ID
				t.Index = j
				if err := tx.PutTurn(t); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("write recording: %w", err)
	}
	out, err := st.Recording(rec.ID)
	if err != nil {
		return nil, fmt.Errorf("write recording: %w", err)
	}
	return out, nil
}

// Import parses an input file and writes it to st as one recording (see Parse and
// Dataset.Write). It returns the recording and the dataset (for its Skipped list).
func Import(ctx context.Context, st *tape.Store, format string, r io.Reader, file string, cfg Config) (*tape.Recording, *Dataset, error) {
	d, err := Parse(ctx, format, r, file, cfg)
	if err != nil {
		return nil, nil, err
	}
	rec, err := d.Write(ctx, st)
	if err != nil {
		return nil, d, err
	}
	return rec, d, nil
}

// lineOf returns the 1-based line of byte offset off in data.
func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// jsonError turns a decoding error of data into an InputError with the line it happened on.
func jsonError(data []byte, file string, base int64, element string, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &InputError{File: file, Line: lineOf(data, base+se.Offset), Element: element,
			Err: fmt.Errorf("malformed JSON: %v", se)}
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "value"
		}
		return &InputError{File: file, Line: lineOf(data, base+te.Offset), Element: joinElem(element, field),
			Err: fmt.Errorf("expected %s, got %s", typeName(te.Type.String()), te.Value)}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &InputError{File: file, Line: lineOf(data, int64(len(data))), Element: element,
			Err: errors.New("malformed JSON: unexpected end of input")}
	}
	return &InputError{File: file, Line: lineOf(data, base), Element: element, Err: err}
}

func joinElem(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + ": " + b
}

func typeName(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "int", "int64", "uint64", "int32":
		return "an integer"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	}
	if strings.HasPrefix(goType, "[]") {
		return "an array"
	}
	if strings.HasPrefix(goType, "map[") || strings.Contains(goType, ".") {
		return "an object"
	}
	return goType
}

// jsonArray walks the top-level JSON array of data, calling fn with each element's index,
// raw bytes and byte offset. A document that is not an array is an InputError.
//
// A valid document (the usual case, checked in one pass that allocates nothing) is walked in
// place: each raw is a slice of data, so a 50 MB element is not copied. Only an invalid one
// goes through a json.Decoder, for its errors and their offsets.
func jsonArray(ctx context.Context, data []byte, file, want string, fn func(i int, raw json.RawMessage, off int64) error) error {
	if i := skipSpace(data, 0); json.Valid(data) && data[i] == '[' {
		i = skipSpace(data, i+1)
		for n := 0; data[i] != ']'; n++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			end := valueEnd(data, i)
			if err := fn(n, data[i:end:end], int64(i)); err != nil {
				return err
			}
			if i = skipSpace(data, end); data[i] == ',' {
				i = skipSpace(data, i+1)
			}
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return jsonError(data, file, 0, "", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return &InputError{File: file, Line: lineOf(data, dec.InputOffset()), Err: fmt.Errorf("expected %s, got %s", want, describeToken(tok))}
	}
	for i := 0; dec.More(); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var raw json.RawMessage
		off := dec.InputOffset()
		if err := dec.Decode(&raw); err != nil {
			return jsonError(data, file, 0, fmt.Sprintf("element %d", i), err)
		}
		// InputOffset before Decode points before the separating comma and white space.
		off += int64(len(data[off:]) - len(bytes.TrimLeft(data[off:], ", \t\r\n")))
		if err := fn(i, raw, off); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return jsonError(data, file, 0, "", err)
	}
	if dec.More() {
		return &InputError{File: file, Line: lineOf(data, dec.InputOffset()), Err: errors.New("unexpected data after the top-level array")}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &InputError{File: file, Line: lineOf(data, dec.InputOffset()), Err: errors.New("unexpected data after the top-level array")}
	}
	return nil
}

// skipSpace returns the offset of the first byte at or after i that is not JSON white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the offset just after the JSON value that starts at data[i], which must be
// valid JSON: it skips strings and balances brackets, nothing more.
func valueEnd(data []byte, i int) int {
	depth := 0
	for ; i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of a number or literal before its container's end
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// fieldsInPlace returns the fields of raw, a valid JSON object, as slices of raw (a repeated
// key keeps its last value, as encoding/json does).
func fieldsInPlace(raw []byte) (map[string]json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	i := skipSpace(raw, skipSpace(raw, 0)+1)
	for raw[i] != '}' {
		end := valueEnd(raw, i)
		var key string
		if err := json.Unmarshal(raw[i:end], &key); err != nil {
			return nil, err
		}
		i = skipSpace(raw, skipSpace(raw, end)+1) // past the colon
		end = valueEnd(raw, i)
		obj[key] = raw[i:end:end]
		if i = skipSpace(raw, end); raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return obj, nil
}

// elementsInPlace returns the elements of raw, a valid JSON array, as slices of raw.
func elementsInPlace(raw []byte) []json.RawMessage {
	var out []json.RawMessage
	i := skipSpace(raw, skipSpace(raw, 0)+1)
	for raw[i] != ']' {
		end := valueEnd(raw, i)
		out = append(out, raw[i:end:end])
		if i = skipSpace(raw, end); raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return out
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return string(v)
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprint(tok)
}

// chatParams is the Params object of imported chat requests.
func chatParams(model string, extra map[string]any) json.RawMessage {
	m := map[string]any{"stream": true}
	if model != "" {
		m["model"] = model
	}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

// message is the part of a chat message that turn building needs.
type message struct {
	raw     json.RawMessage // compact JSON, stored verbatim
	role    string
	content string // text of the content (openai.ContentText)
}

// textTurns splits a conversation's message list into turns, stored linearly. Each
// assistant message that follows at least one other message ends a turn: the messages before
// it are the request, it is the reply. Messages after the last reply make a final turn
// without a reply when any of them is not an assistant message. start is every turn's start.
func textTurns(msgs []message, model string, start time.Time) []tape.Turn {
	tb := turnBuilder{msgs: msgs, model: model, start: start}
	pending := 0 // index of the first message after the previous reply
	for i := range msgs {
		if msgs[i].role == "assistant" && hasRequest(msgs[pending:i]) {
			tb.add(i, &msgs[i])
			pending = i + 1
		}
	}
	if hasRequest(msgs[pending:]) {
		tb.add(len(msgs), nil)
	}
	return tb.turns
}

// hasRequest reports whether msgs hold a message that is not an assistant's: what a reply
// needs before it, and what makes trailing messages a turn.
func hasRequest(msgs []message) bool {
	for i := range msgs {
		if msgs[i].role != "assistant" {
			return true
		}
	}
	return false
}

// turnBuilder makes the turns of one conversation's message list, in order.
type turnBuilder struct {
	msgs       []message
	model      string
	start      time.Time
	turns      []tape.Turn
	fullTokens []int32 // tokens of each message of the current full list
	prevLen    int     // length of the previous turn's full list
}

// add appends the turn whose request is msgs[:end] and whose reply is reply (nil: none).
func (tb *turnBuilder) add(end int, reply *message) {
	req := tape.Request{
		Method: "POST",
		Path:   "/v1/chat/completions",
		Model:  tb.model,
		Stream: true,
		Params: chatParams(tb.model, nil),
	}
	from := tb.keep(&req, end)
	for i := from; i < end; i++ {
		raw := tb.msgs[i].raw
		n := int32(openai.CountTokens(openai.MessageText(raw)))
		req.Messages = append(req.Messages, raw)
		req.MessageMeta = append(req.MessageMeta, tape.MessageMeta{Tokens: n, Hash: tape.MessageHash(raw)})
		tb.fullTokens = append(tb.fullTokens, n)
	}
	var prompt int
	for _, n := range tb.fullTokens {
		prompt += int(n)
	}
	t := tape.Turn{
		Index:   len(tb.turns),
		Match:   tape.GroupImport,
		Request: req,
		Timing:  tape.Timing{Start: tb.start},
		Tokens:  tape.Tokens{Prompt: prompt, Source: tape.TokensImported},
	}
	if reply != nil {
		setReply(&t, reply)
	}
	tb.turns = append(tb.turns, t)
	tb.prevLen = end
}

// keep sets how many messages req keeps of the previous turn's (its messages and, when the
// list echoes it, its reply) and returns the index of the first message req adds.
func (tb *turnBuilder) keep(req *tape.Request, end int) int {
	if len(tb.turns) == 0 {
		return 0
	}
	prev := &tb.turns[len(tb.turns)-1]
	req.Kept = tb.prevLen
	// msgs[prevLen] is the previous turn's reply as the client echoes it.
	if tb.prevLen < end && tape.JSONEqual(tb.msgs[tb.prevLen].raw, tape.ReplyMessage(prev)) {
		req.Kept = tb.prevLen + 1
		tb.fullTokens = append(tb.fullTokens, int32(openai.CountTokens(openai.MessageText(tb.msgs[tb.prevLen].raw))))
	}
	return req.Kept
}

// setReply makes reply t's response, with its completion tokens.
func setReply(t *tape.Turn, reply *message) {
	t.Response = tape.Response{Status: 200, Content: reply.content, FinishReason: "stop"}
	if tc := toolCalls(reply.raw); tc != nil {
		t.Response.ToolCalls = tc
		t.Response.FinishReason = "tool_calls"
		t.Tokens.Completion = openai.CountTokens(openai.MessageText(reply.raw))
	} else {
		t.Tokens.Completion = openai.CountTokens(reply.content)
	}
}

// toolCalls returns the "tool_calls" array of a message, nil when it has none.
func toolCalls(raw json.RawMessage) json.RawMessage {
	var m struct {
		ToolCalls json.RawMessage `json:"tool_calls"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	tc := bytes.TrimSpace(m.ToolCalls)
	if len(tc) == 0 || bytes.Equal(tc, []byte("null")) || bytes.Equal(tc, []byte("[]")) {
		return nil
	}
	return tc
}
