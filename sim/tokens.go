package sim

import (
	"fmt"
	"sync"

	"github.com/tiktoken-go/tokenizer"
)

// tokenizerFunc appends the tokens of text to dst. Tokens are ids for tiktoken and packed
// 4-byte groups for the approximate tokenizer; only equality matters (prefix-cache hashing).
type tokenizerFunc func(dst []uint32, text string) []uint32

var (
	o200kOnce  sync.Once
	o200kCodec tokenizer.Codec
	o200kErr   error
)

func newTokenizer(name string) (tokenizerFunc, error) {
	switch name {
	case "approx":
		return approxTokens, nil
	case "o200k_base":
		o200kOnce.Do(func() { o200kCodec, o200kErr = tokenizer.Get(tokenizer.O200kBase) })
		if o200kErr != nil {
			return nil, fmt.Errorf("load tokenizer %s: %w", name, o200kErr)
		}
		codec := o200kCodec
		return func(dst []uint32, text string) []uint32 {
			ids, _, err := codec.Encode(text)
			if err != nil {
				// The regexp engine failed on this text (a timeout, not seen in practice):
				// fall back to the estimate rather than fail the request.
				return approxTokens(dst, text)
			}
			for _, id := range ids {
				dst = append(dst, uint32(id))
			}
			return dst
		}, nil
	}
	return nil, fmt.Errorf("tokenizer %q: want o200k_base or approx", name)
}

// approxTokens cuts text into 4-byte tokens (the last one shorter), the usual
// 4-characters-a-token estimate.
func approxTokens(dst []uint32, text string) []uint32 {
	for i := 0; i < len(text); i += 4 {
		var v uint32
		for j := i; j < i+4 && j < len(text); j++ {
			v = v<<8 | uint32(text[j])
		}
		if len(text)-i < 4 {
			v |= uint32(len(text)-i) << 29 // keep short tails apart from full groups
		}
		dst = append(dst, v)
	}
	return dst
}
