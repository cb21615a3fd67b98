// Package merge combines llmtape stores: the stores that the shards of one replay wrote on
// several machines (llmtape replay --shard i/n), or any stores, into one, so that
// "llmtape report --run shard-0 --run shard-1 ..." reports the shards as one run and
// "llmtape compare" sees every run side by side.
//
// # Basics
//
//	dst, _ := tape.Open("merged.db", nil)
//	stats, err := merge.Stores(ctx, dst, shard0, shard1, shard2)
//
// Every recording of a source is copied with its conversations and turns, and every run with
// its results, stored summary and HDR histograms. The copies get new ids in the destination
// (recordings and runs from the store's sequences, conversations from NextConversationID), and
// every reference is remapped: Conversation.Recording and Parent, Turn.Conversation,
// Run.Recording (and the "recording" key of Run.Options), Result.Run and Result.Conversation.
// Turn indexes and result sequence numbers are kept.
//
// Shard stores are copies of one store, so each holds the same recording. A recording is
// therefore merged once: a source recording with the same Source, Name, Started, Complete and
// counters (conversations, turns) as a recording already in the destination, or copied from an
// earlier source, whose conversations also agree one by one in arrival order (arrival, session,
// grouping, fork point, number of turns), is not copied again. Its conversations are mapped by
// position onto that copy, so that the results of every shard point at the one copy.
//
// A run already in the destination (same name, target, recording, start, end and number of
// results) is skipped, so merging the same input twice, or inputs that all hold a run made
// before they were copied, keeps one copy. Runs that merely share a name are all kept: a name
// then refers to the latest of them (the highest id), and every run stays addressable by id.
//
// # Caveats
//
// Writes go in large transactions (Config.BatchSize turns or results each). A recording is
// written with Complete false and gets its final fields, Complete included, in the transaction
// of its last turns; a recording or run whose copy fails part-way is deleted again, so the
// destination never keeps a half-merged one (unless that clean-up fails too, which the error
// says).
//
// A result whose conversation is not in its source store (an inconsistent store) is written
// with Conversation 0 and counted in Stats.Unlinked. A run whose recording is not in its source
// (deleted after the run) is written with Recording 0.
//
// A Merger reads its destination's recordings and runs once, in New; it must be the only
// writer of the destination while it merges, and it is not safe for concurrent use.
package merge
