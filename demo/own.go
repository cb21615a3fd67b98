package demo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

// ErrNotDemo is returned (wrapped with the file's name) by Run when Config.Store or
// Config.Report exists and was not made by the demo, and Config.Force is not set.
var ErrNotDemo = errors.New("exists and was not made by the demo")

// Source is the Recording.Source of the recording the demo makes: a store whose recordings
// all have it is the demo's own.
const Source = "demo"

// ReportMarker is the first line of the demo's HTML report: a report that starts with it is
// the demo's own.
const ReportMarker = "<!-- llmtape demo report -->"

// checkFiles refuses, before the demo does anything, to replace a store or report that the
// demo did not make (unless force), a store that is not a regular file, and a report that is
// the store.
func checkFiles(cfg *Config) error {
	fi, err := os.Stat(cfg.Store)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("store %s: %w", cfg.Store, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("store %s: not a regular file: name another file", cfg.Store)
	case !cfg.Force:
		ours, err := isDemoStore(cfg.Store)
		if err != nil {
			return err
		}
		if !ours {
			return fmt.Errorf("store %s %w", cfg.Store, ErrNotDemo)
		}
	}

	sameName := false
	if a, err := filepath.Abs(cfg.Store); err == nil {
		if b, err := filepath.Abs(cfg.Report); err == nil {
			sameName = a == b
		}
	}
	if err := output.Check(cfg.Report, output.Options{Store: cfg.Store}); err != nil || sameName {
		if sameName {
			err = fmt.Errorf("output %s: %w", cfg.Report, output.ErrIsStore)
		}
		return fmt.Errorf("report: %w", err)
	}
	fi, err = os.Stat(cfg.Report)
	if err != nil || !fi.Mode().IsRegular() || cfg.Force {
		return nil // nothing there, or a device or FIFO that nothing replaces
	}
	ours, err := isDemoReport(cfg.Report)
	if err != nil {
		return err
	}
	if !ours {
		return fmt.Errorf("report %s %w", cfg.Report, ErrNotDemo)
	}
	return nil
}

// isDemoStore reports whether the store at path holds nothing but recordings the demo made
// (an llmtape store with no recording holds nothing to lose). Stores made before the demo
// marked its recording are known by the recording's name and local upstream.
func isDemoStore(path string) (bool, error) {
	st, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if errors.Is(err, tape.ErrLocked) {
		return false, fmt.Errorf("store %s: %w", path, err)
	}
	if err != nil {
		return false, nil // not a store, or a damaged one: not ours to replace
	}
	defer st.Close()
	ours := true
	err = st.Recordings(func(r *tape.Recording) error {
		legacy := r.Source == "record" && r.Name == "demo current" && strings.HasPrefix(r.Upstream, "http://127.0.0.1:")
		if r.Source != Source && !legacy {
			ours = false
			return tape.ErrStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, tape.ErrStop) {
		return false, nil
	}
	return ours, nil
}

// isDemoReport reports whether the file at path starts with ReportMarker, or is a report of
// a demo from before the marker: the comparison of the recording with the run "candidate".
func isDemoReport(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("report %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	legacy := bytes.HasPrefix(head, []byte("<!DOCTYPE html>")) &&
		bytes.Contains(head, []byte("<title>llmtape compare: base recording 1 (demo current) -&gt; target run 1 (candidate), "))
	return bytes.HasPrefix(head, []byte(ReportMarker)) || legacy, nil
}
