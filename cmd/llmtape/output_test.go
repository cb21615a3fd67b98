//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The rules of package output, through the real commands: the store is never written over,
// by any name; devices, FIFOs and symlinks stay what they are; a file keeps its mode.

func TestExportNeverWritesTheStore(t *testing.T) {
	store := replayStore(t, 2, 2)
	before := mustRead(t, store)
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.Symlink(store, link); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{store, link} {
		code, stdout, errs := execCmd(context.Background(), "export", "--store", store, "--format", "vllm", "-o", o)
		if code != 2 || !strings.Contains(errs, "is the store") || strings.Count(errs, "\n") != 1 || stdout != "" {
			t.Errorf("-o %s: exit %d, stdout %q, stderr %q; want 2 and one line saying it is the store", o, code, stdout, errs)
		}
		unchanged(t, store, before)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link to the store was replaced (%v)", err)
	}
	// The store is still a store.
	if code, _, errs := execCmd(context.Background(), "export", "--store", store, "--format", "vllm", "-o", os.DevNull); code != 0 {
		t.Errorf("export after the attempts: exit %d %s", code, errs)
	}
}

func TestExportOutputKinds(t *testing.T) {
	store := replayStore(t, 2, 2)
	export := func(t *testing.T, o string) (string, string) {
		t.Helper()
		code, stdout, errs := execCmd(context.Background(), "export", "--store", store, "--format", "vllm", "-o", o)
		if code != 0 {
			t.Fatalf("-o %s: exit %d: %s", o, code, errs)
		}
		return stdout, errs
	}
	isExport := func(t *testing.T, b []byte) {
		t.Helper()
		var convs []json.RawMessage
		if err := json.Unmarshal(b, &convs); err != nil || len(convs) != 2 {
			t.Errorf("not the export of 2 conversations (%v): %.80q", err, b)
		}
	}

	t.Run("stdout", func(t *testing.T) {
		stdout, _ := export(t, "-")
		isExport(t, []byte(stdout))
	})
	t.Run("dev null", func(t *testing.T) {
		if stdout, _ := export(t, os.DevNull); stdout != "" {
			t.Errorf("stdout %q", stdout)
		}
		if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
			t.Fatalf("%s is %v now (%v)", os.DevNull, fi.Mode(), err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		got := make(chan []byte, 1)
		go func() {
			b, _ := os.ReadFile(fifo) // returns at the writer's close
			got <- b
		}()
		export(t, fifo)
		isExport(t, <-got)
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
			t.Errorf("fifo is %v now (%v)", fi.Mode(), err)
		}
	})
	t.Run("symlink", func(t *testing.T) {
		dir := t.TempDir()
		target, link := filepath.Join(dir, "conv.json"), filepath.Join(dir, "latest.json")
		if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("conv.json", link); err != nil {
			t.Fatal(err)
		}
		export(t, link)
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("link replaced (%v)", err)
		}
		isExport(t, mustRead(t, target))
	})
	t.Run("file keeps its mode", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "conv.json")
		if err := os.WriteFile(f, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o640); err != nil {
			t.Fatal(err)
		}
		_, errs := export(t, f)
		if !strings.Contains(errs, "exported recording") {
			t.Errorf("stderr %q", errs)
		}
		isExport(t, mustRead(t, f))
		if fi, err := os.Stat(f); err != nil || fi.Mode() != 0o640 {
			t.Errorf("mode %v, want 0640 (%v)", fi.Mode(), err)
		}
		if es, _ := os.ReadDir(dir); len(es) != 1 {
			t.Errorf("directory holds %d files, want 1", len(es))
		}
	})
}

func TestAnalysisOutputNeverWritesTheStore(t *testing.T) {
	store := buildHandStore(t)
	before := mustRead(t, store)
	dir := t.TempDir()
	link, hard := filepath.Join(dir, "link.db"), filepath.Join(dir, "hard.db")
	if err := os.Symlink(store, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(store, hard); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"analyze", "--format", "csv"},
		{"report", "--run", "slow", "--format", "html"},
		{"compare", "recording", "slow", "--format", "json"},
	} {
		for _, o := range []string{link, hard} {
			a := append([]string{"--store", store}, args...)
			code, _, errs := execCmd(context.Background(), append(a, "-o", o)...)
			if code != 2 || !strings.Contains(errs, "is the store") || strings.Count(errs, "\n") != 1 {
				t.Errorf("%v -o %s: exit %d, stderr %q; want 2, one line saying it is the store", args, o, code, errs)
			}
		}
		unchanged(t, store, before)
	}

	// A symlink to a report is followed, not replaced.
	target := filepath.Join(dir, "report.html")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	rl := filepath.Join(dir, "report-link.html")
	if err := os.Symlink("report.html", rl); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"analyze", "--format", "html"},
		{"report", "--run", "slow", "--format", "html"},
		{"compare", "recording", "slow", "--format", "html"},
	} {
		if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs := execCmd(context.Background(), append(append([]string{"--store", store}, args...), "-o", rl)...)
		if code != 0 {
			t.Fatalf("%v -o link: exit %d %s", args, code, errs)
		}
		if fi, err := os.Lstat(rl); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("%v: link replaced (%v)", args, err)
		}
		if b := mustRead(t, target); !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) {
			t.Errorf("%v: target holds %.40q", args, b)
		}
	}
}

func TestReplayJSONNeverWritesTheStore(t *testing.T) {
	store := replayStore(t, 1, 1)
	before := mustRead(t, store)
	link := filepath.Join(t.TempDir(), "summary.json")
	if err := os.Symlink(store, link); err != nil {
		t.Fatal(err)
	}
	code, _, errs := execCmd(context.Background(), "replay", "--store", store, "--target", "http://127.0.0.1:9", "--json", link)
	if code != 2 || !strings.Contains(errs, "is the store") {
		t.Errorf("exit %d, stderr %q; want 2 saying it is the store", code, errs)
	}
	unchanged(t, store, before)
}
