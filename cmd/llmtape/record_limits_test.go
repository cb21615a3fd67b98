package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/proxy/proxytest"
	"github.com/llmtape/llmtape/tape"
)

// Forward mode through the command: a CONNECT to a listener that is neither intercepted nor
// allowed gets 403 and the listener sees no connection.
func TestRecordForwardRefusesConnectNotAllowed(t *testing.T) {
	tg := proxytest.MustListen(t)
	dir := t.TempDir()
	rp := recRun(t, "--mode", "forward", "--listen", "127.0.0.1:0", "--ca-dir", filepath.Join(dir, "ca"),
		"--intercept", "api.openai.com", "--allow-connect", "127.0.0.1", "--store", filepath.Join(dir, "s.db"))
	target := tg.Addr() // 127.0.0.1:port, not port 443
	if got := proxytest.Connect(t, rp.addr, target); got != http.StatusForbidden {
		t.Errorf("CONNECT %s: %d, want 403", target, got)
	}
	if n := tg.Accepts(); n != 0 {
		t.Errorf("the refused target saw %d connections", n)
	}
	rp.stop(t)
}

// Reverse mode through the command: a client that sends its headers and half its body and then
// stalls has its connection closed after --body-timeout.
func TestRecordCutsAStalledBody(t *testing.T) {
	up := recStartSim(t, 0, 0)
	store := filepath.Join(t.TempDir(), "s.db")
	rp := recRun(t, "--upstream", up, "--listen", "127.0.0.1:0", "--body-timeout", "300ms", "--store", store)
	c, err := net.Dial("tcp", rp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"model":"m","messages":[{"role":"user","content":"a question that never ends"}],"stream":true}`
	if _, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // the generous bound of a hang
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the proxy kept the stalled client's connection (read %q)", got)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Errorf("client got %q, want a 408 before the close", got)
	}
	rp.stop(t)
	st, err := tape.Open(store, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var classes []string
	_ = st.Recordings(func(r *tape.Recording) error {
		return st.Conversations(r.ID, func(c *tape.Conversation) error {
			return st.Turns(c.ID, func(tu *tape.Turn) error {
				classes = append(classes, string(tu.Response.ErrorClass))
				return nil
			})
		})
	})
	if len(classes) != 1 || classes[0] != "canceled" {
		t.Errorf("recorded error classes %q, want one canceled turn", classes)
	}
}
