package sim

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/llmtape/llmtape/internal/jsonstr"
	"github.com/llmtape/llmtape/openai"
)

// Salts keep the seeded random streams of one request independent.
const (
	saltFault  = 0x9e3779b97f4a7c15
	saltJitter = 0xbf58476d1ce4e5b9
	saltOutput = 0x94d049bb133111eb
	saltVary   = 0xd6e8feb86659fd93
)

// newOutputRand returns the random stream of a reply's length and text.
func newOutputRand(seed int64, promptHash uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed)^saltOutput, promptHash))
}

// newVariedTextRand returns the random stream of a reply's text under Config.VaryOutput: a
// function of the seed, the prompt and the request index.
func newVariedTextRand(seed int64, promptHash, idx uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed)^saltVary^promptHash, idx))
}

// plan is what will happen to one request, decided before it runs.
type plan struct {
	fail       bool
	stall      bool
	disconnect bool
	stallAt    float64 // position in the stream, a fraction in [0, 1)
	cutAt      float64
}

// planFor decides the faults of request index idx from the seed alone, so that the same seed
// gives the same faults to the same request index whatever the goroutine order.
func (s *Server) planFor(idx uint64) plan {
	rng := rand.New(rand.NewPCG(uint64(s.cfg.Seed)^saltFault, idx))
	var p plan
	// Always draw all five numbers so that each knob's decisions do not depend on the others.
	uf, us, ud, ps, pc := rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64()
	p.fail = uf < s.cfg.FailRate
	p.stall = !p.fail && us < s.cfg.StallRate
	p.disconnect = !p.fail && ud < s.cfg.DisconnectRate
	p.stallAt, p.cutAt = ps, pc
	return p
}

// outputLen returns the number of tokens to generate and the finish reason. natural is the
// length the simulated model "wants"; max_tokens stops it early (finish "length"), and with
// ignore_eos it always runs to max_tokens. min_tokens is a floor.
func outputLen(req *request, natural int) (int, string) {
	n := natural
	if req.MaxTokens > 0 && (req.IgnoreEOS || n > req.MaxTokens) {
		n = req.MaxTokens
	}
	n = max(n, req.MinTokens)
	if req.MaxTokens > 0 && n >= req.MaxTokens {
		return req.MaxTokens, "length"
	}
	return n, "stop"
}

// stream is one response being generated: it renders events into buf without allocating.
type stream struct {
	chat   bool
	stamp  bool
	head   []byte // event bytes before the text
	tail   []byte // event bytes after the text, without the closing brace
	buf    []byte
	rng    *rand.Rand
	text   []byte // the whole output, for non-streamed replies
	keep   bool   // accumulate text
	nwords int    // tokens generated so far
}

// nextText appends n tokens of text to dst.
func (st *stream) nextText(dst []byte, n int) []byte {
	for range n {
		if st.nwords > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, words[st.rng.IntN(len(words))]...)
		st.nwords++
	}
	return dst
}

// event renders one stream event carrying n tokens.
func (st *stream) event(n int) []byte {
	b := append(st.buf[:0], st.head...)
	start := len(b)
	b = st.nextText(b, n)
	if st.keep {
		st.text = append(st.text, b[start:]...)
	}
	b = append(b, st.tail...)
	b = st.finishEvent(b)
	st.buf = b
	return b
}

func (st *stream) finishEvent(b []byte) []byte {
	if st.stamp {
		b = append(b, `,"llmtape_sent_unix_ns":`...)
		b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	}
	return append(b, "}\n\n"...)
}

type usage struct {
	prompt, completion, cached int
}

