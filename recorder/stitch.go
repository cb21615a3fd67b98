package recorder

import (
	"container/list"

	"github.com/llmtape/llmtape/tape"
)

// The stitching index.
//
// A state is a message list that a later request may extend: a turn's full message list followed
// by that turn's reply as the assistant message a client echoes. The index maps the match-key
// chain of every state (keys.go) to the states with that chain, so a request of n messages is
// placed with at most n map lookups, longest prefix first, whatever the number of conversations.
//
// Each conversation also keeps the exact hashes of its base: the last turn's full message list
// and reply. A new turn's Kept is the number of leading messages it shares exactly (JSON-equal)
// with the base it extends, so what the store rebuilds is JSON-equal to what the client sent
// even where matching tolerated a re-rendered reply.
//
// The index is used by one goroutine only (the stitcher); it needs no locks.

// conv is a conversation the index knows.
type conv struct {
	id      uint64
	turns   int      // turns placed so far: the index of the next turn
	base    []uint64 // exact hashes of the last turn's messages + its reply (the next turn's base)
	latest  *state   // the state a continuation extends; nil when no turn was answered
	retry   *state   // the request of a failed last turn, which a retry re-sends; nil otherwise
	states  []*state // every index entry of this conversation, for eviction
	session string
	elem    *list.Element // in index.lru
	// meta is the conversation as last written to the store: the recorder re-writes it when a
	// later turn changes how the conversation was grouped (single → prefix).
	meta *tape.Conversation
}

// state is one entry of the index.
type state struct {
	conv *conv
	turn int      // the turn whose messages (and reply) this is
	n    int      // number of messages of the state
	key  uint64   // match-key chain of the n messages
	base []uint64 // exact hashes of the n messages (nil for retry entries)
	// ready is when the client had the whole reply (wall clock, ns): the end of the response.
	// It orders states for ties.
	ready int64
}

// index finds the conversation a request belongs to.
type index struct {
	byKey    map[uint64][]*state
	sessions map[string]*conv
	lru      *list.List // of *conv, most recently active first
	max      int        // conversations kept; the least recently active are forgotten
}

func newIndex(max int) *index {
	return &index{byKey: make(map[uint64][]*state), sessions: make(map[string]*conv), lru: list.New(), max: max}
}

// open is the number of conversations the index holds.
func (ix *index) open() int { return ix.lru.Len() }

// isCurrent reports whether s is what its conversation would be continued from.
func (s *state) isCurrent() bool { return s.conv.latest == s || s.conv.retry == s }

