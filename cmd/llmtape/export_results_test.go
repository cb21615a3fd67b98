package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// resultLine is one line of `export --format results`, as docs/json.md documents it.
type resultLine struct {
	Run              uint64    `json:"run"`
	Recording        uint64    `json:"recording"`
	Conversation     uint64    `json:"conversation"`
	ConversationName string    `json:"conversation_name"`
	Turn             int       `json:"turn"`
	Attempt          int       `json:"attempt"`
	ScheduledMs      float64   `json:"scheduled_ms"`
	SentMs           float64   `json:"sent_ms"`
	ScheduleLagMs    float64   `json:"schedule_lag_ms"`
	TTFTMs           *float64  `json:"ttft_ms"`
	E2EMs            *float64  `json:"e2e_ms"`
	TPOTMs           *float64  `json:"tpot_ms"`
	TPOTFirstMs      *float64  `json:"tpot_first_chunk_ms"`
	ITLMs            []float64 `json:"itl_ms"`
	InputTokens      int       `json:"input_tokens"`
	OutputTokens     int       `json:"output_tokens"`
	CachedTokens     int       `json:"cached_tokens"`
	TokenSource      string    `json:"token_source"`
	Status           int       `json:"status"`
	OK               bool      `json:"ok"`
	ErrorClass       string    `json:"error_class"`
	Error            string    `json:"error"`
	Warmup           bool      `json:"warmup"`
	Events           []struct {
		OffsetMs float64 `json:"offset_ms"`
		Tokens   int     `json:"tokens"`
	} `json:"events"`
}

func readResultLines(t *testing.T, data []byte) []resultLine {
	t.Helper()
	var lines []resultLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields() // every key is documented here and in docs/json.md
		var l resultLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %d: %v\n%s", len(lines)+1, err, sc.Bytes())
		}
		lines = append(lines, l)
	}
	return lines
}

// teeProxy is a reverse proxy to target that keeps every response body by the content of the
// request's last message, so that a test can read what the target sent (and the sim's stamps).
type teeProxy struct {
	mu       sync.Mutex
	bodies   map[string]*bytes.Buffer
	requests map[string][]byte // the request bodies, by the same key
}

func startTeeProxy(t *testing.T, target string) (*teeProxy, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tp := &teeProxy{bodies: map[string]*bytes.Buffer{}, requests: map[string][]byte{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		req, err := openai.ParseRequest(body)
		key := ""
		if err == nil && len(req.Messages) > 0 {
			m, _ := openai.ParseMessage(req.Messages[len(req.Messages)-1])
			key = m.Content
		}
		buf := &bytes.Buffer{}
		tp.mu.Lock()
		tp.bodies[key] = buf
		tp.requests[key] = body
		tp.mu.Unlock()
		rp.ServeHTTP(&teeWriter{ResponseWriter: w, buf: buf}, r)
	}))
	t.Cleanup(srv.Close)
	return tp, srv.URL
}

type teeWriter struct {
	http.ResponseWriter
	buf *bytes.Buffer
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	return w.ResponseWriter.Write(p)
}

