package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
)

// A reverse proxy in front of a server; every chat completion is handed to the Sink with the
// arrival time of each read.
func ExampleNew() {
	upstream := httptest.NewServer(&proxytest.Replay{}) // answers like llama.cpp
	defer upstream.Close()

	done := make(chan *proxy.Exchange, 1)
	p, err := proxy.New(proxy.Config{
		Upstream: upstream.URL,
		Sink:     proxytest.SinkFunc(func(x *proxy.Exchange) { done <- x }),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	front := httptest.NewServer(p) // or p.Serve(listener)
	defer front.Close()

	req, _ := http.NewRequest(http.MethodPost, front.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"stream":true}`))
	req.Header.Set("Authorization", "Bearer sk-not-recorded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	x := <-done
	fmt.Println(x.Method, x.Path, x.Status)
	fmt.Println("events:", strings.Count(string(x.Body), "\n\n"), "reads recorded:", len(x.Reads) > 0)
	fmt.Println("authorization kept:", x.ReqHeader.Get("Authorization") != "")
	// Output:
	// POST /v1/chat/completions 200
	// events: 10 reads recorded: true
	// authorization kept: false
}
