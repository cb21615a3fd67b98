package synth_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

func TestBlockExactTokens(t *testing.T) {
	m := synth.Default()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		id := rng.Uint64() >> (rng.IntN(64))
		n := 1 + rng.IntN(700)
		if i%10 == 0 {
			n = 512
		}
		b := m.Block(id, n)
		if got := m.Count(b); got != n {
			t.Fatalf("Block(%d, %d) has %d tokens: %q", id, n, got, b)
		}
		if !strings.HasPrefix(b, " ") || strings.HasSuffix(b, " ") {
			t.Fatalf("Block(%d, %d) = %q: want a leading space and no trailing space", id, n, b)
		}
		if b2 := m.Block(id, n); b2 != b {
			t.Fatalf("Block(%d, %d) not deterministic", id, n)
		}
	}
}

func TestBlocksDiffer(t *testing.T) {
	m := synth.Default()
	seen := map[string]uint64{}
	ids := []uint64{0, 1, 2, 255, 256, 257, 65535, 65536, 1 << 40, 1<<64 - 1}
	for i := uint64(3); i < 3000; i++ {
		if i == 255 || i == 256 || i == 257 {
			continue
		}
		ids = append(ids, i)
	}
	for _, id := range ids {
		b := m.Block(id, 16)
		if prev, ok := seen[b]; ok {
			t.Fatalf("ids %d and %d give the same block %q", prev, id, b)
		}
		seen[b] = id
	}
}

func TestPromptExactTokens(t *testing.T) {
	m := synth.Default()
	tests := []tape.Synthetic{
		{BlockSize: 512, HashIDs: []uint64{1, 2, 3}, InputTokens: 1500},
		{BlockSize: 512, HashIDs: []uint64{1, 2, 3}, InputTokens: 1536},
		{BlockSize: 512, HashIDs: []uint64{1}, InputTokens: 3000}, // fewer ids than blocks
		{BlockSize: 16, HashIDs: []uint64{7, 7, 7, 7}, InputTokens: 63},
		{BlockSize: 512, InputTokens: 1},
		{BlockSize: 100000, HashIDs: []uint64{42}, InputTokens: 90000}, // wraps the text
		{BlockSize: 512, InputTokens: 0},
	}
	for _, s := range tests {
		p, err := m.Prompt(&s)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Count(p); got != s.InputTokens {
			t.Errorf("Prompt(%+v) has %d tokens, want %d", s, got, s.InputTokens)
		}
		msgs, err := m.Messages(&s)
		if err != nil {
			t.Fatal(err)
		}
		var msg struct{ Role, Content string }
		if len(msgs) != 1 {
			t.Fatalf("Messages gave %d messages", len(msgs))
		}
		if err := json.Unmarshal(msgs[0], &msg); err != nil {
			t.Fatalf("Messages: %v", err)
		}
		if msg.Role != "user" || msg.Content != p {
			t.Errorf("Messages content differs from Prompt")
		}
	}
}

func TestPromptSharedPrefix(t *testing.T) {
	m := synth.Default()
	a, _ := m.Prompt(&tape.Synthetic{BlockSize: 512, HashIDs: []uint64{10, 11, 12}, InputTokens: 1400})
	b, _ := m.Prompt(&tape.Synthetic{BlockSize: 512, HashIDs: []uint64{10, 11, 99}, InputTokens: 1300})
	ab := m.Block(10, 512) + m.Block(11, 512)
	if !strings.HasPrefix(a, ab) || !strings.HasPrefix(b, ab) {
		t.Fatal("prompts with equal leading ids do not share their leading blocks")
	}
	if a[len(ab):len(ab)+20] == b[len(ab):len(ab)+20] {
		t.Fatal("different third ids give the same text")
	}
}

func TestErrors(t *testing.T) {
	m := synth.Default()
	if _, err := m.Prompt(nil); err == nil {
		t.Error("Prompt(nil): no error")
	}
	if _, err := m.Prompt(&tape.Synthetic{InputTokens: 10}); err == nil {
		t.Error("block size 0: no error")
	}
	if _, err := synth.New(context.Background(), []byte("too short"), ""); err == nil {
		t.Error("short text: no error")
	}
	if _, err := synth.New(context.Background(), synth.DefaultText(), "nope"); err == nil {
		t.Error("unknown tokenizer: no error")
	}
}

