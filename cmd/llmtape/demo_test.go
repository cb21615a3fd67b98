package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The demo command runs end to end at a small size and writes only its own files, never the
// store named by $LLMTAPE_STORE.
func TestDemoCommand(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LLMTAPE_STORE", filepath.Join(dir, "user.db"))
	store, report := filepath.Join(dir, "demo.db"), filepath.Join(dir, "demo.html")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"demo", "--conversations", "3", "--think-time", "100ms",
		"--speed", "4", "--store", store, "--report", report}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errb.String(), out.String())
	}
	for _, want := range []string{"== 1.", "llmtape analyze", "compare", "Done in", "Next, on your own server"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, f := range []string{store, report} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("demo did not write %s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "user.db")); err == nil {
		t.Errorf("demo wrote the user's store")
	}
	code = run(context.Background(), []string{"demo", "--conversations", "-1"}, &out, &errb)
	if code != 2 {
		t.Errorf("--conversations -1: exit %d, want 2", code)
	}
}
