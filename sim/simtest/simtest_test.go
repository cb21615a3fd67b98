package simtest_test

import (
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/sim/simtest"
)

func TestMain(m *testing.M) {
	if code, served := simtest.ServeChild(); served {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestStartChild(t *testing.T) {
	c := simtest.StartChild(t, simtest.Fast())
	if !strings.HasPrefix(c.URL, "http://127.0.0.1:") {
		t.Fatalf("child URL %q", c.URL)
	}
	resp, err := http.Post(c.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), "[DONE]") {
		t.Fatalf("status %d, err %v, body %q", resp.StatusCode, err, body)
	}
	if c.CPU() < 0 {
		t.Fatalf("child CPU %v", c.CPU())
	}
}

func TestSelfCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("getrusage checked on Linux")
	}
	c0 := simtest.SelfCPU()
	x := 0
	for i := range 20_000_000 {
		x ^= i
	}
	_ = x
	if c1 := simtest.SelfCPU(); c1 == 0 || c1 < c0 {
		t.Fatalf("SelfCPU %v then %v", c0, c1)
	}
}

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
