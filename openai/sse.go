package openai

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// DefaultMaxLineSize is the longest line (and the most event data) a
// Decoder accepts unless told otherwise: 16 MiB.
const DefaultMaxLineSize = 16 << 20

// ErrLineTooLong is returned by Decoder.Next when a line, or the data of one
// event, is longer than the decoder's limit.
var ErrLineTooLong = errors.New("sse: line too long")

// Event is one dispatched server-sent event.
type Event struct {
	// Type is the "event:" field; nil when absent or empty (a "message").
	Type []byte
	// ID is the last event ID: the value of the latest "id:" field seen in
	// the stream so far (it carries over to later events, as the spec says);
	// nil when none was seen or it was set to "".
	ID []byte
	// Data is the event's data lines joined with "\n".
	Data []byte
	// Retry is the "retry:" value in milliseconds given in this event's
	// block, -1 when absent.
	Retry int
	// Done reports that Data is the [DONE] sentinel of OpenAI streams.
	Done bool
}

// Decoder reads server-sent events (the WHATWG "text/event-stream" format)
// from a stream.
//
// It follows the parsing rules of the HTML standard: lines end in CRLF, LF
// or CR; a UTF-8 byte order mark at the start is skipped; lines that start
// with ":" are comments; "data:" (with or without one space after the
// colon) appends a data line; "event:", "id:" (ignored when it holds NUL)
// and "retry:" (digits only) are honoured and other fields ignored; a blank
// line dispatches the event, but only when it has data. One deliberate
// difference: at the end of the input, an event that lacks its final blank
// line (or whose last line lacks its line end) is still dispatched, because
// servers that end a stream that way meant the event to be seen.
//
// Next hands out events that point into the decoder's buffers: no
// allocation per event for the framing. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	r   io.Reader
	buf []byte
	// buf[start:end] is unread input; buf[start:scan] is known to hold no
	// line end.
	start, end, scan int
	err              error // sticky read error (io.EOF at the end)
	max              int
	skipLF           bool // the last line ended in CR: skip an LF that follows
	bomDone          bool

	// The event being built.
	dataLines int
	dataInBuf bool // the only data line is buf[dataStart:dataEnd]
	dataStart int
	dataEnd   int
	data      []byte // the data lines joined, when not in buf
	typ       []byte
	lastID    []byte
	hasLastID bool
	retry     int
	comments  int
	ev        Event
}

const initialBufSize = 32 << 10

// NewDecoder returns a decoder that reads from r with the default line limit.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: r, max: DefaultMaxLineSize, retry: -1}
}

// Reset makes d read a new stream from r, as a new Decoder would, but keeps
// its buffers (and its line limit), so that one Decoder can read many
// streams without allocating.
func (d *Decoder) Reset(r io.Reader) {
	*d = Decoder{r: r, max: d.max, retry: -1, buf: d.buf, data: d.data[:0], typ: d.typ[:0], lastID: d.lastID[:0]}
}

// SetMaxLineSize sets the longest line, and the most data of one event, that
// Next accepts, in bytes; n <= 0 restores DefaultMaxLineSize. Call it before
// the first Next.
func (d *Decoder) SetMaxLineSize(n int) {
	if n <= 0 {
		n = DefaultMaxLineSize
	}
	d.max = n
}

// Comments returns how many comment lines (": ping") were skipped so far.
func (d *Decoder) Comments() int { return d.comments }

// Next returns the next dispatched event. At the end of the input it returns
// io.EOF (after dispatching a pending event, see Decoder); a read error is
// returned as is. The Event and its slices are valid only until the next
// call to Next.
func (d *Decoder) Next() (*Event, error) {
	for {
		line, err := d.readLine()
		if err != nil {
			if err == io.EOF && d.dataLines > 0 {
				return d.dispatch(), nil
			}
			return nil, err
		}
		if len(line) == 0 {
			if d.dataLines > 0 {
				return d.dispatch(), nil
			}
			d.typ = d.typ[:0]
			d.retry = -1
			continue
		}
		if err := d.field(line); err != nil {
			return nil, err
		}
	}
}

