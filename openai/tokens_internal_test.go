package openai

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestCountChunked: counting in pieces gives the whole text's count, whatever the piece size
// and the text (letters, digits, punctuation, runs of white space, contractions, non-ASCII).
func TestCountChunked(t *testing.T) {
	words := []string{"the", "Quick", "brown", "FOX", "don't", "it's", "12345", "3.14", "--", "...",
		"\n", "\n\n", "  ", "\t", "café", "naïve", "日本語", "😀", "x", "I'm", "HTTP/2", "a,b", "(c)", "'s"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range []string{"o200k_base", "cl100k_base"} {
		c, err := Tokenizer(name)
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			var b strings.Builder
			for range 2000 {
				b.WriteString(words[rng.IntN(len(words))])
				if rng.IntN(3) > 0 {
					b.WriteByte(' ')
				}
			}
			text := b.String()
			want, err := c.Count(text)
			if err != nil {
				t.Fatal(err)
			}
			for _, chunk := range []int{1, 7, 100, 1000} {
				if got, err := countChunked(c, text, chunk); err != nil || got != want {
					t.Fatalf("%s: chunk %d: %d tokens (%v), want %d", name, chunk, got, err, want)
				}
			}
		}
	}
}
