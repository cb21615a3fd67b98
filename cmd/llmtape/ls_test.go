package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// lsExec runs the real command tree.
func lsExec(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

// lsStore makes a store with one recording of 3 conversations and one run; it returns the
// path and the first conversation's id.
func lsStore(t *testing.T) (string, *tapetest.Chat) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ls.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := &tape.Recording{Name: "record 2026-11-27", Source: "record", Started: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
		Ended: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC), Complete: true}
	if err := s.CreateRecording(rec); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var first *tapetest.Chat
	err = s.Update(func(tx *tape.Tx) error {
		for i := range 3 {
			c := tapetest.NewChat(rng, rec.ID, s.NextConversationID(), tapetest.Config{Turns: 2 + i, MessageBytes: 120})
			if first == nil {
				first = c
			}
			if err := c.Write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	run := &tape.Run{Name: "vllm-0.11", Target: "http://127.0.0.1:8000", Recording: rec.ID,
		Started: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	if err := s.CreateRun(run); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *tape.Tx) error {
		return tx.PutResult(&tape.Result{Run: run.ID, Seq: 1, Conversation: first.Conversation.ID, Status: 200})
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, first
}

func TestLsTableAndJSON(t *testing.T) {
	path, _ := lsStore(t)
	code, out, errOut := lsExec("ls", "--store", path)
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"RECORDING", "record 2026-11-27", "2026-11-27 09:00:00", "            3      9\n", "RUN", "vllm-0.11", "http://127.0.0.1:8000"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls table lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = lsExec("ls", "--store", path, "--format", "json")
	if code != 0 {
		t.Fatalf("ls --format json: exit %d: %s", code, errOut)
	}
	var got struct {
		Recordings []struct {
			ID                   uint64
			Name                 string
			Started, Ended       *time.Time
			Conversations, Turns int
		}
		Runs []struct {
			ID           uint64
			Name, Target string
			Started      *time.Time
			Ended        *time.Time
			Requests     int
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("ls json: %v\n%s", err, out)
	}
	if len(got.Recordings) != 1 || got.Recordings[0].Conversations != 3 || got.Recordings[0].Turns != 9 ||
		got.Recordings[0].Started == nil || got.Recordings[0].Ended == nil {
		t.Errorf("recordings %+v", got.Recordings)
	}
	if len(got.Runs) != 1 || got.Runs[0].Requests != 1 || got.Runs[0].Target != "http://127.0.0.1:8000" || got.Runs[0].Ended != nil {
		t.Errorf("runs %+v", got.Runs)
	}
	for _, key := range []string{`"id"`, `"name"`, `"started"`, `"ended"`, `"conversations"`, `"turns"`, `"target"`, `"requests"`} {
		if !strings.Contains(out, key) {
			t.Errorf("ls json lacks %s", key)
		}
	}
}

func TestLsEmptyStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.db")
	s, err := tape.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	code, out, _ := lsExec("ls", "--store", path, "--format", "json")
	if code != 0 || !strings.Contains(out, `"recordings": []`) || !strings.Contains(out, `"runs": []`) {
		t.Errorf("ls of an empty store: exit %d\n%s", code, out)
	}
}

func TestLsStoreErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, _ := lsStore(t)
	full, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 100_000)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	db.Close()

	missing := filepath.Join(dir, "x.db")
	tests := []struct {
		name, path, want string
	}{
		{"missing", missing, "store " + missing + " does not exist"},
		{"random bytes", write("random.db", random), "is not an llmtape store"},
		{"truncated", write("truncated.db", full[:len(full)/2]), "is corrupt or truncated"},
		{"foreign bbolt", foreign, "is not an llmtape store (a bbolt file of another program)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := lsExec("ls", "--store", tt.path)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr %q, want one line with %q", errOut, tt.want)
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ls created the missing store: %v", err)
	}
}

func TestLsStoreInUse(t *testing.T) {
	path, _ := lsStore(t)
	s, err := tape.Open(path, nil) // held read-write, as by a running recorder
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, _, errOut := lsExec("ls", "--store", path)
	if code != 1 || !strings.Contains(errOut, "in use by another process") ||
		!strings.Contains(errOut, "llmtape record --admin") || !strings.Contains(errOut, "/snapshot") {
		t.Errorf("ls of a store in use: exit %d, stderr %q", code, errOut)
	}
}

func TestLsBadFormat(t *testing.T) {
	path, _ := lsStore(t)
	if code, _, errOut := lsExec("ls", "--store", path, "--format", "yaml"); code != 2 || !strings.Contains(errOut, "--format") {
		t.Errorf("ls --format yaml: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := lsExec("ls", "extra", "--store", path); code != 2 {
		t.Errorf("ls with an argument: exit %d, want 2", code)
	}
}

// TestLsTableControlCharacters: a name with a tab or a newline stays in its cell, quoted as
// in every table.
func TestLsTableControlCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ls.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRecording(&tape.Recording{Name: "a\tb\nc"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	code, out, errOut := lsExec("ls", "--store", path)
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	// Header, the recording's one row, a blank line, "no runs".
	if len(lines) < 3 || !strings.Contains(lines[1], `a\tb\nc`) || strings.TrimSpace(lines[2]) != "" {
		t.Errorf("ls table:\n%s", out)
	}
}

func TestLsIncompleteRecording(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lost.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*tape.Recording{
		{Name: "lost some", Source: "record", Ended: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC), NotRecorded: 248},
		{Name: "still writing", Source: "record"},
		{Name: "whole", Source: "record", Ended: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC), Complete: true},
	} {
		if err := s.CreateRecording(r); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	code, out, errOut := lsExec("ls", "--store", path)
	if code != 0 || !strings.Contains(out, "(incomplete: 248 not recorded)") || strings.Count(out, "(incomplete") != 2 {
		t.Errorf("ls: exit %d: %s\n%s", code, errOut, out)
	}
	code, out, errOut = lsExec("ls", "--store", path, "--format", "json")
	if code != 0 {
		t.Fatalf("ls --format json: exit %d: %s", code, errOut)
	}
	var got lsOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		status      string
		notRecorded int
	}{{"incomplete", 248}, {"incomplete", 0}, {"complete", 0}}
	for i, r := range got.Recordings {
		if r.Status != want[i].status || r.NotRecorded != want[i].notRecorded {
			t.Errorf("recording %d: status %q, not_recorded %d; want %+v", r.ID, r.Status, r.NotRecorded, want[i])
		}
	}
	for _, key := range []string{`"status": "incomplete"`, `"not_recorded": 248`} {
		if !strings.Contains(out, key) {
			t.Errorf("ls json lacks %s:\n%s", key, out)
		}
	}
}

func TestRecordSummaryStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		rs   recorder.Stats
		err  error
		want string
	}{
		{"complete", recorder.Stats{Recorded: 5}, nil, ""},
		{"dropped", recorder.Stats{NotRecorded: 3, Dropped: 3}, nil, "WARNING: recording 7 is marked incomplete: 3 exchanges were not recorded (0 lost by the store, 3 dropped"},
		{"lost", recorder.Stats{NotRecorded: 2, Lost: 2}, errors.New("writer: 4 records lost"), "WARNING: recording 7 is marked incomplete: 2 exchanges"},
		{"status not written", recorder.Stats{NotRecorded: 2, Lost: 2},
			fmt.Errorf("close recorder: recording 7: %w: no space left on device", recorder.ErrStatusNotWritten),
			"ERROR: recording 7 could not be marked in the store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			recordSummaryStatus(&b, 7, tc.rs, tc.err)
			if tc.want == "" && b.Len() != 0 || !strings.Contains(b.String(), tc.want) {
				t.Errorf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}
