package synth

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/llmtape/llmtape/internal/randx"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/tape"
)

//go:embed text/monte_cristo.txt
var defaultText []byte

// DefaultTokenizer is the tokenizer used when none is named.
const DefaultTokenizer = "o200k_base"

// Tag vocabulary: the first unit of a block names how many base-256 digits the id has, the
// next units are the digits, most significant first.
const (
	lenWordCount   = 8
	digitWordCount = 256
	tagWordCount   = lenWordCount + digitWordCount
)

// minTokens is the least text New accepts: enough for blocks of Mooncake's 512 tokens to be
// mostly text rather than filler.
const minTokens = 2048

// ErrNoSynthetic is returned by Prompt and Messages for a nil Synthetic.
var ErrNoSynthetic = errors.New("synth: turn has no synthetic prompt")

// Materializer turns block ids and lengths into text of exactly known token counts. Make one
// with New or Default; it is safe for concurrent use and never changes after New.
type Materializer struct {
	tokenizer string
	codec     openai.Codec

	// corpus is the text as " w1 w2 w3 …": every unit is one space and one word.
	corpus string
	// esc is corpus with JSON string escaping applied.
	esc string
	// off and offEsc give the byte offset of unit i in corpus and esc; both have len units+1.
	off, offEsc []int32
	// cum[i] is the number of tokens of units 0..i-1; len units+1.
	cum []int32

	lenWords [lenWordCount]string   // " word", one token each
	digits   [digitWordCount]string // " word", one token each
	filler   string                 // " word", one token
}

var (
	defaultOnce sync.Once
	defaultM    *Materializer
)

// Default returns the Materializer of the embedded text (see text/README.md) under
// tiktoken o200k_base. It is built on first use (some 50 ms) and shared.
func Default() *Materializer {
	defaultOnce.Do(func() {
		m, err := New(context.Background(), defaultText, DefaultTokenizer) // shared: never canceled
		if err != nil {
			// The embedded text is part of the binary and tested; this cannot happen.
			panic("synth: embedded text: " + err.Error())
		}
		defaultM = m
	})
	return defaultM
}

// DefaultText returns a copy of the embedded text.
func DefaultText() []byte { return append([]byte(nil), defaultText...) }

// New returns a Materializer over text under the named tiktoken encoding ("o200k_base" when
// empty; also "cl100k_base", "p50k_base", "r50k_base"; see openai.Tokenizer, whose shared
// codecs it uses). The text is split into words on white
// space; invalid UTF-8 is replaced. It must hold at least 2048 tokens and 264 distinct words
// of one token each (any English prose of a few pages does). Counting a long text's tokens takes
// a while (about a second for a novel): New checks ctx every few thousand words and returns its
// error once it is done.
func New(ctx context.Context, text []byte, tokenizerName string) (*Materializer, error) {
	if tokenizerName == "" {
		tokenizerName = DefaultTokenizer
	}
	codec, err := openai.Tokenizer(tokenizerName)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	m := &Materializer{tokenizer: tokenizerName, codec: codec}
	s := strings.ToValidUTF8(string(text), "\uFFFD")
	words := strings.Fields(s)
	if len(words) == 0 {
		return nil, errors.New("synth: text has no words")
	}
	counts, freq, err := m.index(ctx, s, words)
	if err != nil {
		return nil, err
	}
	if total := m.Tokens(); total < minTokens {
		return nil, fmt.Errorf("synth: text has %d tokens, need at least %d", total, minTokens)
	}
	tags, err := tagWords(counts, freq)
	if err != nil {
		return nil, err
	}
	m.filler = tags[0]
	copy(m.lenWords[:], tags[:lenWordCount])
	copy(m.digits[:], tags[lenWordCount:tagWordCount])
	return m, nil
}

// index builds the corpus of words (s is their text) with its escaped twin, offsets and
// cumulative token counts, and returns each unit's tokens and frequency. It checks ctx every
// 4096 words.
func (m *Materializer) index(ctx context.Context, s string, words []string) (counts map[string]int32, freq map[string]int, err error) {
	counts = make(map[string]int32, 1<<14)
	freq = make(map[string]int, 1<<14)
	var b, e strings.Builder
	b.Grow(len(s) + len(words))
	e.Grow(len(s) + len(words) + len(s)/50)
	m.off = make([]int32, 0, len(words)+1)
	m.offEsc = make([]int32, 0, len(words)+1)
	m.cum = make([]int32, 0, len(words)+1)
	var total int64
	for i, w := range words {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
		}
		if b.Len() > 1<<30 {
			return nil, nil, errors.New("synth: text larger than 1 GiB")
		}
		unit := " " + w
		n, ok := counts[unit]
		if !ok {
			c, err := m.codec.Count(unit)
			if err != nil {
				return nil, nil, fmt.Errorf("synth: count tokens: %w", err)
			}
			n = int32(c)
			counts[unit] = n
		}
		freq[unit]++
		m.off = append(m.off, int32(b.Len()))
		m.offEsc = append(m.offEsc, int32(e.Len()))
		m.cum = append(m.cum, int32(total))
		b.WriteString(unit)
		e.WriteByte(' ')
		appendEscaped(&e, w)
		total += int64(n)
	}
	m.off = append(m.off, int32(b.Len()))
	m.offEsc = append(m.offEsc, int32(e.Len()))
	m.cum = append(m.cum, int32(total))
	m.corpus = b.String()
	m.esc = e.String()
	return counts, freq, nil
}