// field processes one non-empty line. line points into d.buf.
func (d *Decoder) field(line []byte) error {
	colon := bytes.IndexByte(line, ':')
	if colon == 0 {
		d.comments++
		return nil
	}
	var name, value []byte
	if colon < 0 {
		name = line
	} else {
		name = line[:colon]
		value = line[colon+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		return d.addData(value)
	case "event":
		d.typ = append(d.typ[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.lastID = append(d.lastID[:0], value...)
			d.hasLastID = true
		}
	case "retry":
		if n, ok := parseDigits(value); ok {
			d.retry = n
		}
	}
	return nil
}

// addData appends one data line. The first data line of an event stays in
// the read buffer; a second one moves the data to d.data.
func (d *Decoder) addData(value []byte) error {
	switch d.dataLines {
	case 0:
		d.dataInBuf = true
		d.dataStart = offsetIn(d.buf, value)
		d.dataEnd = d.dataStart + len(value)
	default:
		if d.dataInBuf {
			d.data = append(d.data[:0], d.buf[d.dataStart:d.dataEnd]...)
			d.dataInBuf = false
		}
		if len(d.data)+1+len(value) > d.max {
			return ErrLineTooLong
		}
		d.data = append(d.data, '\n')
		d.data = append(d.data, value...)
	}
	d.dataLines++
	return nil
}

// offsetIn returns the offset of sub within buf; sub must be a sub-slice of buf.
func offsetIn(buf, sub []byte) int {
	return cap(buf) - cap(sub)
}

func parseDigits(v []byte) (int, bool) {
	if len(v) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<40 {
			n = n*10 + int(c-'0')
		}
	}
	return n, true
}

// dispatch returns the built event and resets the builder.
func (d *Decoder) dispatch() *Event {
	ev := &d.ev
	if d.dataInBuf {
		ev.Data = d.buf[d.dataStart:d.dataEnd]
	} else {
		ev.Data = d.data
	}
	ev.Type = nil
	if len(d.typ) > 0 {
		ev.Type = d.typ
	}
	ev.ID = nil
	if d.hasLastID && len(d.lastID) > 0 {
		ev.ID = d.lastID
	}
	ev.Retry = d.retry
	ev.Done = len(ev.Data) == 6 && string(ev.Data) == "[DONE]"
	d.dataLines = 0
	d.dataInBuf = false
	d.retry = -1
	// ev keeps its own slice headers, so the builder's buffers can be
	// reset now and overwritten by the next call.
	d.typ = d.typ[:0]
	d.data = d.data[:0]
	return ev
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// readLine returns the next line without its line end. The line points
// into d.buf and is valid until the next call. At the end of input a last
// line without a line end is returned; then the read error (io.EOF).
func (d *Decoder) readLine() ([]byte, error) {
	for {
		if d.skipLF && d.start < d.end {
			if d.buf[d.start] == '\n' {
				d.start++
			}
			d.skipLF = false
			if d.scan < d.start {
				d.scan = d.start
			}
		}
		if !d.bomDone && d.start < d.end {
			avail := d.buf[d.start:d.end]
			if len(avail) >= len(bom) || d.err != nil || !bytes.HasPrefix(bom, avail) {
				if bytes.HasPrefix(avail, bom) {
					d.start += len(bom)
					d.scan = d.start
				}
				d.bomDone = true
				continue
			}
		}
		if d.bomDone {
			b := d.buf[d.scan:d.end]
			if i := indexLineEnd(b); i >= 0 {
				lineEnd := d.scan + i
				if lineEnd-d.start > d.max {
					return nil, ErrLineTooLong
				}
				line := d.buf[d.start:lineEnd]
				if d.buf[lineEnd] == '\r' {
					d.skipLF = true
				}
				d.start = lineEnd + 1
				d.scan = d.start
				return line, nil
			}
			d.scan = d.end
			if d.end-d.start > d.max {
				return nil, ErrLineTooLong
			}
		}
		if d.err != nil {
			if d.err == io.EOF && d.start < d.end {
				// A last line without its line end (after a read error
				// it is cut short: dropped with the pending event).
				line := d.buf[d.start:d.end]
				d.start = d.end
				d.scan = d.end
				return line, nil
			}
			return nil, d.err
		}
		d.fill()
	}
}

// indexLineEnd returns the index of the first CR or LF in b, or -1.
func indexLineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// fill reads more input into d.buf, making room first.
func (d *Decoder) fill() {
	if d.buf == nil {
		d.buf = make([]byte, initialBufSize)
	}
	if d.start > 0 && (d.end == len(d.buf) || d.start == d.end) {
		// The pending data line would be moved or overwritten: copy it.
		if d.dataInBuf {
			d.data = append(d.data[:0], d.buf[d.dataStart:d.dataEnd]...)
			d.dataInBuf = false
		}
		n := copy(d.buf, d.buf[d.start:d.end])
		d.scan -= d.start
		d.start = 0
		d.end = n
	}
	if d.end == len(d.buf) {
		size := 2 * len(d.buf)
		if limit := d.max + 2; size > limit && limit > len(d.buf) {
			size = limit
		}
		nb := make([]byte, size)
		copy(nb, d.buf[:d.end])
		d.buf = nb
	}
	for range 100 {
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if err != nil {
			d.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	d.err = io.ErrNoProgress
}

// WriteEvent writes data as one event: "data: <data>\n\n", with one "data:"
// line per line of data (split at CRLF, LF or CR).
func WriteEvent(w io.Writer, data []byte) error {
	bp := writeBufs.Get().(*[]byte)
	b := appendEvent((*bp)[:0], data)
	_, err := w.Write(b)
	*bp = b
	if cap(b) <= 64<<10 {
		writeBufs.Put(bp)
	}
	return err
}

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// AppendEvent appends data encoded as one event to b (see WriteEvent).
func AppendEvent(b, data []byte) []byte { return appendEvent(b, data) }

func appendEvent(b, data []byte) []byte {
	for {
		i := indexLineEnd(data)
		if i < 0 {
			b = append(b, "data: "...)
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, "data: "...)
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, '\n')
}

var doneEvent = []byte("data: [DONE]\n\n")

// WriteDone writes the [DONE] sentinel event: "data: [DONE]\n\n".
func WriteDone(w io.Writer) error {
	_, err := w.Write(doneEvent)
	return err
}
