package tape

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/llmtape/llmtape/errclass"
)

// The record codec: a version byte, then the fields in a fixed order. Unsigned integers are
// uvarints, signed ones (durations, counts that may be negative) zigzag varints, strings and
// byte slices a uvarint length and the bytes, JSON values that may be absent (nil) a uvarint
// length+1 with 0 for nil, times a presence byte and the Unix nanoseconds. Later record
// versions may append fields: a decoder ignores bytes after the fields it knows. The layout is
// documented in docs/store.md.
//
// Keys carry a record's position (a turn's conversation and index, a result's run and seq), so
// values do not repeat them.

// recordVersion is the version byte of every record that this package writes.
const recordVersion = 1

// errRecord is the reason given for a record that does not decode.
var errRecord = errors.New("bad record")

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) int(v int)        { e.b = binary.AppendVarint(e.b, int64(v)) }
func (e *encoder) dur(v time.Duration) {
	e.b = binary.AppendVarint(e.b, int64(v))
}
func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) bytes(p []byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(p)))
	e.b = append(e.b, p...)
}

// raw writes a byte slice that may be nil (length+1, 0 for nil).
func (e *encoder) raw(p []byte) {
	if p == nil {
		e.b = append(e.b, 0)
		return
	}
	e.b = binary.AppendUvarint(e.b, uint64(len(p))+1)
	e.b = append(e.b, p...)
}
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.b = binary.AppendVarint(e.b, t.UnixNano())
}
func (e *encoder) headers(h map[string]string) {
	e.uvarint(uint64(len(h)))
	for k, v := range h {
		e.str(k)
		e.str(v)
	}
}

// chunks writes chunk offsets as deltas from the previous one: a few bytes each.
func (e *encoder) chunks(cs []Chunk) {
	e.uvarint(uint64(len(cs)))
	var prev time.Duration
	for _, c := range cs {
		e.dur(c.Offset - prev)
		prev = c.Offset
		e.varint(int64(c.Tokens))
	}
}

// decoder reads fields from b, a copy of the record that the decoded value owns: byte slices
// are sub-slices of it (capped, so appending to one cannot overwrite another). The first
// error sticks; later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %w: %s", ErrCorrupt, errRecord, what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if len(d.b) > 0 && d.b[0] < 0x80 { // most lengths and counts fit one byte
		v := uint64(d.b[0])
		d.b = d.b[1:]
		return v
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if len(d.b) > 0 && d.b[0] < 0x80 {
		u := int64(d.b[0])
		d.b = d.b[1:]
		return u>>1 ^ -(u & 1)
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int {
	v := d.varint()
	if v < math.MinInt || v > math.MaxInt {
		d.fail("int")
		return 0
	}
	return int(v)
}

func (d *decoder) int32() int32 {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("int32")
		return 0
	}
	return int32(v)
}

func (d *decoder) dur() time.Duration { return time.Duration(d.varint()) }

func (d *decoder) bool() bool {
	if len(d.b) == 0 {
		d.fail("bool")
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.fail("bool")
	}
	return v == 1
}

// count reads a number of elements, each at least min bytes long, bounded by what is left.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *decoder) take(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// more reports whether bytes remain: a field appended to a record in a later release is read
// only when present, so older records decode with its zero value.
func (d *decoder) more() bool { return d.err == nil && len(d.b) > 0 }

func (d *decoder) bytes() []byte { return d.take(d.uvarint()) }