func (w *teeWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// simReply is what the sim sent in a stream.
type simReply struct {
	stamps  []int64 // llmtape_sent_unix_ns of each output event
	usage   int     // completion tokens of the usage chunk
	content string
}

func parseSimReply(t *testing.T, body []byte) simReply {
	t.Helper()
	var r simReply
	dec := openai.NewDecoder(bytes.NewReader(body))
	var acc openai.Accumulator
	for {
		ev, err := dec.Next()
		if err != nil || ev.Done {
			break
		}
		var c openai.Chunk
		if openai.ParseChunk(ev.Data, &c) != nil {
			t.Fatalf("sim event: %s", ev.Data)
		}
		acc.Add(&c)
		if c.HasOutput() {
			var s struct {
				Stamp int64 `json:"llmtape_sent_unix_ns"`
			}
			_ = json.Unmarshal(ev.Data, &s)
			r.stamps = append(r.stamps, s.Stamp)
		}
	}
	if u := acc.Usage(); u != nil {
		r.usage = u.CompletionTokens
	}
	r.content = acc.Content()
	return r
}

// checkDist compares a summary distribution with the exported samples: the count exactly,
// every other figure within the histogram's precision (3 significant digits, 1 µs).
func checkDist(t *testing.T, name string, got metrics.Dist, samples []float64) {
	t.Helper()
	if got.Count != int64(len(samples)) {
		t.Errorf("%s: summary count %d, exported %d", name, got.Count, len(samples))
		return
	}
	if len(samples) == 0 {
		return
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	near := func(what string, a, want float64) {
		if math.Abs(a-want) > want/500+0.002 {
			t.Errorf("%s %s: summary %.4f, from the exported lines %.4f", name, what, a, want)
		}
	}
	near("mean", got.Mean, sum/float64(len(s)))
	near("min", got.Min, s[0])
	near("max", got.Max, s[len(s)-1])
	for _, p := range []struct {
		q float64
		v float64
	}{{25, got.P25}, {50, got.P50}, {75, got.P75}, {90, got.P90}, {95, got.P95}, {99, got.P99}, {99.9, got.P999}} {
		near("p"+jsonNum(p.q), p.v, hdrRank(s, p.q))
	}
}

func jsonNum(v float64) string { b, _ := json.Marshal(v); return string(b) }

// TestExportResults replays against a sim that sends 4 tokens per event and stamps each
// event, exports the run's results, and checks every line against what the sim sent and
// every figure of the run's summary against the lines.
func TestExportResults(t *testing.T) {
	path := chatStore(t, "results.db", rand.NewPCG(15, 1), 6, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 3, MessageBytes: 80},
			arrival: time.Duration(i) * 5 * time.Millisecond, completion: 22}
	})
	simURL := replaySim(t, sim.Config{TTFT: 2 * time.Millisecond, ITL: 500 * time.Microsecond, TokensPerChunk: 4, Stamp: true})
	tee, target := startTeeProxy(t, simURL)
	sumPath := filepath.Join(t.TempDir(), "summary.json")
	code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", target,
		"--think", "none", "--speed", "10", "--json", sumPath, "--name", "chunks4")
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	var sum metrics.Summary
	if err := json.Unmarshal(mustRead(t, sumPath), &sum); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "results.jsonl")
	code, _, errOut = execCmd(context.Background(), "export", "--store", path, "--run", "chunks4", "--format", "results", "-o", out)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "18 requests") {
		t.Errorf("export's stderr: %s", errOut)
	}
	lines := readResultLines(t, mustRead(t, out))
	if len(lines) != 18 {
		t.Fatalf("%d lines, want 18", len(lines))
	}

	st, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	run, err := st.FindRun("chunks4")
	if err != nil {
		t.Fatal(err)
	}
	// The request each line answers: its last message, to find the sim's reply.
	lastMessage := map[[2]uint64]string{}
	for _, l := range lines {
		if _, ok := lastMessage[[2]uint64{l.Conversation, uint64(l.Turn)}]; ok {
			t.Fatalf("conversation %d turn %d exported twice", l.Conversation, l.Turn)
		}
		err := st.TurnMessages(l.Conversation, func(turn *tape.Turn, msgs []json.RawMessage) error {
			if turn.Index == l.Turn {
				m, _ := openai.ParseMessage(msgs[len(msgs)-1])
				lastMessage[[2]uint64{l.Conversation, uint64(l.Turn)}] = m.Content
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	var ttft, e2e, tpot, tpotFirst, itl []float64
	for i, l := range lines {
		if l.Run != run.ID || l.Recording != 0 || l.ConversationName != "conv-"+jsonNum(float64(l.Conversation)) ||
			l.Attempt != 1 || !l.OK || l.Status != 200 || l.ErrorClass != "" || l.Error != "" || l.Warmup ||
			l.TokenSource != "server" {
			t.Errorf("line %d: %+v", i, l)
		}
		if math.Abs(l.ScheduleLagMs-(l.SentMs-l.ScheduledMs)) > 1e-6 {
			t.Errorf("line %d: lag %v, sent %v − scheduled %v", i, l.ScheduleLagMs, l.SentMs, l.ScheduledMs)
		}
		body := tee.bodies[lastMessage[[2]uint64{l.Conversation, uint64(l.Turn)}]]
		if body == nil {
			t.Fatalf("line %d: no reply of the sim", i)
		}
		sr := parseSimReply(t, body.Bytes())
		// Field by field against the sim: its events, its tokens, and when it sent them.
		if len(l.Events) != len(sr.stamps) || len(sr.stamps) != (22+3)/4 {
			t.Fatalf("line %d: %d events, the sim sent %d output events (22 tokens, 4 a chunk)", i, len(l.Events), len(sr.stamps))
		}
		if l.OutputTokens != sr.usage || sr.usage != 22 {
			t.Errorf("line %d: output tokens %d, the sim's usage %d", i, l.OutputTokens, sr.usage)
		}
		tokens, samples := 0, 0
		for k, ev := range l.Events {
			tokens += ev.Tokens
			if k > 0 {
				samples += max(ev.Tokens, 1)
			}
			// An event is seen after the sim sent it (5 ms for the wall clock's steps).
			seen := run.Started.Add(time.Duration((l.SentMs + ev.OffsetMs) * float64(time.Millisecond)))
			if sent := time.Unix(0, sr.stamps[k]); seen.Before(sent.Add(-5 * time.Millisecond)) {
				t.Errorf("line %d event %d: seen at %v, before the sim sent it at %v", i, k, seen, sent)
			}
		}
		if tokens != l.OutputTokens {
			t.Errorf("line %d: events carry %d tokens, output_tokens %d", i, tokens, l.OutputTokens)
		}
		if l.TTFTMs == nil || *l.TTFTMs != l.Events[0].OffsetMs || l.E2EMs == nil || *l.E2EMs < l.Events[len(l.Events)-1].OffsetMs {
			t.Errorf("line %d: ttft %v e2e %v, events %v", i, l.TTFTMs, l.E2EMs, l.Events)
		}
		if want := (*l.E2EMs - *l.TTFTMs) / float64(l.OutputTokens-1); l.TPOTMs == nil || math.Abs(*l.TPOTMs-want) > 1e-5 {
			t.Errorf("line %d: tpot %v, want %v", i, l.TPOTMs, want)
		}
		// ITL: each gap after the first event, split evenly over the event's tokens.
		if len(l.ITLMs) != samples {
			t.Errorf("line %d: %d ITL samples, want %d", i, len(l.ITLMs), samples)
		}
		n := 0
		for k := 1; k < len(l.Events) && n < len(l.ITLMs); k++ {
			want := (l.Events[k].OffsetMs - l.Events[k-1].OffsetMs) / float64(max(l.Events[k].Tokens, 1))
			for range max(l.Events[k].Tokens, 1) {
				if math.Abs(l.ITLMs[n]-want) > 1e-5 {
					t.Errorf("line %d: itl[%d] = %v, want %v", i, n, l.ITLMs[n], want)
				}
				n++
			}
		}
		ttft = append(ttft, *l.TTFTMs)
		e2e = append(e2e, *l.E2EMs)
		tpot = append(tpot, *l.TPOTMs)
		if l.TPOTFirstMs != nil {
			tpotFirst = append(tpotFirst, *l.TPOTFirstMs)
		}
		itl = append(itl, l.ITLMs...)
	}
	// The summary, recomputed from the lines.
	if sum.Requests.Total != len(lines) || sum.Requests.OK != len(lines) {
		t.Errorf("summary requests %+v, %d lines", sum.Requests, len(lines))
	}
	checkDist(t, "ttft_ms", sum.TTFT, ttft)
	checkDist(t, "e2e_ms", sum.E2E, e2e)
	checkDist(t, "tpot_ms", sum.TPOT, tpot)
	checkDist(t, "tpot_first_chunk_ms", sum.TPOTFirstChunk, tpotFirst)
	checkDist(t, "itl_ms", sum.ITL, itl)

	t.Run("no-itl", func(t *testing.T) {
		code, stdout, errOut := execCmd(context.Background(), "export", "--store", path, "--run", "latest", "--format", "results", "--no-itl")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		short := readResultLines(t, []byte(stdout))
		if len(short) != len(lines) || strings.Contains(stdout, "itl_ms") {
			t.Fatalf("%d lines, itl_ms present: %v", len(short), strings.Contains(stdout, "itl_ms"))
		}
		for i := range short {
			short[i].ITLMs = lines[i].ITLMs
			if !equalJSON(t, short[i], lines[i]) {
				t.Errorf("line %d differs beyond itl_ms", i)
			}
		}
	})
	t.Run("csv", func(t *testing.T) {
		code, stdout, errOut := execCmd(context.Background(), "export", "--store", path, "--run", "1", "--format", "results-csv")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		recs, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"run", "conversation", "conversation_name", "turn", "attempt", "scheduled_ms", "sent_ms",
			"schedule_lag_ms", "ttft_ms", "e2e_ms", "tpot_ms", "tpot_first_chunk_ms", "input_tokens", "output_tokens", "cached_tokens",
			"token_source", "status", "ok", "error_class", "error", "warmup", "events"}
		if len(recs) != len(lines)+1 || !slices.Equal(recs[0], want) {
			t.Fatalf("%d records, header %v", len(recs), recs[0])
		}
		for i, l := range lines {
			r := recs[i+1]
			got := map[string]string{}
			for k, c := range want {
				got[c] = r[k]
			}
			if got["conversation_name"] != l.ConversationName || got["ttft_ms"] != jsonNum(*l.TTFTMs) ||
				got["e2e_ms"] != jsonNum(*l.E2EMs) || got["sent_ms"] != jsonNum(l.SentMs) ||
				got["output_tokens"] != jsonNum(float64(l.OutputTokens)) || got["events"] != jsonNum(float64(len(l.Events))) ||
				got["ok"] != "true" {
				t.Errorf("record %d: %v, line %+v", i, got, l)
			}
		}
	})
	t.Run("recording", func(t *testing.T) {
		code, stdout, errOut := execCmd(context.Background(), "export", "--store", path, "--recording", "latest", "--format", "results")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		rl := readResultLines(t, []byte(stdout))
		st, err := tape.Open(path, &tape.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		rec, err := tape.FindRecording(st, "latest")
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		err = st.Conversations(rec.ID, func(c *tape.Conversation) error {
			return st.Turns(c.ID, func(turn *tape.Turn) error {
				l := rl[i]
				i++
				res := turn.Result()
				wantTTFT, _ := turn.Timing.TTFT()
				wantE2E, _ := turn.Timing.E2E()
				sent := turn.Timing.Start.Sub(rec.Started) + turn.Timing.Sent
				if l.Recording != rec.ID || l.Run != 0 || l.Conversation != c.ID || l.Turn != turn.Index ||
					*l.TTFTMs != msOf(wantTTFT) || *l.E2EMs != msOf(wantE2E) || l.SentMs != msOf(sent) ||
					l.ScheduledMs != l.SentMs || l.ScheduleLagMs != 0 || len(l.Events) != len(res.Chunks) ||
					l.OutputTokens != res.OutputTokens || l.InputTokens != res.InputTokens {
					t.Errorf("conversation %d turn %d: %+v", c.ID, turn.Index, l)
				}
				for k, ch := range res.Chunks {
					if l.Events[k].OffsetMs != msOf(ch.Offset) || l.Events[k].Tokens != int(ch.Tokens) {
						t.Errorf("conversation %d turn %d event %d: %+v, want %v", c.ID, turn.Index, k, l.Events[k], ch)
					}
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if i != len(rl) {
			t.Errorf("%d lines, %d turns", len(rl), i)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"--run", "1", "--format", "mooncake"},
			{"--run", "1", "--recording", "1", "--format", "results"},
		} {
			code, _, errOut := execCmd(context.Background(), append([]string{"export", "--store", path}, args...)...)
			if code != 2 {
				t.Errorf("%v: exit %d: %s", args, code, errOut)
			}
		}
		if code, _, errOut := execCmd(context.Background(), "export", "--store", path, "--run", "nope", "--format", "results"); code != 1 ||
			!strings.Contains(errOut, "nope") {
			t.Errorf("unknown run: exit %d: %s", code, errOut)
		}
	})
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// TestExportResultsAttempts: a request that was retried gives one results line per try, the
// earlier ones with their own send time and failure, the last one the request's outcome.
func TestExportResultsAttempts(t *testing.T) {
	path := chatStore(t, "retries.db", rand.NewPCG(16, 2), 6, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 2}, arrival: time.Duration(i) * time.Millisecond, completion: 3}
	})
	url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond, FailRate: 0.5, Seed: 7})
	if code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", url,
		"--think", "none", "--speed", "100", "--retries", "20", "--on-error", "continue"); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	code, stdout, errOut := execCmd(context.Background(), "export", "--store", path, "--run", "latest", "--format", "results")
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	type line struct {
		Conversation uint64  `json:"conversation"`
		Turn         int     `json:"turn"`
		Attempt      int     `json:"attempt"`
		SentMs       float64 `json:"sent_ms"`
		Status       int     `json:"status"`
		OK           bool    `json:"ok"`
		ErrorClass   string  `json:"error_class"`
		Events       []any   `json:"events"`
	}
	byReq := map[[2]uint64][]line{}
	var order [][2]uint64
	for l := range strings.Lines(stdout) {
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		k := [2]uint64{v.Conversation, uint64(v.Turn)}
		if byReq[k] == nil {
			order = append(order, k)
		}
		byReq[k] = append(byReq[k], v)
	}
	if len(order) != 12 {
		t.Fatalf("%d requests in the export, want 12", len(order))
	}
	retried := 0
	for _, k := range order {
		ls := byReq[k]
		if len(ls) > 1 {
			retried++
		}
		for i, l := range ls {
			if l.Attempt != i+1 {
				t.Errorf("request %v: line %d is attempt %d", k, i, l.Attempt)
			}
			if i > 0 && l.SentMs < ls[i-1].SentMs {
				t.Errorf("request %v: attempt %d sent at %v ms, before attempt %d at %v ms", k, l.Attempt, l.SentMs, i, ls[i-1].SentMs)
			}
			if i < len(ls)-1 && (l.OK || l.Status != 429 || l.ErrorClass != "http" || len(l.Events) != 0) {
				t.Errorf("request %v: earlier attempt %+v, want a failed 429 without events", k, l)
			}
		}
		if last := ls[len(ls)-1]; !last.OK || len(last.Events) == 0 {
			t.Errorf("request %v: last attempt %+v, want the successful stream", k, last)
		}
	}
	if retried == 0 {
		t.Error("no request was retried: the sim's failures did not happen")
	}
	var sum struct {
		Retries int `json:"retries"`
	}
	code, out, errOut := execCmd(context.Background(), "report", "--store", path, "--format", "json")
	if code != 0 || json.Unmarshal([]byte(out), &sum) != nil {
		t.Fatalf("report: exit %d: %s", code, errOut)
	}
	if lines := strings.Count(stdout, "\n"); sum.Retries != lines-len(order) {
		t.Errorf("report counts %d retries, the export %d lines for %d requests", sum.Retries, lines, len(order))
	}
}
