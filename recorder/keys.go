package recorder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/maphash"
	"strings"
	"sync"
	"unicode"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/tape"
)

// Two hashes describe a message:
//
//   - the exact hash (MessageMeta.Hash) is tape.MessageHash: FNV-1a 64 of the message's
//     canonical JSON (object keys sorted, no insignificant whitespace). It is stable across
//     processes (the importers compute the same one) and decides storage: two messages with
//     equal exact hashes are JSON-equal, so an echoed message need not be stored again.
//   - the match key hashes what stitching compares: role, content with whitespace runs collapsed
//     and trimmed, tool calls (function name and arguments, arguments compacted when they are
//     JSON), tool_call_id and name. It tolerates a client that re-renders the reply it echoes.
//     It lives only in memory (it is recomputed when the index is rebuilt), so it uses maphash.
//
// A message-prefix state is the chain of match keys: chain[0] is a constant, chain[i+1] mixes
// chain[i] with the key of message i. Equal chains at equal lengths mean equal prefixes, so one
// map lookup per prefix length finds every conversation state a request extends.

var seed = maphash.MakeSeed()

// chainStart is chain[0], the state of an empty message list.
const chainStart uint64 = 0x9e3779b97f4a7c15

// mix extends a chain by one message key.
func mix(chain, key uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], chain)
	binary.LittleEndian.PutUint64(b[8:], key)
	return maphash.Bytes(seed, b[:])
}

// msgInfo is what the recorder computes once per distinct raw message.
type msgInfo struct {
	exact  uint64 // FNV-1a of canonical JSON (tape.MessageMeta.Hash)
	key    uint64 // match key
	tokens int32  // tiktoken count of openai.MessageText; -1 when not counted
}

// infoCache remembers msgInfo by the hash of a message's raw bytes: a conversation re-sends
// its whole history every turn, so each message is canonicalized and tokenized once instead of
// once per later turn. It is cleared when it grows past its limit.
type infoCache struct {
	mu    sync.RWMutex
	m     map[uint64]msgInfo
	limit int
}

func newInfoCache(limit int) *infoCache {
	return &infoCache{m: make(map[uint64]msgInfo), limit: limit}
}

// info returns the msgInfo of raw, computing what is not cached. Without withTokens the token
// count is not computed (it is -1 unless cached): rebuilding the index needs only the hashes.
func (c *infoCache) info(raw json.RawMessage, withTokens bool) msgInfo {
	h := maphash.Bytes(seed, raw)
	c.mu.RLock()
	mi, ok := c.m[h]
	c.mu.RUnlock()
	if ok && (mi.tokens >= 0 || !withTokens) {
		return mi
	}
	if !ok {
		mi = msgInfo{exact: tape.MessageHash(raw), key: matchKey(raw), tokens: -1}
	}
	if withTokens {
		mi.tokens = int32(openai.CountTokens(openai.MessageText(raw)))
	}
	c.mu.Lock()
	if len(c.m) >= c.limit {
		clear(c.m)
	}
	c.m[h] = mi
	c.mu.Unlock()
	return mi
}

// matchKey hashes what stitching compares of a message. A message that does not parse is
// keyed by its raw bytes.
func matchKey(raw json.RawMessage) uint64 {
	m, err := openai.ParseMessage(raw)
	if err != nil {
		return maphash.Bytes(seed, raw)
	}
	var h maphash.Hash
	h.SetSeed(seed)
	field := func(s string) {
		h.WriteString(s)
		h.WriteByte(0)
	}
	field(m.Role)
	field(squash(m.Content))
	field(m.ToolCallID)
	field(m.Name)
	for _, tc := range m.ToolCalls {
		field(tc.Function.Name)
		field(normArgs(tc.Function.Arguments))
	}
	return h.Sum64()
}

// squash collapses every run of white space to one space and trims both ends, so an echoed
// reply that a client trimmed or re-wrapped still matches.
func squash(s string) string {
	if s == "" {
		return s
	}
	return strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
}

// normArgs compacts tool-call arguments that are JSON and squashes any other text.
func normArgs(s string) string {
	var buf bytes.Buffer
	if json.Compact(&buf, []byte(s)) == nil {
		return buf.String()
	}
	return squash(s)
}

// commonPrefix returns how many leading entries a and b share.
func commonPrefix(a, b []uint64) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
