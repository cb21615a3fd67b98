package tape

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the version of the store layout that this package writes and reads. A
// store with a higher version is refused with ErrNewerSchema.
const SchemaVersion = 1

// DefaultTimeout is how long Open waits for another process's lock when Options.Timeout is 0.
const DefaultTimeout = time.Second

// pageSize is the bbolt page size of new stores. Turns are a few KB each; with bbolt's default
// 4 KB pages a leaf holding two of them spills over into a second page, wasting up to half of
// the file. 32 KB pages keep the waste to a fraction of one turn per page.
const pageSize = 32 << 10

// initialMmapSize is the address space bbolt maps when it opens a store: 1 GB on 64-bit
// systems.
const initialMmapSize = (strconv.IntSize / 64) << 30

// formatMagic identifies an llmtape store in the meta bucket.
const formatMagic = "llmtape"

// Options configure Open. A nil *Options opens read-write with the defaults.
type Options struct {
	// ReadOnly opens the store for reading (with a shared lock); a missing file is ErrNotExist
	// and is not created.
	ReadOnly bool
	// Timeout is how long to wait for another process's lock before failing with ErrLocked.
	// 0 means DefaultTimeout (1s); a negative value fails at once.
	Timeout time.Duration
	// NoSync skips fsync after each commit: for tests and benchmarks only (a crash can lose or
	// corrupt the store).
	NoSync bool
	// WriteFault, if set, is called at the end of every write transaction, before its commit;
	// an error it returns fails the transaction as a full disk or an I/O error would: nothing
	// of it is committed and the error is returned. For tests of what a failing store does.
	WriteFault func() error
}

// Store is an open llmtape store. Its methods are safe for concurrent use.
type Store struct {
	db       *bolt.DB
	path     string
	readOnly bool
	nextConv atomic.Uint64
	fault    func() error // Options.WriteFault

	mu     sync.RWMutex // guards closed against the methods that use db
	closed bool
}

// Open opens the store at path. See Options; opts may be nil.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	} else if timeout < 0 {
		timeout = time.Nanosecond
	}
	info, statErr := os.Stat(path)
	switch {
	case statErr == nil && info.IsDir():
		return nil, openErr(path, ErrNotStore, "(a directory)")
	case errors.Is(statErr, os.ErrNotExist) && o.ReadOnly:
		return nil, openErr(path, ErrNotExist, "")
	case statErr == nil && info.Size() == 0 && o.ReadOnly:
		return nil, openErr(path, ErrNotStore, "(empty file)")
	case statErr == nil && info.Size() > 0:
		if err := checkFile(path, info.Size()); err != nil {
			return nil, err
		}
	}
	db, err := openBolt(path, &bolt.Options{
		Timeout:      timeout,
		ReadOnly:     o.ReadOnly,
		NoSync:       o.NoSync,
		PageSize:     pageSize,
		FreelistType: bolt.FreelistMapType,
		// Map 1 GB from the start (address space, not memory) so that a growing store is not
		// remapped: a remap waits for every read transaction, and one that nests another
		// (a scan whose callback calls the store) would then wait forever.
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, openErr(path, ErrLocked, "")
		case errors.Is(err, os.ErrNotExist) && o.ReadOnly:
			return nil, openErr(path, ErrNotExist, "")
		case errors.Is(err, ErrCorrupt):
			return nil, openErr(path, ErrCorrupt, "")
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
			errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
			return nil, openErr(path, ErrCorrupt, "("+err.Error()+")")
		}
		if _, ok := errors.AsType[*fs.PathError](err); ok {
			return nil, fmt.Errorf("open store: %w", err) // it names the file
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, path: path, readOnly: o.ReadOnly, fault: o.WriteFault}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// openBolt opens the bbolt file, turning a panic on a damaged file into ErrCorrupt.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return bolt.Open(path, 0o600, o)
}

// openError is an error of Open: it names the store and wraps one of the sentinel errors.
type openError struct {
	path   string
	err    error
	detail string
}

func openErr(path string, err error, detail string) error {
	return &openError{path: path, err: err, detail: detail}
}

func (e *openError) Error() string {
	var msg string
	switch e.err {
	case ErrNotExist:
		msg = "store " + e.path + " does not exist"
	case ErrNotStore:
		msg = e.path + " is not an llmtape store"
	case ErrNewerSchema:
		msg = "store " + e.path + " has a newer schema than this llmtape reads; upgrade llmtape"
	case ErrCorrupt:
		msg = "store " + e.path + " is corrupt or truncated"
	case ErrLocked:
		msg = "store " + e.path + " is in use by another process"
	default:
		msg = "open store " + e.path + ": " + e.err.Error()
	}
	if e.detail != "" {
		msg += " " + e.detail
	}
	return msg
}

func (e *openError) Unwrap() error { return e.err }

// bbolt's file format, as much as checkFile needs of it.
const (
	boltMagic       = 0xED0CDAED
	boltMetaOffset  = 16 // page header: id u64, flags u16, count u16, overflow u32
	boltMetaMinSize = boltMetaOffset + 64
)

