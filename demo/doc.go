// Package demo runs llmtape's whole everyday job on two built-in simulators, for `llmtape demo`
// and `make demo`.
//
// # Basics
//
// Run starts two simulated servers in this process, "current" and "candidate" (a smaller prefix
// cache and faster decode), generates a multi-turn workload with real think times, drives it
// through the recording proxy in front of "current" (each conversation sends the server's real
// replies back, as a chat client does), replays the recording against "candidate" at twice the
// speed, and prints the recording's analysis, the replay's summary and the comparison of the two,
// then writes an HTML report. Everything listens on 127.0.0.1 on free ports and is stopped before
// Run returns.
//
// # Caveats
//
// The store named by Config.Store and the report named by Config.Report are replaced, but
// only when the demo made them: a store whose recordings all have Source (or that holds no
// recording), a report that starts with ReportMarker. Anything else makes Run fail with
// ErrNotDemo before it starts, unless Config.Force is set.
package demo
