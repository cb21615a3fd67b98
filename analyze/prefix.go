package analyze

import (
	"hash/fnv"

	"github.com/llmtape/llmtape/internal/randx"
	"github.com/llmtape/llmtape/tape"
)

// Segment is one piece of a prompt whose identity analysis knows: a message (its token count
// and content hash from tape.MessageMeta), the previous turn's reply, or one hash_ids block of a
// synthetic (Mooncake) prompt.
type Segment struct {
	Tokens int64
	Hash   uint64
}

// Reuse is the prefix-reuse figure for one block size: the share of prompt tokens that a
// prefix cache of blocks of BlockSize tokens could have served.
type Reuse struct {
	BlockSize    int     `json:"block_size"`
	PromptTokens int64   `json:"prompt_tokens"` // sum of the prompts' segment tokens
	HitTokens    int64   `json:"hit_tokens"`    // served by an unbounded cache
	HitRatio     float64 `json:"hit_ratio"`     // HitTokens / PromptTokens
	LRUTokens    int64   `json:"lru_cache_tokens"`
	LRUHitTokens int64   `json:"lru_hit_tokens"` // served by an LRU cache of LRUTokens tokens
	LRUHitRatio  float64 `json:"lru_hit_ratio"`
}

// chain extends the chained hash h of the segments before s by s.
func chain(h uint64, s Segment) uint64 {
	return randx.Mix64(h*0x9e3779b97f4a7c15 ^ randx.Mix64(s.Hash) ^ uint64(s.Tokens)<<1 ^ 0x5bd1e995)
}

// blockKey identifies block j of length n whose last token lies in the segment with chained
// hash h.
func blockKey(h uint64, j, n int64) uint64 {
	return randx.Mix64(h ^ randx.Mix64(uint64(j)+1)*0xff51afd7ed558ccd ^ uint64(n)<<40)
}

// Synthetic segment hashes are tagged so they never equal a message hash by accident.
const syntheticTag = 0xa5a5_5a5a_0f0f_f0f0

// SyntheticSegments returns the segments of a synthetic prompt: one per hash id, BlockSize
// tokens each, the last one the remainder of InputTokens.
func SyntheticSegments(s *tape.Synthetic, dst []Segment) []Segment {
	dst = dst[:0]
	left := int64(s.InputTokens)
	bs := int64(s.BlockSize)
	if bs <= 0 && len(s.HashIDs) > 0 {
		// No block size: one segment identified by all the ids.
		h := uint64(syntheticTag)
		for _, id := range s.HashIDs {
			h = randx.Mix64(h ^ id)
		}
		if left > 0 {
			dst = append(dst, Segment{Tokens: left, Hash: h})
		}
		return dst
	}
	for i, id := range s.HashIDs {
		n := bs
		if i == len(s.HashIDs)-1 || n > left {
			n = left
		}
		if n <= 0 {
			break
		}
		dst = append(dst, Segment{Tokens: n, Hash: id ^ syntheticTag})
		left -= n
	}
	return dst
}

// replyHash is the content hash of a turn's reply as a segment of the next prompt.
func replyHash(t *tape.Turn) uint64 {
	h := fnv.New64a()
	h.Write([]byte("assistant\x00"))
	h.Write([]byte(t.Response.Content))
	h.Write([]byte{0})
	h.Write(t.Response.ToolCalls)
	return h.Sum64()
}

