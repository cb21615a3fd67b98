package openai_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/llmtape/llmtape/openai"
)

// ev is a comparable copy of an openai.Event.
type ev struct {
	typ, id, data string
	retry         int
	done          bool
}

func collect(t testing.TB, d *openai.Decoder) ([]ev, error) {
	t.Helper()
	var out []ev
	for {
		e, err := d.Next()
		if err != nil {
			return out, err
		}
		out = append(out, ev{string(e.Type), string(e.ID), string(e.Data), e.Retry, e.Done})
	}
}

func data(s string) ev { return ev{data: s, retry: -1} }

func TestDecoderEdgeCases(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []ev
		comments int
	}{
		{"data with space", "data: hello\n\n", []ev{data("hello")}, 0},
		{"data without space", "data:hello\n\n", []ev{data("hello")}, 0},
		{"only one space removed", "data:  two\n\n", []ev{data(" two")}, 0},
		{"multi-line data", "data: a\ndata: b\ndata:c\n\n", []ev{data("a\nb\nc")}, 0},
		{"empty data line", "data:\n\n", []ev{data("")}, 0},
		{"data line without colon", "data\n\n", []ev{data("")}, 0},
		{"two empty data lines", "data\ndata\n\n", []ev{data("\n")}, 0},
		{"CRLF", "data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n", []ev{data("a\nb"), data("c")}, 0},
		{"CR only", "data: a\rdata: b\r\rdata: c\r\r", []ev{data("a\nb"), data("c")}, 0},
		{"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", []ev{data("a\nb\nc")}, 0},
		{"comments skipped", ": ping\n\n:\ndata: x\n: mid\n\n", []ev{data("x")}, 3},
		{"event type", "event: delta\ndata: x\n\n", []ev{{typ: "delta", data: "x", retry: -1}}, 0},
		{"empty event type is message", "event:\ndata: x\n\n", []ev{data("x")}, 0},
		{"type does not leak", "event: a\ndata: 1\n\ndata: 2\n\n", []ev{{typ: "a", data: "1", retry: -1}, data("2")}, 0},
		{"type of dataless block dropped", "event: a\n\ndata: 2\n\n", []ev{data("2")}, 0},
		{"id persists", "id: 7\ndata: 1\n\ndata: 2\n\nid\ndata: 3\n\n", []ev{{id: "7", data: "1", retry: -1}, {id: "7", data: "2", retry: -1}, data("3")}, 0},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n", []ev{{id: "1", data: "a", retry: -1}, {id: "1", data: "b", retry: -1}}, 0},
		{"retry", "retry: 1500\ndata: x\n\n", []ev{{data: "x", retry: 1500}}, 0},
		{"bad retry ignored", "retry: 15s\ndata: x\n\n", []ev{data("x")}, 0},
		{"unknown field ignored", "foo: bar\ndata: x\n\n", []ev{data("x")}, 0},
		{"field names are case sensitive", "Data: x\ndata: y\n\n", []ev{data("y")}, 0},
		{"no dispatch without data", "event: x\nid: 3\nretry: 5\n\n\n", nil, 0},
		{"done", "data: {}\n\ndata: [DONE]\n\n", []ev{data("{}"), {data: "[DONE]", retry: -1, done: true}}, 0},
		{"done needs exact text", "data: [DONE] \n\n", []ev{data("[DONE] ")}, 0},
		{"stream without DONE or final blank line", "data: a\n\ndata: b\n", []ev{data("a"), data("b")}, 0},
		{"last line without line end", "data: a\n\ndata: b", []ev{data("a"), data("b")}, 0},
		{"trailing CR at EOF", "data: a\r", []ev{data("a")}, 0},
		{"BOM at start", "\xEF\xBB\xBFdata: a\n\n", []ev{data("a")}, 0},
		{"BOM only once", "\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n", []ev{data("b")}, 0},
		{"BOM later is data", "data: \xEF\xBB\xBFa\n\n", []ev{data("\xEF\xBB\xBFa")}, 0},
		{"empty input", "", nil, 0},
		{"only blank lines", "\n\n\r\n", nil, 0},
		{"error object in stream", "data: {\"error\":{\"message\":\"boom\"}}\n\n", []ev{data(`{"error":{"message":"boom"}}`)}, 0},
		{"colon in value kept", "data: a:b: c\n\n", []ev{data("a:b: c")}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole input at once, one byte per read, and with a read error
			// of io.EOF together with the last bytes.
			readers := map[string]io.Reader{
				"whole":    strings.NewReader(tt.in),
				"one byte": iotest.OneByteReader(strings.NewReader(tt.in)),
				"data+EOF": iotest.DataErrReader(strings.NewReader(tt.in)),
			}
			for rn, r := range readers {
				d := openai.NewDecoder(r)
				got, err := collect(t, d)
				if err != io.EOF {
					t.Fatalf("%s: err = %v, want io.EOF", rn, err)
				}
				if !equalEvents(got, tt.want) {
					t.Errorf("%s: events\n got %+v\nwant %+v", rn, got, tt.want)
				}
				if d.Comments() != tt.comments {
					t.Errorf("%s: comments = %d, want %d", rn, d.Comments(), tt.comments)
				}
			}
		})
	}
}

