package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/llmtape/llmtape/internal/reconn/reconntest"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
)

// closedLoop runs convs conversations of turns turns at once against base (".../v1"), through
// httpProxy when it is not empty (forward mode): each
// turn is sent as soon as the previous reply has ended, on one shared keep-alive client. It
// returns the failures: transport errors, statuses other than 200, and streams that did not
// end with [DONE]. A conversation goes on after a failure.
func closedLoop(base, httpProxy string, convs, turns int) []string {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: convs, DisableCompression: true}
	if httpProxy != "" {
		pu, err := url.Parse(httpProxy)
		if err != nil {
			return []string{err.Error()}
		}
		tr.Proxy = http.ProxyURL(pu)
	}
	client := &http.Client{Transport: tr}
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		fail []string
		wg   sync.WaitGroup
	)
	note := func(s string) {
		mu.Lock()
		fail = append(fail, s)
		mu.Unlock()
	}
	for c := range convs {
		wg.Go(func() {
			msgs := fmt.Sprintf(`{"role":"user","content":"conversation %d"}`, c)
			for k := range turns {
				body := `{"model":"m","stream":true,"max_tokens":8,"messages":[` + msgs + `]}`
				resp, err := client.Post(base+"/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					note(fmt.Sprintf("conversation %d turn %d: %v", c, k, err))
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					note(fmt.Sprintf("conversation %d turn %d: read: %v", c, k, err))
					continue
				case resp.StatusCode != http.StatusOK:
					note(fmt.Sprintf("conversation %d turn %d: status %d: %s", c, k, resp.StatusCode, b))
					continue
				case !strings.HasSuffix(string(b), "data: [DONE]\n\n"):
					note(fmt.Sprintf("conversation %d turn %d: stream did not end: %q", c, k, b))
					continue
				}
				msgs += fmt.Sprintf(`,{"role":"assistant","content":"reply %d"},{"role":"user","content":"turn %d"}`, k, k+1)
			}
		})
	}
	wg.Wait()
	return fail
}

// closingSim is a sim that, like llama.cpp's server, closes the connection after every
// streamed answer although it promised keep-alive.
func closingSim(t *testing.T) *sim.Server {
	cfg := simtest.Fast()
	cfg.CloseAfterStream = true
	return simtest.MustStart(t, cfg)
}

// TestReusedConnectionClosedByUpstreamIsResent: 16 closed-loop conversations through the
// proxy (reverse and forward mode) to an upstream that closes every connection after its
// stream. The proxy reuses a pooled connection that the upstream has just closed often enough
// to lose that race; each time it must send the request again on a new connection, so the
// clients see no failure at all, and the proxy counts the reconnects (not errors). Once it has
// seen 3 such closes in a row it stops pooling connections to the upstream.
func TestReusedConnectionClosedByUpstreamIsResent(t *testing.T) {
	for _, mode := range []string{proxy.ModeReverse, proxy.ModeForward} {
		t.Run(mode, func(t *testing.T) {
			up := closingSim(t)
			col := &proxytest.Collector{}
			var stopped atomic.Bool // the proxy said it no longer pools connections to the upstream
			cfg := proxy.Config{Mode: mode, Upstream: up.URL(), Sink: col, Logf: func(format string, args ...any) {
				if strings.Contains(fmt.Sprintf(format, args...), "no longer kept") {
					stopped.Store(true)
				}
			}}
			if mode == proxy.ModeForward {
				ca, err := proxy.LoadOrCreateCA(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				cfg.Upstream, cfg.CA = "", &ca.Cert
			}
			p, addr := proxytest.MustStart(t, cfg)
			base, httpProxy := "http://"+addr+"/v1", ""
			if mode == proxy.ModeForward {
				base, httpProxy = up.URL()+"/v1", "http://"+addr
			}
			const convs, turns = 16, 4
			// The race is lost often (about one request in six here), but it is a race: run
			// rounds until the proxy has met it.
			rounds := 0
			for rounds < 20 && p.Stats().UpstreamReconnects == 0 {
				rounds++
				if fail := closedLoop(base, httpProxy, convs, turns); len(fail) > 0 {
					t.Fatalf("round %d: %d failures through the proxy, first: %s", rounds, len(fail), fail[0])
				}
			}
			for _, x := range col.Wait(t, rounds*convs*turns) {
				if x.Err != "" || x.Status != http.StatusOK {
					t.Fatalf("exchange %s: status %d, err %q", x.Path, x.Status, x.Err)
				}
			}
			st := p.Stats()
			t.Logf("%d rounds, stats %+v", rounds, st)
			if st.Errors != 0 || st.UpstreamReconnects == 0 {
				t.Fatalf("errors %d, reconnects %d; want 0 and > 0", st.Errors, st.UpstreamReconnects)
			}
			if !stopped.Load() {
				return // fewer than 3 quick closes in a row: the habit is not learnt yet
			}
			// The proxy no longer pools connections to this upstream: the race cannot happen again.
			if fail := closedLoop(base, httpProxy, convs, turns); len(fail) > 0 {
				t.Fatalf("after learning: %d failures, first: %s", len(fail), fail[0])
			}
			if n := p.Stats().UpstreamReconnects; n != st.UpstreamReconnects {
				t.Fatalf("reconnects went from %d to %d after the proxy stopped pooling", st.UpstreamReconnects, n)
			}
		})
	}
}

// reusingUpstream answers the first request on each connection in full, with keep-alive; a
// later request on the same connection is read and then given to later, and the connection
// closed. It keeps every request body it read.
type reusingUpstream struct {
	url   string
	later func(c net.Conn)

	mu     sync.Mutex
	bodies []string
	reused int // requests that came on a connection that had answered before
}

func startReusingUpstream(t *testing.T, later func(c net.Conn)) *reusingUpstream {
	u := &reusingUpstream{later: later}
	u.url = reconntest.Serve(t, func(c net.Conn, n int, req *http.Request) bool {
		b, _ := io.ReadAll(req.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(b))
		if n > 0 {
			u.reused++
		}
		u.mu.Unlock()
		if n > 0 {
			u.later(c)
			return false
		}
		const ev = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nKeep-Alive: timeout=5\r\nContent-Length: %d\r\n\r\n%s", len(ev), ev)
		return true
	})
	return u
}

func (u *reusingUpstream) seen() (bodies []string, reused int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.bodies...), u.reused
}

