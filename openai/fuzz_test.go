package openai_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/llmtape/llmtape/openai"
)

// refDecode is a direct transcription of the WHATWG event-stream
// interpretation algorithm (plus the package's documented choice to
// dispatch a pending event at the end of input), used as the oracle for
// FuzzDecoder.
func refDecode(in string) (events []ev, comments int) {
	in = strings.TrimPrefix(in, "\uFEFF")
	var lines []string
	for len(in) > 0 {
		i := strings.IndexAny(in, "\r\n")
		if i < 0 {
			lines = append(lines, in)
			break
		}
		lines = append(lines, in[:i])
		if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
			i++
		}
		in = in[i+1:]
	}
	var data strings.Builder
	hasData := false
	typ, lastID, retry := "", "", -1
	dispatch := func() {
		if hasData {
			d := strings.TrimSuffix(data.String(), "\n")
			events = append(events, ev{typ: typ, id: lastID, data: d, retry: retry, done: d == "[DONE]"})
		}
		data.Reset()
		hasData = false
		typ, retry = "", -1
	}
	for _, line := range lines {
		if line == "" {
			dispatch()
			continue
		}
		if line[0] == ':' {
			comments++
			continue
		}
		field, value := line, ""
		if i := strings.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], strings.TrimPrefix(line[i+1:], " ")
		}
		switch field {
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "event":
			typ = value
		case "id":
			if !strings.ContainsRune(value, 0) {
				lastID = value
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				n := 0
				for _, c := range value {
					if n < 1<<40 {
						n = n*10 + int(c-'0')
					}
				}
				retry = n
			}
		}
	}
	dispatch()
	return events, comments
}

func sseSeeds(f *testing.F) {
	for _, name := range []string{"llamacpp_chat_stream.sse", "llamacpp_chat_stream_usage.sse", "llamacpp_completions_stream.sse"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"data: a\r\ndata: b\r\rdata:c\n\n", ": ping\n\nevent: e\nid: 1\nretry: 10\ndata\n\n",
		"\xEF\xBB\xBFdata: [DONE]", "id: a\x00b\ndata: x\r", "data: {\"error\":{\"message\":\"x\"}}\n\n",
	} {
		f.Add([]byte(s))
	}
}

func FuzzDecoder(f *testing.F) {
	sseSeeds(f)
	f.Fuzz(fuzzDecoderBody)
}

