package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/tape"
)

// A turn whose upstream failed, recorded by "llmtape record", keeps its request in its
// conversation; "show" marks it FAILED with its class and "analyze" counts it by class.
func TestFailedTurnShownAndCounted(t *testing.T) {
	simURL, err := url.Parse(recStartSim(t, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(simURL)
	rp.FlushInterval = -1
	// The upstream resets the connection of a request that asks for it.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Fail") == "" {
			rp.ServeHTTP(w, r)
			return
		}
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}))
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	defer up.Close()
	store := filepath.Join(t.TempDir(), "rec.db")
	rec := recRun(t, "--upstream", up.URL, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--store", store)

	// Turn 0 is answered, turn 1 fails (the client gets a 502) and is retried as turn 2.
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	msgs := []map[string]any{{"role": "user", "content": "first question"}}
	var failedBody []byte
	for i, fail := range []bool{false, true, false} {
		if i == 1 {
			msgs = append(msgs, map[string]any{"role": "user", "content": "second question"})
		}
		body, _ := json.Marshal(map[string]any{"model": "m", "messages": msgs, "max_tokens": 4, "stream": false})
		req, _ := http.NewRequest(http.MethodPost, "http://"+rec.addr+"/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if fail {
			req.Header.Set("X-Test-Fail", "reset")
			failedBody = body
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var answer struct {
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
		}
		json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if want := map[bool]int{false: 200, true: 502}[fail]; resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, want)
		}
		if i == 0 {
			msgs = append(msgs, map[string]any{"role": "assistant", "content": answer.Choices[0].Message.Content})
		}
	}
	rec.cancel() // SIGTERM: every exchange is written
	if code := <-rec.code; code != 0 {
		t.Fatalf("record exited %d: %s", code, rec.errb.String())
	}

	code, out, errOut := execCmd(context.Background(), "show", "1", "--store", store, "--format", "json")
	if code != 0 {
		t.Fatalf("show --format json: exit %d: %s", code, errOut)
	}
	var shown showOutput
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("show json: %v\n%s", err, out)
	}
	if len(shown.Turns) != 3 {
		t.Fatalf("conversation 1 has %d turns, want 3 (answered, failed, retry):\n%s", len(shown.Turns), out)
	}
	for i, turn := range shown.Turns {
		if wantClass := map[int]string{1: "connect"}[i]; turn.ErrorClass != wantClass || turn.Model != "m" {
			t.Errorf("turn %d: error_class %q model %q, want %q and m", i, turn.ErrorClass, turn.Model, wantClass)
		}
	}
	failed := shown.Turns[1]
	var sent struct{ Messages []json.RawMessage }
	json.Unmarshal(failedBody, &sent)
	if failed.Status != 502 || failed.Kept != 2 || len(failed.Messages) != 1 || !tape.JSONEqual(failed.Messages[0].JSON, sent.Messages[2]) {
		t.Errorf("failed turn: status %d kept %d messages %+v; want 502, 2 kept and %s", failed.Status, failed.Kept, failed.Messages, sent.Messages[2])
	}

	code, out, errOut = execCmd(context.Background(), "show", "1", "--store", store)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	if n := strings.Count(out, "FAILED"); n != 1 || !strings.Contains(out, "status 502") || !strings.Contains(out, "FAILED connect") {
		t.Errorf("show marks %d turns FAILED, want turn 1 as FAILED connect:\n%s", n, out)
	}

	code, out, errOut = execCmd(context.Background(), "analyze", "--store", store, "--format", "json")
	if code != 0 {
		t.Fatalf("analyze --format json: exit %d: %s", code, errOut)
	}
	var prof analyze.Profile
	if err := json.Unmarshal([]byte(out), &prof); err != nil {
		t.Fatalf("analyze json: %v\n%s", err, out)
	}
	if prof.Turns != 3 || prof.Conversations != 1 || prof.Errors.Total != 1 || prof.Errors.ByClass["connect"] != 1 || prof.Errors.ByStatus["502"] != 1 {
		t.Errorf("analyze: %d turns in %d conversations, errors %+v; want 3 in 1, one connect 502", prof.Turns, prof.Conversations, prof.Errors)
	}
	code, out, _ = execCmd(context.Background(), "analyze", "--store", store)
	if code != 0 || !strings.Contains(out, "errors by class") || !strings.Contains(out, "connect") {
		t.Errorf("analyze table (exit %d) lacks the connect error:\n%s", code, out)
	}
}
