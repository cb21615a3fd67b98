package dataset

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"strconv"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/internal/jsonstr"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

// The per-request formats: one line (or CSV record) per request of a run, or per turn of a
// recording, with its timing, tokens and outcome. docs/json.md documents every field.
const (
	FormatResults    = "results"     // JSON lines, with the ITL samples and the events
	FormatResultsCSV = "results-csv" // CSV, the same without the lists
)

// resultSide is what a results export reads: a run's results or a recording's turns as
// results (tape.Turn.Result), the key that names it ("run" or "recording") and its id.
type resultSide struct {
	key string
	id  uint64
	// each calls fn with every result in order and the exported name of its conversation.
	each func(fn func(r *tape.Result, name string) error) error
}

// runSide reads the results of run in Seq order.
func runSide(ctx context.Context, st *tape.Store, run *tape.Run) (*resultSide, error) {
	names, err := conversationNamesOf(ctx, st, run.Recording)
	if err != nil {
		return nil, err
	}
	n := 0
	return &resultSide{key: "run", id: run.ID, each: func(fn func(*tape.Result, string) error) error {
		return st.Results(run.ID, func(r *tape.Result) error {
			if n++; n%checkEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			name, ok := names[r.Conversation]
			if !ok { // not in the recording (a store merged from elsewhere)
				name = "conv-" + strconv.FormatUint(r.Conversation, 10)
			}
			return fn(r, name)
		})
	}}, nil
}

// recordingSide reads the turns of recording r as results, conversation by conversation. A
// turn's scheduled and sent offsets are both when its request was sent upstream, from the
// recording's start (exportOrigin): a recording has no schedule, so its lag is 0.
func recordingSide(ctx context.Context, st *tape.Store, r *tape.Recording) (*resultSide, error) {
	origin, err := exportOrigin(st, r)
	if err != nil {
		return nil, err
	}
	return &resultSide{key: "recording", id: r.ID, each: func(fn func(*tape.Result, string) error) error {
		names := conversationNames{}
		return st.Conversations(r.ID, func(c *tape.Conversation) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := names.unique(c)
			return st.Turns(c.ID, func(t *tape.Turn) error {
				res := t.Result()
				if !t.Timing.Start.IsZero() {
					res.Sent = t.Timing.Start.Sub(origin) + t.Timing.Sent
				}
				res.Scheduled = res.Sent
				return fn(&res, name)
			})
		})
	}}, nil
}

// conversationNamesOf returns the exported name of every conversation of recording rec, as
// the conversation formats name them.
func conversationNamesOf(ctx context.Context, st *tape.Store, rec uint64) (map[uint64]string, error) {
	names := map[uint64]string{}
	used := conversationNames{}
	err := st.Conversations(rec, func(c *tape.Conversation) error {
		if len(names)%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		names[c.ID] = used.unique(c)
		return nil
	})
	return names, err
}

// resultClass is the error class of a result that failed ("http" for one stored without a
// class, as the summary counts it), "" for one that succeeded.
func resultClass(r *tape.Result) errclass.Class {
	switch {
	case metrics.OK(r):
		return ""
	case r.ErrorClass == errclass.None:
		return errclass.HTTP
	}
	return r.ErrorClass
}

// encodeResults is the Encoder of the results format for a recording.
func encodeResults(ctx context.Context, st *tape.Store, r *tape.Recording, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
	side, err := recordingSide(ctx, st, r)
	if err != nil {
		return ExportStats{}, err
	}
	return writeResults(side, w, cfg)
}

// encodeRunResults is the RunEncoder of the results format.
func encodeRunResults(ctx context.Context, st *tape.Store, run *tape.Run, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
	side, err := runSide(ctx, st, run)
	if err != nil {
		return ExportStats{}, err
	}
	return writeResults(side, w, cfg)
}

// writeResults writes one JSON line per result of side.
func writeResults(side *resultSide, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
	var (
		stats ExportStats
		line  []byte
		convs = map[uint64]bool{}
	)
	head := append(append([]byte(`{"`), side.key...), `":`...)
	head = strconv.AppendUint(head, side.id, 10)
	err := side.each(func(r *tape.Result, name string) error {
		stats.Turns++
		if !convs[r.Conversation] {
			convs[r.Conversation] = true
			stats.Conversations++
		}
		for _, a := range r.AttemptResults() { // one line per try of the request
			line = appendResultLine(append(line[:0], head...), &a, name, !cfg.NoITL)
			if err := writeLine(w, line); err != nil {
				return err
			}
		}
		return nil
	})
	return stats, err
}

