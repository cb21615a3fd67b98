package demo_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/demo"
	"github.com/llmtape/llmtape/tape"
)

// TestRunSmall runs the whole demo at a small size: simulators, recording proxy, replay,
// analysis, comparison and the HTML report, all on 127.0.0.1.
func TestRunSmall(t *testing.T) {
	dir := t.TempDir()
	cfg := demo.Config{
		Store:         filepath.Join(dir, "demo.db"),
		Report:        filepath.Join(dir, "demo-report.html"),
		Conversations: 6,
		Turns:         3,
		ThinkTime:     200 * time.Millisecond,
		Rate:          20,
		Speed:         4,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := demo.Run(ctx, cfg, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"prefix reuse", "schedule lag", "by turn index", "Next, on your own server"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}

	st, err := tape.Open(cfg.Store, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recs []*tape.Recording
	st.Recordings(func(r *tape.Recording) error { recs = append(recs, r); return nil })
	if len(recs) != 1 || !recs[0].Complete {
		t.Fatalf("want one complete recording, got %+v", recs)
	}
	if recs[0].Source != demo.Source {
		t.Errorf("recording source %q, want %q: a later demo would not know the store", recs[0].Source, demo.Source)
	}
	if recs[0].Turns < cfg.Conversations*2 {
		t.Errorf("recording has %d turns, want at least %d", recs[0].Turns, cfg.Conversations*2)
	}
	// Every conversation was found by prefix matching: as many conversations as generated.
	if recs[0].Conversations != cfg.Conversations {
		t.Errorf("recording has %d conversations, want %d", recs[0].Conversations, cfg.Conversations)
	}
	var errs int
	st.Conversations(recs[0].ID, func(c *tape.Conversation) error {
		return st.Turns(c.ID, func(tu *tape.Turn) error {
			if tu.Response.ErrorClass != "" {
				errs++
				t.Errorf("conversation %d turn %d recorded as %s: %s", c.ID, tu.Index, tu.Response.ErrorClass, tu.Response.Error)
			}
			return nil
		})
	})
	run, err := st.FindRun("candidate")
	if err != nil {
		t.Fatal(err)
	}
	if run.Requests != recs[0].Turns {
		t.Errorf("replay sent %d requests, recording has %d turns", run.Requests, recs[0].Turns)
	}
	html, err := os.ReadFile(cfg.Report)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("report has no chart")
	}
	if !bytes.HasPrefix(html, []byte(demo.ReportMarker+"\n<!DOCTYPE html>")) {
		t.Errorf("report does not start with the demo's marker: %.60q", html)
	}
}