func equalEvents(a, b []ev) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecoderLineTooLong(t *testing.T) {
	t.Run("one line", func(t *testing.T) {
		d := openai.NewDecoder(strings.NewReader("data: " + strings.Repeat("x", 100) + "\n\n"))
		d.SetMaxLineSize(64)
		if _, err := d.Next(); !errors.Is(err, openai.ErrLineTooLong) {
			t.Fatalf("err = %v, want ErrLineTooLong", err)
		}
	})
	t.Run("many data lines", func(t *testing.T) {
		d := openai.NewDecoder(strings.NewReader(strings.Repeat("data: 0123456789\n", 20) + "\n"))
		d.SetMaxLineSize(64)
		if _, err := d.Next(); !errors.Is(err, openai.ErrLineTooLong) {
			t.Fatalf("err = %v, want ErrLineTooLong", err)
		}
	})
	t.Run("line at the limit passes", func(t *testing.T) {
		line := "data: " + strings.Repeat("x", 58) // 64 bytes
		d := openai.NewDecoder(iotest.HalfReader(strings.NewReader(line + "\n\n")))
		d.SetMaxLineSize(64)
		e, err := d.Next()
		if err != nil || len(e.Data) != 58 {
			t.Fatalf("Next = %v, %v", e, err)
		}
	})
	t.Run("long line under the default limit", func(t *testing.T) {
		big := strings.Repeat("y", 1<<20)
		d := openai.NewDecoder(strings.NewReader("data: " + big + "\n\ndata: z\n\n"))
		got, err := collect(t, d)
		if err != io.EOF || len(got) != 2 || got[0].data != big || got[1].data != "z" {
			t.Fatalf("got %d events, err %v", len(got), err)
		}
	})
}

func TestDecoderReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	d := openai.NewDecoder(r)
	e, err := d.Next()
	if err != nil || string(e.Data) != "a" {
		t.Fatalf("first Next = %v, %v", e, err)
	}
	if _, err := d.Next(); !errors.Is(err, boom) {
		t.Fatalf("second Next err = %v, want %v", err, boom)
	}
	if _, err := d.Next(); !errors.Is(err, boom) {
		t.Fatalf("error is not sticky: %v", err)
	}
	// A line cut short by a read error is not taken as a line.
	r = io.MultiReader(strings.NewReader("id: 1\ndata: a\n\nid: 2"), iotest.ErrReader(boom))
	d = openai.NewDecoder(r)
	if e, err := d.Next(); err != nil || string(e.ID) != "1" {
		t.Fatalf("Next = %v, %v", e, err)
	}
	if e, err := d.Next(); !errors.Is(err, boom) {
		t.Fatalf("Next = %+v, %v, want %v", e, err, boom)
	}
}

