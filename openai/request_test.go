package openai_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/openai"
)

// jsonEqual reports whether a and b hold the same JSON value (numbers
// compared as written).
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	va, err := decodeAny(a)
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	vb, err := decodeAny(b)
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(va, vb)
}

func decodeAny(b []byte) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func mustParse(t testing.TB, body string) *openai.Request {
	t.Helper()
	r, err := openai.ParseRequest([]byte(body))
	if err != nil {
		t.Fatalf("ParseRequest(%s): %v", body, err)
	}
	return r
}

func mustMarshal(t testing.TB, r *openai.Request) string {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

func TestParseRequestRoundTrip(t *testing.T) {
	bodies := []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.7,"top_p":1e0,"n":1,"stop":["\n\n"],"seed":-3,"user":"\u00e9t\u00e9","logit_bias":{"50256":-100},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`,
		`{"model":"m","prompt":"Once upon","max_tokens":16,"echo":false,"logprobs":null}`,
		`{"model":"m","prompt":[1,2,3],"max_tokens":null,"stream":null,"stream_options":null,"ignore_eos":null,"min_tokens":null}`,
		`{ "messages" : [ {"role":"system", "content":"s"} , {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:,"}}]} ] , "model":"x" }`,
		`{}`,
		`{"extra_body":{"nested":[1,{"a":"}"}]},"big":123456789012345678901234567890,"esc":"\"\\\/\b\f\n\r\t\ud83d\ude00"}`,
		`{"model":"a","model":"b"}`,
	}
	for _, body := range bodies {
		r := mustParse(t, body)
		got := mustMarshal(t, r)
		if !jsonEqual(t, []byte(got), []byte(body)) {
			t.Errorf("round trip\n got %s\nwant %s", got, body)
		}
		if !strings.ContainsAny(body, " ") && !strings.Contains(body, `"model":"a","model"`) && got != body {
			t.Errorf("compact body not kept byte for byte\n got %s\nwant %s", got, body)
		}
	}
}

func TestParseRequestTyped(t *testing.T) {
	r := mustParse(t, `{"model":"llama","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}],"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true},"max_tokens":10,"max_completion_tokens":20,"min_tokens":5,"ignore_eos":true}`)
	if r.Model != "llama" || !r.Stream || len(r.Messages) != 2 || r.Prompt != nil {
		t.Errorf("model/stream/messages/prompt = %q %v %d %s", r.Model, r.Stream, len(r.Messages), r.Prompt)
	}
	if string(r.Messages[1]) != `{"role":"assistant","content":"b"}` {
		t.Errorf("messages[1] = %s", r.Messages[1])
	}
	if *r.MaxTokens != 10 || *r.MaxCompletionTokens != 20 || *r.MinTokens != 5 || !*r.IgnoreEOS || !r.StreamOptions.IncludeUsage {
		t.Errorf("typed fields wrong: %+v", r)
	}
	if r.MaxOutputTokens() != 20 {
		t.Errorf("MaxOutputTokens = %d, want 20", r.MaxOutputTokens())
	}
	r.MaxCompletionTokens = nil
	if r.MaxOutputTokens() != 10 {
		t.Errorf("MaxOutputTokens = %d, want 10", r.MaxOutputTokens())
	}
	r.MaxTokens = nil
	if r.MaxOutputTokens() != 0 {
		t.Errorf("MaxOutputTokens = %d, want 0", r.MaxOutputTokens())
	}

	c := mustParse(t, `{"model":"m","prompt":["a","b"],"max_tokens":1.0e2}`)
	if c.Messages != nil || string(c.Prompt) != `["a","b"]` || *c.MaxTokens != 100 {
		t.Errorf("completion: %+v", c)
	}
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct{ body, want string }{
		{``, "empty body"},
		{`{"model":`, "not valid JSON"},
		{`{"a":1} x`, "not valid JSON"},
		{`[1,2]`, "body is an array, want a JSON object"},
		{`"s"`, "body is a string"},
		{`{"model":5}`, "model: want a string, got a number"},
		{`{"model":null}`, "model: want a string, got null"},
		{`{"messages":{"role":"user"}}`, "messages: want an array, got an object"},
		{`{"messages":[{"role":"user"},"hi"]}`, "messages[1]: want an object, got a string"},
		{`{"max_tokens":"10"}`, "max_tokens: want an integer, got a string"},
		{`{"max_tokens":1.5}`, "max_tokens: want an integer, got 1.5"},
		{`{"max_completion_tokens":true}`, "max_completion_tokens: want an integer"},
		{`{"stream":"yes"}`, "stream: want a boolean, got a string"},
		{`{"ignore_eos":1}`, "ignore_eos: want a boolean, got a number"},
		{`{"stream_options":[true]}`, "stream_options: want an object, got an array"},
		{`{"stream_options":{"include_usage":"yes"}}`, "stream_options.include_usage: want a boolean"},
		{`{"prompt":42}`, "prompt: want a string or an array, got a number"},
	}
	for _, tt := range tests {
		_, err := openai.ParseRequest([]byte(tt.body))
		if err == nil {
			t.Errorf("ParseRequest(%s): no error", tt.body)
			continue
		}
		if !errors.Is(err, openai.ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRequest(%s) = %v, want ErrInvalidRequest with %q", tt.body, err, tt.want)
		}
	}
}

func TestRequestSet(t *testing.T) {
	const body = `{"model":"a","messages":[{"role":"user","content":"x"}],"temperature":0.5,"max_tokens":7}`
	t.Run("replace in place and append", func(t *testing.T) {
		r := mustParse(t, body)
		for k, v := range map[string]any{"model": "b", "max_tokens": 100, "seed": 42, "min_tokens": 100, "ignore_eos": true} {
			if err := r.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
		if r.Model != "b" || *r.MaxTokens != 100 || *r.MinTokens != 100 || !*r.IgnoreEOS {
			t.Errorf("typed fields not in step: %+v", r)
		}
		got := mustMarshal(t, r)
		want := `{"model":"b","messages":[{"role":"user","content":"x"}],"temperature":0.5,"max_tokens":100,"seed":42,"min_tokens":100,"ignore_eos":true}`
		if !jsonEqual(t, []byte(got), []byte(want)) {
			t.Errorf("got %s\nwant %s", got, want)
		}
		if !strings.HasPrefix(got, `{"model":"b","messages"`) {
			t.Errorf("replaced member moved: %s", got)
		}
	})
	t.Run("raw JSON value", func(t *testing.T) {
		r := mustParse(t, body)
		if err := r.Set("stop", json.RawMessage(` ["x", "y"] `)); err != nil {
			t.Fatal(err)
		}
		if err := r.Set("messages", json.RawMessage(`[{"role":"user","content":"new"}]`)); err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) != 1 || string(r.Messages[0]) != `{"role":"user","content":"new"}` {
			t.Errorf("messages = %s", r.Messages)
		}
		if v, ok := r.Get("stop"); !ok || string(v) != `["x", "y"]` {
			t.Errorf("Get(stop) = %s, %v", v, ok)
		}
		if err := r.Set("stop", json.RawMessage(`[`)); err == nil {
			t.Error("invalid raw JSON accepted")
		}
	})
	t.Run("wrong type leaves request unchanged", func(t *testing.T) {
		r := mustParse(t, body)
		for k, v := range map[string]any{"model": 5, "max_tokens": "many", "messages": "hi", "stream": 1, "stream_options": []int{1}} {
			if err := r.Set(k, v); !errors.Is(err, openai.ErrInvalidRequest) {
				t.Errorf("Set(%s, %v) = %v, want ErrInvalidRequest", k, v, err)
			}
		}
		if err := r.Set("x", func() {}); err == nil {
			t.Error("Set of a func: no error")
		}
		if got := mustMarshal(t, r); got != body {
			t.Errorf("changed: %s", got)
		}
	})
	t.Run("stream options keep other members", func(t *testing.T) {
		r := mustParse(t, `{"stream_options":{"include_usage":false,"continuous_usage_stats":true}}`)
		r.StreamOptions.IncludeUsage = true
		want := `{"stream_options":{"include_usage":true,"continuous_usage_stats":true}}`
		if got := mustMarshal(t, r); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		r = mustParse(t, `{"model":"m"}`)
		r.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
		r.Stream = true
		if got, want := mustMarshal(t, r), `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

func TestRequestDirectChanges(t *testing.T) {
	r := mustParse(t, `{"model":"a","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"1"}],"n":1}`)
	r.Model = "b"
	r.MaxTokens = nil
	r.Stream = false
	r.Messages = append(r.Messages, json.RawMessage(`{"role":"assistant","content":"2"}`))
	r.IgnoreEOS = ptr(true)
	got := mustMarshal(t, r)
	want := `{"model":"b","stream":false,"messages":[{"role":"user","content":"1"},{"role":"assistant","content":"2"}],"n":1,"ignore_eos":true}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Set after a direct change keeps the direct change.
	if err := r.Set("n", 2); err != nil {
		t.Fatal(err)
	}
	want = strings.Replace(want, `"n":1`, `"n":2`, 1)
	if got := mustMarshal(t, r); got != want {
		t.Errorf("after Set: got %s\nwant %s", got, want)
	}
	r.Messages = nil
	if got := mustMarshal(t, r); strings.Contains(got, "messages") {
		t.Errorf("nil Messages kept: %s", got)
	}
}

func TestRequestDelete(t *testing.T) {
	r := mustParse(t, `{"model":"a","max_tokens":5,"stream":true,"x":1,"x":2}`)
	r.Delete("max_tokens")
	r.Delete("x")
	r.Delete("stream")
	r.Delete("absent")
	if r.MaxTokens != nil || r.Stream {
		t.Errorf("typed fields not cleared: %+v", r)
	}
	if got := mustMarshal(t, r); got != `{"model":"a"}` {
		t.Errorf("got %s", got)
	}
	if got := r.Keys(); !reflect.DeepEqual(got, []string{"model"}) {
		t.Errorf("Keys = %v", got)
	}
}

func TestParamsBuildRequest(t *testing.T) {
	conv, err := os.ReadFile("testdata/llamacpp_three_turn_conversation.json")
	if err != nil {
		t.Fatal(err)
	}
	var turns []struct {
		Request json.RawMessage `json:"request"`
	}
	if err := json.Unmarshal(conv, &turns); err != nil {
		t.Fatal(err)
	}
	bodies := []json.RawMessage{
		json.RawMessage(`{"model":"m","prompt":"p","max_tokens":3,"x":{"y":[1]}}`),
		json.RawMessage(`{"messages":[]}`),
	}
	for _, tr := range turns {
		bodies = append(bodies, tr.Request)
	}
	for i, body := range bodies {
		r := mustParse(t, string(body))
		params, err := r.Params()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(params), `"messages"`) || strings.Contains(string(params), `"prompt"`) {
			t.Errorf("%d: params hold the body text: %s", i, params)
		}
		rebuilt, err := openai.BuildRequest(params, r.Messages, r.Prompt)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, rebuilt, body) {
			t.Errorf("%d: rebuilt\n%s\nwant\n%s", i, rebuilt, body)
		}
	}
	if len(turns) != 3 {
		t.Errorf("turns = %d, want 3", len(turns))
	}

	got, err := openai.BuildRequest(json.RawMessage(`{"model":"m","stream":true}`), []json.RawMessage{json.RawMessage(`{"role":"user","content":"hi"}`)}, nil)
	if err != nil || string(got) != `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}` {
		t.Errorf("BuildRequest = %s, %v", got, err)
	}
	got, err = openai.BuildRequest(nil, nil, json.RawMessage(`"p"`))
	if err != nil || string(got) != `{"prompt":"p"}` {
		t.Errorf("BuildRequest(nil params) = %s, %v", got, err)
	}
	for _, bad := range []struct {
		params json.RawMessage
		msgs   []json.RawMessage
	}{
		{json.RawMessage(`[1]`), nil},
		{json.RawMessage(`{`), nil},
		{json.RawMessage(`{}`), []json.RawMessage{json.RawMessage(`{"role":`)}},
	} {
		if _, err := openai.BuildRequest(bad.params, bad.msgs, nil); !errors.Is(err, openai.ErrInvalidRequest) {
			t.Errorf("BuildRequest(%s, %s) = %v, want ErrInvalidRequest", bad.params, bad.msgs, err)
		}
	}
}

func TestParseRequestCopiesBody(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"abc"}]}`)
	r := mustParse(t, string(body))
	r2, err := openai.ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = ' '
	}
	if mustMarshal(t, r2) != mustMarshal(t, r) {
		t.Error("request refers to the caller's buffer")
	}
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		raw  string
		want openai.Message
		text string
	}{
		{`{"role":"user","content":"hello"}`, openai.Message{Role: "user", Content: "hello"}, "user\nhello"},
		{`{"role":"user","name":"bob","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}`,
			openai.Message{Role: "user", Name: "bob", Content: "a\nb"}, "user\nbob\na\nb"},
		{`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"q\":1}"}},{"id":"call_2","type":"function","function":{"name":"put","arguments":"{}"}}]}`,
			openai.Message{Role: "assistant", ToolCalls: []openai.ToolCall{
				{Index: 0, ID: "call_1", Type: "function", Function: struct{ Name, Arguments string }{"get", `{"q":1}`}},
				{Index: 1, ID: "call_2", Type: "function", Function: struct{ Name, Arguments string }{"put", `{}`}},
			}}, "assistant\n\nget\n{\"q\":1}\nput\n{}"},
		{`{"role":"tool","tool_call_id":"call_1","content":"42"}`, openai.Message{Role: "tool", ToolCallID: "call_1", Content: "42"}, "tool\n42"},
		{`{"role":"assistant","content":[{"type":"refusal","refusal":"no"}]}`, openai.Message{Role: "assistant", Content: "no"}, "assistant\nno"},
	}
	for _, tt := range tests {
		m, err := openai.ParseMessage(json.RawMessage(tt.raw))
		if err != nil {
			t.Errorf("ParseMessage(%s): %v", tt.raw, err)
			continue
		}
		if !reflect.DeepEqual(m, tt.want) {
			t.Errorf("ParseMessage(%s)\n got %+v\nwant %+v", tt.raw, m, tt.want)
		}
		if got := openai.MessageText(json.RawMessage(tt.raw)); got != tt.text {
			t.Errorf("MessageText(%s) = %q, want %q", tt.raw, got, tt.text)
		}
		// MarshalJSON gives a message that parses back the same.
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := openai.ParseMessage(b); err != nil || !reflect.DeepEqual(back, m) {
			t.Errorf("Marshal round trip of %s: %s -> %+v, %v", tt.raw, b, back, err)
		}
	}
	for _, bad := range []string{`"hi"`, `{"role":1}`, `{"content":5}`, `{"tool_calls":{}}`, `{`, ``} {
		if _, err := openai.ParseMessage(json.RawMessage(bad)); err == nil {
			t.Errorf("ParseMessage(%s): no error", bad)
		}
	}
	if got := openai.MessageText(json.RawMessage(`not json`)); got != "not json" {
		t.Errorf("MessageText of garbage = %q", got)
	}
}