// find returns the state that a request with the given match-key chain, sent at start (wall
// clock, ns), extends: the longest prefix wins. At equal length:
//
//  1. a state whose reply the client could have seen (ready before the request was sent)
//     beats one that ended later: when several conversations hold the same messages (the same
//     prompt got the same reply), only a reply that had arrived can be echoed;
//  2. a conversation's current state beats an earlier one (an earlier one means a fork);
//  3. the most recent wins.
//
// Retry entries match only the whole request.
func (ix *index) find(chain []uint64, start int64) *state {
	n := len(chain) - 1
	for k := n; k >= 1; k-- {
		var best *state
		for _, s := range ix.byKey[chain[k]] {
			if s.n != k || (s.base == nil && (k != n || s.conv.retry != s)) {
				continue
			}
			if best == nil || better(s, best, start) {
				best = s
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// better reports whether a should be chosen over b at equal prefix length for a request sent
// at start.
func better(a, b *state, start int64) bool {
	if ac, bc := a.ready <= start, b.ready <= start; ac != bc {
		return ac
	}
	if ac, bc := a.isCurrent(), b.isCurrent(); ac != bc {
		return ac
	}
	return a.ready > b.ready
}

// add creates a conversation in the index.
func (ix *index) add(id uint64, session string) *conv {
	c := &conv{id: id, session: session}
	c.elem = ix.lru.PushFront(c)
	if session != "" {
		ix.sessions[session] = c
	}
	return c
}

// touch marks c as the most recently active conversation.
func (ix *index) touch(c *conv) { ix.lru.MoveToFront(c.elem) }

// maxTwins bounds the states kept under one key: identical states of different conversations
// (the same messages got the same reply, as with a deterministic server and a common prompt).
// Beyond it the oldest state that is no longer its conversation's current one is forgotten
// (only the most recent of those matters, for a fork), else the oldest state; so placing a
// request never scans more than maxTwins candidates per prefix length, however many
// conversations begin alike.
const maxTwins = 128

// put adds a state to the index and to its conversation.
func (ix *index) put(s *state) {
	list := append(ix.byKey[s.key], s)
	if len(list) > maxTwins {
		victim := 0
		for i, t := range list[:len(list)-1] {
			if !t.isCurrent() {
				victim = i
				break
			}
		}
		old := list[victim]
		list = append(list[:victim], list[victim+1:]...)
		ix.forget(old)
	}
	ix.byKey[s.key] = list
	s.conv.states = append(s.conv.states, s)
}

// forget removes a state that is no longer in the key map from its conversation.
func (ix *index) forget(s *state) {
	c := s.conv
	for i, t := range c.states {
		if t == s {
			c.states = append(c.states[:i], c.states[i+1:]...)
			break
		}
	}
}

// drop removes a state from the index and from its conversation.
func (ix *index) drop(s *state) {
	ix.unlink(s)
	ix.forget(s)
}

// unlink removes s from the key map only.
func (ix *index) unlink(s *state) {
	list := ix.byKey[s.key]
	for i, t := range list {
		if t == s {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(ix.byKey, s.key)
	} else {
		ix.byKey[s.key] = list
	}
}

// evict forgets the least recently active conversations beyond the limit.
func (ix *index) evict() {
	for ix.max > 0 && ix.lru.Len() > ix.max {
		ix.remove(ix.lru.Back().Value.(*conv))
	}
}

// remove forgets conversation c: no later request is placed in it.
func (ix *index) remove(c *conv) {
	ix.lru.Remove(c.elem)
	for _, s := range c.states {
		ix.unlink(s)
	}
	c.states = nil
	if c.session != "" && ix.sessions[c.session] == c {
		delete(ix.sessions, c.session)
	}
}

// placement is where a turn goes.
type placement struct {
	c        *conv
	isNew    bool
	grouping tape.Grouping // of a new conversation
	match    tape.Grouping // of the turn
	parent   uint64
	from     *conv // the conversation a fork branched from; nil otherwise
	forkTurn int
	kept     int
}

// place decides the conversation of a parsed turn. newID gives the id of a new conversation.
func (ix *index) place(p *parsed, newID func() uint64) placement {
	if p.session != "" {
		if c := ix.sessions[p.session]; c != nil {
			return placement{c: c, match: tape.GroupSession, kept: commonPrefix(p.exact, c.base)}
		}
		c := ix.add(newID(), p.session)
		return placement{c: c, isNew: true, grouping: tape.GroupSession, match: tape.GroupSession}
	}
	if len(p.msgs) > 0 {
		if s := ix.find(p.chain, p.turn.Timing.Start.UnixNano()); s != nil {
			if s.isCurrent() {
				return placement{c: s.conv, match: tape.GroupPrefix, kept: commonPrefix(p.exact, s.conv.base)}
			}
			c := ix.add(newID(), "")
			// The fork's base is the parent turn's messages and reply: s.base. Cap it so the
			// fork's appends never write into the parent's array.
			c.base = s.base[:len(s.base):len(s.base)]
			return placement{c: c, isNew: true, grouping: tape.GroupFork, match: tape.GroupFork,
				parent: s.conv.id, from: s.conv, forkTurn: s.turn, kept: commonPrefix(p.exact, s.base)}
		}
	}
	c := ix.add(newID(), "")
	return placement{c: c, isNew: true, grouping: tape.GroupSingle, match: tape.GroupSingle}
}

// advance records that turn (its index is c.turns) with kept leading base messages was placed
// in c: the conversation's base, current state and retry entry move on.
func (ix *index) advance(c *conv, kept int, exact []uint64, chain []uint64, reply msgInfo, answered bool, ready int64) {
	turn := c.turns
	c.turns++
	ix.touch(c)
	if c.retry != nil {
		ix.drop(c.retry)
		c.retry = nil
	}
	if chain == nil { // not a chat request: nothing to continue from
		c.base = nil
		c.latest = nil
		return
	}
	// The new base: the turn's full messages and its reply. Extend the old base in place when
	// the turn kept all of it (no one else sees past its length), else copy.
	var b []uint64
	if kept == len(c.base) {
		b = c.base
	} else {
		b = make([]uint64, kept, len(exact)+1)
		copy(b, c.base[:kept])
	}
	b = append(b, exact[kept:]...)
	b = append(b, reply.exact)
	c.base = b
	n := len(exact)
	if answered {
		s := &state{conv: c, turn: turn, n: n + 1, key: mix(chain[n], reply.key), base: b, ready: ready}
		ix.put(s)
		c.latest = s
		return
	}
	if n > 0 {
		s := &state{conv: c, turn: turn, n: n, key: chain[n], ready: ready}
		ix.put(s)
		c.retry = s
	}
}
