//go:build unix

package demo

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

// storeWith writes a store holding recs (none: an empty store).
func storeWith(t *testing.T, path string, recs ...tape.Recording) {
	t.Helper()
	st, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := st.CreateRecording(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFiles(t *testing.T) {
	demoRec := tape.Recording{Name: "demo current", Source: Source, Upstream: "http://127.0.0.1:1"}
	legacy := tape.Recording{Name: "demo current", Source: "record", Upstream: "http://127.0.0.1:1"}
	prod := tape.Recording{Name: "prod", Source: "record", Upstream: "http://gpu:8000"}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, store, report string)
		force bool
		want  error // nil, ErrNotDemo, output.ErrIsStore, or errAny
	}{
		{"nothing there", func(*testing.T, string, string) {}, false, nil},
		{"the demo's store and report", func(t *testing.T, store, report string) {
			storeWith(t, store, demoRec)
			os.WriteFile(report, []byte(ReportMarker+"\n<!DOCTYPE html>"), 0o644)
		}, false, nil},
		{"a store from an older demo", func(t *testing.T, store, _ string) { storeWith(t, store, legacy) }, false, nil},
		{"an empty store", func(t *testing.T, store, _ string) { storeWith(t, store) }, false, nil},
		{"a recorded store", func(t *testing.T, store, _ string) { storeWith(t, store, demoRec, prod) }, false, ErrNotDemo},
		{"a file that is no store", func(t *testing.T, store, _ string) {
			os.WriteFile(store, []byte("notes"), 0o644)
		}, false, ErrNotDemo},
		{"another report", func(t *testing.T, _, report string) {
			os.WriteFile(report, []byte("<!DOCTYPE html>mine"), 0o644)
		}, false, ErrNotDemo},
		{"a report from an older demo", func(t *testing.T, _, report string) {
			os.WriteFile(report, []byte("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"+
				"<title>llmtape compare: base recording 1 (demo current) -&gt; target run 1 (candidate), 12 matched requests</title>"), 0o644)
		}, false, nil},
		{"a short report", func(t *testing.T, _, report string) { os.WriteFile(report, nil, 0o644) }, false, ErrNotDemo},
		{"forced", func(t *testing.T, store, report string) {
			storeWith(t, store, prod)
			os.WriteFile(report, []byte("mine"), 0o644)
		}, true, nil},
		{"a FIFO as the store, even forced", func(t *testing.T, store, _ string) {
			if err := syscall.Mkfifo(store, 0o600); err != nil {
				t.Skip(err)
			}
		}, true, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Store: filepath.Join(dir, "s.db"), Report: filepath.Join(dir, "r.html"), Force: tc.force}
			tc.setup(t, cfg.Store, cfg.Report)
			err := checkFiles(&cfg)
			switch {
			case tc.want == errAny:
				if err == nil {
					t.Error("no error")
				}
			case !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil):
				t.Errorf("checkFiles: %v, want %v", err, tc.want)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestCheckFilesReportIsTheStore(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "s.db")
	for _, report := range []string{store, filepath.Join(dir, ".", "s.db")} {
		// The store does not exist yet: the names alone show it.
		cfg := Config{Store: store, Report: report, Force: true}
		if err := checkFiles(&cfg); !errors.Is(err, output.ErrIsStore) {
			t.Errorf("report %s: %v, want ErrIsStore", report, err)
		}
	}
	storeWith(t, store, tape.Recording{Source: Source})
	link := filepath.Join(dir, "link.html")
	if err := os.Symlink("s.db", link); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: store, Report: link, Force: true}
	if err := checkFiles(&cfg); !errors.Is(err, output.ErrIsStore) {
		t.Errorf("report via a link: %v, want ErrIsStore", err)
	}
}