// postUntilReused posts body through the proxy at addr until the upstream has had a request
// on a reused connection (at most 200 tries), and returns the statuses and bodies the client
// got.
func postUntilReused(t *testing.T, addr, path string, up *reusingUpstream, body func(i int) string) (statuses []int, answers []string) {
	t.Helper()
	client := rawClient()
	defer client.CloseIdleConnections()
	for i := 0; i < 200; i++ {
		if _, r := up.seen(); r > 0 {
			return statuses, answers
		}
		resp, err := client.Post("http://"+addr+path, "application/json", strings.NewReader(body(i)))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses, answers = append(statuses, resp.StatusCode), append(answers, string(b))
	}
	t.Fatal("the proxy never reused an upstream connection in 200 requests")
	return nil, nil
}

// TestResentBodyIsTheSame: a request that the upstream dropped on a reused connection
// (read, then closed without a byte of answer) is sent again with the same body, and the
// client gets the answer.
func TestResentBodyIsTheSame(t *testing.T) {
	up := startReusingUpstream(t, func(net.Conn) {})
	col := &proxytest.Collector{}
	p, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.url, Sink: col})
	body := func(i int) string {
		return fmt.Sprintf(`{"stream":true,"messages":[{"role":"user","content":"request %d %s"}]}`, i, strings.Repeat("x", 100<<10))
	}
	statuses, _ := postUntilReused(t, addr, "/v1/chat/completions", up, body)
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("request %d: status %d", i, s)
		}
	}
	bodies, reused := up.seen()
	last := len(statuses) - 1
	if len(bodies) != len(statuses)+reused || bodies[len(bodies)-1] != body(last) || bodies[len(bodies)-2] != body(last) {
		t.Fatalf("upstream read %d bodies for %d requests (%d dropped); the last two are not request %d's", len(bodies), len(statuses), reused, last)
	}
	if x := col.Wait(t, len(statuses))[last]; string(x.ReqBody) != body(last) || x.Err != "" {
		t.Fatalf("recorded request %d: body of %d bytes, err %q", last, len(x.ReqBody), x.Err)
	}
	if st := p.Stats(); st.UpstreamReconnects != int64(reused) || st.Errors != 0 {
		t.Fatalf("stats %+v; want %d reconnects, no errors", st, reused)
	}
}

// TestBodyOverMaxBodyIsNotResent: a body larger than MaxBody is not kept, so it cannot be sent
// again; the client gets the 502 and its message says why.
func TestBodyOverMaxBodyIsNotResent(t *testing.T) {
	up := startReusingUpstream(t, func(net.Conn) {})
	col := &proxytest.Collector{}
	p, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.url, MaxBody: 64, Sink: col})
	statuses, answers := postUntilReused(t, addr, "/v1/chat/completions", up, func(i int) string {
		return fmt.Sprintf(`{"stream":true,"messages":[{"role":"user","content":"request %d %s"}]}`, i, strings.Repeat("x", 100))
	})
	last := len(statuses) - 1
	if statuses[last] != http.StatusBadGateway || !strings.Contains(answers[last], "not sent again on a new one: request body larger than --max-body (64 bytes)") {
		t.Fatalf("dropped request: status %d, %s", statuses[last], answers[last])
	}
	col.Wait(t, len(statuses)) // counted when the exchange ends
	if st := p.Stats(); st.UpstreamReconnects != 0 || st.Errors != 1 {
		t.Fatalf("stats %+v; want no reconnect, 1 error", st)
	}
}

