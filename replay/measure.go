package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/internal/reconn"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/tape"
)

// stampReader records the monotonic time right after each Read that returned data. It is
// used only by the goroutine that reads the response, so the stamp is taken with no other
// work between the read and the clock.
type stampReader struct {
	r    io.Reader
	last time.Time
}

func (s *stampReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.last = time.Now()
	}
	return n, err
}

// exchange is one attempt's outcome.
type exchange struct {
	res        tape.Result
	reply      json.RawMessage // the target's reply as an assistant message (live history)
	answer     tape.Reply      // the same reply's text and tool calls (Config.KeepReplies)
	retryAfter time.Duration
	reconnects int           // sent again on a new connection after the target closed the reused one
	end        time.Duration // when the attempt ended, from the run's start
	sizes      []int         // output bytes per output event, for apportioning tokens
	events     int           // expected output events (the recorded completion tokens), 0 if unknown
	// msgs and prompt are what was sent, counted only when the server gives no usage.
	msgs   []json.RawMessage
	prompt json.RawMessage
	// header is the request's headers: the run's, or a conversation's with its session id.
	header http.Header
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// attempt sends one request and measures it. sent is taken just before the request is
// written; every stream event is stamped by stampReader in this goroutine.
func (r *Replayer) attempt(ctx context.Context, url string, body []byte, x *exchange) {
	res := &x.res
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var conn reconn.Trace
	reqCtx := ctx
	if r.fresh != nil {
		reqCtx = conn.Context(ctx)
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		res.ErrorClass, res.Error = errclass.Connect, err.Error()
		return
	}
	req.Header = x.header // shared and never written: the transport only reads it
	sent := time.Now()
	res.Sent = sent.Sub(r.start)
	resp, err := r.client.Do(req)
	if conn.Lost(err) && ctx.Err() == nil && r.abortCtx.Err() == nil {
		// The target closed the kept-alive connection before answering (see package reconn):
		// send once more on a new connection. What is measured is this attempt.
		x.reconnects++
		req, _ = http.NewRequestWithContext(reqCtx, http.MethodPost, url, bytes.NewReader(body))
		req.Header = x.header
		sent = time.Now()
		res.Sent = sent.Sub(r.start)
		resp, err = r.fresh.Do(req)
	}
	if err != nil {
		res.E2E = time.Since(sent)
		res.ErrorClass, res.Error = r.classify(ctx, err, errclass.Connect), oneLine(err.Error())
		return
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		res.E2E = time.Since(sent)
		res.ErrorClass = errclass.HTTP
		if e, ok := openai.ParseError(b); ok && e.Message != "" {
			res.Error = fmt.Sprintf("%d: %s", resp.StatusCode, oneLine(e.Message))
		} else {
			res.Error = fmt.Sprintf("%d: %s", resp.StatusCode, oneLine(string(b[:min(len(b), 200)])))
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			x.retryAfter = time.Duration(s) * time.Second
		}
		return
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		r.readWhole(ctx, resp.Body, sent, x)
	} else {
		r.readStream(ctx, resp.Body, sent, x)
		drain(resp.Body, cancel)
	}
	if res.ErrorClass == "" {
		r.tokens(x)
	}
}

// Bounds of reading the rest of a body after its stream ended.
const (
	drainBytes = 64 << 10
	drainWait  = 250 * time.Millisecond
)

// drain reads what follows the end of a stream (normally just the end of the chunked body)
// after the measurement, so that the connection goes back to the pool instead of being closed,
// and a proxy in between sees the response end rather than a client that went away. A server
// that keeps the body open is cut after drainWait.
func drain(body io.Reader, cancel context.CancelFunc) {
	t := time.AfterFunc(drainWait, cancel)
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainBytes))
	t.Stop()
}

// decoders reuses SSE decoders and their 32 KiB buffers across requests: a fresh buffer per
// stream was most of the replayer's allocation.
var decoders = sync.Pool{New: func() any { return openai.NewDecoder(nil) }}