// checkFile tells a bbolt file from other bytes before bbolt maps it, and catches a truncated
// file, whose missing pages bbolt would otherwise fault on.
func checkFile(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return openErr(path, ErrNotExist, "")
		}
		return fmt.Errorf("open store %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, boltMetaMinSize)
	if _, err := io.ReadFull(f, head); err != nil {
		return openErr(path, ErrNotStore, "(too short)")
	}
	le := binary.LittleEndian
	if le.Uint32(head[boltMetaOffset:]) != boltMagic {
		return openErr(path, ErrNotStore, "")
	}
	ps := int64(le.Uint32(head[boltMetaOffset+8:]))
	if ps < 512 || ps > 1<<20 {
		return openErr(path, ErrCorrupt, "(bad page size)")
	}
	// Use the newer of the two meta pages that are intact.
	var hwm, txid uint64
	for i := int64(0); i < 2; i++ {
		m := make([]byte, boltMetaMinSize)
		if _, err := f.ReadAt(m, i*ps); err != nil {
			continue
		}
		meta := m[boltMetaOffset:]
		if le.Uint32(meta) != boltMagic {
			continue
		}
		h := fnv.New64a()
		h.Write(meta[:56])
		if h.Sum64() != le.Uint64(meta[56:]) {
			continue // torn or damaged: bbolt uses the other meta page
		}
		// meta: magic u32, version u32, pageSize u32, flags u32, root {pgid, seq}, freelist
		// pgid, pgid (high water mark), txid, checksum.
		pg := le.Uint64(m[boltMetaOffset+40:])
		tx := le.Uint64(m[boltMetaOffset+48:])
		if tx >= txid {
			hwm, txid = pg, tx
		}
	}
	if hwm == 0 {
		return openErr(path, ErrCorrupt, "")
	}
	if need := int64(hwm) * ps; need > size {
		return openErr(path, ErrCorrupt, fmt.Sprintf("(%d bytes, needs %d)", size, need))
	}
	return nil
}

// init checks (read-only) or creates (read-write, new file) the meta bucket and primes the
// conversation id counter.
func (s *Store) init() error {
	check := func(tx *bolt.Tx) (fresh bool, err error) {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return errStop })
			if empty {
				return true, nil
			}
			return false, openErr(s.path, ErrNotStore, "(a bbolt file of another program)")
		}
		if !bytes.Equal(meta.Get(keyFormat), []byte(formatMagic)) {
			return false, openErr(s.path, ErrNotStore, "(a bbolt file of another program)")
		}
		v := meta.Get(keySchema)
		if len(v) != 4 {
			return false, openErr(s.path, ErrCorrupt, "(bad schema version)")
		}
		if n := binary.BigEndian.Uint32(v); n > SchemaVersion {
			return false, openErr(s.path, ErrNewerSchema, fmt.Sprintf("(schema %d, this llmtape reads up to %d)", n, SchemaVersion))
		}
		for _, name := range dataBuckets {
			if tx.Bucket(name) == nil {
				return false, openErr(s.path, ErrCorrupt, fmt.Sprintf("(bucket %q missing)", name))
			}
		}
		return false, nil
	}
	var fresh bool
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		fresh, err = check(tx)
		if err != nil || fresh {
			return err
		}
		s.nextConv.Store(maxConversationID(tx))
		return nil
	})
	if err != nil {
		var oe *openError
		if errors.As(err, &oe) {
			return err
		}
		if errors.Is(err, ErrCorrupt) {
			return openErr(s.path, ErrCorrupt, "")
		}
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	if !fresh {
		return nil
	}
	if s.readOnly {
		return openErr(s.path, ErrNotStore, "(an empty bbolt file)")
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		v := binary.BigEndian.AppendUint32(nil, SchemaVersion)
		if err := meta.Put(keySchema, v); err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte(formatMagic)); err != nil {
			return err
		}
		for _, name := range dataBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create store %s: %w", s.path, err)
	}
	return nil
}

// errStop is the internal early stop of bbolt ForEach loops.
var errStop = errors.New("stop")

// Path returns the file name the store was opened with.
func (s *Store) Path() string { return s.path }

// Close closes the store. Writers of the store must be closed first.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.readOnly {
		s.trimFile()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// trimFile cuts the space that bbolt allocated ahead (up to a few MB) off the end of the file,
// so that a closed store takes what its pages take. It runs with no transaction open, while
// the lock is still held; a failure only leaves the file longer.
func (s *Store) trimFile() {
	var used int64
	if err := s.db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil }); err != nil || used <= 0 {
		return
	}
	if fi, err := os.Stat(s.path); err == nil && fi.Size() > used {
		_ = os.Truncate(s.path, used)
	}
}

// NextConversationID returns a new conversation id, unique in the store. It needs no
// transaction; ids that are never used leave gaps.
func (s *Store) NextConversationID() uint64 { return s.nextConv.Add(1) }

// Snapshot writes a consistent copy of the whole store to w (bbolt Tx.WriteTo) while other
// goroutines keep reading and writing. The copy is itself a store that Open reads.
func (s *Store) Snapshot(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("snapshot: %w", err)
	}
	return n, nil
}

// view runs fn in a read transaction, turning a fault or panic inside bbolt into ErrCorrupt.
// A panic raised by a caller's callback (marked by callbackPanic) is passed on unchanged.
func (s *Store) view(fn func(tx *bolt.Tx) error) error { return s.txn(false, fn) }

// update runs fn in a write transaction, like view.
func (s *Store) update(fn func(tx *bolt.Tx) error) error { return s.txn(true, fn) }

func (s *Store) txn(write bool, fn func(tx *bolt.Tx) error) (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if write && s.readOnly {
		return errors.New("store is open read-only")
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if cp, ok := r.(callbackPanic); ok {
				panic(cp.v)
			}
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	if write && s.fault != nil {
		return s.db.Update(func(tx *bolt.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return s.fault()
		})
	}
	if write {
		return s.db.Update(fn)
	}
	return s.db.View(fn)
}

// callbackPanic wraps a panic raised by a caller's callback so that view does not mistake it
// for a damaged store.
type callbackPanic struct{ v any }

// call runs a caller's callback, marking its panics as the caller's.
func call[T any](fn func(T) error, v T) (err error) {
	done := false
	defer func() {
		if !done {
			if r := recover(); r != nil {
				panic(callbackPanic{r})
			}
		}
	}()
	err = fn(v)
	done = true
	return err
}
