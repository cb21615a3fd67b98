// Package analyze computes statistics over what the store holds: the profile of a recording
// (Analyze), the report of a replay run or of the shards of one (BuildReport), and the
// comparison of two runs or of the recording with a run (Compare); each renders as a table,
// JSON, CSV or a self-contained HTML page with SVG charts (Write with a Format).
//
// # Basics
//
// Everything reads a Source, which *tape.Store implements, and never sends traffic. Metric
// definitions are package metrics': recorded turns go through the same HDR histograms as
// replayed requests (tape.Turn.Result turns a turn into a result), so recorded and replayed figures
// compare like with like.
//
// Analyze makes two passes: one over every turn for the distributions (two halves of the
// conversations read side by side), then one that replays
// every prompt in time order through simulated prefix caches, one unbounded and one LRU of
// Config.CacheTokens tokens per block size. Prompts are chains of segments (messages with their
// stored token counts and hashes, the previous reply, or the hash_ids blocks of a synthetic
// turn), so nothing is tokenized: see docs/analyze.md for the block identity and its
// approximation.
//
// BuildReport takes latency percentiles from the histograms stored with each run, merged
// exactly, and counts from the stored summaries; it reads the results only when asked for
// something they alone hold (per-conversation rows, a new SLO, a timeline, the token
// distributions of several shards).
//
// # Caveats
//
// Analyze holds about 200 bytes per turn plus about 14 bytes per distinct prompt block (at
// block size 16, about one block per 16 new tokens) and hands the first pass's garbage back to the
// operating system before the second pass. Compare holds every matched request's figures in
// memory. The JSON keys are stable and documented in docs/json.md.
package analyze
