package tape

import "errors"

// Errors returned by the store. Test for them with errors.Is: the errors returned by Open and
// the other methods wrap them with the store's path and the operation.
var (
	// ErrNotExist is returned by a read-only Open of a file that does not exist (the file is
	// not created).
	ErrNotExist = errors.New("store does not exist")
	// ErrNotStore is returned by Open for a file that is not an llmtape store: random bytes, an
	// empty file opened read-only, or a bbolt file of another program.
	ErrNotStore = errors.New("not an llmtape store")
	// ErrNewerSchema is returned by Open for a store written by a newer llmtape.
	ErrNewerSchema = errors.New("store has a newer schema")
	// ErrCorrupt is returned for a truncated or corrupt store, by Open or by any read or write
	// that finds a damaged page or record.
	ErrCorrupt = errors.New("store is corrupt or truncated")
	// ErrLocked is returned by Open when another process holds the store's lock for longer
	// than Options.Timeout.
	ErrLocked = errors.New("store is in use by another process")
	// ErrNotFound is returned when a recording, conversation, turn or run does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNoRecording is returned by FindRecording for "latest" in a store without recordings.
	ErrNoRecording = errors.New("no recording in the store")
	// ErrClosed is returned by a Store or Writer used after Close.
	ErrClosed = errors.New("store closed")
	// ErrStop, returned by a scan's callback, stops the scan early without error.
	ErrStop = errors.New("stop scan")
)