func BenchmarkPrompt(b *testing.B) {
	m := synth.Default()
	s := &tape.Synthetic{BlockSize: 512, InputTokens: 12035}
	for i := range 24 {
		s.HashIDs = append(s.HashIDs, uint64(i*7919))
	}
	p, _ := m.Prompt(s)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	dst := make([]byte, 0, len(p))
	for b.Loop() {
		dst, _ = m.AppendPrompt(dst[:0], s)
	}
}

func BenchmarkMessages(b *testing.B) {
	m := synth.Default()
	s := &tape.Synthetic{BlockSize: 512, InputTokens: 12035}
	for i := range 24 {
		s.HashIDs = append(s.HashIDs, uint64(i*7919))
	}
	msgs, _ := m.Messages(s)
	b.SetBytes(int64(len(msgs[0])))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = m.Messages(s)
	}
}

func BenchmarkDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := synth.New(context.Background(), synth.DefaultText(), ""); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzNew checks that any text New accepts gives blocks and prompts of exact token counts.
func FuzzNew(f *testing.F) {
	text := synth.DefaultText()
	f.Add(text[:12000], uint64(7), 300)
	f.Add(append([]byte("\x00 \u2028 \"quoted\" <tag> & 'x' 123456 ۱۲۳ 😀😀 \r\n\t"), text[:12000]...), uint64(1<<40), 77)
	f.Fuzz(func(t *testing.T, data []byte, id uint64, n int) {
		if len(data) > 30000 {
			return
		}
		m, err := synth.New(context.Background(), data, "")
		if err != nil {
			return
		}
		n = n % 2000
		if n < 0 {
			n = -n
		}
		b := m.Block(id, n)
		if got := m.Count(b); got != n {
			t.Fatalf("Block(%d, %d) has %d tokens: %q", id, n, got, b)
		}
		s := &tape.Synthetic{BlockSize: 64, HashIDs: []uint64{id, id + 1}, InputTokens: n}
		p, err := m.Prompt(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Count(p); got != n {
			t.Fatalf("Prompt has %d tokens, want %d", got, n)
		}
		msgs, err := m.Messages(s)
		if err != nil {
			t.Fatal(err)
		}
		var msg struct{ Content string }
		if err := json.Unmarshal(msgs[0], &msg); err != nil || msg.Content != p {
			t.Fatalf("Messages does not hold the prompt: %v", err)
		}
	})
}

// FuzzPrompt checks exact lengths and shared blocks for arbitrary ids and lengths of the
// embedded text.
func FuzzPrompt(f *testing.F) {
	m := synth.Default()
	f.Add(uint64(0), uint64(1), 512, 1200)
	f.Add(uint64(1<<63), uint64(255), 7, 3)
	f.Fuzz(func(t *testing.T, a, b uint64, bs, n int) {
		bs = 1 + abs(bs)%1024
		n = abs(n) % 3000
		s1 := &tape.Synthetic{BlockSize: bs, HashIDs: []uint64{a, b}, InputTokens: n}
		s2 := &tape.Synthetic{BlockSize: bs, HashIDs: []uint64{a, b ^ 1}, InputTokens: n}
		p1, err := m.Prompt(s1)
		if err != nil {
			t.Fatal(err)
		}
		p2, _ := m.Prompt(s2)
		if got := m.Count(p1); got != n {
			t.Fatalf("Prompt(%+v) has %d tokens", s1, got)
		}
		if n > bs {
			first := m.Block(a, bs)
			if !strings.HasPrefix(p1, first) || !strings.HasPrefix(p2, first) {
				t.Fatal("equal first ids, different first blocks")
			}
			if min(n-bs, bs) >= 9 && p1[len(first):] == p2[len(first):] {
				t.Fatal("different second ids, equal second blocks")
			}
		}
	})
}

func abs(x int) int {
	if x < 0 {
		if -x < 0 {
			return 0
		}
		return -x
	}
	return x
}
