package sim_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/llmtape/llmtape/sim"
)

// A server for a test: instant replies, started on a free port of 127.0.0.1.
func Example() {
	srv, err := sim.New(sim.Config{Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	url, err := srv.Start("")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, strings.Contains(string(body), `"completion_tokens":3`))
	st := srv.Stats()
	fmt.Println(st.Requests, st.Completed, st.CompletionTokens)
	// Output:
	// 200 true
	// 1 1 3
}
