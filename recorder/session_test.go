package recorder_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/sim/simtest"
	"github.com/llmtape/llmtape/tape"
)

// mustSession builds and starts a session, and stops it when the test ends.
func mustSession(t *testing.T, cfg recorder.SessionConfig) *recorder.Session {
	t.Helper()
	s, err := recorder.NewSession(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

// adminGet sends GET path to the admin listener at addr with the given Host (addr when "")
// and token, and returns the status and body.
func adminGet(t *testing.T, addr, path, host, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// A session records what an SDK client streams through its proxy: NewSession touches nothing,
// Start opens the store and creates the recording, the admin listener serves counters behind
// its token, Stop completes the recording and closes the store it opened, and the summary says
// what was recorded.
func TestSessionRecordsThroughProxy(t *testing.T) {
	up := simtest.MustStart(t, simtest.Fast()).URL()
	path := filepath.Join(t.TempDir(), "session.db")
	s, err := recorder.NewSession(recorder.SessionConfig{
		StorePath: path, Admin: "127.0.0.1:0", AdminToken: "tok",
		Proxy:    proxy.Config{Upstream: up, RedactHeaders: []string{"X-Tenant"}},
		Recorder: recorder.Config{Name: "session test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NewSession touched the store: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	if s.Summary().Recording == 0 {
		t.Fatal("no recording after Start")
	}

	client := openai.NewClient(option.WithBaseURL("http://"+s.Addr().String()+"/v1"), option.WithAPIKey("sk-session-secret"),
		option.WithHeader("X-Tenant", "tenant-secret"), option.WithMaxRetries(0))
	for i := range 3 {
		st := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:    "m",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("question %d", i))},
		})
		for st.Next() {
		}
		if err := st.Err(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if _, err := client.Models.List(context.Background()); err != nil {
		t.Fatalf("pass-through GET: %v", err)
	}

	admin := s.AdminAddr().String()
	if code, _ := adminGet(t, admin, "/health", "", ""); code != http.StatusUnauthorized {
		t.Errorf("admin without the token: %d, want 401", code)
	}
	if code, _ := adminGet(t, admin, "/health", "evil.example", "tok"); code != http.StatusMisdirectedRequest {
		t.Errorf("admin with a foreign Host: %d, want 421", code)
	}
	var st recorder.AdminStats
	waitFor(t, "3 turns recorded", func() bool {
		code, b := adminGet(t, admin, "/stats", "", "tok")
		if code != http.StatusOK {
			t.Fatalf("admin /stats: %d %s", code, b)
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		return st.Recorded == 3
	})
	if st.ExchangesSeen != 3 || st.Proxy.Passed != 1 || st.NotRecorded != 0 {
		t.Errorf("admin stats %+v", st)
	}

	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	sum := s.Summary()
	if sum.Proxy.Exchanges != 3 || sum.Recorder.Recorded != 3 || sum.Recorder.NotRecorded != 0 || sum.DrainErr != nil || sum.CloseErr != nil {
		t.Errorf("summary %+v", sum)
	}
	b, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"recording":%d,"proxy":{"exchanges":3,`, sum.Recording); !strings.HasPrefix(string(b), want) || strings.Contains(string(b), "_error") {
		t.Errorf("summary JSON %s; want it to start with %s and hold no error", b, want)
	}

	// Stop closed the store it opened: it opens again, with the complete recording.
	store, err := tape.Open(path, &tape.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rec, err := store.Recording(sum.Recording)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Complete || rec.Turns != 3 || rec.Name != "session test" || rec.Source != recorder.SourceRecord ||
		rec.Mode != proxy.ModeReverse || rec.Upstream != up {
		t.Errorf("recording %+v", rec)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"sk-session-secret", "tenant-secret"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the store holds %q", secret)
		}
	}
}

// A start that fails (a port in use) creates no recording, and leaves a store the caller
// opened open and usable.
func TestSessionFailedStartCreatesNoRecording(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	store, _ := mustStore(t)
	for _, cfg := range []recorder.SessionConfig{
		{Listen: busy.Addr().String()},
		{Admin: busy.Addr().String()},
	} {
		cfg.Store, cfg.Proxy.Upstream = store, "http://127.0.0.1:1"
		s, err := recorder.NewSession(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("start on a busy port: %v", err)
		}
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("stop after a failed start: %v", err)
		}
	}
	if n := countRecordings(t, store); n != 0 {
		t.Errorf("failed starts left %d recordings", n)
	}
	s := mustSession(t, recorder.SessionConfig{Store: store, Proxy: proxy.Config{Upstream: "http://127.0.0.1:1"}})
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := countRecordings(t, store); n != 1 {
		t.Errorf("%d recordings after a session on the caller's store, want 1", n)
	}
}

// NewSession refuses a configuration it cannot run, before anything is opened.
func TestNewSessionErrors(t *testing.T) {
	store, _ := mustStore(t)
	for name, cfg := range map[string]recorder.SessionConfig{
		"no store":     {Proxy: proxy.Config{Upstream: "http://127.0.0.1:1"}},
		"bad upstream": {Store: store, Proxy: proxy.Config{Upstream: "ftp://x"}},
		"own sink":     {Store: store, Proxy: proxy.Config{Upstream: "http://127.0.0.1:1", Sink: proxytest.SinkFunc(func(*proxy.Exchange) {})}},
	} {
		if _, err := recorder.NewSession(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// When Stop's context ends before the streams in flight do, they are cut, recorded as
// canceled with what had arrived, and the summary says so; the recording is still complete.
func TestSessionStopCutsStreams(t *testing.T) {
	cfg := simtest.Fast()
	cfg.ITL = 20 * time.Millisecond
	up := simtest.MustStart(t, cfg).URL()
	store, _ := mustStore(t)
	s := mustSession(t, recorder.SessionConfig{Store: store, Proxy: proxy.Config{Upstream: up}})

	body := `{"model":"m","messages":[{"role":"user","content":"a long story"}],"stream":true,"max_tokens":5000,"ignore_eos":true}`
	resp, err := http.Post("http://"+s.Addr().String()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for events := 0; events < 2; {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			events++
		}
	}
	waitFor(t, "the stream in flight", func() bool { return s.Summary().Proxy.InFlight == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	sum := s.Summary()
	if !errors.Is(sum.DrainErr, context.Canceled) || sum.Recorder.Recorded != 1 {
		t.Fatalf("summary %+v; want the drain cut and 1 turn recorded", sum)
	}
	b, _ := json.Marshal(sum)
	if !strings.Contains(string(b), `"drain_error":"drain proxy: context canceled"`) {
		t.Errorf("summary JSON lacks the drain error: %s", b)
	}
	var turns []*tape.Turn
	err = store.Conversations(sum.Recording, func(c *tape.Conversation) error {
		return store.Turns(c.ID, func(tu *tape.Turn) error { turns = append(turns, tu); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(turns) != 1 || turns[0].Response.ErrorClass != "canceled" || turns[0].Response.Content == "" {
		t.Errorf("turns %+v; want one canceled turn with the content so far", turns)
	}
	rec, err := store.Recording(sum.Recording)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Complete {
		t.Errorf("recording %+v is not complete: the cut stream was recorded", rec)
	}
}
