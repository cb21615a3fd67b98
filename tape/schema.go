package tape

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// Buckets and keys of schema 1 (docs/store.md). Integers in keys are big-endian so that
// bbolt's byte order is numeric order.
var (
	bucketMeta    = []byte("meta")
	bucketRecs    = []byte("recordings")    // id → Recording
	bucketConvs   = []byte("conversations") // id → Conversation
	bucketArrival = []byte("arrivals")      // recording | arrival | id → empty
	bucketTurns   = []byte("turns")         // conversation | index (u32) → turn data seq (u64)
	bucketData    = []byte("turndata")      // seq → Turn, in the order turns were first put
	bucketRuns    = []byte("runs")          // id → Run
	bucketResults = []byte("results")       // run | seq → Result

	keySchema = []byte("schema") // u32 schema version
	keyFormat = []byte("format") // "llmtape"

	dataBuckets = [][]byte{bucketRecs, bucketConvs, bucketArrival, bucketTurns, bucketData, bucketRuns, bucketResults}
)

// appendFill is the FillPercent of every bucket: split pages are left full. turndata, which
// holds nearly all the bytes, is written strictly in key order, so its pages stay full; in the
// other buckets a split page is refilled by later keys landing between existing ones.
//
// Turns are stored in two buckets because a recorder appends to many conversations at once:
// keyed by conversation|index, their multi-KB records would land between existing keys and
// leave pages a quarter empty. turndata, keyed by a sequence, is append-only; turns maps
// conversation|index to that sequence in 8 bytes.
const appendFill = 1.0

// indexFill is the FillPercent of the small-record buckets that a recorder inserts into at many
// places at once (turns, arrivals): pages split in halves keep room for the keys to come.
const indexFill = 0.5

func u64key(id uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), id) }

func turnKey(conv uint64, index int) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, conv)
	binary.BigEndian.PutUint32(k[8:], uint32(index))
	return k
}

func resultKey(run, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, run)
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// arrivalKey orders a recording's conversations by arrival, then id. The arrival's sign bit is
// flipped so that negative offsets sort first.
func arrivalKey(c *Conversation) []byte {
	k := make([]byte, 24)
	binary.BigEndian.PutUint64(k, c.Recording)
	binary.BigEndian.PutUint64(k[8:], uint64(c.Arrival)^(1<<63))
	binary.BigEndian.PutUint64(k[16:], c.ID)
	return k
}

// maxConversationID is the highest conversation id in use, in conversations or in turns.
func maxConversationID(tx *bolt.Tx) uint64 {
	var m uint64
	if k, _ := tx.Bucket(bucketConvs).Cursor().Last(); len(k) == 8 {
		m = binary.BigEndian.Uint64(k)
	}
	if k, _ := tx.Bucket(bucketTurns).Cursor().Last(); len(k) == 12 {
		m = max(m, binary.BigEndian.Uint64(k))
	}
	return m
}

// buckets are the data buckets of one transaction, with their fill set.
type buckets struct {
	recs, convs, arrival, turns, data, runs, results *bolt.Bucket
}

func openBuckets(tx *bolt.Tx) *buckets {
	b := &buckets{
		recs:    tx.Bucket(bucketRecs),
		convs:   tx.Bucket(bucketConvs),
		arrival: tx.Bucket(bucketArrival),
		turns:   tx.Bucket(bucketTurns),
		data:    tx.Bucket(bucketData),
		runs:    tx.Bucket(bucketRuns),
		results: tx.Bucket(bucketResults),
	}
	if tx.Writable() {
		for _, x := range []*bolt.Bucket{b.recs, b.convs, b.data, b.runs, b.results} {
			x.FillPercent = appendFill
		}
		b.turns.FillPercent = indexFill
		b.arrival.FillPercent = indexFill
	}
	return b
}
