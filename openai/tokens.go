package openai

import (
	"fmt"
	"sync"

	"github.com/tiktoken-go/tokenizer"
)

// Codec is a tiktoken encoding (github.com/tiktoken-go/tokenizer). The
// codecs returned by Tokenizer are shared: use Count, Encode and Decode
// freely from many goroutines, but do not call SetErrorMode on them.
type Codec = tokenizer.Codec

// DefaultEncoding is the encoding CountTokens uses.
const DefaultEncoding = "o200k_base"

var codecs struct {
	sync.Mutex
	m map[string]*codecOnce
}

type codecOnce struct {
	once  sync.Once
	codec Codec
	err   error
}

// Tokenizer returns the named tiktoken encoding: "o200k_base" (also for "")
// or "cl100k_base" (and the older "p50k_base", "p50k_edit", "r50k_base").
// Each codec is built once, on first use, and shared.
func Tokenizer(name string) (Codec, error) {
	if name == "" {
		name = DefaultEncoding
	}
	codecs.Lock()
	if codecs.m == nil {
		codecs.m = make(map[string]*codecOnce)
	}
	c, ok := codecs.m[name]
	if !ok {
		c = &codecOnce{}
		codecs.m[name] = c
	}
	codecs.Unlock()
	c.once.Do(func() {
		switch name {
		case "o200k_base", "cl100k_base", "p50k_base", "p50k_edit", "r50k_base":
			c.codec, c.err = tokenizer.Get(tokenizer.Encoding(name))
		default:
			c.err = fmt.Errorf("tokenizer %q: %w", name, tokenizer.ErrEncodingNotSupported)
		}
	})
	return c.codec, c.err
}

var defaultCodec struct {
	once  sync.Once
	codec Codec
}

// CountTokens returns the number of o200k_base tokens in text. It is safe
// for concurrent use; the first call builds the codec (which takes a
// moment). Should the tokenizer ever fail, it falls back to an estimate of
// one token per four bytes.
func CountTokens(text string) int {
	if text == "" {
		return 0
	}
	defaultCodec.once.Do(func() {
		defaultCodec.codec, _ = Tokenizer(DefaultEncoding)
	})
	if defaultCodec.codec != nil {
		if n, err := countChunked(defaultCodec.codec, text, countChunk); err == nil {
			return n
		}
	}
	return (len(text) + 3) / 4
}

// countChunk is the size of the pieces a long text is counted in.
const countChunk = 64 << 10

// countChunked counts the tokens of text in pieces of about chunk bytes. The tokenizer's
// regular expression works on a copy of its input as runes (4 bytes each) plus its matches,
// so counting a 50 MB message whole holds several times its size; pieces bound that. A text
// is cut only before a space that lies between two ASCII letters ("word| word"): no piece of
// the o200k or cl100k split pattern spans such a point (a letter run ends at the space, and
// the next piece starts with it), so the sum of the pieces' counts is the whole text's.
func countChunked(c Codec, text string, chunk int) (int, error) {
	total := 0
	for len(text) > chunk {
		cut := -1
		for i := chunk; i+1 < len(text); i++ {
			if text[i] == ' ' && asciiLetter(text[i-1]) && asciiLetter(text[i+1]) {
				cut = i
				break
			}
		}
		if cut < 0 {
			break
		}
		n, err := c.Count(text[:cut])
		if err != nil {
			return 0, err
		}
		total += n
		text = text[cut:]
	}
	n, err := c.Count(text)
	return total + n, err
}

func asciiLetter(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }
