package tape_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
	bolt "go.etcd.io/bbolt"
)

// storeWithData makes a store of a few conversations and returns its path (closed).
func storeWithData(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := tapetest.Recording(t, s)
	rng := rand.New(rand.NewPCG(3, 4))
	err = s.Update(func(tx *tape.Tx) error {
		for range 200 {
			c := tapetest.NewChat(rng, rec.ID, s.NextConversationID(), tapetest.Config{Turns: 10, MessageBytes: 300})
			if err := c.Write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenCreatesWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	s, err := tape.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rng := rand.New(rand.NewPCG(1, 1))
	random := make([]byte, 1<<16)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}

	good := storeWithData(t)
	full, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := write("truncated.db", full[:len(full)/2])

	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("widgets"))
		if err != nil {
			return err
		}
		return b.Put([]byte("a"), []byte("b"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	newer := storeWithData(t)
	db, err = bolt.Open(newer, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte{0, 0, 0, 99})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	tests := []struct {
		name     string
		path     string
		readOnly bool
		want     error
		msg      string
	}{
		{"missing read-only", filepath.Join(dir, "missing.db"), true, tape.ErrNotExist, "does not exist"},
		{"random bytes", write("random.db", random), true, tape.ErrNotStore, "not an llmtape store"},
		{"random bytes read-write", write("random2.db", random), false, tape.ErrNotStore, "not an llmtape store"},
		{"short file", write("short.db", []byte("hello")), true, tape.ErrNotStore, "not an llmtape store"},
		{"empty file read-only", write("empty.db", nil), true, tape.ErrNotStore, "not an llmtape store"},
		{"text file", write("text.db", []byte(strings.Repeat("not a database\n", 1000))), true, tape.ErrNotStore, "not an llmtape store"},
		{"foreign bbolt", foreign, true, tape.ErrNotStore, "another program"},
		{"foreign bbolt read-write", foreign, false, tape.ErrNotStore, "another program"},
		{"newer schema", newer, true, tape.ErrNewerSchema, "newer schema"},
		{"truncated", truncated, true, tape.ErrCorrupt, "corrupt or truncated"},
		{"directory", dir, true, tape.ErrNotStore, "not an llmtape store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tape.Open(tt.path, &tape.Options{ReadOnly: tt.readOnly, Timeout: time.Second})
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open error %q, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("Open error %q does not say %q and name %s", err, tt.msg, tt.path)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open created the missing file: %v", err)
	}

	// Pages overwritten with garbage (meta pages intact): Open or the scans fail with a
	// clear error, never a panic or a crash.
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("garbled pages %d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			garbled := append([]byte(nil), full...)
			const page = 32 << 10
			for range 1 + rng.IntN(4) {
				at := 2*page + rng.IntN(len(garbled)-2*page-64)
				n := 1 + rng.IntN(min(4096, len(garbled)-at))
				for i := at; i < at+n; i++ {
					garbled[i] = byte(rng.Uint32())
				}
			}
			path := write(fmt.Sprintf("garbled%d.db", seed), garbled)
			s, err := tape.Open(path, &tape.Options{ReadOnly: true})
			if err != nil {
				if !errors.Is(err, tape.ErrCorrupt) {
					t.Fatalf("Open: %v", err)
				}
				return
			}
			defer s.Close()
			err = s.Recordings(func(r *tape.Recording) error {
				return s.Conversations(r.ID, func(c *tape.Conversation) error {
					return s.TurnMessages(c.ID, func(*tape.Turn, []json.RawMessage) error { return nil })
				})
			})
			if err != nil && !errors.Is(err, tape.ErrCorrupt) && !errors.Is(err, tape.ErrNotFound) {
				t.Fatalf("scan of a garbled store: %v", err)
			}
		})
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := tape.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, ro := range []bool{false, true} {
		start := time.Now()
		_, err := tape.Open(path, &tape.Options{ReadOnly: ro, Timeout: 100 * time.Millisecond})
		if !errors.Is(err, tape.ErrLocked) {
			t.Fatalf("second Open (read-only %v): %v, want ErrLocked", ro, err)
		}
		if !strings.Contains(err.Error(), "in use by another process") {
			t.Errorf("error %q does not say the store is in use", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("second Open took %v", d)
		}
	}
}

// TestOpenLockedByProcess holds the lock in a child process (this test binary).
func TestOpenLockedByProcess(t *testing.T) {
	if path := os.Getenv("TAPE_TEST_HOLD"); path != "" {
		s, err := tape.Open(path, nil)
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("ready\n")
		var b [1]byte
		os.Stdin.Read(b[:]) // until the parent closes stdin
		s.Close()
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "s.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenLockedByProcess$")
	cmd.Env = append(os.Environ(), "TAPE_TEST_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	_, err = tape.Open(path, &tape.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if !errors.Is(err, tape.ErrLocked) {
		t.Fatalf("Open of a store held by another process: %v, want ErrLocked", err)
	}
}

func TestClosed(t *testing.T) {
	s := tapetest.MustOpen(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Recordings(func(*tape.Recording) error { return nil }); !errors.Is(err, tape.ErrClosed) {
		t.Errorf("Recordings after Close: %v", err)
	}
	if err := s.CreateRecording(&tape.Recording{}); !errors.Is(err, tape.ErrClosed) {
		t.Errorf("CreateRecording after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestOpenOneMetaPageDamaged: bbolt keeps two meta pages; with one damaged the store opens
// from the other (which may be one transaction older).
func TestOpenOneMetaPageDamaged(t *testing.T) {
	path := storeWithData(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for page := range 2 {
		damaged := append([]byte(nil), data...)
		for i := page*32<<10 + 16 + 40; i < page*32<<10+16+56; i++ { // its pgid and txid
			damaged[i] ^= 0x5a
		}
		p := filepath.Join(t.TempDir(), "meta.db")
		if err := os.WriteFile(p, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := tape.Open(p, &tape.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("meta page %d damaged: %v", page, err)
		}
		n := 0
		err = s.Recordings(func(r *tape.Recording) error { n++; return nil })
		s.Close()
		if err != nil || n != 1 {
			t.Errorf("meta page %d damaged: %d recordings, %v", page, n, err)
		}
	}
}