// maxPresized bounds the expected events for which readStream sizes its slices up front (a
// reply that ends early wastes at most this many slots: 96 KiB).
const maxPresized = 1 << 12

// readStream reads an SSE response. The arrival of an event is the stamp of the read that
// completed it.
func (r *Replayer) readStream(ctx context.Context, body io.Reader, sent time.Time, x *exchange) {
	res := &x.res
	sr := &stampReader{r: body, last: sent}
	dec := decoders.Get().(*openai.Decoder)
	dec.Reset(sr)
	defer func() {
		dec.Reset(nil)
		decoders.Put(dec)
	}()
	if n := min(x.events, maxPresized); n > 0 {
		// One event per token is the usual case: size the per-event slices once, so that
		// the loop below does not grow them.
		res.Chunks = make([]tape.Chunk, 0, n)
		x.sizes = make([]int, 0, n)
	}
	var (
		chunk     openai.Chunk
		acc       openai.Accumulator
		done      bool
		malformed int
		firstBad  string
	)
	for {
		ev, err := dec.Next()
		at := sr.last
		if err != nil {
			if err != io.EOF {
				res.ErrorClass, res.Error = r.classify(ctx, err, errclass.Stream), "read stream: "+oneLine(err.Error())
			}
			break
		}
		if ev.Done {
			done = true
			break
		}
		if err := parseChunk(ev.Data, &chunk); err != nil {
			malformed++
			if firstBad == "" {
				firstBad = oneLine(err.Error())
			}
			continue
		}
		acc.Add(&chunk)
		if chunk.HasOutput() {
			res.Chunks = append(res.Chunks, tape.Chunk{Offset: at.Sub(sent)})
			x.sizes = append(x.sizes, chunk.OutputBytes())
		}
	}
	res.E2E = sr.last.Sub(sent)
	if len(res.Chunks) > 0 {
		res.TTFT = res.Chunks[0].Offset
	}
	if u := acc.Usage(); u != nil {
		res.InputTokens, res.OutputTokens, res.CachedTokens = u.PromptTokens, u.CompletionTokens, u.Cached()
		res.TokenSource = tape.TokensServer
	}
	x.setReply(acc.Content(), acc.ToolCalls())
	switch {
	case res.ErrorClass != "":
	case acc.Err() != nil:
		res.ErrorClass, res.Error = errclass.Stream, "error in stream: "+oneLine(acc.Err().Message)
	case malformed > 0:
		res.ErrorClass = errclass.Stream
		res.Error = fmt.Sprintf("%d malformed events, first: %s", malformed, firstBad)
	case !done && acc.FinishReason() == "":
		res.ErrorClass, res.Error = errclass.Stream, "stream ended before [DONE]"
	}
}

// maxWholeBody bounds a response that was not streamed: a reply is a few MB at most, and a
// server that sends more (a wrong target, a download) must not take the replayer's memory.
// A variable so that a test can lower it.
var maxWholeBody = 64 << 20

// readWhole reads a response that was not streamed (a server that ignores "stream").
func (r *Replayer) readWhole(ctx context.Context, body io.Reader, sent time.Time, x *exchange) {
	res := &x.res
	b, err := io.ReadAll(io.LimitReader(body, int64(maxWholeBody)+1))
	end := time.Since(sent)
	res.E2E = end
	if err != nil {
		res.ErrorClass, res.Error = r.classify(ctx, err, errclass.Stream), "read response: "+oneLine(err.Error())
		return
	}
	if len(b) > maxWholeBody {
		res.ErrorClass, res.Error = errclass.Stream, fmt.Sprintf("response larger than %d MiB and not a stream", maxWholeBody>>20)
		return
	}
	resp, err := openai.ParseResponse(b)
	if err != nil {
		res.ErrorClass, res.Error = errclass.Stream, "malformed response: "+oneLine(err.Error())
		return
	}
	res.Chunks = []tape.Chunk{{Offset: end}}
	res.TTFT = end
	x.sizes = []int{1}
	if u := resp.Usage; u != nil {
		res.InputTokens, res.OutputTokens, res.CachedTokens = u.PromptTokens, u.CompletionTokens, u.Cached()
		res.TokenSource = tape.TokensServer
	}
	x.setReply(resp.Content(), resp.ToolCalls())
}

