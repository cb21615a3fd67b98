//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/llmtape/llmtape/tape"
)

// mountSmallTmpfs mounts a tmpfs of size bytes on a new directory, or skips the test when this
// process may not mount (not root, or no CAP_SYS_ADMIN in a container).
func mountSmallTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("SKIP: cannot mount a %d-byte tmpfs for a real full disk (%v); needs root with mount permission. TestFullDisk* in ./recorder cover the same with an injected ENOSPC", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file that leaves about room bytes free on dir's file system.
func fillDisk(t *testing.T, dir string, room int64) string {
	t.Helper()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	avail := int64(fs.Bavail) * fs.Bsize
	if avail <= room {
		t.Fatalf("only %d bytes free on %s", avail, dir)
	}
	path := filepath.Join(dir, "filler")
	if err := os.WriteFile(path, make([]byte, avail-room), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRecordFullDiskMarksRecordingIncomplete runs the real record command on a store in a small
// tmpfs, fills the tmpfs while traffic goes on, then makes room again. Every client gets its
// whole response; record exits non-zero and says the recording is incomplete; the store holds no
// conversation without turns, and stored turns + not_recorded = exchanges sent; ls shows it.
func TestRecordFullDiskMarksRecordingIncomplete(t *testing.T) {
	dir := mountSmallTmpfs(t, 8<<20)
	up := recStartSim(t, 0, 0)
	store := filepath.Join(dir, "rec.db")
	rp := recRun(t, "--upstream", up, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--store", store)
	addr, admin, errb := rp.addr, rp.admin, rp.errb
	sent := 0
	chat := func() {
		t.Helper()
		// 8 KB of distinct prompt a turn, so the disk fills after a few dozen.
		prompt := fmt.Sprintf("exchange %d: %s", sent, strings.Repeat("fill the disk ", 600))
		body, err := recChat(http.DefaultClient, "http://"+addr, prompt, 16, nil)
		if err != nil || !bytes.HasSuffix(bytes.TrimSpace(body), []byte("data: [DONE]")) {
			t.Fatalf("exchange %d: %v, body %q: the proxy must keep serving in full", sent, err, body)
		}
		sent++
	}
	for range 5 {
		chat()
	}
	recWaitFor(t, "5 turns stored", func() bool { return recAdminStats(t, admin).Recorder.Stored >= 10 })

	filler := fillDisk(t, dir, 128<<10)
	for recAdminStats(t, admin).Recorder.Lost == 0 {
		if sent > 2000 {
			t.Fatalf("the store never failed on a full tmpfs: %+v", recAdminStats(t, admin))
		}
		chat()
	}
	for range 5 {
		chat()
	}
	recWaitFor(t, "every exchange recorded or lost", func() bool {
		st := recAdminStats(t, admin)
		return st.QueueDepth == 0 && st.Recorder.Stored+st.Recorder.Lost*2 >= uint64(2*sent)
	})
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		chat()
	}
	recWaitFor(t, "the last exchanges captured", func() bool { return recAdminStats(t, admin).ExchangesSeen == int64(sent) })

	rp.cancel() // SIGTERM
	if c := <-rp.code; c == 0 {
		t.Errorf("record exited 0 after the store lost records:\n%s", errb.String())
	}
	if !strings.Contains(errb.String(), "is marked incomplete") {
		t.Errorf("stderr does not say the recording is incomplete:\n%s", errb.String())
	}

	s, err := tape.Open(store, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var rec *tape.Recording
	stored, empty := 0, 0
	err = s.Recordings(func(r *tape.Recording) error {
		rec = r
		return s.Conversations(r.ID, func(c *tape.Conversation) error {
			n := 0
			err := s.Turns(c.ID, func(*tape.Turn) error { n++; return nil })
			if n == 0 {
				empty++
			}
			stored += n
			return err
		})
	})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.Status() != tape.StatusIncomplete || rec.NotRecorded == 0 || stored+rec.NotRecorded != sent || empty != 0 {
		t.Fatalf("recording %+v: %d turns stored, %d conversations without turns; want incomplete, stored + not recorded = %d sent, none empty",
			rec, stored, empty, sent)
	}
	if stored < 10 {
		t.Errorf("only %d turns stored: the exchanges before the disk filled and after it had room should be", stored)
	}

	code2, lsOut, lsErr := lsExec("ls", "--store", store, "--format", "json")
	if code2 != 0 {
		t.Fatalf("ls: exit %d: %s", code2, lsErr)
	}
	var ls lsOutput
	if err := json.Unmarshal([]byte(lsOut), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.Recordings) != 1 || ls.Recordings[0].Status != "incomplete" || ls.Recordings[0].NotRecorded != rec.NotRecorded ||
		ls.Recordings[0].Complete || ls.Recordings[0].Turns != stored {
		t.Errorf("ls --format json: %s", lsOut)
	}
	t.Logf("%d exchanges sent, %d stored, %d not recorded", sent, stored, rec.NotRecorded)
}
