// Package metrics holds llmtape's latency and token statistics: HDR histograms of TTFT, ITL,
// TPOT, E2E and schedule lag, overall and per turn bucket, that merge exactly across shards and
// runs; exact distributions of token counts; SLOs and goodput; and the replayer's summary with
// its table and JSON forms.
//
// # Basics
//
// Histograms hold microseconds, from 1 µs to 1 h, with 3 significant digits; every figure is
// reported in milliseconds as a float. A Set keeps one histogram per metric overall and one per
// turn bucket ("1", "2", "3", "4-7", "8-15", "16+"). Set.Encode gives the map stored as
// tape.Run.Histograms and Decode reads it back, so that report and compare can merge the
// histograms of several runs or shards exactly.
//
// An Accumulator turns replay results (tape.Result) into a Summary: Add bumps counters and
// histograms and Summary computes the derived figures, as vegeta's Metrics do.
//
// The definitions (DESIGN.md "Metrics"):
//
//   - TTFT: request sent → first stream event that carries output.
//   - ITL: gap between consecutive output events, divided evenly over the tokens that the later
//     event carries (a chunk of 3 tokens gives 3 samples of a third of the gap).
//   - TPOT: (E2E − TTFT) / (output tokens − 1), for requests with at least 2 output tokens.
//   - E2E: request sent → last byte of the response.
//   - Schedule lag: actual send time − scheduled send time.
//
// # Caveats
//
// A Set and an Accumulator are not safe for concurrent use: keep each in one goroutine (the
// replayer's collector) or guard it. Values outside 1 µs..1 h are clamped into the range (so a
// value is never dropped); negative durations are recorded as 0.
package metrics
