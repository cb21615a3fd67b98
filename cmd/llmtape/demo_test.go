package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/demo"
	"github.com/llmtape/llmtape/tape/tapetest"
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

// The demo refuses a --store or --report that it did not make, leaving it as it was, and
// replaces them with --force.
func TestDemoRefusesFilesItDidNotMake(t *testing.T) {
	dir := t.TempDir()
	store := chatStore(t, "prod.db", rand.NewPCG(3, 4), 1, func(int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 1, MessageBytes: 40}, completion: 3}
	})
	report := filepath.Join(dir, "notes.html")
	if err := os.WriteFile(report, []byte("<p>my notes</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	storeBytes, reportBytes := mustRead(t, store), mustRead(t, report)
	fresh := filepath.Join(dir, "fresh")
	small := []string{"demo", "--conversations", "2", "--think-time", "100ms", "--speed", "4"}
	for _, tc := range []struct {
		args []string
		name string // the file the message names
	}{
		{[]string{"--store", store, "--report", fresh + ".html"}, store},
		{[]string{"--store", fresh + ".db", "--report", report}, report},
		{[]string{"--store", store, "--report", store, "--force"}, store},
	} {
		code, _, errs := execCmd(context.Background(), append(small, tc.args...)...)
		if code != 2 || !strings.Contains(errs, tc.name) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line naming %s", tc.args, code, errs, tc.name)
		}
		if !slices.Contains(tc.args, "--force") && !strings.Contains(errs, "--force") {
			t.Errorf("%v: the message does not mention --force: %q", tc.args, errs)
		}
		unchanged(t, store, storeBytes)
		unchanged(t, report, reportBytes)
		for _, f := range []string{fresh + ".db", fresh + ".html"} {
			if _, err := os.Stat(f); err == nil {
				t.Errorf("%v: the refused demo wrote %s", tc.args, f)
			}
		}
	}

	code, _, errs := execCmd(context.Background(), append(small, "--store", store, "--report", report, "--force")...)
	if code != 0 {
		t.Fatalf("--force: exit %d %s", code, errs)
	}
	if b := mustRead(t, report); !bytes.HasPrefix(b, []byte(demo.ReportMarker)) {
		t.Errorf("--force did not write the demo's report: %.60q", b)
	}
	code, out, errs := execCmd(context.Background(), "ls", "--store", store)
	if code != 0 || !strings.Contains(out, demo.Source) || strings.Contains(out, "TestDemoRefuses") {
		t.Errorf("after --force, ls: exit %d\n%s%s", code, out, errs)
	}
}
