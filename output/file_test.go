//go:build unix

package output_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/llmtape/llmtape/output"
)

// layout is a directory holding a store, a regular file and links to both.
type layout struct {
	dir, store, file string
}

func newLayout(t *testing.T) layout {
	t.Helper()
	dir := t.TempDir()
	l := layout{dir: dir, store: filepath.Join(dir, "store.db"), file: filepath.Join(dir, "file.txt")}
	mustWrite(t, l.store, "STORE", 0o600)
	mustWrite(t, l.file, "old", 0o640)
	return l
}

func mustWrite(t *testing.T, path, data string, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// names lists the directory, so that a test sees a temporary file left behind.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	return n
}

func umask() fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
}

func TestWriteRefusesTheStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(l layout) string
	}{
		{"same path", func(l layout) string { return l.store }},
		{"another path", func(l layout) string { return filepath.Join(l.dir, ".", "x", "..", "store.db") }},
		{"symlink", func(l layout) string {
			p := filepath.Join(l.dir, "link.db")
			if err := os.Symlink("store.db", p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"hard link", func(l layout) string {
			p := filepath.Join(l.dir, "hard.db")
			if err := os.Link(l.store, p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayout(t)
			if tc.name == "another path" {
				if err := os.Mkdir(filepath.Join(l.dir, "x"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			p := tc.path(l)
			before := names(t, l.dir)
			if err := output.Check(p, output.Options{Store: l.store}); !errors.Is(err, output.ErrIsStore) {
				t.Errorf("Check: %v, want ErrIsStore", err)
			}
			called := false
			err := output.Write(p, output.Options{Store: l.store}, func(w io.Writer) error {
				called = true
				return writeString("oops")(w)
			})
			if !errors.Is(err, output.ErrIsStore) {
				t.Fatalf("Write: %v, want ErrIsStore", err)
			}
			if called {
				t.Error("Write called fn for the store")
			}
			if got := readFile(t, l.store); got != "STORE" {
				t.Errorf("store holds %q", got)
			}
			if fmt.Sprint(names(t, l.dir)) != fmt.Sprint(before) {
				t.Errorf("directory changed: %v, was %v", names(t, l.dir), before)
			}
		})
	}
}

func TestWriteStdoutThatIsTheStore(t *testing.T) {
	l := newLayout(t)
	f, err := os.OpenFile(l.store, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = output.Write("-", output.Options{Store: l.store, Stdout: f}, writeString("oops"))
	if !errors.Is(err, output.ErrIsStore) {
		t.Fatalf("Write: %v, want ErrIsStore", err)
	}
	if got := readFile(t, l.store); got != "STORE" {
		t.Errorf("store holds %q", got)
	}
}

func TestWriteFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, l layout) string // returns the path to write
		check func(t *testing.T, l layout, path string)
	}{
		{"new file gets 0644 less the umask", func(t *testing.T, l layout) string {
			return filepath.Join(l.dir, "new.txt")
		}, func(t *testing.T, l layout, p string) {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if want := 0o644 &^ umask(); fi.Mode() != want {
				t.Errorf("mode %v, want %v", fi.Mode(), want)
			}
		}},
		{"existing file keeps its mode", func(t *testing.T, l layout) string {
			return l.file
		}, func(t *testing.T, l layout, p string) {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o640 {
				t.Errorf("mode %v, want 0640", fi.Mode())
			}
		}},
		{"symlink stays a symlink", func(t *testing.T, l layout) string {
			p := filepath.Join(l.dir, "link.txt")
			if err := os.Symlink("file.txt", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, func(t *testing.T, l layout, p string) {
			if fi, err := os.Lstat(p); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("link replaced: %v %v", fi.Mode(), err)
			}
			if got := readFile(t, l.file); got != "new" {
				t.Errorf("target holds %q", got)
			}
		}},
		{"chain of symlinks through a directory link", func(t *testing.T, l layout) string {
			sub := filepath.Join(l.dir, "sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../file.txt", filepath.Join(sub, "a")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("sub", filepath.Join(l.dir, "subl")); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(l.dir, "b")
			if err := os.Symlink(filepath.Join("subl", "a"), p); err != nil {
				t.Fatal(err)
			}
			return p
		}, func(t *testing.T, l layout, p string) {
			if fi, err := os.Lstat(p); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("link replaced: %v", err)
			}
			if got := readFile(t, l.file); got != "new" {
				t.Errorf("target holds %q", got)
			}
		}},
		{"dangling symlink gets its target", func(t *testing.T, l layout) string {
			p := filepath.Join(l.dir, "dangling")
			if err := os.Symlink("made.txt", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, func(t *testing.T, l layout, p string) {
			if fi, err := os.Lstat(p); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("link replaced: %v", err)
			}
			if got := readFile(t, filepath.Join(l.dir, "made.txt")); got != "new" {
				t.Errorf("target holds %q", got)
			}
		}},
		{"dev null stays a device", func(t *testing.T, l layout) string {
			return os.DevNull
		}, func(t *testing.T, l layout, p string) {
			fi, err := os.Stat(p)
			if err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
				t.Errorf("%s is %v now (%v)", p, fi.Mode(), err)
			}
		}},
		{"descriptor is appended to", func(t *testing.T, l layout) string {
			if _, err := os.Stat("/dev/fd"); err != nil {
				t.Skip("no /dev/fd")
			}
			f, err := os.OpenFile(l.file, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return "/dev/fd/" + strconv.Itoa(int(f.Fd()))
		}, func(t *testing.T, l layout, p string) {
			if got := readFile(t, l.file); got != "oldnew" {
				t.Errorf("file holds %q, want %q", got, "oldnew")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayout(t)
			p := tc.setup(t, l)
			if err := output.Write(p, output.Options{Store: l.store}, writeString("new")); err != nil {
				t.Fatal(err)
			}
			if p != os.DevNull && tc.name != "descriptor is appended to" {
				if got := readFile(t, p); got != "new" {
					t.Errorf("%s holds %q", p, got)
				}
			}
			tc.check(t, l, p)
			for _, n := range names(t, l.dir) {
				if n[0] == '.' {
					t.Errorf("temporary file %s left behind", n)
				}
			}
		})
	}
}

func TestWriteFIFO(t *testing.T) {
	l := newLayout(t)
	p := filepath.Join(l.dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	got := make(chan string, 1)
	go func() {
		b, err := os.ReadFile(p)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	if err := output.Write(p, output.Options{Store: l.store}, writeString("through the pipe")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "through the pipe" {
		t.Errorf("reader got %q", s)
	}
	if fi, err := os.Lstat(p); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("fifo is %v now (%v)", fi.Mode(), err)
	}
}

func TestWriteFailureKeepsTheOldFile(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		fn   func(w io.Writer) error
		want error
	}{
		{"fn fails after writing", func(w io.Writer) error { writeString("partial")(w); return boom }, boom},
		{"fn fails at once", func(io.Writer) error { return boom }, boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayout(t)
			if err := output.Write(l.file, output.Options{}, tc.fn); !errors.Is(err, tc.want) {
				t.Fatalf("Write: %v, want %v", err, tc.want)
			}
			if got := readFile(t, l.file); got != "old" {
				t.Errorf("file holds %q", got)
			}
			if n := names(t, l.dir); len(n) != 2 {
				t.Errorf("directory holds %v", n)
			}
		})
	}
}

func TestWriteRefusesAReadOnlyFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write any file")
	}
	l := newLayout(t)
	mustWrite(t, l.file, "old", 0o444)
	if err := output.Write(l.file, output.Options{}, writeString("new")); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Write: %v, want permission denied", err)
	}
	if got := readFile(t, l.file); got != "old" {
		t.Errorf("file holds %q", got)
	}
}

func TestFileCloseWithoutCommit(t *testing.T) {
	l := newLayout(t)
	f, err := output.Create(l.file, output.Options{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "abandoned")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Commit after Close: %v, want os.ErrClosed", err)
	}
	if got := readFile(t, l.file); got != "old" {
		t.Errorf("file holds %q", got)
	}
	if n := names(t, l.dir); len(n) != 2 {
		t.Errorf("directory holds %v", n)
	}
}

func TestWriteStdoutAndDirectory(t *testing.T) {
	var buf bytes.Buffer
	if err := output.Write("-", output.Options{Stdout: &buf}, writeString("hi")); err != nil || buf.String() != "hi" {
		t.Errorf("stdout: %q, %v", buf.String(), err)
	}
	dir := t.TempDir()
	if err := output.Write(dir, output.Options{}, writeString("hi")); !errors.Is(err, output.ErrIsDir) {
		t.Errorf("directory: %v, want ErrIsDir", err)
	}
}