// tagWords returns the tag words: the most frequent lowercase ASCII words of one token, in a
// stable order, at least tagWordCount of them.
func tagWords(counts map[string]int32, freq map[string]int) ([]string, error) {
	var tags []string
	for unit, n := range counts {
		if n == 1 && isLowerWord(unit[1:]) {
			tags = append(tags, unit)
		}
	}
	if len(tags) < tagWordCount {
		return nil, fmt.Errorf("synth: text has %d distinct one-token words, need at least %d", len(tags), tagWordCount)
	}
	sort.Slice(tags, func(i, j int) bool {
		if freq[tags[i]] != freq[tags[j]] {
			return freq[tags[i]] > freq[tags[j]]
		}
		return tags[i] < tags[j]
	})
	return tags, nil
}

// isLowerWord reports whether w is two or more ASCII lowercase letters.
func isLowerWord(w string) bool {
	if len(w) < 2 {
		return false
	}
	for i := 0; i < len(w); i++ {
		if w[i] < 'a' || w[i] > 'z' {
			return false
		}
	}
	return true
}

// appendEscaped writes w as the inside of a JSON string.
func appendEscaped(b *strings.Builder, w string) {
	const hex = "0123456789abcdef"
	for i := 0; i < len(w); {
		c := w[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(w[i:])
			if r == '\u2028' || r == '\u2029' {
				b.WriteString(`\u202`)
				b.WriteByte(hex[r&0xF])
			} else {
				b.WriteString(w[i : i+size])
			}
			i += size
			continue
		}
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		default:
			b.WriteByte(c)
		}
		i++
	}
}

// Tokenizer returns the name of the tokenizer the Materializer counts with.
func (m *Materializer) Tokenizer() string { return m.tokenizer }

// Count returns the number of tokens of text under the Materializer's tokenizer.
func (m *Materializer) Count(text string) int {
	n, err := m.codec.Count(text)
	if err != nil {
		// Only the strict UTF-8 error mode fails, and it is not used.
		return 0
	}
	return n
}

// Encode returns the token ids of text under the Materializer's tokenizer.
func (m *Materializer) Encode(text string) []uint {
	ids, _, err := m.codec.Encode(text)
	if err != nil {
		return nil
	}
	return ids
}

// Words returns the number of words of the text.
func (m *Materializer) Words() int { return len(m.off) - 1 }

// Tokens returns the number of tokens of the whole text.
func (m *Materializer) Tokens() int { return int(m.cum[len(m.cum)-1]) }

// Block returns the text of block id with exactly tokens tokens (empty for tokens ≤ 0). The
// text starts with a space and ends with a non-space character.
func (m *Materializer) Block(id uint64, tokens int) string {
	return string(m.appendBlock(nil, id, tokens, false))
}

// AppendBlock appends the text of Block(id, tokens) to dst and returns the extended slice.
func (m *Materializer) AppendBlock(dst []byte, id uint64, tokens int) []byte {
	return m.appendBlock(dst, id, tokens, false)
}

// appendBlock appends block id's text (JSON-escaped when esc) of exactly n tokens.
func (m *Materializer) appendBlock(dst []byte, id uint64, n int, esc bool) []byte {
	if n <= 0 {
		return dst
	}
	// The tag: a length word, then the id's base-256 digits, most significant first.
	d := 1
	for x := id >> 8; x != 0; x >>= 8 {
		d++
	}
	dst = append(dst, m.lenWords[d-1]...)
	n--
	for i := d - 1; i >= 0 && n > 0; i-- {
		dst = append(dst, m.digits[byte(id>>(8*uint(i)))]...)
		n--
	}
	if n == 0 {
		return dst
	}
	units := len(m.off) - 1
	s := int(randx.SplitMix64(id) % uint64(units)) // spread ids over the text
	dst, n = m.appendRun(dst, s, n, esc)
	for ; n > 0; n-- {
		dst = append(dst, m.filler...)
	}
	return dst
}