// TestDecoderLlamaCpp decodes every real llama.cpp transcript: each event
// but the last is a chunk, the last is [DONE], and the text assembled from
// the chunks is what the server generated.
func TestDecoderLlamaCpp(t *testing.T) {
	tests := []struct {
		file, content, finish string
		events                int
		usage                 *openai.Usage
	}{
		{"llamacpp_chat_stream.sse", "alph zesificate successo status heutigenโgele", "length", 9, nil},
		{"llamacpp_chat_stream_usage.sse", "", "length", 13, &openai.Usage{PromptTokens: 52, CompletionTokens: 12, TotalTokens: 64}},
		{"llamacpp_completions_stream.sse", "", "length", 7, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			d := openai.NewDecoder(iotest.HalfReader(bytes.NewReader(raw)))
			var acc openai.Accumulator
			var c openai.Chunk
			n, done := 0, false
			for {
				e, err := d.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if done {
					t.Fatal("event after [DONE]")
				}
				if e.Done {
					done = true
					continue
				}
				n++
				if err := openai.ParseChunk(e.Data, &c); err != nil {
					t.Fatalf("event %d: %v", n, err)
				}
				acc.Add(&c)
			}
			if !done {
				t.Error("no [DONE]")
			}
			if tt.events > 0 && n != tt.events {
				t.Errorf("events = %d, want %d", n, tt.events)
			}
			if tt.content != "" && acc.Content() != tt.content {
				t.Errorf("content = %q, want %q", acc.Content(), tt.content)
			}
			if acc.Content() == "" {
				t.Error("no content")
			}
			if acc.FinishReason() != tt.finish {
				t.Errorf("finish = %q, want %q", acc.FinishReason(), tt.finish)
			}
			if tt.usage != nil {
				if u := acc.Usage(); u == nil || *u != *tt.usage {
					t.Errorf("usage = %+v, want %+v", u, tt.usage)
				}
			}
		})
	}
}

func TestDecoderNoAllocPerEvent(t *testing.T) {
	data := transcript(t, 256<<10)
	r := bytes.NewReader(data)
	d := openai.NewDecoder(r)
	// Warm up: the buffer is allocated on the first read.
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := d.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per event = %v, want 0", allocs)
	}
}

func TestWriteEvent(t *testing.T) {
	tests := []struct{ data, want string }{
		{`{"a":1}`, "data: {\"a\":1}\n\n"},
		{"", "data: \n\n"},
		{"a\nb", "data: a\ndata: b\n\n"},
		{"a\r\nb\rc\n", "data: a\ndata: b\ndata: c\ndata: \n\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := openai.WriteEvent(&buf, []byte(tt.data)); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tt.want {
			t.Errorf("WriteEvent(%q) = %q, want %q", tt.data, buf.String(), tt.want)
		}
		// Round trip: the decoder gives the data back, line ends as "\n".
		e, err := openai.NewDecoder(&buf).Next()
		if err != nil {
			t.Fatal(err)
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(tt.data)
		if string(e.Data) != want {
			t.Errorf("round trip of %q = %q", tt.data, e.Data)
		}
	}
	var buf bytes.Buffer
	if err := openai.WriteDone(&buf); err != nil || buf.String() != "data: [DONE]\n\n" {
		t.Errorf("WriteDone = %q, %v", buf.String(), err)
	}
}

func TestDecoderReset(t *testing.T) {
	d := openai.NewDecoder(strings.NewReader("id: 1\nevent: x\ndata: a\n\n: c\ndata: pending"))
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	d.Reset(strings.NewReader("data: b\n\n"))
	got, err := collect(t, d)
	if err != io.EOF || !equalEvents(got, []ev{data("b")}) || d.Comments() != 0 {
		t.Errorf("after Reset: %+v, %v, comments %d", got, err, d.Comments())
	}
	allocs := testing.AllocsPerRun(100, func() {
		d.Reset(strings.NewReader("data: b\n\n"))
		if _, err := d.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 { // the strings.Reader itself
		t.Errorf("Reset + Next allocates %v times", allocs)
	}
}
