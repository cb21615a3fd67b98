package output

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// DefaultPerm is the permission of a new file when Options.Perm is 0 (before the umask).
const DefaultPerm fs.FileMode = 0o644

// Options say what an output must not be, where "-" goes and how a new file is made. The zero
// value checks nothing and writes "-" to os.Stdout.
type Options struct {
	// Store is the path of the store the command reads or writes; an output that is the same
	// file is refused with ErrIsStore. Empty: no store to protect. A store that does not exist
	// yet is no file to protect either.
	Store string
	// Perm is the permission of a new file, before the umask. Default DefaultPerm. It is
	// ignored for an existing file, which keeps its own.
	Perm fs.FileMode
	// Stdout is where "-" writes. Default os.Stdout.
	Stdout io.Writer
}

func (o *Options) stdout() io.Writer {
	if o.Stdout == nil {
		return os.Stdout
	}
	return o.Stdout
}

// IsStdout reports whether path names standard output: "-" or "".
func IsStdout(path string) bool { return path == "" || path == "-" }

// Check returns an error wrapping ErrIsStore if path is opts.Store (compared with
// os.SameFile, so a symlink, a hard link or another path to it is caught too, and "-" when
// stdout is redirected to the store), ErrIsDir if it is a directory, or the error of
// looking at it. A path where nothing is passes. Check opens and writes nothing: a command
// calls it before it reads anything, and Create calls it again.
func Check(path string, opts Options) error {
	var fi fs.FileInfo
	if IsStdout(path) {
		f, ok := opts.stdout().(interface{ Stat() (fs.FileInfo, error) })
		if !ok {
			return nil
		}
		if fi, _ = f.Stat(); fi == nil {
			return nil
		}
		path = "stdout"
	} else {
		var err error
		fi, err = os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nothing there, or a dangling symlink: no store either
		}
		if err != nil {
			return fmt.Errorf("output %s: %w", path, unwrapPath(err))
		}
	}
	if opts.Store != "" {
		if sfi, err := os.Stat(opts.Store); err == nil && os.SameFile(fi, sfi) {
			return fmt.Errorf("output %s: %w", path, ErrIsStore)
		}
	}
	if fi.IsDir() {
		return fmt.Errorf("output %s: %w", path, ErrIsDir)
	}
	return nil
}

// File is an output being written: Write to it, then Commit to keep it or Close to abandon
// it. Close after Commit does nothing, so `defer f.Close()` is always right. A File is not
// safe for concurrent use.
type File struct {
	path string    // as the user named it, for messages
	w    io.Writer // where Write goes
	f    *os.File  // the open file; nil for stdout
	tmp  string    // the temporary file renamed to target on Commit; "" when written in place
	dest string    // the path the temporary file replaces
	err  error     // the first write error: Commit refuses to keep a short file
	done bool
}

// Create opens the output named by path, following the rules in the package documentation.
// The caller must Commit or Close the File.
func Create(path string, opts Options) (*File, error) {
	if err := Check(path, opts); err != nil {
		return nil, err
	}
	if IsStdout(path) {
		return &File{path: "stdout", w: opts.stdout()}, nil
	}
	dest, descriptor, err := resolve(path)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	if descriptor {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", path, unwrapPath(err))
		}
		return &File{path: path, w: f, f: f}, nil
	}
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		perm := opts.Perm
		if perm == 0 {
			perm = DefaultPerm
		}
		return createTemp(path, dest, perm, false)
	case err != nil:
		return nil, fmt.Errorf("output %s: %w", path, unwrapPath(err))
	case fi.Mode().IsRegular():
		// Renaming needs only the directory's permission; a file the user may not write
		// (0444) is refused as the shell's > would refuse it. Opening without O_TRUNC
		// changes nothing.
		w, err := os.OpenFile(dest, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", path, unwrapPath(err))
		}
		w.Close()
		return createTemp(path, dest, fi.Mode().Perm(), true)
	default:
		// A device, a FIFO, a socket: write where it is. O_TRUNC would be ignored by most of
		// them, but it is never wanted.
		f, err := os.OpenFile(dest, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", path, unwrapPath(err))
		}
		return &File{path: path, w: f, f: f}, nil
	}
}

