package simtest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/sim/simtest"
)

func TestMustStart(t *testing.T) {
	srv := simtest.MustStart(t, simtest.Fast())
	resp, err := http.Post(srv.URL()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
