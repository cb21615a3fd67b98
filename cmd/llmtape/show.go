package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newShowCmd) }

// showPreview is how many characters of each message the table shows.
const showPreview = 72

// showMessage is one message of a turn in `show --format json`.
type showMessage struct {
	Role    string          `json:"role"`
	Preview string          `json:"preview"`
	JSON    json.RawMessage `json:"json"`
}

// showTurn is one turn in `show --format json`. Durations are in milliseconds.
type showTurn struct {
	Index        int           `json:"index"`
	Match        string        `json:"match"`
	Model        string        `json:"model"`
	Path         string        `json:"path"`
	Start        time.Time     `json:"start"`
	ThinkMs      *float64      `json:"think_ms"`
	TTFTMs       *float64      `json:"ttft_ms"`
	E2EMs        *float64      `json:"e2e_ms"`
	Status       int           `json:"status"`
	Error        string        `json:"error,omitempty"`
	ErrorClass   string        `json:"error_class,omitempty"` // set exactly when the turn failed
	FinishReason string        `json:"finish_reason,omitempty"`
	Kept         int           `json:"kept"`
	Messages     []showMessage `json:"messages"`
	Reply        string        `json:"reply"`
	Tokens       showTokens    `json:"tokens"`
	Events       []showEvent   `json:"events,omitempty"` // with --events
}

// showEvent is one output event of a stream in `show --events`: its arrival from the request
// being sent, the gap since the previous event (for the first, since the request was sent)
// and the tokens it carried.
type showEvent struct {
	OffsetMs float64 `json:"offset_ms"`
	GapMs    float64 `json:"gap_ms"`
	Tokens   int32   `json:"tokens"`
}

// showEvents returns the event timeline of a turn's or a result's output events.
func showEvents(chunks []tape.Chunk) []showEvent {
	evs := make([]showEvent, len(chunks))
	var prev time.Duration
	for i, c := range chunks {
		evs[i] = showEvent{OffsetMs: ms(c.Offset), GapMs: ms(c.Offset - prev), Tokens: c.Tokens}
		prev = c.Offset
	}
	return evs
}

type showTokens struct {
	Prompt     int    `json:"prompt"`
	Completion int    `json:"completion"`
	Cached     int    `json:"cached"`
	Source     string `json:"source"`
}

// showOutput is the whole of `show --format json`.
type showOutput struct {
	ID        uint64  `json:"id"`
	Recording uint64  `json:"recording"`
	ArrivalMs float64 `json:"arrival_ms"`
	Grouping  string  `json:"grouping"`
	Session   string  `json:"session,omitempty"`
	// SessionHeader is the name of the header that carried Session.
	SessionHeader string     `json:"session_header,omitempty"`
	Parent        uint64     `json:"parent,omitempty"`
	ForkTurn      *int       `json:"fork_turn,omitempty"`
	Turns         []showTurn `json:"turns"`
}

