package proxy_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
)

// A CONNECT to a host that is neither intercepted nor allowed is refused with 403 and the proxy
// makes no connection to it; an allowed one is tunnelled (which shows the listener counts).
func TestForwardRefusesConnectNotAllowed(t *testing.T) {
	tg := proxytest.MustListen(t)
	target := tg.Addr()
	_, port, _ := net.SplitHostPort(target)
	ca, err := proxy.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, addr := proxytest.MustStart(t, proxy.Config{Mode: proxy.ModeForward, CA: &ca.Cert,
		Intercept: []string{"api.openai.com"}, AllowConnect: []string{"127.0.0.1"}}) // port 443 only
	if got := proxytest.Connect(t, addr, target); got != http.StatusForbidden {
		t.Errorf("CONNECT %s: %d, want 403", target, got)
	}
	if p.Stats().Refused != 1 {
		t.Errorf("stats %+v, want 1 refused", p.Stats())
	}
	if n := tg.Accepts(); n != 0 {
		t.Errorf("the refused target saw %d connections", n)
	}

	_, addr2 := proxytest.MustStart(t, proxy.Config{Mode: proxy.ModeForward, CA: &ca.Cert,
		Intercept: []string{"api.openai.com"}, AllowConnect: []string{"localhost:1", "127.0.0.1:" + port}})
	if got := proxytest.Connect(t, addr2, target); got != http.StatusOK {
		t.Errorf("allowed CONNECT %s: %d, want 200", target, got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for tg.Accepts() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if tg.Accepts() != 1 {
		t.Errorf("the allowed target saw %d connections, want 1", tg.Accepts())
	}
}

// A client that sends its headers and half its body and then stalls is cut after the body
// timeout; the exchange is recorded as canceled by the client, without the half body.
func TestStalledBodyIsCut(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return
		}
		io.WriteString(w, `{}`)
	}))
	defer up.Close()
	col := &proxytest.Collector{}
	p, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col, BodyTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"model":"m","messages":[{"role":"user","content":"hello there"}]}`
	half := body[:len(body)/2]
	if _, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+half); err != nil {
		t.Fatal(err)
	}
	// Wait for the proxy to close the connection; the generous deadline only stops a hang.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the proxy kept a stalled client's connection open (read %q)", got)
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Errorf("client got %q, want a 408 or nothing before the close", got)
	}
	x := col.Wait(t, 1)[0]
	if !x.ClientGone || x.ErrClass != "canceled" || !strings.Contains(x.Err, "paused mid-body") || x.ReqBody != nil {
		t.Errorf("exchange: gone %v, class %q, err %q, body %q", x.ClientGone, x.ErrClass, x.Err, x.ReqBody)
	}
	if st := p.Stats(); st.Stalled != 1 {
		t.Errorf("stats %+v, want 1 stalled", st)
	}
}

// The body timeout ends with the body: a response that streams for longer than it is not cut.
func TestBodyTimeoutDoesNotCutALongResponse(t *testing.T) {
	up := httptest.NewServer(&proxytest.Replay{Gap: 100 * time.Millisecond})
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col, BodyTimeout: 50 * time.Millisecond})
	resp, b := post(t, rawClient(), "http://"+addr+"/v1/chat/completions", "chat_stream", false)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "[DONE]") {
		t.Fatalf("status %d, body %q", resp.StatusCode, b)
	}
	if x := col.Wait(t, 1)[0]; x.Err != "" || x.ClientGone {
		t.Errorf("exchange err %q, gone %v", x.Err, x.ClientGone)
	}
}