// appendRun appends the longest run of whole units starting at unit s (wrapping at the end of
// the text) that has at most n tokens, and returns the tokens left.
func (m *Materializer) appendRun(dst []byte, s, n int, esc bool) ([]byte, int) {
	units := len(m.off) - 1
	for n > 0 {
		// Largest e in [s, units] with cum[e]-cum[s] <= n.
		limit := m.cum[s] + int32(n)
		e := s + sort.Search(units+1-s, func(i int) bool { return m.cum[s+i] > limit }) - 1
		if e > s {
			if esc {
				dst = append(dst, m.esc[m.offEsc[s]:m.offEsc[e]]...)
			} else {
				dst = append(dst, m.corpus[m.off[s]:m.off[e]]...)
			}
			n -= int(m.cum[e] - m.cum[s])
		}
		if e < units {
			break // the next unit does not fit
		}
		s = 0
	}
	return dst, n
}

// Slice returns the text of the units starting at word index start (taken modulo Words())
// with exactly tokens tokens, topped up with filler words when the next word does not fit,
// and the index of the first word not used. Generators call it with the returned index to
// take consecutive, non-overlapping stretches of the text.
func (m *Materializer) Slice(start, tokens int) (text string, next int) {
	units := len(m.off) - 1
	start %= units
	if start < 0 {
		start += units
	}
	var dst []byte
	n := tokens
	s := start
	for n > 0 {
		limit := m.cum[s] + int32(n)
		e := s + sort.Search(units+1-s, func(i int) bool { return m.cum[s+i] > limit }) - 1
		dst = append(dst, m.corpus[m.off[s]:m.off[e]]...)
		n -= int(m.cum[e] - m.cum[s])
		s = e
		if e < units {
			break
		}
		s = 0
	}
	for ; n > 0; n-- {
		dst = append(dst, m.filler...)
	}
	return string(dst), s
}

// validate checks a Synthetic for use.
func validate(s *tape.Synthetic) error {
	if s == nil {
		return ErrNoSynthetic
	}
	if s.InputTokens < 0 {
		return fmt.Errorf("synth: negative input tokens %d", s.InputTokens)
	}
	if s.BlockSize <= 0 && s.InputTokens > 0 {
		return fmt.Errorf("synth: block size %d, want > 0", s.BlockSize)
	}
	return nil
}

// BlockID returns the id of block i of s, the one definition that Prompt materializes and
// dataset's Mooncake export hashes: HashIDs[i], or for a block beyond the trace's hash_ids an
// id derived from the last id and the position, with the top bit set so that it does not
// meet the small ids of traces.
func BlockID(s *tape.Synthetic, i int) uint64 {
	if i < len(s.HashIDs) {
		return s.HashIDs[i]
	}
	var last uint64
	if len(s.HashIDs) > 0 {
		last = s.HashIDs[len(s.HashIDs)-1]
	}
	return randx.SplitMix64(last^uint64(i)<<40) | 1<<63
}

// appendPrompt appends the prompt text of s.
func (m *Materializer) appendPrompt(dst []byte, s *tape.Synthetic, esc bool) []byte {
	left := s.InputTokens
	for i := 0; left > 0; i++ {
		n := min(s.BlockSize, left)
		dst = m.appendBlock(dst, BlockID(s, i), n, esc)
		left -= n
	}
	return dst
}

// Prompt returns the prompt text of s: its blocks in order, block i with exactly
// min(BlockSize, InputTokens-i*BlockSize) tokens, so the whole has exactly InputTokens tokens.
// Blocks past the end of HashIDs get ids derived from the last id and their position.
func (m *Materializer) Prompt(s *tape.Synthetic) (string, error) {
	if err := validate(s); err != nil {
		return "", err
	}
	return string(m.appendPrompt(make([]byte, 0, s.InputTokens*5), s, false)), nil
}

// AppendPrompt appends the prompt text of s to dst; see Prompt.
func (m *Materializer) AppendPrompt(dst []byte, s *tape.Synthetic) ([]byte, error) {
	if err := validate(s); err != nil {
		return dst, err
	}
	return m.appendPrompt(dst, s, false), nil
}

// Messages returns the chat messages of s: one user message whose content is Prompt(s),
// {"role":"user","content":"…"}.
func (m *Materializer) Messages(s *tape.Synthetic) ([]json.RawMessage, error) {
	if err := validate(s); err != nil {
		return nil, err
	}
	dst := m.appendMessage(make([]byte, 0, 32+s.InputTokens*5), s)
	return []json.RawMessage{dst}, nil
}

// AppendMessage appends the JSON of the one user message of Messages(s) to dst and returns
// the extended slice: for callers that reuse a buffer.
func (m *Materializer) AppendMessage(dst []byte, s *tape.Synthetic) ([]byte, error) {
	if err := validate(s); err != nil {
		return dst, err
	}
	return m.appendMessage(dst, s), nil
}

func (m *Materializer) appendMessage(dst []byte, s *tape.Synthetic) []byte {
	dst = append(dst, `{"role":"user","content":"`...)
	dst = m.appendPrompt(dst, s, true)
	return append(dst, `"}`...)
}
