// Package tape is llmtape's store: the domain model (Recording, Conversation, Turn, Run, Result)
// and its persistence in one bbolt file.
//
// # Basics
//
// Open a store with Open (nil options: read-write, created with mode 0600 when missing). Write
// whole imports in one transaction with Store.Update, or hand records from many goroutines to a
// Writer, which commits them in batches. Read with the scan methods (Recordings, Conversations,
// Turns, TurnMessages, Runs, Results): each streams inside one read transaction and hands every
// record to a callback as a fresh value that the callback may keep. Return ErrStop from the
// callback to stop early.
//
// A turn stores only the messages that it adds to its conversation (see Request). TurnMessages
// rebuilds each turn's full message list, JSON-equal to what the client sent, so that the store
// grows linearly with a conversation's length.
//
// The parents' counters (Conversation.Turns, Recording.Conversations and Recording.Turns,
// Run.Requests) are kept by the store: putting a new conversation, turn or result increments
// them in the same transaction, and the values given in a put of a parent are ignored.
//
// # Caveats
//
// bbolt allows one writing process: a store open for writing is locked, and another Open (even
// read-only) waits Options.Timeout and then fails with ErrLocked. Use Snapshot (served by
// "llmtape record --admin" at /snapshot) to read a store that a running recorder holds.
//
// A scan runs inside one bbolt read transaction, and its callback may call the store again
// (nested read transactions). bbolt remaps its file only when it grows past the mapped size
// (1 GB, then in 1 GB steps); a remap waits for every read transaction to end, so a nested read
// that starts while a remap waits hangs. Stores under 1 GB never remap; for larger ones, a
// callback that needs more than its record should collect IDs and read after the scan, when a
// Writer is active at the same time. Do not Close a store while scans are running.
//
// The binary record format is described in docs/store.md.
package tape
