package recorder_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
)

// faultUpstream is a simulator that fails some requests on its own (FailRate, DisconnectRate)
// behind a front that fails the requests that ask for it (header X-Test-Fail): "reset" resets
// the connection before reading anything, "503" answers at once without reading the body,
// "cut" sends one stream event and breaks the connection off.
func faultUpstream(t *testing.T) string {
	t.Helper()
	simURL, err := url.Parse(simtest.MustStart(t, sim.Config{Seed: 3, OutputLen: sim.LenRange{Min: 3, Max: 8}, Tokenizer: "approx",
		TTFT: time.Millisecond, ITL: 100 * time.Microsecond, VaryOutput: true,
		FailRate: 0.15, FailStatus: 500, DisconnectRate: 0.1}).URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(simURL)
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("X-Test-Fail") {
		case "reset":
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		case "503":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"message":"overloaded","type":"server_error"}}`)
		case "cut":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hal"},"finish_reason":null}]}`+"\n\n")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(front.Close)
	return front.URL
}

// attempt is one request a faultyClient sent and what it saw.
type attempt struct {
	conv, turn int
	body       []byte
	failed     bool   // no whole answer: status ≠ 200, or the stream ended without [DONE]
	fault      string // the failure the front was asked for, or ""
}

// faultyClient drives chat conversations through a stack whose upstream fails some requests.
// A failed turn is retried with the same history (the usual client), or, in odd conversations
// when the forced failure of turn 1 happens, followed by another user message instead.
type faultyClient struct {
	url    string
	client *http.Client
	mu     sync.Mutex
	sent   map[string]attempt // X-Test-Req → attempt
	order  map[int][]string   // conversation → its requests in the order they were sent
}

func (fc *faultyClient) conversation(t *testing.T, ci int) {
	faults := []string{"reset", "503", "cut"}
	var msgs []map[string]any
	for ti := 0; ti < 4; ti++ {
		user := msg("user", fmt.Sprintf("conversation %d question %d", ci, ti))
		for n := 0; ; n++ {
			if n == 20 {
				t.Errorf("conversation %d turn %d: 20 attempts failed", ci, ti)
				return
			}
			fault := ""
			if ti == 1 && n == 0 {
				fault = faults[ci%len(faults)]
			}
			hist := append(append([]map[string]any(nil), msgs...), user)
			body, _ := json.Marshal(map[string]any{"model": "m", "messages": hist, "stream": true, "max_tokens": 16, "temperature": 0.5})
			key := fmt.Sprintf("%d/%d/%d", ci, ti, n)
			reply, ok := fc.send(t, key, fault, body)
			fc.mu.Lock()
			fc.sent[key] = attempt{conv: ci, turn: ti, body: body, failed: !ok, fault: fault}
			fc.order[ci] = append(fc.order[ci], key)
			fc.mu.Unlock()
			if ok {
				msgs = append(hist, msg("assistant", reply))
				break
			}
			if fault != "" && ci%2 == 1 {
				// The user gives up on that question and asks another.
				user = msg("user", fmt.Sprintf("conversation %d question %d, asked again", ci, ti))
			}
		}
	}
}

