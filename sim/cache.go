package sim

import (
	"encoding/binary"
	"hash/fnv"
	"sync"
)

// blockHashes returns the chained hashes of the full blocks of tokens: hash k covers
// tokens[0 : (k+1)*size], so equal hashes mean equal prefixes (as vLLM's KV-cache block
// hashing). A trailing partial block has no hash.
func blockHashes(tokens []uint32, size int) []uint64 {
	n := len(tokens) / size
	if n == 0 {
		return nil
	}
	out := make([]uint64, n)
	var prev uint64
	var buf [8]byte
	for k := range n {
		h := fnv.New64a()
		binary.LittleEndian.PutUint64(buf[:], prev)
		h.Write(buf[:])
		for _, t := range tokens[k*size : (k+1)*size] {
			binary.LittleEndian.PutUint32(buf[:4], t)
			h.Write(buf[:4])
		}
		prev = h.Sum64()
		out[k] = prev
	}
	return out
}

// prefixCache is an LRU set of block hashes of at most cap entries. Safe for concurrent use.
type prefixCache struct {
	mu    sync.Mutex
	cap   int
	items map[uint64]*lruNode
	head  lruNode // sentinel: head.next is the most recently used
}

type lruNode struct {
	key        uint64
	prev, next *lruNode
}

func newPrefixCache(capacity int) *prefixCache {
	c := &prefixCache{cap: capacity, items: make(map[uint64]*lruNode, min(capacity, 1<<16))}
	c.head.next, c.head.prev = &c.head, &c.head
	return c
}

// lookup returns how many leading blocks of hashes are cached and marks them recently used.
func (c *prefixCache) lookup(hashes []uint64) int {
	if c == nil || c.cap == 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, h := range hashes {
		if _, ok := c.items[h]; !ok {
			break
		}
		n++
	}
	// Touch from the last block to the first so that a prefix's first blocks are the most
	// recently used: eviction then shortens a cached prefix from its end, as in vLLM.
	for i := n - 1; i >= 0; i-- {
		c.moveFront(c.items[hashes[i]])
	}
	return n
}

// insert adds every hash (a request's prompt blocks after its prefill), evicting the least
// recently used blocks beyond the capacity.
func (c *prefixCache) insert(hashes []uint64) {
	if c == nil || c.cap == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(hashes) - 1; i >= 0; i-- { // last first, as in lookup
		h := hashes[i]
		if e, ok := c.items[h]; ok {
			c.moveFront(e)
			continue
		}
		var e *lruNode
		if len(c.items) >= c.cap {
			e = c.head.prev // reuse the evicted node
			c.unlink(e)
			delete(c.items, e.key)
		} else {
			e = new(lruNode)
		}
		e.key = h
		c.pushFront(e)
		c.items[h] = e
	}
}

// len returns the number of cached blocks.
func (c *prefixCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

func (c *prefixCache) unlink(e *lruNode) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (c *prefixCache) pushFront(e *lruNode) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

func (c *prefixCache) moveFront(e *lruNode) {
	c.unlink(e)
	c.pushFront(e)
}