func appendUsage(b []byte, u usage) []byte {
	b = append(b, `"usage":{"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.completion), 10)
	b = append(b, `,"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.prompt), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.prompt+u.completion), 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, int64(u.cached), 10)
	return append(b, "}}"...)
}

// meta holds the fields shared by all of a response's JSON objects.
type meta struct {
	id      string
	model   []byte // JSON string
	created int64
}

// appendCommon appends `"created":..,"id":..,"model":..,"system_fingerprint":..,"object":..`
// in llama.cpp's order for chat, or `"created":..,"model":..,"system_fingerprint":..,"object":..`
// (the id goes last) for completions.
func appendCommon(b []byte, m *meta, chat bool, object string) []byte {
	b = append(b, `"created":`...)
	b = strconv.AppendInt(b, m.created, 10)
	if chat {
		b = append(b, `,"id":"`...)
		b = append(b, m.id...)
		b = append(b, '"')
	}
	b = append(b, `,"model":`...)
	b = append(b, m.model...)
	b = append(b, `,"system_fingerprint":"llmtape-sim","object":"`...)
	b = append(b, object...)
	b = append(b, '"')
	return b
}

func appendID(b []byte, m *meta) []byte {
	b = append(b, `,"id":"`...)
	b = append(b, m.id...)
	return append(b, '"')
}

// finalEvent renders the event that carries the finish reason (and usage when asked).
func (st *stream) finalEvent(m *meta, finish string, u *usage) []byte {
	b := st.buf[:0]
	if st.chat {
		b = append(b, `data: {"choices":[{"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `","index":0,"delta":{}}],`...)
		b = appendCommon(b, m, true, "chat.completion.chunk")
		if u != nil {
			b = append(b, ',')
			b = appendUsage(b, *u)
		}
	} else {
		b = append(b, `data: {"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `"}],`...)
		b = appendCommon(b, m, false, "text_completion")
		if u != nil {
			b = append(b, ',')
			b = appendUsage(b, *u)
		}
		b = appendID(b, m)
	}
	b = st.finishEvent(b)
	st.buf = b
	return b
}

func newStream(chat, stamp, keep bool, m *meta, rng *rand.Rand) *stream {
	st := &stream{chat: chat, stamp: stamp, keep: keep, rng: rng, buf: make([]byte, 0, 512)}
	if chat {
		st.head = []byte(`data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"`)
		t := []byte(`"}}],`)
		st.tail = appendCommon(t, m, true, "chat.completion.chunk")
	} else {
		st.head = []byte(`data: {"choices":[{"text":"`)
		t := []byte(`","index":0,"logprobs":null,"finish_reason":null}],`)
		t = appendCommon(t, m, false, "text_completion")
		st.tail = appendID(t, m)
	}
	return st
}

// wholeResponse renders a non-streamed reply in llama.cpp's field order.
func wholeResponse(chat bool, m *meta, text []byte, finish string, u usage) []byte {
	b := make([]byte, 0, 256+len(text))
	if chat {
		b = append(b, `{"choices":[{"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `","index":0,"message":{"role":"assistant","content":"`...)
		b = append(b, text...)
		b = append(b, `"}}],`...)
		b = appendCommon(b, m, false, "chat.completion")
	} else {
		b = append(b, `{"choices":[{"text":"`...)
		b = append(b, text...)
		b = append(b, `","index":0,"logprobs":null,"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `"}],`...)
		b = appendCommon(b, m, false, "text_completion")
	}
	b = append(b, ',')
	b = appendUsage(b, u)
	b = appendID(b, m)
	return append(b, '}')
}

var doneEvent = []byte("data: [DONE]\n\n")

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func makeID(prefix string, rng *rand.Rand) string {
	b := make([]byte, len(prefix), len(prefix)+32)
	copy(b, prefix)
	for range 32 {
		b = append(b, idChars[rng.IntN(len(idChars))])
	}
	return string(b)
}

// jitter returns d plus a uniform offset in [-j, +j], never below zero.
func jitter(d, j time.Duration, rng *rand.Rand) time.Duration {
	if j <= 0 {
		return d
	}
	d += time.Duration(rng.Int64N(int64(2*j)+1)) - j
	return max(d, 0)
}

// handleCompletion serves /v1/chat/completions (chat) and /v1/completions, in phases: read the
// request, draw its faults, plan the reply, wait for a running slot, prefill (prefix cache),
// generate the token events, end the reply (stream or whole), keep its blocks in the cache.
//
// Timing: the request's arrival (before its body is read) anchors every deadline. The first
// event is due at arrival + queue wait + TTFT + uncached prompt tokens × PrefillPerToken; each
// later event is due one gap after the previous deadline (not after the previous write), so
// a late wake-up does not push the rest of the stream back. The request's goroutine sleeps to
// each absolute deadline on a sleeper (see pacer.go).
func (s *Server) handleCompletion(w http.ResponseWriter, r *http.Request, chat bool) {
	arrival := time.Now()
	req := s.readRequest(w, r, chat)
	if req == nil {
		return
	}
	idx := uint64(s.ctr.requests.Add(1) - 1)
	faults := s.planFor(idx)
	if faults.fail {
		s.ctr.addFailed(s.cfg.FailStatus)
		s.writeInjectedFailure(w)
		return
	}
	c := s.planReply(w, req, chat, idx, arrival)
	if req.Stream {
		c.writeStreamHeader()
	}
	wait, ok := s.queue(r.Context())
	if !ok {
		return
	}
	defer s.lim.release()
	defer c.stopDecoding()
	jrng := rand.New(rand.NewPCG(uint64(s.cfg.Seed)^saltJitter, idx)) // the jitter's stream
	deadline := c.prefill(wait, jrng)
	if !c.generate(r.Context().Done(), faults, deadline, jrng) {
		return
	}
	if !c.writeEnd() {
		s.ctr.canceled.Add(1)
		return
	}
	s.ctr.completed.Add(1)
	c.cacheReply()
	if c.finish == "length" {
		s.ctr.finishedLength.Add(1)
	} else {
		s.ctr.finishedStop.Add(1)
	}
	s.ctr.e2e.observe(time.Since(arrival), 1)
	if req.Stream && s.cfg.CloseAfterStream {
		closeAfterStream(w)
	}
}

// completion is one request being answered: what planReply decided, and the state that the
// later phases of handleCompletion share.
type completion struct {
	s       *Server
	w       http.ResponseWriter
	flusher http.Flusher // nil when w cannot flush
	req     *request
	chat    bool
	arrival time.Time

	tokens  []uint32 // the prompt
	hashes  []uint64 // the prompt's block hashes; nil without a prefix cache
	n       int      // output tokens
	finish  string   // finish reason
	textRng *rand.Rand
	meta    meta

	u        usage
	st       *stream
	decoding bool // counted in the decoding gauge
}

// readRequest reads and checks the request body. It returns nil when it has answered the
// request with an error, or the client went away while sending.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request, chat bool) *request {
	if r.Method != http.MethodPost {
		writeMethodNotAllowed(w, "POST")
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.ctr.bad.Add(1)
			writeError(w, http.StatusRequestEntityTooLarge, "request body is larger than "+strconv.Itoa(maxBody)+" bytes", "invalid_request_error", nil)
			return nil
		}
		s.ctr.canceled.Add(1)
		return nil // the client went away while sending
	}
	req, err := parseRequest(body, chat)
	if err != nil {
		s.ctr.bad.Add(1)
		br := &badRequest{msg: err.Error()}
		errors.As(err, &br)
		writeError(w, http.StatusBadRequest, br.msg, "invalid_request_error", nil)
		return nil
	}
	return req
}

// planReply decides request idx's reply before it waits: the prompt's tokens and blocks, the
// output length, finish reason and text's random stream (seeded by the prompt), and the id.
func (s *Server) planReply(w http.ResponseWriter, req *request, chat bool, idx uint64, arrival time.Time) completion {
	c := completion{s: s, w: w, req: req, chat: chat, arrival: arrival}
	c.flusher, _ = w.(http.Flusher)
	c.tokens = s.promptTokens(req)
	h := promptHash(c.tokens)
	outRng := newOutputRand(s.cfg.Seed, h)
	natural := s.cfg.OutputLen.Min + outRng.IntN(s.cfg.OutputLen.Max-s.cfg.OutputLen.Min+1)
	c.n, c.finish = outputLen(req, natural)
	c.textRng = outRng // the text continues the length's stream: the same prompt, the same text
	if s.cfg.VaryOutput {
		c.textRng = newVariedTextRand(s.cfg.Seed, h, idx)
	}
	if s.cache != nil {
		c.hashes = blockHashes(c.tokens, s.cfg.BlockSize)
	}
	c.meta = s.replyMeta(req.Model, chat, idx, arrival)
	return c
}

// promptTokens returns the prompt's tokens: the ids the request gave, else its segments
// tokenized one by one.
func (s *Server) promptTokens(req *request) []uint32 {
	if req.PromptTokens != nil {
		return req.PromptTokens
	}
	var tokens []uint32
	for _, seg := range req.Segments {
		tokens = s.tokenize(tokens, seg)
	}
	return tokens
}

// promptHash is the FNV-1a hash of the tokens (each as 4 little-endian bytes): the seed of a
// prompt's reply.
func promptHash(tokens []uint32) uint64 {
	h := fnv.New64a()
	var tb [4]byte
	for _, t := range tokens {
		binary.LittleEndian.PutUint32(tb[:], t)
		h.Write(tb[:])
	}
	return h.Sum64()
}

// replyMeta returns the creation time, model and id that every object of request idx's reply
// carries. The model is the request's, else Config.Model.
func (s *Server) replyMeta(model string, chat bool, idx uint64, arrival time.Time) meta {
	if model == "" {
		model = s.cfg.Model
	}
	m := meta{created: arrival.Unix(), model: jsonstr.Append(nil, model)}
	// Ids are unique per server instance (not seeded): two sims never hand out the same id.
	idRng := rand.New(rand.NewPCG(s.idSeed, idx))
	if chat {
		m.id = makeID("chatcmpl-", idRng)
	} else {
		m.id = makeID("cmpl-", idRng)
	}
	return m
}

// writeStreamHeader sends a stream's status and headers at once, before the request waits for
// a running slot.
func (c *completion) writeStreamHeader() {
	hd := c.w.Header()
	hd["Content-Type"] = []string{"text/event-stream"}
	hd["Cache-Control"] = []string{"no-cache"}
	hd["Server"] = []string{"llmtape-sim"}
	c.w.WriteHeader(http.StatusOK)
	c.flush()
}

func (c *completion) flush() {
	if c.flusher != nil {
		c.flusher.Flush()
	}
}

// queue waits for a running slot (Config.MaxRunning) and returns how long it waited; false
// when the request was canceled first. The caller releases the slot.
func (s *Server) queue(ctx context.Context) (time.Duration, bool) {
	queued := time.Now()
	if err := s.lim.acquire(ctx); err != nil {
		s.ctr.canceled.Add(1)
		return 0, false
	}
	wait := time.Since(queued)
	s.ctr.queue.observe(wait, 1)
	return wait, true
}

// prefill looks the prompt up in the prefix cache, counts its tokens, and returns the first
// event's deadline: arrival + queue wait + TTFT + uncached prompt tokens × PrefillPerToken,
// jittered by jrng.
func (c *completion) prefill(wait time.Duration, jrng *rand.Rand) time.Time {
	s := c.s
	cached := 0
	if s.cache != nil {
		cached = s.cache.lookup(c.hashes) * s.cfg.BlockSize
		// As in vLLM, the last prompt token is always computed.
		cached = min(cached, max(len(c.tokens)-1, 0)/s.cfg.BlockSize*s.cfg.BlockSize)
	}
	s.ctr.queried.Add(int64(len(c.tokens)))
	s.ctr.cached.Add(int64(cached))
	s.ctr.prompt.Add(int64(len(c.tokens)))
	c.u = usage{prompt: len(c.tokens), completion: c.n, cached: cached}

	ttft := s.cfg.TTFT + time.Duration(len(c.tokens)-cached)*s.cfg.PrefillPerToken
	return c.arrival.Add(wait + jitter(ttft, s.cfg.Jitter, jrng))
}

// generate waits for each event's deadline and writes it (a whole reply only keeps its text),
// with the planned stall and disconnect, and jrng's jitter on every gap; it counts the tokens
// sent. It returns false when the request was canceled or the server closed; a planned
// disconnect aborts the handler.
func (c *completion) generate(done <-chan struct{}, faults plan, deadline time.Time, jrng *rand.Rand) bool {
	s := c.s
	k := s.cfg.TokensPerChunk
	chunks := (c.n + k - 1) / k
	stallAt, cutAt := s.faultEvents(faults, chunks)
	// The text is kept for a non-streamed reply, and for a chat reply whose blocks go into the
	// prefix cache at the end.
	c.st = newStream(c.chat, s.cfg.Stamp, !c.req.Stream || (c.chat && s.cache != nil), &c.meta, c.textRng)
	first, later := s.sleepers()
	defer first.stop()
	defer later.stop()
	var last time.Time
	sent := 0
	for j := 0; j <= chunks; j++ {
		if j == stallAt {
			deadline = deadline.Add(s.cfg.Stall)
		}
		sl := later
		if j == 0 {
			sl = first
		}
		if !sl.wait(deadline, done, s.closing) {
			s.ctr.canceled.Add(1)
			return false
		}
		if j == 0 {
			s.cache.insert(c.hashes) // the prompt's blocks exist once its prefill is done
			s.ctr.decoding.Add(1)
			c.decoding = true
		}
		if j == cutAt {
			s.ctr.disconnected.Add(1)
			s.ctr.completion.Add(int64(sent))
			// Abort the response: net/http closes the connection without ending the
			// chunked body, so the client sees a cut stream, as when a server dies.
			panic(http.ErrAbortHandler)
		}
		if j == chunks {
			break
		}
		tk := min(k, c.n-sent)
		if !c.writeEvent(tk) {
			s.ctr.canceled.Add(1)
			s.ctr.completion.Add(int64(sent))
			return false
		}
		now := time.Now()
		if j == 0 {
			s.ctr.ttft.observe(now.Sub(c.arrival), 1)
		} else {
			s.ctr.itl.observe(now.Sub(last)/time.Duration(tk), int64(tk))
		}
		last = now
		sent += tk
		// The gap before the next event: its token count × the per-token ITL.
		next := min(k, c.n-sent)
		if next > 0 {
			itl := s.cfg.ITL + time.Duration(s.ctr.decoding.Load())*s.cfg.ITLPerRunning
			deadline = deadline.Add(jitter(time.Duration(next)*itl, s.cfg.Jitter, jrng))
		}
	}
	s.ctr.completion.Add(int64(sent))
	return true
}

// faultEvents returns before which event (1..chunks, chunks being the finish event) the
// planned stall and disconnect happen, -1 for none, so that at least one token event is sent
// first. It counts a stall.
func (s *Server) faultEvents(p plan, chunks int) (stallAt, cutAt int) {
	stallAt, cutAt = -1, -1
	if p.stall {
		stallAt = 1 + int(p.stallAt*float64(chunks))
		s.ctr.stalled.Add(1)
	}
	if p.disconnect {
		cutAt = 1 + int(p.cutAt*float64(chunks))
	}
	return stallAt, cutAt
}

// sleepers returns what the first event's deadline and the later ones are waited on. The
// first token's deadline is waited for on the precise pacer (TTFT is the figure held to the
// tightest tolerance); the later ones on a time.Timer, which costs several times less CPU per
// wake-up and is late by at most about 1 ms, without accumulating (absolute deadlines),
// unless PreciseTimers asks for the pacer throughout.
func (s *Server) sleepers() (first, later sleeper) {
	first = newSleeper()
	if s.cfg.PreciseTimers {
		return first, newSleeper()
	}
	return first, newTimerSleeper()
}

// writeEvent generates the next tk tokens and writes them as one stream event (a whole reply
// only keeps them); false when the client is gone.
func (c *completion) writeEvent(tk int) bool {
	if !c.req.Stream {
		c.st.event(tk)
		return true
	}
	if _, err := c.w.Write(c.st.event(tk)); err != nil {
		return false
	}
	c.flush()
	return true
}

// stopDecoding takes the request out of the decoding gauge once the handler is done with it.
func (c *completion) stopDecoding() {
	if c.decoding {
		c.s.ctr.decoding.Add(-1)
	}
}

// writeEnd writes what follows the token events: a stream's final event (with the usage when
// the request asked for it) and [DONE], or the whole reply; false when the client is gone.
func (c *completion) writeEnd() bool {
	if !c.req.Stream {
		resp := wholeResponse(c.chat, &c.meta, c.st.text, c.finish, c.u)
		hd := c.w.Header()
		hd["Content-Type"] = []string{"application/json; charset=utf-8"}
		hd["Server"] = []string{"llmtape-sim"}
		hd["Content-Length"] = []string{strconv.Itoa(len(resp))}
		_, err := c.w.Write(resp)
		return err == nil
	}
	var u *usage
	if c.req.IncludeUsage {
		u = &c.u
	}
	_, err := c.w.Write(c.st.finalEvent(&c.meta, c.finish, u))
	if err == nil {
		_, err = c.w.Write(doneEvent)
	}
	c.flush()
	return err == nil
}

// cacheReply adds a chat reply's blocks to the prefix cache. As vLLM keeps the KV blocks of
// generated tokens, it adds the blocks of the prompt followed by this reply rendered as the
// assistant message that a client sends back in its next turn, so that turn reuses the reply
// too.
func (c *completion) cacheReply() {
	if !c.chat || c.s.cache == nil {
		return
	}
	reply := openai.Message{Role: "assistant", Content: string(c.st.text)}
	tokens := c.s.tokenize(c.tokens[:len(c.tokens):len(c.tokens)], reply.Text())
	c.s.cache.insert(blockHashes(tokens, c.s.cfg.BlockSize))
}

// closeAfterStream ends the chunked body of a stream whose last event has been flushed and
// closes the connection, without a "Connection: close" header: what llama.cpp's server does
// after every streamed answer. The handler must not write after it.
func closeAfterStream(w http.ResponseWriter) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return // not HTTP/1 (or already hijacked): nothing to close
	}
	// net/http writes the last chunk when the handler returns; after Hijack we must.
	_, _ = brw.WriteString("0\r\n\r\n")
	_ = brw.Flush()
	_ = conn.Close()
}

// writeInjectedFailure answers with the configured failure status and an OpenAI error body.
func (s *Server) writeInjectedFailure(w http.ResponseWriter) {
	status := s.cfg.FailStatus
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		secs := int((s.cfg.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	switch status {
	case http.StatusTooManyRequests:
		writeError(w, status, "Rate limit reached (injected by llmtape sim). Please try again later.", "requests", "rate_limit_exceeded")
	case http.StatusServiceUnavailable:
		writeError(w, status, "The server is overloaded (injected by llmtape sim). Please try again later.", "server_error", nil)
	default:
		typ := "server_error"
		if status < 500 {
			typ = "invalid_request_error"
		}
		writeError(w, status, http.StatusText(status)+" (injected by llmtape sim)", typ, status)
	}
}
