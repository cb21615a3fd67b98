package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
)

// rawClient does not decode anything: it sees the bytes on the wire.
func rawClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true, Proxy: nil}}
}

func post(t *testing.T, c *http.Client, u, transcript string, gz bool) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(`{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(proxytest.TranscriptHeader, transcript)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestPassThroughIsByteExact(t *testing.T) {
	for _, gz := range []bool{false, true} {
		up := httptest.NewServer(&proxytest.Replay{Gzip: gz, Gap: time.Millisecond})
		defer up.Close()
		col := &proxytest.Collector{}
		_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})
		n := 0
		for _, tr := range proxytest.Transcripts() {
			name := tr.Name
			if gz {
				name += "/gzip"
			}
			t.Run(name, func(t *testing.T) {
				c := rawClient()
				dresp, direct := post(t, c, up.URL+"/v1/chat/completions", tr.Name, gz)
				presp, through := post(t, c, "http://"+addr+"/v1/chat/completions", tr.Name, gz)
				n++
				if !bytes.Equal(direct, through) {
					t.Fatalf("body through proxy differs from direct:\ndirect  %q\nthrough %q", direct, through)
				}
				if dresp.StatusCode != presp.StatusCode {
					t.Errorf("status %d through proxy, %d direct", presp.StatusCode, dresp.StatusCode)
				}
				for _, h := range []string{"Content-Type", "Content-Encoding", "Server", "Vary"} {
					if dresp.Header.Get(h) != presp.Header.Get(h) {
						t.Errorf("%s %q through proxy, %q direct", h, presp.Header.Get(h), dresp.Header.Get(h))
					}
				}
				if gz && dresp.Header.Get("Content-Encoding") != "gzip" {
					t.Fatalf("upstream did not gzip: test is not testing")
				}
				xs := col.Wait(t, n)
				x := xs[n-1]
				if !bytes.Equal(x.Body, tr.Body) {
					t.Fatalf("recorded body is not the decoded transcript:\n got  %q\n want %q", x.Body, tr.Body)
				}
				if x.Status != tr.Status || x.Path != "/v1/chat/completions" || x.Method != "POST" {
					t.Errorf("recorded %d %s %s", x.Status, x.Method, x.Path)
				}
				checkReads(t, x)
				if tr.Streamed() {
					// Every read ends on an event boundary (gzip included: the upstream
					// flushes per event, so decoded bytes map to the read that carried them).
					bounds := map[int]bool{}
					off := 0
					for _, ev := range proxytest.SplitEvents(tr.Body) {
						off += len(ev)
						bounds[off] = true
					}
					for _, r := range x.Reads {
						if !bounds[r.End] {
							t.Errorf("read ends at %d, inside an event (reads %v)", r.End, x.Reads)
						}
					}
				}
			})
		}
	}
}

// checkReads checks the invariants of Exchange timing.
func checkReads(t *testing.T, x *proxy.Exchange) {
	t.Helper()
	prevAt, prevEnd := x.HeadersAt, 0
	for _, r := range x.Reads {
		if r.At < prevAt || r.End < prevEnd {
			t.Fatalf("reads not monotonic: %+v (headers at %v)", x.Reads, x.HeadersAt)
		}
		prevAt, prevEnd = r.At, r.End
	}
	if len(x.Reads) > 0 && x.Reads[len(x.Reads)-1].End != len(x.Body) {
		t.Errorf("last read ends at %d, body has %d bytes", x.Reads[len(x.Reads)-1].End, len(x.Body))
	}
	if x.End < prevAt || x.HeadersAt < x.Sent || x.Sent <= 0 {
		t.Errorf("timing out of order: sent %v headers %v last read %v end %v", x.Sent, x.HeadersAt, prevAt, x.End)
	}
	if x.Start.IsZero() {
		t.Error("no start time")
	}
}

func TestClientGetsGzipOnlyWhenItAsks(t *testing.T) {
	up := httptest.NewServer(&proxytest.Replay{Gzip: true})
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})
	resp, b := post(t, rawClient(), "http://"+addr+"/v1/chat/completions", "chat_stream", false)
	if resp.Header.Get("Content-Encoding") != "" || !bytes.HasPrefix(b, []byte("data: ")) {
		t.Fatalf("client that did not ask for gzip got %q %q", resp.Header.Get("Content-Encoding"), b[:min(20, len(b))])
	}
	resp, b = post(t, rawClient(), "http://"+addr+"/v1/chat/completions", "chat_stream", true)
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("client that asked for gzip: %q %v", resp.Header.Get("Content-Encoding"), err)
	}
	plain, _ := io.ReadAll(zr)
	xs := col.Wait(t, 2)
	if !bytes.Equal(xs[1].Body, plain) || xs[1].BodyEncoding != "" {
		t.Errorf("recorded gzip exchange not decoded (encoding %q)", xs[1].BodyEncoding)
	}
}

func TestBasePathAndPassThrough(t *testing.T) {
	var paths []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	col := &proxytest.Collector{}
	p, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL + "/api/", Sink: col})
	c := rawClient()
	resp, err := c.Get("http://" + addr + "/v1/models?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	post(t, c, "http://"+addr+"/v1/completions", "", false)
	xs := col.Wait(t, 1)
	want := []string{"GET /api/v1/models?x=1", "POST /api/v1/completions?"}
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Errorf("upstream saw %q, want %q", paths, want)
	}
	if xs[0].Path != "/api/v1/completions" {
		t.Errorf("recorded path %q", xs[0].Path)
	}
	st := p.Stats()
	if st.Exchanges != 1 || st.Passed != 1 || len(col.Exchanges()) != 1 {
		t.Errorf("stats %+v, %d captured", st, len(col.Exchanges()))
	}
}

func TestUnreachableUpstreamGives502(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: dead, Sink: col})
	resp, b := post(t, rawClient(), "http://"+addr+"/v1/chat/completions", "", false)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" || e.Error.Code != "bad_gateway" {
		t.Fatalf("body %s is not an OpenAI error: %v", b, err)
	}
	x := col.Wait(t, 1)[0]
	if x.Status != 502 || x.ErrClass != "connect" || !strings.Contains(x.Err, "refused") || x.ClientGone {
		t.Errorf("exchange status %d class %q err %q gone %v", x.Status, x.ErrClass, x.Err, x.ClientGone)
	}
}

func TestUpstreamErrorPassesThrough(t *testing.T) {
	up := httptest.NewServer(&proxytest.Replay{})
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})
	resp, b := post(t, rawClient(), "http://"+addr+"/v1/chat/completions", "error_badjson", false)
	if resp.StatusCode != 500 || !bytes.Contains(b, []byte(`"error"`)) {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	x := col.Wait(t, 1)[0]
	if x.Status != 500 || x.Err != "" || !bytes.Equal(x.Body, b) {
		t.Errorf("exchange %d %q %q", x.Status, x.Err, x.Body)
	}
}

// slowStream streams an event every 5 ms until the request is cancelled, and reports the
// cancellation on canceled.
func slowStream(canceled chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if _, err := io.WriteString(w, `data: {"choices":[{"delta":{"content":"x"}}]}`+"\n\n"); err != nil {
				close(canceled)
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				close(canceled)
				return
			}
		}
	})
}

// A client that hangs up right after reading [DONE], while the upstream keeps the response
// open, read a whole stream: the exchange has no error and the client is not counted as gone.
func TestHangUpAfterDoneIsNoError(t *testing.T) {
	hold := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
		w.(http.Flusher).Flush()
		select { // the response stays open until the client has gone
		case <-r.Context().Done():
		case <-hold:
		}
	}))
	defer up.Close()
	defer close(hold)
	col := &proxytest.Collector{}
	p, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := rawClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before [DONE]: %v", err)
		}
		if strings.HasPrefix(line, "data: [DONE]") {
			break
		}
	}
	resp.Body.Close()
	x := col.Wait(t, 1)[0]
	if x.Err != "" || x.ErrClass != "" || x.ClientGone {
		t.Errorf("exchange err %q class %q gone %v, want a whole stream", x.Err, x.ErrClass, x.ClientGone)
	}
	if st := p.Stats(); st.Errors != 0 || st.ClientGone != 0 {
		t.Errorf("stats %+v, want no error and no client gone", st)
	}
}

func TestClientGoneCancelsUpstream(t *testing.T) {
	canceled := make(chan struct{})
	up := httptest.NewServer(slowStream(canceled))
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := rawClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ { // three events, then hang up
		if _, err := br.ReadString('\n'); err != nil {
			x := col.Wait(t, 1)[0]
			t.Fatalf("%v; exchange err %q class %q", err, x.Err, x.ErrClass)
		}
		br.ReadString('\n')
	}
	resp.Body.Close()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream request not cancelled after the client went away")
	}
	x := col.Wait(t, 1)[0]
	if !x.ClientGone || x.ErrClass != "canceled" || x.Status != 200 {
		t.Errorf("exchange gone %v class %q status %d err %q", x.ClientGone, x.ErrClass, x.Status, x.Err)
	}
	if n := bytes.Count(x.Body, []byte("\n\n")); n < 3 {
		t.Errorf("recorded %d events, the client had read 3", n)
	}
	checkReads(t, x)
}

func TestCredentialsNeverReachTheExchange(t *testing.T) {
	var got http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "cookie-secret-2"})
		w.Header().Set("X-Upstream-Token", "tok-secret-3")
		io.WriteString(w, `{}`)
	}))
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col, RedactHeaders: []string{"x-upstream-token", "X-Org-Secret"}})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer sk-secret-1")
	req.Header.Set("Api-Key", "sk-secret-4")
	req.Header.Set("X-Api-Key", "sk-secret-5")
	req.Header.Set("Cookie", "session=cookie-secret-6")
	req.Header.Set("X-Org-Secret", "org-secret-7")
	req.Header.Set("X-Session-ID", "keep-me")
	resp, err := rawClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Set-Cookie") == "" {
		t.Error("client did not get the upstream's cookie")
	}
	for _, h := range []string{"Authorization", "Api-Key", "X-Api-Key", "Cookie", "X-Org-Secret"} {
		if got.Get(h) != req.Header.Get(h) {
			t.Errorf("upstream got %s %q, want it untouched", h, got.Get(h))
		}
	}
	x := col.Wait(t, 1)[0]
	dump, _ := json.Marshal(x)
	if bytes.Contains(dump, []byte("secret")) {
		t.Errorf("exchange holds a credential: %s", dump)
	}
	if x.ReqHeader.Get("X-Session-Id") != "keep-me" {
		t.Errorf("ordinary header lost: %v", x.ReqHeader)
	}
}

func TestBigBodyPassesThroughTruncated(t *testing.T) {
	var n int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ = io.Copy(io.Discard, r.Body)
		w.Write(bytes.Repeat([]byte("r"), 3000))
	}))
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col, MaxBody: 1024})
	body := bytes.Repeat([]byte("q"), 4096)
	resp, err := rawClient().Post("http://"+addr+"/v1/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n != 4096 || len(got) != 3000 {
		t.Fatalf("upstream got %d bytes, client %d", n, len(got))
	}
	x := col.Wait(t, 1)[0]
	if !x.Truncated || x.ReqBody != nil || x.ReqSize != 4096 {
		t.Errorf("request: truncated %v body %d size %d", x.Truncated, len(x.ReqBody), x.ReqSize)
	}
	if !x.RespTruncated || len(x.Body) != 1024 || x.RespSize != 3000 {
		t.Errorf("response: truncated %v body %d size %d", x.RespTruncated, len(x.Body), x.RespSize)
	}
}

func TestOpenAISDKReverse(t *testing.T) {
	up := httptest.NewServer(&proxytest.Replay{})
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})
	client := openai.NewClient(option.WithBaseURL("http://"+addr+"/v1"), option.WithAPIKey("sk-secret-sdk"), option.WithMaxRetries(0))
	content := sdkStream(t, client)
	direct := sdkStream(t, openai.NewClient(option.WithBaseURL(up.URL+"/v1"), option.WithAPIKey("k"), option.WithMaxRetries(0)))
	if content == "" || content != direct {
		t.Fatalf("SDK through proxy got %q, direct %q", content, direct)
	}
	x := col.Wait(t, 1)[0]
	if !bytes.Contains(x.ReqBody, []byte(`"include_usage":true`)) || x.ReqHeader.Get("Authorization") != "" {
		t.Errorf("request not recorded as sent: %s", x.ReqBody)
	}
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "tiny-llama",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	if err != nil || len(resp.Choices) == 0 {
		t.Fatalf("non-streamed: %v", err)
	}
}

func sdkStream(t *testing.T, client openai.Client) string {
	t.Helper()
	s := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "tiny-llama",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Plan a weekend trip to Lisbon.")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var b strings.Builder
	for s.Next() {
		for _, c := range s.Current().Choices {
			b.WriteString(c.Delta.Content)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	return b.String()
}

func TestOpenAISDKForwardThroughGeneratedCA(t *testing.T) {
	up := httptest.NewTLSServer(&proxytest.Replay{})
	defer up.Close()
	upRoots := x509.NewCertPool()
	upRoots.AddCert(up.Certificate())
	ca, err := proxy.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{
		Mode: proxy.ModeForward, CA: &ca.Cert, Sink: col,
		UpstreamTLS: &tls.Config{RootCAs: upRoots},
	})
	pu, _ := url.Parse("http://" + addr)
	hc := &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, // trusts only our CA: interception must happen
	}}
	client := openai.NewClient(option.WithBaseURL(up.URL+"/v1"), option.WithHTTPClient(hc), option.WithAPIKey("sk-secret-fwd"), option.WithMaxRetries(0))
	content := sdkStream(t, client)
	direct := sdkStream(t, openai.NewClient(option.WithBaseURL(up.URL+"/v1"), option.WithHTTPClient(up.Client()), option.WithMaxRetries(0)))
	if content == "" || content != direct {
		t.Fatalf("SDK through forward proxy got %q, direct %q", content, direct)
	}
	x := col.Wait(t, 1)[0]
	if x.Path != "/v1/chat/completions" || x.Host != strings.TrimPrefix(up.URL, "https://") || x.Status != 200 {
		t.Errorf("exchange %s %s %d", x.Host, x.Path, x.Status)
	}
	if !bytes.HasPrefix(x.Body, []byte("data: ")) || x.ReqHeader.Get("Authorization") != "" {
		t.Errorf("exchange body %q", x.Body[:min(len(x.Body), 30)])
	}
	checkReads(t, x)
}

func TestForwardTunnelsHostsNotIntercepted(t *testing.T) {
	up := httptest.NewTLSServer(&proxytest.Replay{})
	defer up.Close()
	ca, err := proxy.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	col := &proxytest.Collector{}
	p, addr := proxytest.MustStart(t, proxy.Config{Mode: proxy.ModeForward, CA: &ca.Cert, Sink: col,
		Intercept: []string{"api.openai.com"}, AllowConnect: []string{strings.TrimPrefix(up.URL, "https://")}})
	pu, _ := url.Parse("http://" + addr)
	tr := up.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(pu) // trusts only the upstream's own certificate: no interception
	resp, b := post(t, &http.Client{Transport: tr}, up.URL+"/v1/chat/completions", "chat_stream", false)
	if resp.StatusCode != 200 || len(b) == 0 {
		t.Fatalf("tunnel: %d", resp.StatusCode)
	}
	if st := p.Stats(); st.Exchanges != 0 || len(col.Exchanges()) != 0 {
		t.Errorf("tunnelled traffic was recorded: %+v", st)
	}
}

func TestForwardPlainHTTP(t *testing.T) {
	up := httptest.NewServer(&proxytest.Replay{Gzip: true})
	defer up.Close()
	ca, err := proxy.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Mode: proxy.ModeForward, CA: &ca.Cert, Sink: col})
	pu, _ := url.Parse("http://" + addr)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true}}
	_, through := post(t, c, up.URL+"/v1/chat/completions", "chat_stream_usage", true)
	_, direct := post(t, rawClient(), up.URL+"/v1/chat/completions", "chat_stream_usage", true)
	if !bytes.Equal(through, direct) {
		t.Fatal("forward proxy changed the bytes")
	}
	x := col.Wait(t, 1)[0]
	want := proxytest.Transcripts()[2].Body
	if !bytes.Equal(x.Body, want) {
		t.Errorf("recorded body not decoded transcript")
	}
}

func TestCAIsCreatedOnceWithPrivateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := proxy.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proxy.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Created || b.Created || !bytes.Equal(a.Cert.Certificate[0], b.Cert.Certificate[0]) {
		t.Fatalf("created %v then %v, same cert %v", a.Created, b.Created, bytes.Equal(a.Cert.Certificate[0], b.Cert.Certificate[0]))
	}
	fi, err := os.Stat(a.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	if !a.Cert.Leaf.IsCA {
		t.Error("not a CA certificate")
	}
	for _, v := range []string{"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE"} {
		if !strings.Contains(a.TrustHint(), v+"="+a.CertFile) {
			t.Errorf("trust hint lacks %s", v)
		}
	}
}

func TestShutdownWaitsForStreams(t *testing.T) {
	up := httptest.NewServer(&proxytest.Replay{Gap: 20 * time.Millisecond})
	defer up.Close()
	var captured atomic.Int32
	p, err := proxy.New(proxy.Config{Upstream: up.URL, Sink: proxytest.SinkFunc(func(*proxy.Exchange) { captured.Add(1) })})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(l)
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.Addr().String()+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := rawClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// The stream is in flight (headers arrived); shut down while it runs.
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(resp.Body); done <- b }()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if captured.Load() != 1 {
		t.Fatalf("Shutdown returned before the stream was captured")
	}
	if b := <-done; !bytes.Equal(b, proxytest.Transcripts()[1].Body) {
		t.Errorf("stream cut by shutdown: %q", b)
	}
}

// TestServeAfterShutdown: a Serve that starts after Shutdown (its goroutine scheduled late)
// returns at once and closes its listener, instead of serving a server nothing will stop.
func TestServeAfterShutdown(t *testing.T) {
	p, err := proxy.New(proxy.Config{Upstream: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(l); err != nil {
		t.Errorf("Serve after Shutdown: %v, want nil", err)
	}
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener still accepts after Serve returned")
	}
}

func TestShutdownTimeoutAbortsStreams(t *testing.T) {
	canceled := make(chan struct{})
	up := httptest.NewServer(slowStream(canceled))
	defer up.Close()
	col := &proxytest.Collector{}
	p, err := proxy.New(proxy.Config{Upstream: up.URL, Sink: col})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(l)
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.Addr().String()+"/v1/chat/completions", strings.NewReader(`{}`))
	resp, err := rawClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown of an endless stream returned nil")
	}
	x := col.Wait(t, 1)[0]
	if x.ErrClass != "canceled" || len(x.Body) == 0 {
		t.Errorf("aborted exchange class %q body %d", x.ErrClass, len(x.Body))
	}
}

func TestUpstreamCutMidStreamReachesTheClient(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for range 2 {
			io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n")
			w.(http.Flusher).Flush()
		}
		panic(http.ErrAbortHandler) // cut the connection mid-stream
	}))
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})
	resp, err := rawClient().Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("client saw a clean end of a stream the upstream broke off (%d bytes)", len(b))
	}
	x := col.Wait(t, 1)[0]
	if x.ErrClass != "stream" || x.ClientGone || bytes.Count(x.Body, []byte("\n\n")) != 2 {
		t.Errorf("exchange class %q gone %v body %q", x.ErrClass, x.ClientGone, x.Body)
	}
}

func TestForwardClientGoneCancelsUpstream(t *testing.T) {
	for _, tlsUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsUp), func(t *testing.T) {
			canceled := make(chan struct{})
			var up *httptest.Server
			if tlsUp {
				up = httptest.NewTLSServer(slowStream(canceled))
			} else {
				up = httptest.NewServer(slowStream(canceled))
			}
			defer up.Close()
			roots := x509.NewCertPool()
			if tlsUp {
				roots.AddCert(up.Certificate())
			}
			ca, err := proxy.LoadOrCreateCA(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			col := &proxytest.Collector{}
			_, addr := proxytest.MustStart(t, proxy.Config{Mode: proxy.ModeForward, CA: &ca.Cert, Sink: col, UpstreamTLS: &tls.Config{RootCAs: roots}})
			pu, _ := url.Parse("http://" + addr)
			c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
			resp, err := c.Post(up.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			for i := 0; i < 6; i++ {
				if l, err := br.ReadString('\n'); err != nil {
					t.Fatalf("line %d: %v (status %d, %q)", i, err, resp.StatusCode, l)
				}
			}
			resp.Body.Close()
			c.CloseIdleConnections()
			select {
			case <-canceled:
			case <-time.After(10 * time.Second):
				t.Fatal("upstream request not cancelled after the client went away")
			}
			x := col.Wait(t, 1)[0]
			if !x.ClientGone || x.ErrClass != "canceled" || bytes.Count(x.Body, []byte("\n\n")) < 3 {
				t.Errorf("exchange gone %v class %q err %q events %d", x.ClientGone, x.ErrClass, x.Err, bytes.Count(x.Body, []byte("\n\n")))
			}
		})
	}
}

// An upstream that starts its answer before it has read the request body, and a client that
// sends the rest of its body only once it has those headers: the proxy passes the headers on
// at once and the rest of the body upstream (full duplex). Without full duplex, net/http
// first reads the rest of the client's body itself and closes it when the handler writes the
// headers: here that stalls the response until the client gives up; with a body that had just
// ended, the transport's last read of it fails, the transport closes the upstream connection,
// and the response breaks off with "read upstream: ... use of closed network connection" and
// no events (as once seen in a demo run).
func TestFullDuplexBodyAfterHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "data: {\"got\":%d}\n\ndata: [DONE]\n\n", len(b))
	}))
	defer up.Close()
	col := &proxytest.Collector{}
	_, addr := proxytest.MustStart(t, proxy.Config{Upstream: up.URL, Sink: col})

	first, rest := `{"stream":true,"pad":"`, strings.Repeat("x", 1000)+`"}`
	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/chat/completions", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(first) + len(rest))
	// A canceled request waits for its body write to end: end it with the context.
	context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	go pw.Write([]byte(first))
	resp, err := rawClient().Do(req)
	if err != nil {
		t.Fatalf("no response headers before the whole body was sent: %v", err)
	}
	defer resp.Body.Close()
	if _, err := pw.Write([]byte(rest)); err != nil {
		t.Fatalf("send the rest of the body: %v", err)
	}
	pw.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the response: %v (%q)", err, b)
	}
	if want := fmt.Sprintf("data: {\"got\":%d}\n\ndata: [DONE]\n\n", req.ContentLength); string(b) != want {
		t.Errorf("client got %q, want %q", b, want)
	}
	x := col.Wait(t, 1)[0]
	if x.Err != "" || x.ReqSize != req.ContentLength || string(x.Body) != string(b) {
		t.Errorf("exchange err %q, request %d bytes, body %q", x.Err, x.ReqSize, x.Body)
	}
}
