package openai_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/llmtape/llmtape/openai"
)

func TestParseChunk(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		want   openai.Chunk
		output bool
	}{
		{"llama.cpp content",
			`{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"alph"}}],"created":1795772441,"id":"chatcmpl-9M","model":"tiny-llama","system_fingerprint":"b0-unknown","object":"chat.completion.chunk"}`,
			openai.Chunk{ID: "chatcmpl-9M", Object: "chat.completion.chunk", Created: 1795772441, Model: "tiny-llama",
				Choices: []openai.ChunkChoice{{Delta: openai.Delta{Content: "alph"}}}}, true},
		{"role only",
			`{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
			openai.Chunk{ID: "c", Choices: []openai.ChunkChoice{{Delta: openai.Delta{Role: "assistant"}}}}, false},
		{"reasoning_content",
			`{"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}`,
			openai.Chunk{Choices: []openai.ChunkChoice{{Delta: openai.Delta{ReasoningContent: "think"}}}}, true},
		{"reasoning",
			`{"choices":[{"index":0,"delta":{"reasoning":"hmm","content":null}}]}`,
			openai.Chunk{Choices: []openai.ChunkChoice{{Delta: openai.Delta{Reasoning: "hmm"}}}}, true},
		{"tool call delta",
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_x","type":"function","function":{"name":"f","arguments":""}}]}}]}`,
			openai.Chunk{Choices: []openai.ChunkChoice{{Delta: openai.Delta{ToolCalls: []openai.ToolCall{
				{Index: 1, ID: "call_x", Type: "function", Function: struct{ Name, Arguments string }{Name: "f"}}}}}}}, true},
		{"completion text",
			`{"choices":[{"text":" попу","index":0,"logprobs":null,"finish_reason":null}],"object":"text_completion"}`,
			openai.Chunk{Object: "text_completion", Choices: []openai.ChunkChoice{{Text: " попу"}}}, true},
		{"finish and usage with cached tokens",
			`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":52,"completion_tokens":12,"total_tokens":64,"prompt_tokens_details":{"cached_tokens":48}}}`,
			openai.Chunk{Choices: []openai.ChunkChoice{{FinishReason: "stop"}},
				Usage: &openai.Usage{PromptTokens: 52, CompletionTokens: 12, TotalTokens: 64, PromptTokensDetails: &struct{ CachedTokens int }{48}}}, false},
		{"usage only, empty choices",
			`{"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
			openai.Chunk{ID: "x", Choices: []openai.ChunkChoice{}, Usage: &openai.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}}, false},
		{"deepseek cache hits",
			`{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"prompt_cache_hit_tokens":8}}`,
			openai.Chunk{Choices: []openai.ChunkChoice{}, Usage: &openai.Usage{PromptTokens: 10, CompletionTokens: 2, TotalTokens: 12, PromptTokensDetails: &struct{ CachedTokens int }{8}}}, false},
		{"error object",
			`{"error":{"message":"context too long","type":"invalid_request_error","code":"context_length_exceeded","param":"messages"}}`,
			openai.Chunk{Error: &openai.APIError{Message: "context too long", Type: "invalid_request_error", Code: json.RawMessage(`"context_length_exceeded"`), Param: ptr("messages")}}, false},
		{"error string",
			`{"error":"upstream died"}`,
			openai.Chunk{Error: &openai.APIError{Message: "upstream died"}}, false},
		{"escapes and unicode",
			`{"choices":[{"index":0,"delta":{"content":"a\"b\\c\nd\u00e9\ud83d\ude00\/"}}]}`,
			openai.Chunk{Choices: []openai.ChunkChoice{{Delta: openai.Delta{Content: "a\"b\\c\nd\u00e9\U0001F600/"}}}}, true},
		{"unknown members skipped",
			`{"x":{"a":[1,{"b":"]}"}]},"choices":[{"index":0,"logprobs":{"content":[{"token":"a"}]},"delta":{"content":"z","extra":[null]}}],"timings":{"n":1.5e3}}`,
			openai.Chunk{Choices: []openai.ChunkChoice{{Delta: openai.Delta{Content: "z"}}}}, true},
		{"second choice",
			`{"choices":[{"index":0,"delta":{}},{"index":1,"delta":{"content":"b"}}]}`,
			openai.Chunk{Choices: []openai.ChunkChoice{{}, {Index: 1, Delta: openai.Delta{Content: "b"}}}}, true},
	}
	var reused openai.Chunk
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fresh openai.Chunk
			if err := openai.ParseChunk([]byte(tt.data), &fresh); err != nil {
				t.Fatal(err)
			}
			if err := openai.ParseChunk([]byte(tt.data), &reused); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*openai.Chunk{&fresh, &reused} {
				if !chunkEqual(c, &tt.want) {
					t.Errorf("got  %s\nwant %s", dump(c), dump(&tt.want))
				}
				if c.HasOutput() != tt.output {
					t.Errorf("HasOutput = %v, want %v", c.HasOutput(), tt.output)
				}
			}
		})
	}
}

// chunkEqual compares chunks, treating nil and empty Choices as equal.
func chunkEqual(a, b *openai.Chunk) bool {
	x, y := *a, *b
	if len(x.Choices) == 0 && len(y.Choices) == 0 {
		x.Choices, y.Choices = nil, nil
	}
	for i := range x.Choices {
		if len(x.Choices[i].Delta.ToolCalls) == 0 {
			x.Choices[i].Delta.ToolCalls = nil
		}
	}
	return reflect.DeepEqual(x, y)
}

func dump(c *openai.Chunk) string {
	b, _ := json.Marshal(c)
	return string(b)
}

func TestParseChunkErrors(t *testing.T) {
	for _, bad := range []string{``, `[DONE]`, `[]`, `"x"`, `{"choices":`, `{"choices":{}}`, `{"choices":[{"index":"0"}]}`, `{"choices":[{"delta":{"content":5}}]}`} {
		var c openai.Chunk
		if err := openai.ParseChunk([]byte(bad), &c); err == nil {
			t.Errorf("ParseChunk(%s): no error", bad)
		}
	}
	var c openai.Chunk
	if err := openai.ParseChunk([]byte(`[DONE]`), &c); !errors.Is(err, openai.ErrNotChunk) {
		t.Errorf("ParseChunk([DONE]) = %v, want ErrNotChunk", err)
	}
}

func TestChunkMarshalRoundTrip(t *testing.T) {
	in := openai.Chunk{ID: "c1", Object: "chat.completion.chunk", Created: 5, Model: "m",
		Choices: []openai.ChunkChoice{{Index: 0, Delta: openai.Delta{Role: "assistant", Content: "hi\n", ReasoningContent: "r",
			ToolCalls: []openai.ToolCall{{Index: 2, ID: "call", Type: "function", Function: struct{ Name, Arguments string }{"f", `{"a":`}}}}, FinishReason: "tool_calls"}},
		Usage: &openai.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7, PromptTokensDetails: &struct{ CachedTokens int }{2}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out openai.Chunk
	if err := openai.ParseChunk(b, &out); err != nil {
		t.Fatal(err)
	}
	if !chunkEqual(&out, &in) {
		t.Errorf("round trip\n got %s\nwant %s", dump(&out), b)
	}
	if !strings.Contains(string(b), `"finish_reason":"tool_calls"`) {
		t.Errorf("no finish_reason: %s", b)
	}
	b, _ = json.Marshal(openai.ChunkChoice{})
	if !strings.Contains(string(b), `"finish_reason":null`) {
		t.Errorf("empty finish reason not null: %s", b)
	}
}

func TestAccumulatorToolCalls(t *testing.T) {
	events := []string{
		`{"id":"a","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}`,
		`{"choices":[{"index":1,"delta":{"content":"other choice"}}]}`,
		`{"choices":[{"index":0,"delta":{"reasoning_content":"r1","reasoning":"r1"}}]}`,
		`{"choices":[{"index":0,"delta":{"reasoning":"r2"}}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		`{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}}}`,
	}
	var acc openai.Accumulator
	var c openai.Chunk
	for _, e := range events {
		if err := openai.ParseChunk([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		acc.Add(&c)
	}
	want := []openai.ToolCall{
		{Index: 0, ID: "call_a", Type: "function", Function: struct{ Name, Arguments string }{"get_weather", `{"city":"Paris"}`}},
		{Index: 1, ID: "call_b", Type: "function", Function: struct{ Name, Arguments string }{"get_time", `{}`}},
	}
	if got := acc.ToolCalls(); !reflect.DeepEqual(got, want) {
		t.Errorf("ToolCalls = %+v\nwant %+v", got, want)
	}
	if acc.Content() != "" || acc.Reasoning() != "r1r2" || acc.FinishReason() != "tool_calls" || acc.Role() != "assistant" {
		t.Errorf("content %q reasoning %q finish %q role %q", acc.Content(), acc.Reasoning(), acc.FinishReason(), acc.Role())
	}
	if u := acc.Usage(); u == nil || u.Cached() != 4 || u.PromptTokens != 9 {
		t.Errorf("usage = %+v", u)
	}
	if acc.ID() != "a" || acc.Model() != "m" || acc.Err() != nil {
		t.Errorf("id %q model %q err %v", acc.ID(), acc.Model(), acc.Err())
	}
	if all, out := acc.Chunks(); all != len(events) || out != 7 {
		t.Errorf("Chunks = %d, %d", all, out)
	}
}

func TestAccumulatorStreamError(t *testing.T) {
	var acc openai.Accumulator
	var c openai.Chunk
	for _, e := range []string{
		`{"choices":[{"index":0,"delta":{"content":"par"}}]}`,
		`{"error":{"message":"out of memory","type":"server_error","code":500}}`,
		`{"error":{"message":"second"}}`,
	} {
		if err := openai.ParseChunk([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		acc.Add(&c)
	}
	e := acc.Err()
	if e == nil || e.Message != "out of memory" || e.CodeString() != "500" || acc.Content() != "par" {
		t.Fatalf("Err = %+v, content %q", e, acc.Content())
	}
	if e.Error() != "server_error: out of memory" {
		t.Errorf("Error() = %q", e.Error())
	}
	var nilUsage *openai.Usage
	if nilUsage.Cached() != 0 || acc.Usage() != nil {
		t.Error("nil usage")
	}
}

func TestParseResponse(t *testing.T) {
	body, err := os.ReadFile("testdata/llamacpp_chat_nostream.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := openai.ParseResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	if r.Content() != "alph zesificate successo status heutigenโgele" || r.FinishReason() != "length" ||
		r.Choices[0].Message.Role != "assistant" || r.Model != "tiny-llama" || r.Object != "chat.completion" ||
		r.Usage == nil || *r.Usage != (openai.Usage{PromptTokens: 31, CompletionTokens: 8, TotalTokens: 39}) {
		t.Errorf("response = %+v usage %+v", r, r.Usage)
	}

	r, err = openai.ParseResponse([]byte(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"why","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Content() != "" || r.Reasoning() != "why" || len(r.ToolCalls()) != 1 || r.ToolCalls()[0].Function.Name != "f" || r.Usage.Cached() != 1 {
		t.Errorf("tool response = %+v", r)
	}

	r, err = openai.ParseResponse([]byte(`{"object":"text_completion","choices":[{"text":"once","index":0,"finish_reason":"stop"}]}`))
	if err != nil || r.Content() != "once" || r.FinishReason() != "stop" {
		t.Errorf("completion response = %+v, %v", r, err)
	}

	errBody, err := os.ReadFile("testdata/llamacpp_error_badjson.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = openai.ParseResponse(errBody)
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) || apiErr.Type != "server_error" {
		t.Errorf("ParseResponse(error body) = %v", err)
	}
	for _, bad := range []string{``, `[]`, `{"choices":5}`} {
		if _, err := openai.ParseResponse([]byte(bad)); err == nil {
			t.Errorf("ParseResponse(%s): no error", bad)
		}
	}
}

func TestParseError(t *testing.T) {
	llama, err := os.ReadFile("testdata/llamacpp_error_badjson.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		body string
		want *openai.APIError
	}{
		{string(llama), &openai.APIError{Message: "[json.exception.parse_error.101] parse error at line 1, column 60: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal", Type: "server_error", Code: json.RawMessage(`500`)}},
		{`{"error":{"message":"bad","type":"invalid_request_error","param":"model","code":null}}`, &openai.APIError{Message: "bad", Type: "invalid_request_error", Param: ptr("model")}},
		{`{"error":"plain"}`, &openai.APIError{Message: "plain"}},
		{`{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}`, &openai.APIError{Message: "too long", Type: "BadRequestError", Code: json.RawMessage(`400`)}},
	}
	for _, tt := range tests {
		got, ok := openai.ParseError([]byte(tt.body))
		if !ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseError(%s) = %+v, %v\nwant %+v", tt.body, got, ok, tt.want)
		}
	}
	for _, notErr := range []string{``, `nope`, `{}`, `{"error":null}`, `{"choices":[]}`, `[{"error":"x"}]`, `{"error":5}`} {
		if e, ok := openai.ParseError([]byte(notErr)); ok {
			t.Errorf("ParseError(%s) = %+v, true", notErr, e)
		}
	}
}

func TestErrorJSON(t *testing.T) {
	tests := []struct {
		code any
		want string
	}{
		{nil, `{"error":{"message":"m \"q\"","type":"t","param":null,"code":null}}`},
		{"rate_limit", `{"error":{"message":"m \"q\"","type":"t","param":null,"code":"rate_limit"}}`},
		{429, `{"error":{"message":"m \"q\"","type":"t","param":null,"code":429}}`},
		{json.RawMessage(`"x"`), `{"error":{"message":"m \"q\"","type":"t","param":null,"code":"x"}}`},
		{func() {}, `{"error":{"message":"m \"q\"","type":"t","param":null,"code":null}}`},
	}
	for _, tt := range tests {
		got := openai.ErrorJSON(`m "q"`, "t", tt.code)
		if string(got) != tt.want {
			t.Errorf("ErrorJSON(code %v) = %s, want %s", tt.code, got, tt.want)
		}
		e, ok := openai.ParseError(got)
		if !ok || e.Message != `m "q"` || e.Type != "t" {
			t.Errorf("ParseError(ErrorJSON) = %+v, %v", e, ok)
		}
	}
}

func TestCountTokens(t *testing.T) {
	tests := []struct {
		text string
		want int
	}{
		{"", 0},
		{"hello world", 2},
		{"The quick brown fox jumps over the lazy dog.", 10},
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, tt := range tests {
				if got := openai.CountTokens(tt.text); got != tt.want {
					t.Errorf("CountTokens(%q) = %d, want %d", tt.text, got, tt.want)
				}
			}
		}()
	}
	wg.Wait()
	for _, name := range []string{"", "o200k_base", "cl100k_base"} {
		c, err := openai.Tokenizer(name)
		if err != nil {
			t.Fatalf("Tokenizer(%q): %v", name, err)
		}
		again, _ := openai.Tokenizer(name)
		if c != again {
			t.Errorf("Tokenizer(%q) built twice", name)
		}
		if n, err := c.Count("hello world"); err != nil || n != 2 {
			t.Errorf("%s: Count = %d, %v", c.GetName(), n, err)
		}
	}
	if _, err := openai.Tokenizer("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Tokenizer(nope) = %v", err)
	}
}

func TestChunkOutputBytes(t *testing.T) {
	for _, tt := range []struct {
		name, data string
		want       int
	}{
		{"role only", `{"choices":[{"delta":{"role":"assistant"}}]}`, 0},
		{"content", `{"choices":[{"delta":{"content":"h\u00e9"}}]}`, 3},
		{"reasoning_content wins over reasoning", `{"choices":[{"delta":{"reasoning_content":"ab","reasoning":"abc"}}]}`, 2},
		{"reasoning alone", `{"choices":[{"delta":{"reasoning":"abc"}}]}`, 3},
		{"completion text", `{"choices":[{"text":"abcd"}]}`, 4},
		{"tool call name and arguments", `{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{}"}}]}}]}`, 3},
		{"two choices", `{"choices":[{"delta":{"content":"a"}},{"index":1,"delta":{"content":"bc"}}]}`, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c openai.Chunk
			if err := openai.ParseChunk([]byte(tt.data), &c); err != nil {
				t.Fatal(err)
			}
			if got := c.OutputBytes(); got != tt.want || got != len(c.OutputText()) {
				t.Errorf("OutputBytes %d, want %d (OutputText %q)", got, tt.want, c.OutputText())
			}
		})
	}
}

// TestMarshalToolCalls pins the bytes of the stored tool calls: the recorder stores them and
// compares the replies that clients echo back with them, so they must never change.
func TestMarshalToolCalls(t *testing.T) {
	for _, tt := range []struct {
		name  string
		calls []openai.ToolCall
		want  string
	}{
		{"none", nil, ""},
		{"escaping as encoding/json, empty id left out, empty type is function",
			[]openai.ToolCall{
				{Index: 0, ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "get<weather>",
					Arguments: "{\"q\":\"a&b\",\"s\":\"\u2028é\\u00e9\xff\"}"}},
				{Index: 1},
			},
			`[{"id":"call_1","type":"function","function":{"name":"get\u003cweather\u003e","arguments":"{\"q\":\"a\u0026b\",\"s\":\"\u2028é\\u00e9\ufffd\"}"}},{"type":"function","function":{"name":"","arguments":""}}]`},
		{"other type kept", []openai.ToolCall{{Type: "custom", Function: openai.FunctionCall{Name: "x"}}},
			`[{"type":"custom","function":{"name":"x","arguments":""}}]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(openai.MarshalToolCalls(tt.calls)); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