// tokens fills the token counts when the server gave no usage (tiktoken over the reply and
// the prompt) and apportions the output tokens over the output events.
func (r *Replayer) tokens(x *exchange) {
	res := &x.res
	if res.TokenSource == "" {
		res.TokenSource = tape.TokensCounted
		in := 0
		for _, m := range x.msgs {
			in += openai.CountTokens(openai.MessageText(m))
		}
		if x.prompt != nil {
			var p string
			if json.Unmarshal(x.prompt, &p) == nil {
				in += openai.CountTokens(p)
			} else {
				in += openai.CountTokens(string(x.prompt))
			}
		}
		res.InputTokens = in
		var m struct {
			Content   *string           `json:"content"`
			ToolCalls []openai.ToolCall `json:"tool_calls"`
		}
		_ = json.Unmarshal(x.reply, &m)
		text := ""
		if m.Content != nil {
			text = *m.Content
		}
		for _, tc := range m.ToolCalls {
			text += tc.Function.Name + tc.Function.Arguments
		}
		res.OutputTokens = openai.CountTokens(text)
		if res.OutputTokens < len(res.Chunks) && text == "" {
			res.OutputTokens = len(res.Chunks)
		}
	}
	apportion(res.Chunks, x.sizes, res.OutputTokens)
}

// apportion spreads total tokens over the output events: one each when they match (the usual
// case), else in proportion to each event's output bytes by largest remainder, so that the
// counts sum to total.
func apportion(chunks []tape.Chunk, sizes []int, total int) {
	n := len(chunks)
	if n == 0 {
		return
	}
	if total == n || total <= 0 {
		for i := range chunks {
			chunks[i].Tokens = 1
		}
		if total <= 0 {
			for i := range chunks {
				chunks[i].Tokens = 0
			}
		}
		return
	}
	var sum int
	for _, s := range sizes {
		sum += s
	}
	if sum == 0 || len(sizes) != n {
		base, extra := total/n, total%n
		for i := range chunks {
			chunks[i].Tokens = int32(base)
			if i < extra {
				chunks[i].Tokens++
			}
		}
		return
	}
	given := 0
	rem := make([]float64, n)
	for i, s := range sizes {
		exact := float64(total) * float64(s) / float64(sum)
		chunks[i].Tokens = int32(exact)
		rem[i] = exact - float64(chunks[i].Tokens)
		given += int(chunks[i].Tokens)
	}
	for given < total {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		chunks[best].Tokens++
		rem[best] = -1
		given++
	}
}

// setReply keeps the target's reply: its text and tool calls (in their message form: id,
// type and function, without the stream's index), and the assistant message a client echoes
// back.
func (x *exchange) setReply(content string, calls []openai.ToolCall) {
	x.answer = tape.Reply{Content: content, ToolCalls: openai.MarshalToolCalls(calls)}
	x.reply = x.answer.Message()
}

// classify names the class of a transport error.
func (r *Replayer) classify(ctx context.Context, err error, fallback errclass.Class) errclass.Class {
	if r.abortCtx.Err() != nil && errors.Is(err, context.Canceled) {
		return errclass.Canceled
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return errclass.Timeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errclass.Timeout
	}
	if r.abortCtx.Err() != nil {
		return errclass.Canceled
	}
	return fallback
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// parseChunk is openai.ParseChunk that turns a panic on odd input into an error: one bad
// event must never end the run.
func parseChunk(data []byte, c *openai.Chunk) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("parse chunk: %v", p)
		}
	}()
	return openai.ParseChunk(data, c)
}