// rawHash hashes bytes for segments that carry no MessageMeta.
func rawHash(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// prompt is a conversation's running state: the full message list of the last turn as
// segments, with the chained hash and the cumulative token count after each segment.
type prompt struct {
	segs     []Segment
	hash     []uint64
	cum      []int64
	reply    Segment // the last turn's reply, appended to the base of the next turn
	hasReply bool
	// stable is how many leading segments the last apply left as they were in the prompt
	// before it, which the caches have already seen; 0 when that prompt was not counted.
	stable  int
	counted bool // the current prompt was added to the caches
}

func (p *prompt) truncate(n int) {
	p.segs, p.hash, p.cum = p.segs[:n], p.hash[:n], p.cum[:n]
}

func (p *prompt) push(s Segment) {
	if s.Tokens < 0 {
		s.Tokens = 0 // a damaged record; never let the token count run backwards
	}
	var h uint64
	var c int64
	if n := len(p.segs); n > 0 {
		h, c = p.hash[n-1], p.cum[n-1]
	}
	p.segs = append(p.segs, s)
	p.hash = append(p.hash, chain(h, s))
	p.cum = append(p.cum, c+s.Tokens)
}

func (p *prompt) tokens() int64 {
	if len(p.cum) == 0 {
		return 0
	}
	return p.cum[len(p.cum)-1]
}

// clone copies p (for the base of a fork).
func (p *prompt) clone() *prompt {
	return &prompt{
		segs:  append([]Segment(nil), p.segs...),
		hash:  append([]uint64(nil), p.hash...),
		cum:   append([]int64(nil), p.cum...),
		reply: p.reply, hasReply: p.hasReply,
	}
}

// addedSegments returns the segments turn t adds to its conversation's message list and
// whether they replace the list (synthetic turns, whose hash-id blocks are the whole prompt).
func addedSegments(t *tape.Turn, dst []Segment) ([]Segment, bool) {
	if syn := t.Request.Synthetic; syn != nil {
		return SyntheticSegments(syn, dst), true
	}
	meta := t.Request.MessageMeta
	for i, m := range t.Request.Messages {
		if i < len(meta) {
			dst = append(dst, Segment{Tokens: int64(meta[i].Tokens), Hash: meta[i].Hash})
		} else {
			// No meta (an old record): hash the JSON, estimate 4 bytes a token.
			dst = append(dst, Segment{Tokens: int64(len(m)+3) / 4, Hash: rawHash(m)})
		}
	}
	if len(t.Request.Messages) == 0 && len(t.Request.Prompt) > 0 {
		dst = append(dst, Segment{Tokens: int64(t.Tokens.Prompt), Hash: rawHash(t.Request.Prompt)})
	}
	return dst, false
}

// apply turns p (the previous turn's state) into a turn's full prompt: Base[:kept] followed
// by the added segments, where Base is the previous list followed by its reply; replace drops
// the base. reply becomes the reply carried to the next turn.
func (p *prompt) apply(kept int, added []Segment, replace bool, reply Segment) {
	if replace {
		kept = 0
	}
	if kept < 0 {
		kept = 0
	}
	p.stable = 0
	if p.counted {
		p.stable = min(kept, len(p.segs))
	}
	if kept > len(p.segs) {
		if p.hasReply {
			p.push(p.reply)
		}
		if kept > len(p.segs) {
			kept = len(p.segs)
		}
	}
	p.truncate(kept)
	for _, s := range added {
		p.push(s)
	}
	p.reply, p.hasReply = reply, true
}

// reuseSim simulates one block size: an unbounded set of seen blocks and an LRU of a token
// budget.
type reuseSim struct {
	bs      int64
	seen    *u64set // nil: the unbounded cache is not simulated
	lru     *lru    // nil: the LRU is not simulated
	r       Reuse
	keys    []uint64
	lengths []int64
}

// newReuseSim simulates block size bs with an unbounded cache (when unbounded) and an LRU of
// lruTokens (when lruTokens > 0).
func newReuseSim(bs int, unbounded bool, lruTokens int64) *reuseSim {
	s := &reuseSim{bs: int64(bs), r: Reuse{BlockSize: bs, LRUTokens: lruTokens}}
	if unbounded {
		s.seen = newU64Set(1 << 16)
	}
	if lruTokens > 0 {
		s.lru = newLRU(lruTokens)
	}
	return s
}

// add counts one prompt. Hits are the leading run of blocks found in the cache (a prefix
// cache serves a prefix); then every block of the prompt enters the cache.
//
// Cost: the full blocks inside the prompt's stable prefix were all entered by the
// conversation's previous turn, so the unbounded cache counts them as hits without looking
// them up. The LRU looks each block up once and keeps the node index to touch it.
func (s *reuseSim) add(p *prompt) {
	total := p.tokens()
	s.r.PromptTokens += total
	s.keys, s.lengths = s.keys[:0], s.lengths[:0]
	seg := 0
	for j := int64(0); j*s.bs < total; j++ {
		end := (j + 1) * s.bs
		if end > total {
			end = total
		}
		// The segment holding token end-1.
		for p.cum[seg] < end {
			seg++
		}
		s.keys = append(s.keys, blockKey(p.hash[seg], j, end-j*s.bs))
		s.lengths = append(s.lengths, end-j*s.bs)
	}
	if s.seen != nil {
		skip := 0
		if p.stable > 0 {
			skip = int(p.cum[p.stable-1] / s.bs)
			s.r.HitTokens += int64(skip) * s.bs
		}
		hit := true
		for i := skip; i < len(s.keys); i++ {
			if s.seen.add(s.keys[i]) {
				hit = false
			} else if hit {
				s.r.HitTokens += s.lengths[i]
			}
		}
	}
	if s.lru != nil {
		s.r.LRUHitTokens += s.lru.add(s.keys, s.lengths)
	}
}

func (s *reuseSim) result() Reuse {
	r := s.r
	if r.PromptTokens > 0 {
		r.HitRatio = float64(r.HitTokens) / float64(r.PromptTokens)
		r.LRUHitRatio = float64(r.LRUHitTokens) / float64(r.PromptTokens)
	}
	return r
}

// lru is a least-recently-used set of blocks with a budget in tokens: a hash index into a
// slice of nodes linked in recency order (head most recent), with a free list.
//
// Evicting does not delete from the index: an entry is valid only while its node is live and
// holds its key (lookup checks), and the index is rebuilt from the live nodes when stale
// entries outnumber them. Deletes were a third of the LRU's cost.
type lru struct {
	capTokens int64
	used      int64
	idx       *u64table
	stale     int // index entries whose node was evicted
	live      int
	nodes     []lruNode
	head      int32
	tail      int32
	free      int32
	where     []int32 // scratch of add
}

type lruNode struct {
	key        uint64
	size       int32
	prev, next int32
	live       bool
}

func newLRU(capTokens int64) *lru {
	return &lru{capTokens: capTokens, idx: newU64Table(1 << 12), head: -1, tail: -1, free: -1}
}

// add counts the tokens of the leading run of keys in the cache, then touches every key from
// last to first, so that a prompt's head is the most recently used and its tail is evicted
// first, as vLLM frees a request's blocks. Each key is looked up once.
func (l *lru) add(keys []uint64, sizes []int64) (hit int64) {
	l.where = l.where[:0]
	run := true
	for i, k := range keys {
		n := l.lookup(k)
		if n < 0 {
			run = false
		} else if run {
			hit += sizes[i]
		}
		l.where = append(l.where, n)
	}
	for i := len(keys) - 1; i >= 0; i-- {
		// A node found above may have been evicted (and its slot reused) by an insert of
		// this prompt: check the key.
		if n := l.where[i]; n >= 0 && l.nodes[n].key == keys[i] && l.nodes[n].live {
			l.moveFront(n)
			continue
		}
		// Not in the cache (keys of one prompt are distinct, so nothing above put it back).
		l.insert(keys[i], sizes[i])
	}
	return hit
}

// lookup returns the live node holding k, or -1.
func (l *lru) lookup(k uint64) int32 {
	n, ok := l.idx.get(k)
	if !ok || !l.nodes[n].live || l.nodes[n].key != k {
		return -1
	}
	return n
}

func (l *lru) moveFront(i int32) {
	if l.head != i {
		l.unlink(i)
		l.pushFront(i)
	}
}

func (l *lru) unlink(i int32) {
	n := &l.nodes[i]
	if n.prev >= 0 {
		l.nodes[n.prev].next = n.next
	} else {
		l.head = n.next
	}
	if n.next >= 0 {
		l.nodes[n.next].prev = n.prev
	} else {
		l.tail = n.prev
	}
}

func (l *lru) pushFront(i int32) {
	n := &l.nodes[i]
	n.prev, n.next = -1, l.head
	if l.head >= 0 {
		l.nodes[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}

// insert adds block k, which is not in the cache, as the most recently used.
func (l *lru) insert(k uint64, size int64) {
	if size > l.capTokens {
		return
	}
	for l.used+size > l.capTokens && l.tail >= 0 {
		t := l.tail
		l.unlink(t)
		l.stale++
		l.live--
		l.used -= int64(l.nodes[t].size)
		l.nodes[t].live = false
		l.nodes[t].next = l.free
		l.free = t
	}
	var i int32
	if l.free >= 0 {
		i = l.free
		l.free = l.nodes[i].next
	} else {
		l.nodes = append(l.nodes, lruNode{})
		i = int32(len(l.nodes) - 1)
	}
	l.nodes[i].key, l.nodes[i].size, l.nodes[i].live = k, int32(size), true
	l.pushFront(i)
	if !l.idx.put(k, i) {
		l.stale-- // k's stale entry now points at a live node again
	}
	l.live++
	l.used += size
	if l.stale > l.live+reindexSlack {
		l.reindex()
	}
}

// reindexSlack is how many stale entries beyond the live count the LRU's index tolerates
// (a variable so that tests can make rebuilds frequent).
var reindexSlack = 4096

// reindex rebuilds the index from the live nodes, dropping stale entries.
func (l *lru) reindex() {
	clear(l.idx.e)
	l.idx.n = 0
	for i := range l.nodes {
		if l.nodes[i].live {
			l.idx.put(l.nodes[i].key, int32(i))
		}
	}
	l.stale = 0
}
