package openai_test

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/llmtape/llmtape/openai"
)

// Decode a stream and assemble the reply.
func ExampleDecoder() {
	stream := strings.NewReader("" +
		": keep-alive\n\n" +
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n" +
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n" +
		"data: [DONE]\n\n")
	dec := openai.NewDecoder(stream)
	var acc openai.Accumulator
	var c openai.Chunk
	for {
		ev, err := dec.Next()
		if err == io.EOF || err == nil && ev.Done {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := openai.ParseChunk(ev.Data, &c); err != nil {
			fmt.Println(err)
			return
		}
		acc.Add(&c)
	}
	u := acc.Usage()
	fmt.Printf("%q %s prompt=%d cached=%d completion=%d comments=%d\n",
		acc.Content(), acc.FinishReason(), u.PromptTokens, u.Cached(), u.CompletionTokens, dec.Comments())
	// Output: "Hello" stop prompt=5 cached=4 completion=2 comments=1
}

// Change a request's output length the way replay does, keeping every
// other member as the client sent it.
func ExampleParseRequest() {
	body := []byte(`{"model":"llama","messages":[{"role":"user","content":"Hi"}],"temperature":0.2,"max_tokens":512}`)
	r, err := openai.ParseRequest(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = r.Set("max_tokens", 37)
	_ = r.Set("ignore_eos", true)
	_ = r.Set("min_tokens", 37)
	out, _ := r.Marshal()
	fmt.Println(string(out))
	params, _ := r.Params()
	fmt.Println(string(params))
	// Output:
	// {"model":"llama","messages":[{"role":"user","content":"Hi"}],"temperature":0.2,"max_tokens":37,"ignore_eos":true,"min_tokens":37}
	// {"model":"llama","temperature":0.2,"max_tokens":37,"ignore_eos":true,"min_tokens":37}
}

func ExampleWriteEvent() {
	_ = openai.WriteEvent(os.Stdout, []byte(`{"choices":[]}`))
	_ = openai.WriteDone(os.Stdout)
	// Output:
	// data: {"choices":[]}
	//
	// data: [DONE]
}

func ExampleErrorJSON() {
	body := openai.ErrorJSON("model overloaded", "server_error", 503)
	fmt.Println(string(body))
	e, ok := openai.ParseError(body)
	fmt.Println(ok, e)
	// Output:
	// {"error":{"message":"model overloaded","type":"server_error","param":null,"code":503}}
	// true server_error: model overloaded
}

func ExampleCountTokens() {
	fmt.Println(openai.CountTokens(openai.MessageText([]byte(`{"role":"user","content":"How many tokens is this?"}`))))
	// Output: 8
}
