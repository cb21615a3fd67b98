package analyze_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/tape"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// msg is one added message with its precomputed meta.
type msg struct {
	tokens int32
	hash   uint64
}

// chatTurn builds a turn that keeps kept base messages and adds msgs; its reply has reply
// tokens and the given content.
func chatTurn(conv uint64, idx int, start time.Duration, kept int, msgs []msg, reply int, content string) *tape.Turn {
	t := &tape.Turn{Conversation: conv, Index: idx, Match: tape.GroupPrefix}
	t.Request.Model = "m"
	t.Request.Kept = kept
	for _, m := range msgs {
		t.Request.Messages = append(t.Request.Messages, json.RawMessage(fmt.Sprintf(`{"role":"user","content":"%d"}`, m.hash)))
		t.Request.MessageMeta = append(t.Request.MessageMeta, tape.MessageMeta{Tokens: m.tokens, Hash: m.hash})
	}
	t.Response.Status = 200
	t.Response.Content = content
	t.Timing.Start = t0.Add(start)
	t.Timing.End = 100 * time.Millisecond
	t.Tokens.Completion = reply
	return t
}

// twoConversations: A and B share a 40-token system prompt and have three turns each,
// interleaved A1 B1 A2 B2 A3 B3 one second apart.
func twoConversations() *memStore {
	m := newMem()
	m.recs = []*tape.Recording{{ID: 1, Name: "hand", Source: "test"}}
	m.convs = []*tape.Conversation{
		{ID: 10, Recording: 1, Arrival: 0, Grouping: tape.GroupPrefix, Turns: 3},
		{ID: 11, Recording: 1, Arrival: time.Second, Grouping: tape.GroupPrefix, Turns: 3},
	}
	sys := msg{40, 1}
	m.addTurn(chatTurn(10, 0, 0, 0, []msg{sys, {10, 100}}, 20, "a1"))
	m.addTurn(chatTurn(11, 0, 1*time.Second, 0, []msg{sys, {6, 200}}, 16, "b1"))
	m.addTurn(chatTurn(10, 1, 2*time.Second, 3, []msg{{8, 101}}, 12, "a2"))
	m.addTurn(chatTurn(11, 1, 3*time.Second, 3, []msg{{9, 201}}, 10, "b2"))
	m.addTurn(chatTurn(10, 2, 4*time.Second, 5, []msg{{5, 102}}, 7, "a3"))
	m.addTurn(chatTurn(11, 2, 5*time.Second, 5, []msg{{7, 202}}, 7, "b3"))
	return m
}

