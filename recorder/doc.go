// Package recorder turns the exchanges that the proxy captures into turns of conversations in a
// tape store, off the proxy's hot path.
//
// # Basics
//
// New returns a Recorder, which implements proxy.Sink; Start creates the recording in the
// store:
//
//	rec, err := recorder.New(store, recorder.Config{Upstream: "http://127.0.0.1:8000", Mode: "reverse"})
//	...
//	p, err := proxy.New(proxy.Config{Sink: rec, ...})
//	...
//	err = rec.Start(ctx) // rebuilds the stitching index, creates the recording
//	...
//	err = rec.Close() // after the proxy has stopped: records what is queued, flushes, completes
//
// New has no side effects (it neither reads nor writes the store, nor starts goroutines), so a
// caller can build the recorder, the proxy and its listeners, and fail on bad input, before
// anything reaches the store.
//
// Capture never blocks. Exchanges wait in a bounded queue (Config.QueueSize); when it is full the
// exchange is counted in Stats.NotRecorded and a warning is logged at most once a second. Parsing
// (request body, SSE stream or JSON response, token counts, message hashes) runs on
// Config.Workers goroutines; placing turns into conversations runs on one goroutine, in capture
// order; records go to the store through its batched writer (tape.Writer).
//
// For each exchange of a completion path (…/chat/completions or …/completions) the recorder
// stores a tape.Turn: the request without the messages its conversation already holds, the
// response (content, reasoning, tool calls, finish reason, usage or an error), the timing (every
// output-carrying stream event at the time of the read that completed it, offsets from the
// request being sent) and token counts (the server's usage, else tiktoken). Other paths are
// counted in Stats.Ignored.
//
// # Record session
//
// Session is the whole of "llmtape record" as a library type, also run by the demo: a proxy
// on a listener whose exchanges a Recorder adds to one recording, the store (opened from a
// path, or the caller's), an optional admin listener (AdminHandler: /health, /stats,
// /snapshot, behind a Host check and an optional token), the drain on stop and a Summary:
//
//	s, err := recorder.NewSession(recorder.SessionConfig{StorePath: "llmtape.db",
//		Proxy: proxy.Config{Upstream: "http://127.0.0.1:8000"}})
//	...
//	err = s.Start(ctx) // opens the store and listeners, then creates the recording
//	...                // clients use "http://" + s.Addr().String() + "/v1"
//	err = s.Stop(drainCtx) // streams in flight finish, or are cut when drainCtx ends
//	sum := s.Summary()     // recording id, proxy and recorder counters, drain and close errors
//
// NewSession checks and builds only. Start fails on a port in use or a locked store before it
// creates the recording, so a failed start leaves none. Signals are the caller's: the command
// cancels drainCtx on a second Ctrl-C.
//
// # When the store fails
//
// A store that cannot take records (disk full, an I/O error) never slows the proxy: the turns it
// loses are counted (Stats.Lost, within Stats.NotRecorded) and logged at most once a second. A
// new conversation is written together with its first turn (tape.Writer.PutTogether), so a
// failure never leaves a conversation without turns. A conversation that lost a turn keeps the
// turns stored before it and takes no more: its next turn starts a conversation of its own,
// with every message. Close marks the recording incomplete with the number of exchanges not in
// the store (tape.Recording.NotRecorded), trying that write again if it fails; when it never
// succeeds, Close's error wraps ErrStatusNotWritten.
//
// # Stitching
//
// An explicit session id wins: the headers X-Session-ID, X-Conversation-ID, Helicone-Session-Id
// (and Config.SessionHeaders), or the body fields conversation_id, session_id,
// metadata.session_id. Otherwise a chat request continues the conversation whose last request's
// messages plus reply are the longest prefix of its messages (role, content, tool calls;
// whitespace in content is not significant); a request that re-sends an earlier state of a
// conversation forks it; anything else starts a conversation of its own. docs/stitching.md has
// the full rules, ties included.
//
// The index that finds conversations is rebuilt by Start from the store's recent conversations of
// every proxy recording, so a conversation that started before a restart continues after it:
// its new turns are added to that conversation, in the recording it started in.
//
// # Caveats
//
// Completion (non-chat) requests are stitched only by session id. A request whose body was
// truncated or is not JSON gets a conversation of its own. Two conversations that hold exactly
// the same messages and replies cannot be told apart by content; the recorder then picks the
// one whose reply the client had seen most recently before sending (see docs/stitching.md).
package recorder
