package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
)

// An exchange whose upstream failed keeps the request body as the client sent it, also when
// the upstream took none of it (a refused connection), part of it (a reset), or answered
// early without reading it.
func TestFailedExchangeKeepsRequestBody(t *testing.T) {
	small := []byte(`{"model":"m","max_tokens":7,"messages":[{"role":"user","content":"hi"}]}`)
	// Larger than the socket buffers: an upstream that does not read it cannot take it all.
	large := []byte(`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 8<<20) + `"}]}`)

	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}
	// reset accepts connections and resets them at once, before reading anything.
	reset := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		}()
		return "http://" + l.Addr().String()
	}
	// early answers 413 without reading the body.
	early := func(t *testing.T) string {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			http.Error(w, `{"error":{"message":"too large"}}`, http.StatusRequestEntityTooLarge)
		}))
		t.Cleanup(up.Close)
		return up.URL
	}
	tests := []struct {
		name     string
		upstream func(*testing.T) string
		body     []byte
		status   int
		class    errclass.Class
	}{
		{"connection refused", refused, small, http.StatusBadGateway, "connect"},
		{"connection refused, large body", refused, large, http.StatusBadGateway, "connect"},
		{"connection reset", reset, small, http.StatusBadGateway, "connect"},
		{"connection reset, large body", reset, large, http.StatusBadGateway, "connect"},
		{"early 413, large body", early, large, http.StatusRequestEntityTooLarge, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var col proxytest.Collector
			_, addr := proxytest.MustStart(t, proxy.Config{Upstream: tc.upstream(t), Sink: &col})
			resp := sendWhole(t, addr, tc.body)
			if resp.StatusCode != tc.status {
				t.Errorf("client got %d, want %d", resp.StatusCode, tc.status)
			}
			x := col.Wait(t, 1)[0]
			if x.Status != tc.status || x.ErrClass != tc.class {
				t.Errorf("exchange status %d class %q, want %d %q (err %q)", x.Status, x.ErrClass, tc.status, tc.class, x.Err)
			}
			if x.Truncated || x.ReqSize != int64(len(tc.body)) || !bytes.Equal(x.ReqBody, tc.body) {
				t.Errorf("request body: %d bytes kept of %d received (truncated %v), want the %d sent", len(x.ReqBody), x.ReqSize, x.Truncated, len(tc.body))
			}
		})
	}
}

// sendWhole posts body to the proxy at addr and reads the answer only once the whole body is
// written (net/http's client stops sending a body when an early answer comes).
func sendWhole(t *testing.T, addr string, body []byte) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", addr, len(body))
	if _, err := c.Write(append([]byte(head), body...)); err != nil {
		t.Fatalf("send request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// A client that waits for "100 Continue" and gets the upstream's early answer instead never
// sends its body: the exchange ends without it rather than waiting for it.
func TestEarlyAnswerToExpectContinue(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"message":"busy"}}`, http.StatusTooManyRequests)
	}))
	defer up.Close()
	var col proxytest.Collector
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: &col})
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[]}`))
	req.Header.Set("Expect", "100-continue")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("client got %d, want 429", resp.StatusCode)
	}
	if x := col.Wait(t, 1)[0]; x.Status != http.StatusTooManyRequests || len(x.ReqBody) != 0 {
		t.Errorf("exchange status %d with %d body bytes, want 429 without the body", x.Status, len(x.ReqBody))
	}
}
