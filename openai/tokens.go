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
		if n, err := defaultCodec.codec.Count(text); err == nil {
			return n
		}
	}
	return (len(text) + 3) / 4
}
