// Package replay re-sends the conversations of a recording to an OpenAI-compatible server with
// the recorded (or scaled, or synthetic) timing, measures every streamed request, and writes a
// run with its results into the store.
//
// # Basics
//
// New checks a Config, resolves the recording, keeps the sample and the shard, and loads the
// conversations with their arrival times; Run sends them and saves the run:
//
//	r, err := replay.New(store, replay.Config{Target: "http://127.0.0.1:8000", Speed: 2})
//	rep, err := r.Run(ctx) // rep.Run is the saved tape.Run, rep.Summary its summary
//
// Each conversation is a goroutine and a closed loop: its first turn is due at its arrival
// (the recorded offset / Speed, or a poisson/gamma process, or as soon as a slot is free),
// each next turn when the previous reply in this replay has ended plus the think time, never
// at its recorded absolute time. A result is sent to a collector goroutine that numbers it,
// adds it to a metrics.Accumulator and hands it to the store's batched writer, so results are
// stored as they finish.
//
// Every time of a run counts from its time zero: Config.StartAt when set (shards on several
// machines share it; a replayer that gets there late sends what is due at once, and its
// lateness shows as schedule lag), else the moment Run starts.
//
// Measurement follows DESIGN.md's "Metrics": the send time is taken just before the request
// is written, and the goroutine that reads the response stamps every read with the monotonic
// clock as soon as it returns; an SSE event's arrival is the stamp of the read that completed
// it. Tokens per event come from the server's usage spread over the output events (see
// docs/replay.md).
//
// # Stopping
//
// Cancelling Run's context stops scheduling: requests in flight finish and the partial run is
// saved. Abort also cancels the requests in flight (they count as "canceled"). Config.Duration
// and Config.MaxRequests stop scheduling the same way.
//
// # Caveats
//
// A Replayer runs once. Errors of single requests never stop a run; Run fails only when the
// store does. The whole recording's conversations (their messages, not their responses) are
// held in memory for the run. Schedule lag is measured, not prevented: a machine whose CPUs
// are busy with other work delays timers, and the summary says so. A request that fails on a
// reused connection before any byte of the answer (the target had closed it) is sent once more
// on a new connection and measured from there; Summary.Reconnects counts these.
package replay