// appendResultLine appends the rest of a result's line after its run or recording key.
func appendResultLine(b []byte, r *tape.Result, name string, itl bool) []byte {
	b = append(b, `,"conversation":`...)
	b = strconv.AppendUint(b, r.Conversation, 10)
	b = append(b, `,"conversation_name":`...)
	b = jsonstr.Append(b, name)
	b = append(b, `,"turn":`...)
	b = strconv.AppendInt(b, int64(r.Turn), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(r.Retries+1), 10)
	b = append(b, `,"scheduled_ms":`...)
	b = appendMillis(b, r.Scheduled)
	b = append(b, `,"sent_ms":`...)
	b = appendMillis(b, r.Sent)
	b = append(b, `,"schedule_lag_ms":`...)
	b = appendMillis(b, r.Sent-r.Scheduled)
	b = append(b, `,"ttft_ms":`...)
	b = appendMsOrNull(b, r.TTFT, r.TTFT > 0)
	b = append(b, `,"e2e_ms":`...)
	b = appendMsOrNull(b, r.E2E, r.E2E > 0)
	tpot, ok := metrics.ResultTPOT(r)
	b = append(b, `,"tpot_ms":`...)
	b = appendMsOrNull(b, tpot, ok)
	tpot, ok = metrics.ResultTPOTFirstChunk(r)
	b = append(b, `,"tpot_first_chunk_ms":`...)
	b = appendMsOrNull(b, tpot, ok)
	if itl {
		b = append(b, `,"itl_ms":[`...)
		first := true
		for v, n := range metrics.ITLSamples(r.Chunks) {
			// One value per sample: format it once, copy it n times.
			start := len(b)
			if !first {
				b = append(b, ',')
				start++
			}
			first = false
			b = appendMillis(b, v)
			s := b[start:]
			for range n - 1 {
				b = append(b, ',')
				b = append(b, s...)
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"input_tokens":`...)
	b = strconv.AppendInt(b, int64(r.InputTokens), 10)
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, int64(r.OutputTokens), 10)
	b = append(b, `,"cached_tokens":`...)
	b = strconv.AppendInt(b, int64(r.CachedTokens), 10)
	b = append(b, `,"token_source":`...)
	b = jsonstr.Append(b, string(r.TokenSource))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, metrics.OK(r))
	b = append(b, `,"error_class":`...)
	b = jsonstr.Append(b, string(resultClass(r)))
	b = append(b, `,"error":`...)
	b = jsonstr.Append(b, r.Error)
	b = append(b, `,"warmup":`...)
	b = strconv.AppendBool(b, r.Warmup)
	b = append(b, `,"events":[`...)
	for i, c := range r.Chunks {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"offset_ms":`...)
		b = appendMillis(b, c.Offset)
		b = append(b, `,"tokens":`...)
		b = strconv.AppendInt(b, int64(c.Tokens), 10)
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

func appendMsOrNull(b []byte, d time.Duration, ok bool) []byte {
	if !ok {
		return append(b, "null"...)
	}
	return appendMillis(b, d)
}

// resultsCSVCols are the columns of the results-csv format: the results line without its lists,
// plus the number of events.
var resultsCSVCols = []string{"conversation", "conversation_name", "turn", "attempt", "scheduled_ms",
	"sent_ms", "schedule_lag_ms", "ttft_ms", "e2e_ms", "tpot_ms", "tpot_first_chunk_ms", "input_tokens", "output_tokens",
	"cached_tokens", "token_source", "status", "ok", "error_class", "error", "warmup", "events"}

// encodeResultsCSV is the Encoder of the results-csv format for a recording.
func encodeResultsCSV(ctx context.Context, st *tape.Store, r *tape.Recording, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
	side, err := recordingSide(ctx, st, r)
	if err != nil {
		return ExportStats{}, err
	}
	return writeResultsCSV(side, w)
}

// encodeRunResultsCSV is the RunEncoder of the results-csv format.
func encodeRunResultsCSV(ctx context.Context, st *tape.Store, run *tape.Run, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error) {
	side, err := runSide(ctx, st, run)
	if err != nil {
		return ExportStats{}, err
	}
	return writeResultsCSV(side, w)
}

// writeResultsCSV writes a header and one record per result of side. Text cells go through
// output.CSVCell, so that a spreadsheet never reads an error message as a formula.
func writeResultsCSV(side *resultSide, w *bufio.Writer) (ExportStats, error) {
	var stats ExportStats
	cw := csv.NewWriter(w)
	rec := append([]string{side.key}, resultsCSVCols...)
	if err := cw.Write(rec); err != nil {
		return stats, fmt.Errorf("write: %w", err)
	}
	id := strconv.FormatUint(side.id, 10)
	convs := map[uint64]bool{}
	ms := func(d time.Duration, ok bool) string {
		if !ok {
			return ""
		}
		return string(appendMillis(nil, d))
	}
	err := side.each(func(r *tape.Result, name string) error {
		stats.Turns++
		if !convs[r.Conversation] {
			convs[r.Conversation] = true
			stats.Conversations++
		}
		for _, a := range r.AttemptResults() { // one record per try of the request
			tpot, ok := metrics.ResultTPOT(&a)
			tpotFirst, okFirst := metrics.ResultTPOTFirstChunk(&a)
			rec = append(rec[:0], id, strconv.FormatUint(a.Conversation, 10), output.CSVCell(name),
				strconv.Itoa(a.Turn), strconv.Itoa(a.Retries+1), ms(a.Scheduled, true), ms(a.Sent, true),
				ms(a.Sent-a.Scheduled, true), ms(a.TTFT, a.TTFT > 0), ms(a.E2E, a.E2E > 0), ms(tpot, ok), ms(tpotFirst, okFirst),
				strconv.Itoa(a.InputTokens), strconv.Itoa(a.OutputTokens), strconv.Itoa(a.CachedTokens),
				output.CSVCell(string(a.TokenSource)), strconv.Itoa(a.Status), strconv.FormatBool(metrics.OK(&a)),
				output.CSVCell(string(resultClass(&a))), output.CSVCell(a.Error), strconv.FormatBool(a.Warmup),
				strconv.Itoa(len(a.Chunks)))
			if err := cw.Write(rec); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return stats, err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return stats, fmt.Errorf("write: %w", err)
	}
	return stats, nil
}