// createTemp opens a new temporary file beside dest. O_EXCL with a fresh name never opens a
// file that is already there; perm goes through the umask unless exact is set (an existing
// file's mode, set with Chmod).
func createTemp(path, dest string, perm fs.FileMode, exact bool) (*File, error) {
	dir, base := filepath.Split(dest)
	for range 100 {
		tmp := filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(uint64(rand.Uint32()), 36))
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("output %s: create temporary file: %w", path, err)
		}
		if exact {
			if err := f.Chmod(perm); err != nil {
				f.Close()
				os.Remove(tmp)
				return nil, fmt.Errorf("output %s: keep mode %v: %w", path, perm, err)
			}
		}
		return &File{path: path, w: f, f: f, tmp: tmp, dest: dest}, nil
	}
	return nil, fmt.Errorf("output %s: create temporary file in %s: no free name", path, dir)
}

// Write writes p to the output. After a failed write, Commit refuses to keep the file.
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, fmt.Errorf("output %s: %w", f.path, os.ErrClosed)
	}
	n, err := f.w.Write(p)
	if err != nil && f.err == nil {
		f.err = err
	}
	return n, err
}

// Name returns the output's path as it was given ("stdout" for "-").
func (f *File) Name() string { return f.path }

// Commit keeps what was written: it renames the temporary file over the path (after syncing
// it), or closes the device, FIFO or descriptor. If a Write failed, Commit discards the
// temporary file and returns that error. Commit on a committed or closed File is an error.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("output %s: commit: %w", f.path, os.ErrClosed)
	}
	if f.err != nil {
		f.Close()
		return fmt.Errorf("output %s: write: %w", f.path, unwrapPath(f.err))
	}
	f.done = true
	if f.f == nil {
		return nil
	}
	if f.tmp == "" {
		if err := f.f.Close(); err != nil {
			return fmt.Errorf("output %s: close: %w", f.path, unwrapPath(err))
		}
		return nil
	}
	err := f.f.Sync()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.tmp, f.dest)
	}
	if err != nil {
		os.Remove(f.tmp)
		return fmt.Errorf("output %s: %w", f.path, err)
	}
	return nil
}

// Close abandons an output that was not committed: a temporary file is removed and the path
// keeps what it held; a device or FIFO is closed. After Commit, Close does nothing.
func (f *File) Close() error {
	if f.done {
		return nil
	}
	f.done = true
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	if f.tmp != "" {
		if rerr := os.Remove(f.tmp); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("output %s: close: %w", f.path, err)
	}
	return nil
}

// Write creates the output named by path, lets fn write it, and commits it if fn returns nil;
// otherwise the output is abandoned (see File.Close) and fn's error returned as it is.
func Write(path string, opts Options, fn func(w io.Writer) error) error {
	f, err := Create(path, opts)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := fn(f); err != nil {
		return err
	}
	return f.Commit()
}

// fdPath matches the names of this process's own file descriptors: their targets are not
// paths to rename over (a pipe's is "pipe:[123]"), and the shell may have opened them to
// append.
var fdPath = regexp.MustCompile(`^(/dev/(stdin|stdout|stderr)|/dev/fd/\d+|/proc/(self|thread-self|\d+)/fd/\d+)$`)

// resolve follows path's symlinks (those of its last element; the directories' are left to
// the kernel) to the file that is to be written, which need not exist. descriptor is set when
// the chain reaches one of this process's descriptors: then path itself is to be opened.
func resolve(path string) (dest string, descriptor bool, err error) {
	p := path
	for range 255 {
		if fdPath.MatchString(filepath.Clean(p)) {
			return p, true, nil
		}
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return p, false, nil
		}
		if err != nil {
			return "", false, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return p, false, nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", false, err
		}
		if !filepath.IsAbs(target) {
			// Relative to the link's real directory, as the kernel reads it ("..").
			dir, err := filepath.EvalSymlinks(filepath.Dir(p))
			if err != nil {
				return "", false, err
			}
			target = filepath.Join(dir, target)
		}
		p = target
	}
	return "", false, errors.New("too many levels of symbolic links")
}

// unwrapPath drops an *fs.PathError's own path and operation when the message already names
// the output, so errors read "output x.json: permission denied".
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