// str returns a string sharing the decoder's buffer, which nothing ever writes to (the byte
// slices handed out beside it are capped, so appending to them reallocates).
func (d *decoder) str() string {
	p := d.take(d.uvarint())
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

func (d *decoder) raw() []byte {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	return d.take(n - 1)
}

func (d *decoder) time() time.Time {
	if !d.bool() {
		return time.Time{}
	}
	return time.Unix(0, d.varint())
}

func (d *decoder) headers() map[string]string {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	h := make(map[string]string, n)
	for range n {
		k := d.str()
		h[k] = d.str()
	}
	return h
}

func (d *decoder) chunks() []Chunk {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	cs := make([]Chunk, n)
	var prev time.Duration
	for i := range cs {
		prev += d.dur()
		cs[i] = Chunk{Offset: prev, Tokens: d.int32()}
	}
	return cs
}

// start checks the version byte of a record and returns a decoder over an owned copy of the
// rest.
func start(v []byte) *decoder {
	d := &decoder{}
	if len(v) == 0 {
		d.fail("empty")
		return d
	}
	if v[0] != recordVersion {
		d.fail(fmt.Sprintf("record version %d", v[0]))
		return d
	}
	d.b = append([]byte(nil), v[1:]...)
	return d
}

func encodeRecording(buf []byte, r *Recording) []byte {
	e := encoder{append(buf, recordVersion)}
	e.uvarint(r.ID)
	e.str(r.Name)
	e.str(r.Source)
	e.str(r.Upstream)
	e.str(r.Mode)
	e.time(r.Started)
	e.time(r.Ended)
	e.bool(r.Complete)
	e.int(r.Conversations)
	e.int(r.Turns)
	e.int(r.NotRecorded)
	return e.b
}

func decodeRecording(v []byte, r *Recording) error {
	d := start(v)
	*r = Recording{
		ID:       d.uvarint(),
		Name:     d.str(),
		Source:   d.str(),
		Upstream: d.str(),
		Mode:     d.str(),
		Started:  d.time(),
		Ended:    d.time(),
		Complete: d.bool(),
	}
	r.Conversations = d.int()
	r.Turns = d.int()
	if d.more() { // appended after the first release: absent in older records
		r.NotRecorded = d.int()
	}
	return d.err
}

func encodeConversation(buf []byte, c *Conversation) []byte {
	e := encoder{append(buf, recordVersion)}
	e.uvarint(c.ID)
	e.uvarint(c.Recording)
	e.dur(c.Arrival)
	e.str(string(c.Grouping))
	e.str(c.Session)
	e.uvarint(c.Parent)
	e.int(c.ForkTurn)
	e.int(c.Turns)
	e.str(c.SessionHeader)
	return e.b
}

func decodeConversation(v []byte, c *Conversation) error {
	d := start(v)
	*c = Conversation{
		ID:        d.uvarint(),
		Recording: d.uvarint(),
		Arrival:   d.dur(),
		Grouping:  Grouping(d.str()),
		Session:   d.str(),
		Parent:    d.uvarint(),
		ForkTurn:  d.int(),
		Turns:     d.int(),
	}
	if d.more() { // appended after the first release: absent in older records
		c.SessionHeader = d.str()
	}
	return d.err
}

func encodeTurn(buf []byte, t *Turn) []byte {
	// Size the buffer once: growing it would copy the messages again.
	size := 256 + len(t.Request.Params) + len(t.Request.Prompt) + len(t.Response.Content) +
		len(t.Response.Reasoning) + len(t.Response.ToolCalls) + len(t.Response.Error) +
		len(t.Request.Model) + len(t.Request.Path) + 20*len(t.Request.MessageMeta) + 15*len(t.Timing.Chunks)
	for _, m := range t.Request.Messages {
		size += len(m) + 5
	}
	for k, v := range t.Request.Headers {
		size += len(k) + len(v) + 4
	}
	for k, v := range t.Response.Headers {
		size += len(k) + len(v) + 4
	}
	if t.Request.Synthetic != nil {
		size += 10 * len(t.Request.Synthetic.HashIDs)
	}
	if buf == nil {
		buf = make([]byte, 0, size)
	}
	e := encoder{append(buf, recordVersion)}
	e.str(string(t.Match))

	q := &t.Request
	e.str(q.Method)
	e.str(q.Path)
	e.str(q.Model)
	e.bool(q.Stream)
	e.raw(q.Params)
	e.int(q.Kept)
	e.uvarint(uint64(len(q.Messages)))
	for _, m := range q.Messages {
		e.bytes(m)
	}
	e.uvarint(uint64(len(q.MessageMeta)))
	for _, m := range q.MessageMeta {
		e.varint(int64(m.Tokens))
		e.b = binary.LittleEndian.AppendUint64(e.b, m.Hash)
	}
	e.raw(q.Prompt)
	if q.Synthetic == nil {
		e.bool(false)
	} else {
		e.bool(true)
		e.int(q.Synthetic.BlockSize)
		e.uvarint(uint64(len(q.Synthetic.HashIDs)))
		for _, h := range q.Synthetic.HashIDs {
			e.uvarint(h)
		}
		e.int(q.Synthetic.InputTokens)
	}
	e.headers(q.Headers)
	e.bool(q.Truncated)
	e.varint(q.BodySize)

	r := &t.Response
	e.int(r.Status)
	e.headers(r.Headers)
	e.str(r.Content)
	e.str(r.Reasoning)
	e.raw(r.ToolCalls)
	e.str(r.FinishReason)
	e.str(r.Error)
	e.str(string(r.ErrorClass))
	e.bool(r.Streamed)
	e.int(r.Events)

	m := &t.Timing
	e.time(m.Start)
	e.dur(m.Sent)
	e.dur(m.Headers)
	e.chunks(m.Chunks)
	e.dur(m.End)
	e.bool(m.ClientGone)

	k := &t.Tokens
	e.int(k.Prompt)
	e.int(k.Completion)
	e.int(k.Cached)
	e.str(string(k.Source))
	return e.b
}

// decodeTurn decodes a turn's value; the caller sets Conversation and Index from the key.
func decodeTurn(v []byte, t *Turn) error {
	d := start(v)
	*t = Turn{Match: Grouping(d.str())}

	q := &t.Request
	q.Method = d.str()
	q.Path = d.str()
	q.Model = d.str()
	q.Stream = d.bool()
	q.Params = d.raw()
	q.Kept = d.int()
	if n := d.count(1); n > 0 {
		q.Messages = make([]json.RawMessage, n)
		for i := range q.Messages {
			q.Messages[i] = d.bytes()
		}
	}
	if n := d.count(9); n > 0 {
		q.MessageMeta = make([]MessageMeta, n)
		for i := range q.MessageMeta {
			q.MessageMeta[i].Tokens = d.int32()
			if p := d.take(8); len(p) == 8 {
				q.MessageMeta[i].Hash = binary.LittleEndian.Uint64(p)
			}
		}
	}
	q.Prompt = d.raw()
	if d.bool() {
		s := &Synthetic{BlockSize: d.int()}
		if n := d.count(1); n > 0 {
			s.HashIDs = make([]uint64, n)
			for i := range s.HashIDs {
				s.HashIDs[i] = d.uvarint()
			}
		}
		s.InputTokens = d.int()
		q.Synthetic = s
	}
	q.Headers = d.headers()
	q.Truncated = d.bool()
	q.BodySize = d.varint()

	r := &t.Response
	r.Status = d.int()
	r.Headers = d.headers()
	r.Content = d.str()
	r.Reasoning = d.str()
	r.ToolCalls = d.raw()
	r.FinishReason = d.str()
	r.Error = d.str()
	r.ErrorClass = errclass.Class(d.str())
	r.Streamed = d.bool()
	r.Events = d.int()

	m := &t.Timing
	m.Start = d.time()
	m.Sent = d.dur()
	m.Headers = d.dur()
	m.Chunks = d.chunks()
	m.End = d.dur()
	m.ClientGone = d.bool()

	k := &t.Tokens
	k.Prompt = d.int()
	k.Completion = d.int()
	k.Cached = d.int()
	k.Source = TokenSource(d.str())
	if d.err != nil {
		*t = Turn{}
	}
	return d.err
}

func encodeRun(buf []byte, r *Run) []byte {
	e := encoder{append(buf, recordVersion)}
	e.uvarint(r.ID)
	e.str(r.Name)
	e.str(r.Target)
	e.uvarint(r.Recording)
	e.raw(r.Options)
	e.time(r.Started)
	e.time(r.Ended)
	e.int(r.Requests)
	e.bool(r.Partial)
	e.raw(r.Summary)
	e.uvarint(uint64(len(r.Histograms)))
	for k, v := range r.Histograms {
		e.str(k)
		e.bytes(v)
	}
	return e.b
}

func decodeRun(v []byte, r *Run) error {
	d := start(v)
	*r = Run{
		ID:        d.uvarint(),
		Name:      d.str(),
		Target:    d.str(),
		Recording: d.uvarint(),
		Options:   d.raw(),
		Started:   d.time(),
		Ended:     d.time(),
		Requests:  d.int(),
		Partial:   d.bool(),
		Summary:   d.raw(),
	}
	if n := d.count(2); n > 0 {
		r.Histograms = make(map[string][]byte, n)
		for range n {
			k := d.str()
			r.Histograms[k] = d.bytes()
		}
	}
	return d.err
}

func encodeResult(buf []byte, r *Result) []byte {
	if buf == nil {
		size := 128 + len(r.Error) + len(r.ErrorClass) + 15*len(r.Chunks)
		if r.Reply != nil {
			size += len(r.Reply.Content) + len(r.Reply.ToolCalls)
		}
		buf = make([]byte, 0, size)
	}
	e := encoder{append(buf, recordVersion)}
	e.uvarint(r.Conversation)
	e.int(r.Turn)
	e.dur(r.Scheduled)
	e.dur(r.Sent)
	e.dur(r.TTFT)
	e.chunks(r.Chunks)
	e.dur(r.E2E)
	e.int(r.InputTokens)
	e.int(r.OutputTokens)
	e.int(r.CachedTokens)
	e.str(string(r.TokenSource))
	e.int(r.Status)
	e.str(string(r.ErrorClass))
	e.str(r.Error)
	e.bool(r.Warmup)
	e.int(r.Retries)
	if r.Reply == nil {
		e.bool(false)
	} else {
		e.bool(true)
		e.str(r.Reply.Content)
		e.raw(r.Reply.ToolCalls)
	}
	e.uvarint(uint64(len(r.Attempts)))
	for _, a := range r.Attempts {
		e.dur(a.Sent)
		e.dur(a.TTFT)
		e.dur(a.E2E)
		e.int(a.Status)
		e.str(string(a.ErrorClass))
		e.str(a.Error)
	}
	return e.b
}

// decodeResult decodes a result's value; the caller sets Run and Seq from the key.
func decodeResult(v []byte, r *Result) error {
	d := start(v)
	*r = Result{
		Conversation: d.uvarint(),
		Turn:         d.int(),
		Scheduled:    d.dur(),
		Sent:         d.dur(),
		TTFT:         d.dur(),
		Chunks:       d.chunks(),
		E2E:          d.dur(),
		InputTokens:  d.int(),
		OutputTokens: d.int(),
		CachedTokens: d.int(),
		TokenSource:  TokenSource(d.str()),
		Status:       d.int(),
		ErrorClass:   errclass.Class(d.str()),
		Error:        d.str(),
		Warmup:       d.bool(),
		Retries:      d.int(),
	}
	if d.more() && d.bool() { // appended after the first release: absent in older records
		r.Reply = &Reply{Content: d.str(), ToolCalls: d.raw()}
	}
	if d.more() { // appended after Reply: absent in older records
		if n := d.count(6); n > 0 {
			r.Attempts = make([]Attempt, n)
			for i := range r.Attempts {
				r.Attempts[i] = Attempt{Sent: d.dur(), TTFT: d.dur(), E2E: d.dur(), Status: d.int(),
					ErrorClass: errclass.Class(d.str()), Error: d.str()}
			}
		}
	}
	if d.err != nil {
		*r = Result{}
	}
	return d.err
}