// send posts one request; ok is false when the answer was not whole.
func (fc *faultyClient) send(t *testing.T, key, fault string, body []byte) (string, bool) {
	req, _ := http.NewRequest(http.MethodPost, fc.url+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Test-Req", key)
	if fault != "" {
		req.Header.Set("X-Test-Fail", fault)
	}
	resp, err := fc.client.Do(req)
	if err != nil {
		t.Errorf("%s: %v", key, err)
		return "", false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return "", false
	}
	dec := openai.NewDecoder(resp.Body)
	var acc openai.Accumulator
	for {
		ev, err := dec.Next()
		if err != nil {
			return "", false // broken off (no [DONE] yet) or garbled
		}
		if ev.Done {
			io.Copy(io.Discard, resp.Body)
			return acc.Content(), true
		}
		var c openai.Chunk
		if openai.ParseChunk(ev.Data, &c) == nil {
			acc.Add(&c)
		}
	}
}

// Failed exchanges through the real proxy and recorder (a reset connection, an upstream 503 or
// 500, a stream broken off) keep the request as the client sent it, sit in the conversation
// of the turns before and after them, and carry their error class; every turn's rebuilt
// message list is what the client sent, also after failed turns, retries of them, and a
// client that asks another question instead of retrying.
func TestFailedTurnsKeepRequestAndConversation(t *testing.T) {
	s, _ := mustStore(t)
	st := startStack(t, s, faultUpstream(t), recorder.Config{})
	fc := &faultyClient{url: st.url, client: &http.Client{Transport: &http.Transport{}},
		sent: map[string]attempt{}, order: map[int][]string{}}
	defer fc.client.CloseIdleConnections()
	const convs = 12
	var wg sync.WaitGroup
	for ci := range convs {
		wg.Go(func() { fc.conversation(t, ci) })
	}
	wg.Wait()
	stats := st.stop()
	if t.Failed() {
		t.FailNow()
	}

	type stored struct {
		conv uint64
		ti   turnInfo
	}
	byKey := map[string]stored{}
	for id, c := range readAll(t, s) {
		for _, ti := range c.turns {
			key := ti.turn.Request.Headers["X-Test-Req"]
			if _, dup := byKey[key]; dup || key == "" {
				t.Fatalf("turn %d/%d: request key %q stored twice or missing", id, ti.turn.Index, key)
			}
			byKey[key] = stored{id, ti}
		}
	}
	if len(byKey) != len(fc.sent) || stats.Recorded != uint64(len(fc.sent)) {
		t.Fatalf("%d turns stored, %d recorded, %d requests sent", len(byKey), stats.Recorded, len(fc.sent))
	}
	classes := map[errclass.Class]int{}
	for key, a := range fc.sent {
		got := byKey[key]
		tt := got.ti.turn
		if !sameMessages(t, got.ti.msgs, a.body) {
			m, _ := json.Marshal(got.ti.msgs)
			t.Errorf("%s: rebuilt messages %s, sent %s", key, m, a.body)
		}
		var params map[string]any
		json.Unmarshal(tt.Request.Params, &params)
		if tt.Request.Model != "m" || params["max_tokens"] != 16.0 || params["temperature"] != 0.5 {
			t.Errorf("%s: stored model %q params %s, want the request's", key, tt.Request.Model, tt.Request.Params)
		}
		cls := tt.Response.ErrorClass
		if a.failed != (cls != "") {
			t.Errorf("%s: the client saw failed=%v, stored error class %q (status %d, error %q)", key, a.failed, cls, tt.Response.Status, tt.Response.Error)
		}
		want := map[string]errclass.Class{"reset": errclass.Connect, "503": errclass.HTTP, "cut": errclass.Stream}[a.fault]
		if a.fault != "" && (cls != want || tt.Response.Error == "") {
			t.Errorf("%s (%s): error class %q error %q, want %q and an error", key, a.fault, cls, tt.Response.Error, want)
		}
		if cls != "" {
			classes[cls]++
		}
	}
	// Each client conversation is one stored conversation, its requests in the order sent,
	// failed ones included.
	for ci := range convs {
		keys := fc.order[ci]
		first := byKey[keys[0]]
		for i, key := range keys {
			got := byKey[key]
			if got.conv != first.conv || got.ti.turn.Index != i {
				t.Errorf("conversation %d request %s: stored as turn %d of conversation %d, want turn %d of %d",
					ci, key, got.ti.turn.Index, got.conv, i, first.conv)
			}
		}
	}
	if classes[errclass.Connect] == 0 || classes[errclass.HTTP] == 0 || classes[errclass.Stream] == 0 {
		t.Errorf("failed turns by class %v: want connect, http and stream", classes)
	}
	t.Logf("%d requests, failed turns by class %v", len(fc.sent), classes)
}
