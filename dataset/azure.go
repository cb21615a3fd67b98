package dataset

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/llmtape/llmtape/internal/randx"
	"github.com/llmtape/llmtape/tape"
)

// azureTimeLayouts are the timestamp forms accepted: the trace's own
// ("2023-11-16 18:15:46.6805900", taken as UTC) and RFC 3339.
var azureTimeLayouts = []string{"2006-01-02 15:04:05.999999999", time.RFC3339Nano}

// parseAzure reads an Azure LLM inference trace: CSV with the columns TIMESTAMP,
// ContextTokens and GeneratedTokens (any order, names case-insensitive, other columns
// ignored). Each row is a single-turn conversation at its recorded time whose prompt is
// synthetic: blocks with ids of their own, so prompts share nothing.
func parseAzure(ctx context.Context, data []byte, file string, cfg *Config) (*Dataset, error) {
	bs := cfg.blockSize()
	r := csv.NewReader(bytes.NewReader(data))
	r.ReuseRecord = true
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, csvError(file, err, "a header TIMESTAMP,ContextTokens,GeneratedTokens")
	}
	col := map[string]int{"timestamp": -1, "contexttokens": -1, "generatedtokens": -1}
	for i, h := range header {
		k := strings.ToLower(strings.TrimSpace(h))
		if _, ok := col[k]; ok {
			col[k] = i
		}
	}
	for _, k := range []string{"timestamp", "contexttokens", "generatedtokens"} {
		if col[k] < 0 {
			return nil, &InputError{File: file, Line: 1, Element: "header",
				Err: fmt.Errorf("missing column %q, expected the header TIMESTAMP,ContextTokens,GeneratedTokens, got %q", k, strings.Join(header, ","))}
		}
	}
	h := fnv.New64a()
	h.Write([]byte(file))
	salt := h.Sum64()
	var seq uint64
	d := &Dataset{}
	var first, last time.Time
	for n := 1; ; n++ {
		if n%checkEvery == 1 { // the first and every checkEvery-th
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(file, err, "TIMESTAMP,ContextTokens,GeneratedTokens")
		}
		line, _ := r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		fail := func(field string, err error) error {
			return &InputError{File: file, Line: line, Element: field, Err: err}
		}
		get := func(k string) (string, error) {
			i := col[k]
			if i >= len(rec) {
				return "", fail("", fmt.Errorf("%d fields, expected at least %d", len(rec), i+1))
			}
			return strings.TrimSpace(rec[i]), nil
		}
		tsText, err := get("timestamp")
		if err != nil {
			return nil, err
		}
		var ts time.Time
		for _, layout := range azureTimeLayouts {
			if ts, err = time.Parse(layout, tsText); err == nil {
				break
			}
		}
		if err != nil {
			return nil, fail("TIMESTAMP", fmt.Errorf("expected a time like 2023-11-16 18:15:46.6805900, got %q", tsText))
		}
		var n [2]int
		for i, k := range []string{"contexttokens", "generatedtokens"} {
			s, err := get(k)
			if err != nil {
				return nil, err
			}
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 || v > maxTraceTokens {
				name := [...]string{"ContextTokens", "GeneratedTokens"}[i]
				return nil, fail(name, fmt.Errorf("expected a non-negative integer, got %q", s))
			}
			n[i] = v
		}
		nb, err := blockCount(int64(n[0]), bs)
		if err != nil {
			return nil, fail("ContextTokens", err)
		}
		ids := make([]uint64, nb)
		for i := range ids {
			seq++
			ids[i] = randx.SplitMix64(salt^seq) &^ (1 << 63)
		}
		if first.IsZero() || ts.Before(first) {
			first = ts
		}
		if ts.After(last) {
			last = ts
		}
		d.Conversations = append(d.Conversations, Conversation{
			Conversation: tape.Conversation{Grouping: tape.GroupSingle},
			Turns:        []tape.Turn{syntheticTurn(cfg.Model, bs, ids, n[0], n[1], ts)},
		})
	}
	for i := range d.Conversations {
		c := &d.Conversations[i]
		c.Conversation.Arrival = c.Turns[0].Timing.Start.Sub(first)
	}
	d.Recording.Started, d.Recording.Ended = first, last
	return d, nil
}

// csvError turns an encoding/csv error into an InputError.
func csvError(file string, err error, want string) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &InputError{File: file, Line: pe.Line, Err: fmt.Errorf("malformed CSV: %v (expected %s)", pe.Err, want)}
	}
	if err == io.EOF {
		return &InputError{File: file, Err: fmt.Errorf("empty file, expected %s", want)}
	}
	return &InputError{File: file, Err: err}
}