// TestPrefixReuseHandCount checks block size 16 against a count by hand (docs/analyze.md
// walks through it):
//
//	A1 [sys40 u10]               50 tokens, blocks 0-3 all new                 hit  0
//	B1 [sys40 u6]                46: blocks 0,1 inside sys hit                  hit 32
//	A2 [sys u10 r20 u8]          78: blocks 0,1,2 (2 ends in u10) hit           hit 48
//	B2 [sys u6 r16 u9]           71: blocks 0,1 hit; 2 now ends in r16          hit 32
//	A3 [sys u10 r20 u8 r12 u5]   95: blocks 0-3 hit (3 ends in r20, seen in A2) hit 64
//	B3 [sys u6 r16 u9 r10 u7]    88: blocks 0-3 hit                             hit 64
//
// 240 of 428 prompt tokens.
func TestPrefixReuseHandCount(t *testing.T) {
	p, err := analyze.Analyze(context.Background(), twoConversations(), 1, analyze.Config{BlockSizes: []int{16}, CacheTokens: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	got := p.PrefixReuse[0]
	if got.PromptTokens != 428 || got.HitTokens != 240 || got.LRUHitTokens != 240 {
		t.Fatalf("reuse = %+v, want prompt 428, hit 240, lru hit 240", got)
	}
	if want := 240.0 / 428; got.HitRatio != want {
		t.Errorf("hit ratio = %v, want %v", got.HitRatio, want)
	}
}

// TestPrefixReuseLRU: with a 64-token budget (four blocks of 16) the cache holds little more
// than one prompt's head. Counted by hand (blocks are touched last to first, so the head is the
// most recent; "S0 S1" are the system prompt's blocks):
//
//	A1  all miss; cache S0 S1 A2 A3(2)                                  hit  0
//	B1  S0 S1 hit; B2(14) enters, nothing evicted                      hit 32
//	A2  S0 S1 A2 hit; its five blocks (78 tokens) evict the rest       hit 48
//	B2  S0 S1 hit; Y2 missing                                          hit 32
//	A3  S0 S1 hit; A2 was evicted by B2                                hit 32
//	B3  S0 S1 hit; Y2 was evicted by A3                                hit 32
//
// 176 of 428 tokens; the LRU never beats the unbounded cache.
func TestPrefixReuseLRU(t *testing.T) {
	p, err := analyze.Analyze(context.Background(), twoConversations(), 1, analyze.Config{BlockSizes: []int{16}, CacheTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.PrefixReuse[0]; r.LRUHitTokens != 176 || r.HitTokens != 240 || r.LRUTokens != 64 {
		t.Fatalf("reuse = %+v, want lru hit 176, hit 240", r)
	}
	for _, budget := range []int64{1, 16, 32, 128, 1 << 20} {
		p, err := analyze.Analyze(context.Background(), twoConversations(), 1, analyze.Config{BlockSizes: []int{16}, CacheTokens: budget})
		if err != nil {
			t.Fatal(err)
		}
		if r := p.PrefixReuse[0]; r.LRUHitTokens > r.HitTokens {
			t.Errorf("budget %d: lru %d beats unbounded %d", budget, r.LRUHitTokens, r.HitTokens)
		}
	}
}

// mooncake is a hand-made Mooncake-shaped import: block size 512, hash_ids per request.
var mooncake = []struct {
	input int
	ids   []uint64
}{
	{1200, []uint64{1, 2, 3}},
	{1100, []uint64{1, 2, 4}},
	{600, []uint64{1, 5}},
	{1200, []uint64{1, 2, 3}},
	{300, []uint64{6}},
	{1100, []uint64{1, 2, 4}},
}

// impliedReuse is the reuse the hash_ids themselves imply: each request's leading run of ids
// seen before, in tokens (512 a block, the last block the remainder).
func impliedReuse(bs int) (prompt, hit int64) {
	seen := map[uint64]bool{}
	for _, r := range mooncake {
		left := r.input
		run := true
		for i, id := range r.ids {
			n := min(bs, left)
			if i == len(r.ids)-1 {
				n = left
			}
			left -= n
			if run && seen[id] {
				hit += int64(n)
			} else {
				run = false
			}
			seen[id] = true
		}
		prompt += int64(r.input)
	}
	return prompt, hit
}

func TestPrefixReuseMooncakeMatchesHashIDs(t *testing.T) {
	m := newMem()
	m.recs = []*tape.Recording{{ID: 1, Source: "import:mooncake"}}
	for i, r := range mooncake {
		id := uint64(100 + i)
		m.convs = append(m.convs, &tape.Conversation{ID: id, Recording: 1, Arrival: time.Duration(i) * time.Second, Grouping: tape.GroupImport})
		t := &tape.Turn{Conversation: id}
		t.Request.Synthetic = &tape.Synthetic{BlockSize: 512, HashIDs: r.ids, InputTokens: r.input}
		t.Tokens = tape.Tokens{Prompt: r.input, Completion: 10, Source: tape.TokensImported}
		t.Timing.Start = t0.Add(time.Duration(i) * time.Second)
		m.addTurn(t)
	}
	prompt, hit := impliedReuse(512)
	// By hand: 0 + 1024 + 512 + 1200 + 0 + 1100 = 3836 of 5500.
	if prompt != 5500 || hit != 3836 {
		t.Fatalf("implied reuse %d/%d, want 3836/5500", hit, prompt)
	}
	for _, bs := range []int{512, 16} {
		p, err := analyze.Analyze(context.Background(), m, 1, analyze.Config{BlockSizes: []int{bs}})
		if err != nil {
			t.Fatal(err)
		}
		r := p.PrefixReuse[0]
		if r.PromptTokens != prompt || r.HitTokens != hit {
			t.Errorf("block %d: reuse %d/%d, want %d/%d", bs, r.HitTokens, r.PromptTokens, hit, prompt)
		}
	}
}

// TestPrefixReuseFork: conversation F re-sends A's first turn and its reply, then a message of
// its own (a regenerate-and-edit fork at turn 0), after A2. Its 78-token prompt
// [sys40 u10 r20 u8'] shares blocks 0-3 with A2 (block 3 ends in A1's reply): 64 more hits.
func TestPrefixReuseFork(t *testing.T) {
	m := twoConversations()
	m.convs = append(m.convs, &tape.Conversation{ID: 12, Recording: 1, Arrival: 2500 * time.Millisecond,
		Grouping: tape.GroupFork, Parent: 10, ForkTurn: 0, Turns: 1})
	m.addTurn(chatTurn(12, 0, 2500*time.Millisecond, 3, []msg{{8, 999}}, 5, "f1"))
	p, err := analyze.Analyze(context.Background(), m, 1, analyze.Config{BlockSizes: []int{16}})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.PrefixReuse[0]; r.PromptTokens != 428+78 || r.HitTokens != 240+64 {
		t.Fatalf("reuse = %+v, want %d of %d", r, 240+64, 428+78)
	}
	if p.Grouping["fork"] != 1 {
		t.Errorf("grouping = %v", p.Grouping)
	}
}