// TestFailureAfterAnswerBytesIsNotResent: once any byte of the answer has arrived on a reused
// connection, a failure is the upstream's, never sent again: headers and part of a stream
// reach the client as a cut stream; a partial status line is a 502.
func TestFailureAfterAnswerBytesIsNotResent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		write   string
		status  int
		errPart string
	}{
		{"headers and an event", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"1c\r\ndata: {\"choices\":[{}]}\n\n\r\n", http.StatusOK, "read upstream: "},
		{"part of the status line", "HTTP/1.1 20", http.StatusBadGateway, "reach upstream: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startReusingUpstream(t, func(c net.Conn) { io.WriteString(c, tc.write) })
			col := &proxytest.Collector{}
			p, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.url, Sink: col})
			statuses, _ := postUntilReused(t, addr, "/v1/chat/completions", up, func(i int) string {
				return fmt.Sprintf(`{"stream":true,"messages":[{"role":"user","content":"request %d"}]}`, i)
			})
			last := len(statuses) - 1
			if statuses[last] != tc.status {
				t.Fatalf("status %d, want %d", statuses[last], tc.status)
			}
			bodies, _ := up.seen()
			if len(bodies) != len(statuses) {
				t.Fatalf("upstream read %d requests for %d sent: the failed one was sent again", len(bodies), len(statuses))
			}
			x := col.Wait(t, len(statuses))[last]
			if !strings.HasPrefix(x.Err, tc.errPart) {
				t.Fatalf("recorded error %q, want %q…", x.Err, tc.errPart)
			}
			if st := p.Stats(); st.UpstreamReconnects != 0 || st.Errors != 1 {
				t.Fatalf("stats %+v; want no reconnect, 1 error", st)
			}
		})
	}
}

// TestPassedRequestIsResent: a request that is not recorded (embeddings) gets the same
// re-sending as a recorded one.
func TestPassedRequestIsResent(t *testing.T) {
	up := startReusingUpstream(t, func(net.Conn) {})
	p, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.url, Sink: &proxytest.Collector{}})
	body := func(i int) string { return fmt.Sprintf(`{"input":"text %d"}`, i) }
	statuses, _ := postUntilReused(t, addr, "/v1/embeddings", up, body)
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("request %d: status %d", i, s)
		}
	}
	if bodies, _ := up.seen(); bodies[len(bodies)-1] != body(len(statuses)-1) {
		t.Fatalf("upstream last read %q", bodies[len(bodies)-1])
	}
	if st := p.Stats(); st.UpstreamReconnects != 1 || st.Errors != 0 || st.Passed != int64(len(statuses)) {
		t.Fatalf("stats %+v; want 1 reconnect", st)
	}
}

// TestResentBodyStillArriving: the upstream drops a reused connection as soon as it has read
// the headers, while the client is still sending the body (the proxy streams it). The re-sent
// request carries the part that had arrived and then the rest as the client sends it.
func TestResentBodyStillArriving(t *testing.T) {
	var (
		mu      sync.Mutex
		bodies  []string
		headers = make(chan bool, 16) // a request's headers arrived: true on a reused connection
	)
	up := reconntest.Serve(t, func(c net.Conn, n int, req *http.Request) bool {
		headers <- n > 0
		if n > 0 {
			return false // dropped before the body was read
		}
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
		return true
	})
	p, addr := proxytest.MustStart(t, proxy.Config{Upstream: up, Sink: &proxytest.Collector{}})
	client := rawClient()
	defer client.CloseIdleConnections()
	for i := 0; i < 50; i++ {
		part1, part2 := fmt.Sprintf(`{"stream":false,"messages":[{"role":"user","content":"%d `, i), `and the rest"}]}`
		pr, pw := io.Pipe()
		type answer struct {
			status int
			err    error
		}
		got := make(chan answer, 1)
		go func() {
			resp, err := client.Post("http://"+addr+"/v1/chat/completions", "application/json", pr)
			if err != nil {
				got <- answer{err: err}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got <- answer{status: resp.StatusCode}
		}()
		io.WriteString(pw, part1)
		reused := <-headers // the upstream has the headers (and on a reused connection, has gone)
		io.WriteString(pw, part2)
		pw.Close()
		if reused {
			<-headers // the re-sent request's, on a new connection
		}
		a := <-got
		if a.err != nil || a.status != http.StatusOK {
			t.Fatalf("request %d: status %d, %v", i, a.status, a.err)
		}
		mu.Lock()
		last := bodies[len(bodies)-1]
		mu.Unlock()
		if last != part1+part2 {
			t.Fatalf("request %d: upstream read %q", i, last)
		}
		if reused {
			if st := p.Stats(); st.UpstreamReconnects != 1 {
				t.Fatalf("stats %+v; want 1 reconnect", st)
			}
			return
		}
	}
	t.Fatal("the proxy never reused an upstream connection in 50 requests")
}
