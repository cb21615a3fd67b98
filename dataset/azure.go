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

// azureColumns are the columns an Azure trace must have, by their lower-case names, and
// their names in the trace's own spelling.
var azureColumns = [...]struct{ key, name string }{
	{"timestamp", "TIMESTAMP"}, {"contexttokens", "ContextTokens"}, {"generatedtokens", "GeneratedTokens"},
}

// parseAzure reads an Azure LLM inference trace: CSV with the columns TIMESTAMP,
// ContextTokens and GeneratedTokens (any order, names case-insensitive, other columns
// ignored). Each row is a single-turn conversation at its recorded time whose prompt is
// synthetic: blocks with ids of their own, so prompts share nothing.
func parseAzure(ctx context.Context, data []byte, file string, cfg *Config) (*Dataset, error) {
	bs := cfg.blockSize()
	r := csv.NewReader(bytes.NewReader(data))
	r.ReuseRecord = true
	r.FieldsPerRecord = -1
	col, err := azureHeader(r, file)
	if err != nil {
		return nil, err
	}
	ids := azureIDs{salt: fnvString(file)}
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
		row, ierr := azureRow(rec, col)
		if ierr != nil {
			ierr.File, ierr.Line = file, line
			return nil, ierr
		}
		nb, err := blockCount(int64(row.in), bs)
		if err != nil {
			return nil, &InputError{File: file, Line: line, Element: "ContextTokens", Err: err}
		}
		if first.IsZero() || row.ts.Before(first) {
			first = row.ts
		}
		last = later(last, row.ts)
		d.Conversations = append(d.Conversations, Conversation{
			Conversation: tape.Conversation{Grouping: tape.GroupSingle},
			Turns:        []tape.Turn{syntheticTurn(cfg.Model, bs, ids.next(nb), row.in, row.out, row.ts)},
		})
	}
	for i := range d.Conversations {
		c := &d.Conversations[i]
		c.Conversation.Arrival = c.Turns[0].Timing.Start.Sub(first)
	}
	d.Recording.Started, d.Recording.Ended = first, last
	return d, nil
}

// azureHeader reads the header and returns the index of each of azureColumns.
func azureHeader(r *csv.Reader, file string) ([len(azureColumns)]int, error) {
	var col [len(azureColumns)]int
	header, err := r.Read()
	if err != nil {
		return col, csvError(file, err, "a header TIMESTAMP,ContextTokens,GeneratedTokens")
	}
	for i, c := range azureColumns {
		col[i] = -1
		for j, h := range header { // a repeated column: the last one
			if strings.ToLower(strings.TrimSpace(h)) == c.key {
				col[i] = j
			}
		}
		if col[i] < 0 {
			return col, &InputError{File: file, Line: 1, Element: "header",
				Err: fmt.Errorf("missing column %q, expected the header TIMESTAMP,ContextTokens,GeneratedTokens, got %q", c.key, strings.Join(header, ","))}
		}
	}
	return col, nil
}

// azureRequest is one row of an Azure trace.
type azureRequest struct {
	ts      time.Time
	in, out int // context and generated tokens
}

// azureRow reads one row whose columns are at col. Its error has no file and line yet.
func azureRow(rec []string, col [len(azureColumns)]int) (azureRequest, *InputError) {
	var row azureRequest
	field := func(i int) (string, *InputError) {
		if col[i] >= len(rec) {
			return "", &InputError{Err: fmt.Errorf("%d fields, expected at least %d", len(rec), col[i]+1)}
		}
		return strings.TrimSpace(rec[col[i]]), nil
	}
	text, ierr := field(0)
	if ierr != nil {
		return row, ierr
	}
	var err error
	for _, layout := range azureTimeLayouts {
		if row.ts, err = time.Parse(layout, text); err == nil {
			break
		}
	}
	if err != nil {
		return row, &InputError{Element: "TIMESTAMP", Err: fmt.Errorf("expected a time like 2023-11-16 18:15:46.6805900, got %q", text)}
	}
	for i, v := range []*int{&row.in, &row.out} {
		if text, ierr = field(i + 1); ierr != nil {
			return row, ierr
		}
		n, err := strconv.Atoi(text)
		if err != nil || n < 0 || n > maxTraceTokens {
			return row, &InputError{Element: azureColumns[i+1].name, Err: fmt.Errorf("expected a non-negative integer, got %q", text)}
		}
		*v = n
	}
	return row, nil
}

// azureIDs gives the blocks of an Azure trace's prompts ids that no other block has: a
// sequence keyed by the file's name, below the fresh ids of Mooncake imports.
type azureIDs struct {
	salt, seq uint64
}

// next returns the ids of n more blocks.
func (a *azureIDs) next(n int) []uint64 {
	ids := make([]uint64, n)
	for i := range ids {
		a.seq++
		ids[i] = randx.SplitMix64(a.salt^a.seq) &^ (1 << 63)
	}
	return ids
}

// fnvString is the FNV-1a hash of s.
func fnvString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
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