func newShowCmd() *cobra.Command {
	var (
		out    outputFlags
		events bool
		run    string
	)
	cmd := &cobra.Command{
		Use:   "show CONVERSATION",
		Short: "Show the turns of one conversation, or its requests in a replay run",
		Long: `Show prints the turns of one conversation: for each turn the messages it added (role and
the first characters; the messages kept from earlier turns are counted, not repeated), the
reply, the timing (think time before it, TTFT and end-to-end latency from the request being
sent upstream) and the token counts with their source. A turn that failed (the upstream could
not be reached, answered an error, broke off the stream, or the client went away) is marked
FAILED with its error class; its messages are the ones the client sent. --format json gives
each added message verbatim, the reply in full, and error_class on failed turns. --format csv
writes one record per turn: its timing, status, tokens, the number of messages it kept and
added, and the reply in full.

--events adds each turn's stream events: when each arrived (from the request being sent), the
gap since the one before, and the tokens it carried; --format csv then writes one record per
event. --run RUN shows the conversation's requests in that replay run instead (their timing,
tokens and outcome; with --events their events), as the run measured them.`,
		Example: `  llmtape ls                     # find a recording
  llmtape show 42
  llmtape show 42 --format json | jq '.turns[].tokens'
  llmtape show 42 --format csv -o turns.csv
  llmtape show 42 --events
  llmtape show --run latest 42 --events --format csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := out.parse(cmd)
			if err != nil {
				return err
			}
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return usageErrorf("conversation %q: want a conversation id (a positive number)", args[0])
			}
			s, err := openStoreReadOnly(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			if cmd.Flags().Changed("run") {
				res, err := showRun(s, run, id, events)
				if err != nil {
					return fmt.Errorf("show: %w", err)
				}
				if events && f == output.CSV {
					return out.print(cmd, f, res, res.writeTable, res.eventsCSV)
				}
				return out.print(cmd, f, res, res.writeTable, res.csv)
			}
			conv, err := showConversation(s, id, events)
			if errors.Is(err, tape.ErrNotFound) {
				return fmt.Errorf("show: conversation %d is not in %s", id, s.Path())
			}
			if err != nil {
				return fmt.Errorf("show: %w", err)
			}
			if events && f == output.CSV {
				return out.print(cmd, f, conv, conv.writeTable, conv.eventsCSV)
			}
			return out.print(cmd, f, conv, conv.writeTable, conv.csv)
		},
	}
	out.bind(cmd)
	cmd.Flags().BoolVar(&events, "events", false, "show each turn's stream events: offset, gap and tokens")
	cmd.Flags().StringVar(&run, "run", "", "show the conversation's requests in this replay run (id, name or latest)")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func showConversation(s *tape.Store, id uint64, events bool) (*showOutput, error) {
	conv, err := s.Conversation(id)
	if err != nil {
		return nil, err
	}
	out := &showOutput{ID: conv.ID, Recording: conv.Recording, ArrivalMs: ms(conv.Arrival),
		Grouping: string(conv.Grouping), Session: conv.Session, SessionHeader: conv.SessionHeader, Parent: conv.Parent, Turns: []showTurn{}}
	if conv.Parent != 0 {
		ft := conv.ForkTurn
		out.ForkTurn = &ft
	}
	var prev *tape.Timing
	err = s.Turns(id, func(t *tape.Turn) error {
		st := showTurn{
			Index: t.Index, Match: string(t.Match), Model: t.Request.Model, Path: t.Request.Path,
			Start:  t.Timing.Start.UTC(),
			Status: t.Response.Status, Error: t.Response.Error, ErrorClass: string(t.FailureClass()),
			FinishReason: t.Response.FinishReason, Kept: t.Request.Kept, Messages: []showMessage{},
			Reply: t.Response.Content,
			Tokens: showTokens{Prompt: t.Tokens.Prompt, Completion: t.Tokens.Completion,
				Cached: t.Tokens.Cached, Source: string(t.Tokens.Source)},
		}
		if d, ok := t.Timing.ThinkTime(prev); ok {
			think := ms(d)
			st.ThinkMs = &think
		}
		prev = &t.Timing
		if d, ok := t.Timing.E2E(); ok { // imported and generated turns have no response timing
			e2e := ms(d)
			st.E2EMs = &e2e
		}
		if d, ok := t.Timing.TTFT(); ok {
			ttft := ms(d)
			st.TTFTMs = &ttft
		}
		if events {
			st.Events = showEvents(t.Timing.Chunks)
		}
		for _, m := range t.Request.Messages {
			role, text := messagePreview(m)
			st.Messages = append(st.Messages, showMessage{Role: role, Preview: text, JSON: m})
		}
		switch {
		case t.Request.Prompt != nil:
			st.Messages = append(st.Messages, showMessage{Role: "prompt", Preview: preview(promptText(t.Request.Prompt)), JSON: t.Request.Prompt})
		case t.Request.Truncated:
			st.Messages = append(st.Messages, showMessage{Role: "truncated",
				Preview: fmt.Sprintf("request body of %d bytes not kept (larger than record --max-body)", t.Request.BodySize)})
		case t.Request.Synthetic != nil:
			st.Messages = append(st.Messages, showMessage{Role: "synthetic",
				Preview: fmt.Sprintf("%d tokens in %d blocks", t.Request.Synthetic.InputTokens, len(t.Request.Synthetic.HashIDs))})
		}
		out.Turns = append(out.Turns, st)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// messagePreview returns a chat message's role and the first characters of its text
// (openai.ContentText), followed by a tag for each part of a content array that has no text
// ("[image_url]") and the names of its tool calls ("[call get_weather]").
func messagePreview(raw json.RawMessage) (role, text string) {
	var m struct {
		Role      string          `json:"role"`
		Content   json.RawMessage `json:"content"`
		ToolCalls []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tool_calls"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "?", preview(string(raw))
	}
	s, _ := openai.ContentText(m.Content) // content that is neither text nor parts shows none
	var parts []struct {
		Type    string          `json:"type"`
		Text    json.RawMessage `json:"text"`
		Refusal json.RawMessage `json:"refusal"`
	}
	if len(m.Content) > 0 && m.Content[0] == '[' && json.Unmarshal(m.Content, &parts) == nil {
		for _, p := range parts {
			if p.Text == nil && p.Refusal == nil && p.Type != "" {
				s += " [" + p.Type + "]"
			}
		}
	}
	for _, tc := range m.ToolCalls {
		s += " [call " + tc.Function.Name + "]"
	}
	return m.Role, preview(s)
}

func promptText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// preview keeps the first showPreview characters of s on one line.
func preview(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= showPreview {
		return s
	}
	n := 0
	for i := range s {
		if n == showPreview-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// fmtMs formats a duration in milliseconds for the table ("-" when unknown).
func fmtMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return output.Millis(*v)
}

// csvMs is a duration in milliseconds for CSV ("" when unknown).
func csvMs(v *float64) output.Cell {
	if v == nil {
		return output.Text("")
	}
	return output.Num(*v)
}

// csv is the conversation as one flat table: a record per turn.
func (out *showOutput) csv() output.Section {
	s := output.Section{Cols: []string{"conversation", "turn", "start", "match", "model", "path", "status",
		"error_class", "error", "finish_reason", "think_ms", "ttft_ms", "e2e_ms", "prompt_tokens", "cached_tokens",
		"completion_tokens", "token_source", "kept_messages", "added_messages", "reply"}}
	for _, t := range out.Turns {
		s.Rows = append(s.Rows, []output.Cell{output.Int(out.ID), output.Int(t.Index),
			output.Text(t.Start.Format(time.RFC3339Nano)), output.Text(t.Match), output.Text(t.Model),
			output.Text(t.Path), output.Int(t.Status), output.Text(t.ErrorClass), output.Text(t.Error),
			output.Text(t.FinishReason), csvMs(t.ThinkMs), csvMs(t.TTFTMs), csvMs(t.E2EMs),
			output.Int(t.Tokens.Prompt), output.Int(t.Tokens.Cached), output.Int(t.Tokens.Completion),
			output.Text(t.Tokens.Source), output.Int(t.Kept), output.Int(len(t.Messages)), output.Text(t.Reply)})
	}
	return s
}

// writeTable writes the conversation for people: a header line, then each turn with the
// first characters of its messages and reply.
func (out *showOutput) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "conversation %d  recording %d  grouping %s  arrival %s  turns %d\n",
		out.ID, out.Recording, out.Grouping, output.Millis(out.ArrivalMs), len(out.Turns))
	if out.Session != "" && out.SessionHeader != "" {
		fmt.Fprintf(w, "session %s (header %s)\n", out.Session, out.SessionHeader)
	} else if out.Session != "" {
		fmt.Fprintf(w, "session %s\n", out.Session)
	}
	if out.Parent != 0 {
		fmt.Fprintf(w, "forked from conversation %d at turn %d\n", out.Parent, *out.ForkTurn)
	}
	for _, t := range out.Turns {
		failed := ""
		if t.ErrorClass != "" {
			failed = "  FAILED " + t.ErrorClass
		}
		fmt.Fprintf(w, "\nturn %d  %s  %s  status %d  think %s  ttft %s  e2e %s  tokens %d in (%d cached) / %d out (%s)%s\n",
			t.Index, t.Start.Format("2006-01-02 15:04:05.000"), orDash(t.Model), t.Status, fmtMs(t.ThinkMs),
			fmtMs(t.TTFTMs), fmtMs(t.E2EMs), t.Tokens.Prompt, t.Tokens.Cached, t.Tokens.Completion,
			orDash(t.Tokens.Source), failed)
		if t.Kept > 0 {
			fmt.Fprintf(w, "  … %d earlier messages\n", t.Kept)
		}
		for _, m := range t.Messages {
			fmt.Fprintf(w, "  %-9s %s\n", m.Role, m.Preview)
		}
		if t.ErrorClass != "" || t.Error != "" {
			fmt.Fprintf(w, "  %-9s %s\n", "error", preview(t.ErrorClass+": "+t.Error))
		} else {
			fmt.Fprintf(w, "  %-9s %s\n", "reply", preview(t.Reply))
		}
		writeEvents(w, t.Events)
	}
	return nil
}

// writeEvents writes an event timeline under a turn or a request of the table.
func writeEvents(w io.Writer, evs []showEvent) {
	if evs == nil {
		return
	}
	fmt.Fprintf(w, "  events %d\n  %6s %10s %10s %6s\n", len(evs), "event", "offset_ms", "gap_ms", "tokens")
	for i, e := range evs {
		fmt.Fprintf(w, "  %6d %10.3f %10.3f %6d\n", i, e.OffsetMs, e.GapMs, e.Tokens)
	}
}

// eventsCSV is the conversation's events as one flat table: a record per event.
func (out *showOutput) eventsCSV() output.Section {
	s := output.Section{Cols: eventCols}
	for _, t := range out.Turns {
		s.Rows = eventRows(s.Rows, out.ID, t.Index, t.Events)
	}
	return s
}

// eventCols are the columns of `show --events --format csv`.
var eventCols = []string{"conversation", "turn", "event", "offset_ms", "gap_ms", "tokens"}

func eventRows(rows [][]output.Cell, conv uint64, turn int, evs []showEvent) [][]output.Cell {
	for i, e := range evs {
		rows = append(rows, []output.Cell{output.Int(conv), output.Int(turn), output.Int(i),
			output.Num(e.OffsetMs), output.Num(e.GapMs), output.Int(int64(e.Tokens))})
	}
	return rows
}

// showResult is one request of a run in `show --run RUN CONVERSATION --format json`.
type showResult struct {
	Turn         int         `json:"turn"`
	Attempt      int         `json:"attempt"`
	ScheduledMs  float64     `json:"scheduled_ms"`
	SentMs       float64     `json:"sent_ms"`
	TTFTMs       *float64    `json:"ttft_ms"`
	E2EMs        float64     `json:"e2e_ms"`
	Status       int         `json:"status"`
	ErrorClass   string      `json:"error_class,omitempty"`
	Error        string      `json:"error,omitempty"`
	InputTokens  int         `json:"input_tokens"`
	OutputTokens int         `json:"output_tokens"`
	CachedTokens int         `json:"cached_tokens"`
	Warmup       bool        `json:"warmup"`
	Events       []showEvent `json:"events,omitempty"` // with --events
}

// showRunOutput is the whole of `show --run RUN CONVERSATION --format json`.
type showRunOutput struct {
	Run          uint64       `json:"run"`
	RunName      string       `json:"run_name"`
	Conversation uint64       `json:"conversation"`
	Results      []showResult `json:"results"`
}

// showRun reads the results of conversation conv in run ref, in turn order.
func showRun(s *tape.Store, ref string, conv uint64, events bool) (*showRunOutput, error) {
	run, err := s.FindRun(ref)
	if err != nil {
		return nil, err
	}
	out := &showRunOutput{Run: run.ID, RunName: run.Name, Conversation: conv, Results: []showResult{}}
	err = s.Results(run.ID, func(r *tape.Result) error {
		if r.Conversation != conv {
			return nil
		}
		sr := showResult{Turn: r.Turn, Attempt: r.Retries + 1, ScheduledMs: ms(r.Scheduled), SentMs: ms(r.Sent),
			E2EMs: ms(r.E2E), Status: r.Status, ErrorClass: string(r.ErrorClass), Error: r.Error,
			InputTokens: r.InputTokens, OutputTokens: r.OutputTokens, CachedTokens: r.CachedTokens, Warmup: r.Warmup}
		if r.TTFT > 0 {
			ttft := ms(r.TTFT)
			sr.TTFTMs = &ttft
		}
		if events {
			sr.Events = showEvents(r.Chunks)
		}
		out.Results = append(out.Results, sr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out.Results) == 0 {
		return nil, fmt.Errorf("run %d %q has no request of conversation %d", run.ID, run.Name, conv)
	}
	slices.SortStableFunc(out.Results, func(a, b showResult) int { return a.Turn - b.Turn })
	return out, nil
}

// writeTable writes the run's requests of the conversation for people.
func (out *showRunOutput) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "conversation %d  run %d %s  requests %d\n", out.Conversation, out.Run,
		output.OneLine(out.RunName), len(out.Results))
	for _, r := range out.Results {
		failed := ""
		if r.ErrorClass != "" {
			failed = "  FAILED " + r.ErrorClass + ": " + preview(r.Error)
		}
		fmt.Fprintf(w, "\nturn %d  attempt %d  sent %s (lag %s)  status %d  ttft %s  e2e %s  tokens %d in (%d cached) / %d out%s\n",
			r.Turn, r.Attempt, output.Millis(r.SentMs), output.Millis(r.SentMs-r.ScheduledMs), r.Status,
			fmtMs(r.TTFTMs), output.Millis(r.E2EMs), r.InputTokens, r.CachedTokens, r.OutputTokens, failed)
		writeEvents(w, r.Events)
	}
	return nil
}

// eventsCSV is the events of the run's requests of the conversation: a record per event.
func (out *showRunOutput) eventsCSV() output.Section {
	s := output.Section{Cols: eventCols}
	for _, r := range out.Results {
		s.Rows = eventRows(s.Rows, out.Conversation, r.Turn, r.Events)
	}
	return s
}

// csv is the run's requests of the conversation as one flat table: a record per request.
func (out *showRunOutput) csv() output.Section {
	s := output.Section{Cols: []string{"run", "conversation", "turn", "attempt", "scheduled_ms", "sent_ms",
		"ttft_ms", "e2e_ms", "status", "error_class", "error", "input_tokens", "cached_tokens", "output_tokens", "warmup"}}
	for _, r := range out.Results {
		s.Rows = append(s.Rows, []output.Cell{output.Int(out.Run), output.Int(out.Conversation), output.Int(r.Turn),
			output.Int(r.Attempt), output.Num(r.ScheduledMs), output.Num(r.SentMs), csvMs(r.TTFTMs), output.Num(r.E2EMs),
			output.Int(r.Status), output.Text(r.ErrorClass), output.Text(r.Error), output.Int(r.InputTokens),
			output.Int(r.CachedTokens), output.Int(r.OutputTokens), output.Text(strconv.FormatBool(r.Warmup))})
	}
	return s
}
