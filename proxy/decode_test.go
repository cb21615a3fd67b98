package proxy

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

type flushWriter interface {
	io.WriteCloser
	Flush() error
}

func newEncoder(t testing.TB, enc string, w io.Writer) flushWriter {
	switch enc {
	case "gzip":
		return gzip.NewWriter(w)
	case "br":
		return brotli.NewWriter(w)
	case "zstd":
		z, err := zstd.NewWriter(w)
		if err != nil {
			t.Fatal(err)
		}
		return z
	case "deflate":
		return zlib.NewWriter(w)
	}
	t.Fatalf("no encoder %s", enc)
	return nil
}

// TestDecodeMapsEveryEventToItsRead: a server that flushes its compressor after every event
// sends one compressed piece per event; each decoded event must be attributed to the read
// that carried its piece.
func TestDecodeMapsEveryEventToItsRead(t *testing.T) {
	var events [][]byte
	var plain []byte
	for i := range 30 {
		ev := fmt.Appendf(nil, "data: {\"choices\":[{\"delta\":{\"content\":\"token %d\"}}]}\n\n", i)
		events = append(events, ev)
		plain = append(plain, ev...)
	}
	for _, enc := range []string{"gzip", "br", "zstd", "deflate"} {
		t.Run(enc, func(t *testing.T) {
			var raw bytes.Buffer
			w := newEncoder(t, enc, &raw)
			var reads []Read
			for i, ev := range events {
				w.Write(ev)
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				if i == len(events)-1 {
					w.Close()
				}
				reads = append(reads, Read{At: 0, End: raw.Len()})
			}
			body, mapped, err := decodeBody(enc, raw.Bytes(), reads, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, plain) {
				t.Fatalf("decoded body differs")
			}
			off := 0
			for i, ev := range events {
				off += len(ev)
				if mapped[i].End != off {
					t.Fatalf("read %d ends at %d, event %d ends at %d", i, mapped[i].End, i, off)
				}
			}
		})
	}
}

func TestDecodeKeepsRawWhenItCannot(t *testing.T) {
	x := &Exchange{RespHeader: map[string][]string{"Content-Encoding": {"compress"}}, Body: []byte("abc"), Reads: []Read{{End: 3}}}
	decodeExchange(x, 1<<20)
	if x.BodyEncoding != "compress" || string(x.Body) != "abc" {
		t.Errorf("encoding %q body %q", x.BodyEncoding, x.Body)
	}
	x = &Exchange{RespHeader: map[string][]string{"Content-Encoding": {"gzip"}}, Body: []byte("not gzip"), Reads: []Read{{End: 8}}}
	decodeExchange(x, 1<<20)
	if x.BodyEncoding != "gzip" || string(x.Body) != "not gzip" {
		t.Errorf("corrupt gzip: encoding %q body %q", x.BodyEncoding, x.Body)
	}
}

func TestDecodeStopsAtTheLimit(t *testing.T) {
	var raw bytes.Buffer
	w := gzip.NewWriter(&raw)
	w.Write(bytes.Repeat([]byte("a"), 1<<20)) // 1 MiB of "a" compresses to about 1 KiB
	w.Close()
	x := &Exchange{RespHeader: map[string][]string{"Content-Encoding": {"gzip"}}, Body: raw.Bytes(), Reads: []Read{{End: raw.Len()}}}
	decodeExchange(x, 4096)
	if len(x.Body) != 4096 || !x.RespTruncated || x.Reads[0].End != 4096 {
		t.Errorf("body %d truncated %v reads %v", len(x.Body), x.RespTruncated, x.Reads)
	}
}

// FuzzDecodeBody: any bytes, any read boundaries, any coding: no panic, and the mapped reads
// are monotonic and inside the decoded body.
func FuzzDecodeBody(f *testing.F) {
	for _, enc := range []string{"gzip", "br", "zstd", "deflate"} {
		var raw bytes.Buffer
		w := newEncoder(f, enc, &raw)
		w.Write([]byte("data: {}\n\n"))
		w.Flush()
		w.Write([]byte("data: [DONE]\n\n"))
		w.Close()
		f.Add(raw.Bytes(), uint8(raw.Len()/2), enc)
	}
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, uint8(3), "gzip")
	f.Fuzz(func(t *testing.T, raw []byte, split uint8, enc string) {
		var reads []Read
		if s := int(split); s > 0 && s < len(raw) {
			reads = append(reads, Read{End: s})
		}
		reads = append(reads, Read{End: len(raw)})
		body, mapped, _ := decodeBody(enc, raw, reads, 1<<20)
		if mapped == nil {
			return
		}
		prev := 0
		for _, r := range mapped {
			if r.End < prev || r.End > len(body) {
				t.Fatalf("mapped reads %v for a body of %d", mapped, len(body))
			}
			prev = r.End
		}
	})
}
