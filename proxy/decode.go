package proxy

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// Decoding recorded bodies.
//
// The client receives the response exactly as the upstream encoded it. The Exchange holds
// the decoded body, so the recorder can parse it. Decoding runs after the end of the exchange.
//
// Reads stay meaningful: the raw bytes are fed to the decoder one read at a time, and the
// decoder is only given the next read's bytes when it asks for more input; at that moment,
// whatever it has returned so far is attributed to the reads consumed. A server that
// compresses an event stream must flush its compressor after every event (or its client
// would see nothing until the end), and at a flush point a decoder returns all it has; so for
// streamed responses every event is attributed to the read that carried it, exactly. For an
// unflushed body, decoded bytes may be attributed to a later read than the one that carried
// the last of their compressed bytes, never to an earlier one.

// needsDecode reports whether x's body or request body carry a content coding.
func needsDecode(x *Exchange) bool {
	return contentCoding(x.RespHeader) != "" || contentCoding(x.ReqHeader) != ""
}

// contentCoding returns the lower-case Content-Encoding of h ("" for none or identity).
func contentCoding(h http.Header) string {
	v := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding")))
	if v == "identity" {
		return ""
	}
	return v
}

// decodeExchange replaces x's bodies by their decoded form where it can. A decoded body is
// cut at limit bytes (a small compressed body can expand enormously): the response is then
// marked RespTruncated, the request Truncated.
func decodeExchange(x *Exchange, limit int64) {
	if enc := contentCoding(x.ReqHeader); enc != "" && x.ReqBody != nil {
		if b, _, err := decodeBody(enc, x.ReqBody, nil, limit); err == nil {
			x.ReqBody = b
		} else if errors.Is(err, errTooLarge) {
			x.ReqBody, x.Truncated = nil, true
		}
	}
	if enc := contentCoding(x.RespHeader); enc != "" && len(x.Body) > 0 {
		b, reads, err := decodeBody(enc, x.Body, x.Reads, limit)
		if errors.Is(err, errTooLarge) {
			x.RespTruncated = true
		}
		if b == nil || (err != nil && len(b) == 0) {
			x.BodyEncoding = enc // keep the raw bytes and say so
			return
		}
		// A decode error after some output (a stream cut short by a client that went away)
		// keeps what could be decoded.
		x.Body, x.Reads = b, reads
	}
}

// Errors of decodeBody.
var (
	errUnknownCoding = errors.New("unknown content coding")
	errTooLarge      = errors.New("decoded body larger than the limit")
)

// decodeBody decodes raw (encoded with enc) and maps reads (offsets into raw) to offsets into
// the decoded body. On a decode error it returns what was decoded so far with the error.
// The output stops at limit bytes (errTooLarge); limit <= 0 means no limit.
func decodeBody(enc string, raw []byte, reads []Read, limit int64) ([]byte, []Read, error) {
	src := &segReader{raw: raw, reads: reads}
	if len(reads) == 0 {
		src.reads = []Read{{End: len(raw)}}
	}
	src.ends = make([]int, len(src.reads))
	for i := range src.ends {
		src.ends[i] = -1
	}
	var dec io.Reader
	var err error
	switch enc {
	case "gzip", "x-gzip":
		dec, err = gzip.NewReader(src)
	case "deflate":
		// HTTP's "deflate" is zlib; some servers send raw deflate.
		if zr, zerr := zlib.NewReader(src); zerr == nil {
			dec = zr
		} else {
			src.reset()
			dec = flate.NewReader(src)
		}
	case "br":
		dec = brotli.NewReader(src)
	case "zstd":
		var zd *zstd.Decoder
		zd, err = zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err == nil {
			defer zd.Close()
			dec = zd
		}
	default:
		return nil, nil, errUnknownCoding
	}
	if err != nil {
		return nil, nil, err
	}
	size := 4*len(raw) + 512
	if limit > 0 && int64(size) > limit {
		size = int(limit)
	}
	out := bytes.NewBuffer(make([]byte, 0, size))
	src.out = out
	buf := make([]byte, 32<<10)
	var derr error
	for {
		n, rerr := dec.Read(buf)
		if limit > 0 && int64(out.Len()+n) > limit {
			out.Write(buf[:limit-int64(out.Len())])
			derr = errTooLarge
			break
		}
		out.Write(buf[:n])
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			derr = rerr
			break
		}
	}
	body := out.Bytes()
	if reads == nil {
		return body, nil, derr
	}
	mapped := make([]Read, 0, len(reads))
	prev := 0
	for i, r := range reads {
		end := src.ends[i]
		if end < 0 || i == len(reads)-1 || end > len(body) {
			end = len(body)
		}
		end = max(end, prev)
		prev = end
		mapped = append(mapped, Read{At: r.At, End: end})
	}
	return body, mapped, derr
}

// segReader serves raw one read at a time and notes, whenever the decoder asks for bytes past
// a read, how much decoded output had been produced by then.
type segReader struct {
	raw   []byte
	reads []Read // End: offsets into raw
	ends  []int  // decoded length when the decoder first asked past reads[i]; -1 unknown
	out   *bytes.Buffer
	pos   int
	seg   int
}

func (s *segReader) reset() { s.pos, s.seg = 0, 0 }

func (s *segReader) Read(b []byte) (int, error) {
	for s.seg < len(s.reads) && s.pos >= s.reads[s.seg].End {
		if s.out != nil && s.ends[s.seg] < 0 {
			s.ends[s.seg] = s.out.Len()
		}
		s.seg++
	}
	if s.pos >= len(s.raw) {
		return 0, io.EOF
	}
	limit := len(s.raw)
	if s.seg < len(s.reads) {
		limit = min(limit, s.reads[s.seg].End)
	}
	n := copy(b, s.raw[s.pos:limit])
	s.pos += n
	return n, nil
}

// ReadByte lets flate read without its own read-ahead buffer.
func (s *segReader) ReadByte() (byte, error) {
	var b [1]byte
	if _, err := s.Read(b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}