func fuzzDecoderBody(t *testing.T, in []byte) {
	{
		want, wantComments := refDecode(string(in))
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(in),
			"one byte": iotest.OneByteReader(bytes.NewReader(in)),
		} {
			d := openai.NewDecoder(r)
			got, err := collect(t, d)
			if err != io.EOF {
				t.Fatalf("%s: err = %v", name, err)
			}
			if !equalEvents(got, want) {
				t.Fatalf("%s: input %q\n got %+v\nwant %+v", name, in, got, want)
			}
			if d.Comments() != wantComments {
				t.Fatalf("%s: comments %d, want %d", name, d.Comments(), wantComments)
			}
		}
		// Encoding each event's data and decoding it again gives it back.
		var buf bytes.Buffer
		for _, e := range want {
			if err := openai.WriteEvent(&buf, []byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
		back, _ := collect(t, openai.NewDecoder(&buf))
		if len(back) != len(want) {
			t.Fatalf("re-encoded: %d events, want %d", len(back), len(want))
		}
		for i := range back {
			norm := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(want[i].data)
			if back[i].data != norm {
				t.Fatalf("re-encoded event %d = %q, want %q", i, back[i].data, norm)
			}
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	conv, err := os.ReadFile("testdata/llamacpp_three_turn_conversation.json")
	if err != nil {
		f.Fatal(err)
	}
	var turns []struct {
		Request json.RawMessage `json:"request"`
	}
	if err := json.Unmarshal(conv, &turns); err != nil {
		f.Fatal(err)
	}
	for _, tr := range turns {
		f.Add([]byte(tr.Request))
	}
	for _, s := range []string{
		`{"model":"m","prompt":[1,2],"max_tokens":null,"stream_options":{"include_usage":false,"x":1}}`,
		`{"messages":null,"prompt":null,"a":{"b":[true,false,null,1.5e-3,"\u00e9"]},"a":2}`,
		`{"model":"x","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"ignore_eos":true,"min_tokens":3,"max_completion_tokens":4}`,
		`[]`, `{`, ``, `{"model":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := openai.ParseRequest(body)
		if err != nil {
			if json.Valid(body) && bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) && !strings.Contains(err.Error(), ": ") {
				t.Fatalf("unclear error for a JSON object: %v", err)
			}
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if !jsonEqual(t, out, body) {
			t.Fatalf("Marshal not JSON-equal\n got %s\nwant %s", out, body)
		}
		params, err := r.Params()
		if err != nil {
			t.Fatalf("Params: %v", err)
		}
		rebuilt, err := openai.BuildRequest(params, r.Messages, r.Prompt)
		if err != nil {
			t.Fatalf("BuildRequest: %v", err)
		}
		if !jsonEqual(t, rebuilt, body) {
			t.Fatalf("BuildRequest(Params) not JSON-equal\n got %s\nwant %s", rebuilt, body)
		}
		// Parsing the output again gives the same typed fields.
		r2, err := openai.ParseRequest(out)
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if r2.Model != r.Model || r2.Stream != r.Stream || len(r2.Messages) != len(r.Messages) ||
			r2.MaxOutputTokens() != r.MaxOutputTokens() || !reflect.DeepEqual(r2.StreamOptions, r.StreamOptions) {
			t.Fatalf("reparse differs: %+v vs %+v", r2, r)
		}
		for _, m := range r.Messages {
			_ = openai.MessageText(m)
		}
		if err := r.Set("max_tokens", 7); err != nil {
			t.Fatal(err)
		}
		if r.MaxOutputTokens() != 7 && r.MaxCompletionTokens == nil {
			t.Fatalf("Set max_tokens: %d", r.MaxOutputTokens())
		}
		if _, err := r.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseChunk(f *testing.F) {
	sseSeeds(f) // whole transcripts: not chunks, but rich in chunk text
	for _, s := range []string{
		`{"choices":[{"index":0,"delta":{"content":"a\"\u00e9\ud83d\ude00","tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}]},"finish_reason":null}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}}`,
		`{"error":{"message":"x","code":500}}`, `"\ud800"`, `"a\u0000b"`, `"\xff"`, `{"choices":[{"text":"t"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c openai.Chunk
		err := openai.ParseChunk(data, &c)
		if err == nil && !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if err == nil {
			// What the package encodes, it decodes back the same.
			b, err := json.Marshal(&c)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			var back openai.Chunk
			if err := openai.ParseChunk(b, &back); err != nil {
				t.Fatalf("reparse %s: %v", b, err)
			}
			if !chunkEqual(&back, &c) && c.Error == nil {
				t.Fatalf("round trip\n got %s\nwant %s", dump(&back), dump(&c))
			}
			_ = c.HasOutput()
			if n, text := c.OutputBytes(), c.OutputText(); n != len(text) {
				t.Fatalf("OutputBytes %d, OutputText %d bytes", n, len(text))
			}
			var acc openai.Accumulator
			acc.Add(&c)
		}
		// The string decoder agrees with encoding/json on any string.
		if json.Valid(data) && bytes.HasPrefix(bytes.TrimSpace(data), []byte(`"`)) {
			var want string
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			chunk := []byte(`{"choices":[{"delta":{"content":` + string(data) + `}}]}`)
			var c openai.Chunk
			if err := openai.ParseChunk(chunk, &c); err != nil {
				t.Fatalf("string %q: %v", data, err)
			}
			if c.Choices[0].Delta.Content != want {
				t.Fatalf("string %q = %q, want %q", data, c.Choices[0].Delta.Content, want)
			}
		}
	})
}

// FuzzParseMessage: a client's chat message. What parses encodes to a message that parses back
// to the same fields, and MessageText never panics.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"role":"user","content":"hi"}`,
		`{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}`,
		`{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}`,
		`{"role":"tool","tool_call_id":"c","name":"f","content":"r"}`,
		`{"role":1}`, `[]`, `{`, ``, `{"content":"\u2028\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_ = openai.MessageText(raw)
		m, err := openai.ParseMessage(raw)
		if err != nil {
			if err.Error() == "" || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line", err)
			}
			return
		}
		b, err := json.Marshal(m)
		if err != nil || !json.Valid(b) {
			t.Fatalf("Marshal(%+v) = %s, %v", m, b, err)
		}
		back, err := openai.ParseMessage(b)
		if err != nil {
			t.Fatalf("reparse %s: %v", b, err)
		}
		if back.Role != m.Role || back.Content != m.Content || back.Name != m.Name || back.ToolCallID != m.ToolCallID || len(back.ToolCalls) != len(m.ToolCalls) {
			t.Fatalf("round trip of %s\n got %+v\nwant %+v", raw, back, m)
		}
	})
}

// FuzzParseResponse: a server's non-streamed response or error body.
func FuzzParseResponse(f *testing.F) {
	for _, name := range []string{"testdata/llamacpp_chat_nostream.json"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`{"error":{"message":"m","type":"t","code":429,"param":null}}`, `{"error":"short"}`,
		`{"object":"error","message":"m","type":"BadRequestError","code":400}`,
		`{"choices":[{"text":"t","finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`,
		`{"choices":null}`, `null`, `{"error":null}`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if e, ok := openai.ParseError(body); ok {
			if e == nil {
				t.Fatal("ParseError: ok with a nil error")
			}
			_ = e.Error()
			_ = e.CodeString()
		}
		r, err := openai.ParseResponse(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		_, _, _, _ = r.Content(), r.Reasoning(), r.ToolCalls(), r.FinishReason()
	})
}
