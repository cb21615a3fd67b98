package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/tape"
)

// maxErrorBody bounds the error body kept in Response.Error.
const maxErrorBody = 64 << 10

// parsed is an exchange turned into a turn that is not yet placed in a conversation: the
// parsing workers fill it, the stitching goroutine places it.
type parsed struct {
	turn    tape.Turn          // everything except Conversation, Index, Match, Kept, Messages, MessageMeta
	msgs    []json.RawMessage  // the request's full message list (chat); nil otherwise
	meta    []tape.MessageMeta // per entry of msgs
	exact   []uint64           // per entry of msgs: the exact hash
	chain   []uint64           // match-key chain: chain[i] is the state of msgs[:i]; len(msgs)+1 entries
	reply   msgInfo            // the reply as the assistant message a client echoes (tape.ReplyMessage)
	session string             // explicit session id, or ""
	// state is true when the reply can be continued: a chat turn that was answered (fully, or
	// partially before the client went away).
	state bool
	// complete is true when the stream reached its [DONE] sentinel: the response was whole,
	// whatever happened to the connection afterwards.
	complete bool
}

// isRecorded reports whether a request path is one the recorder turns into turns.
func isRecorded(path string) bool {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimRight(path, "/")
	return strings.HasSuffix(path, "/chat/completions") || strings.HasSuffix(path, "/completions")
}

// parser turns exchanges into parsed turns. It is safe for concurrent use.
type parser struct {
	cache          *infoCache
	sessionHeaders []string    // canonical header names, in priority order
	redact         redact.Rule // header names never stored
}

// parse turns one exchange into a parsed turn. Bodies that are not what they claim to be do not
// fail the exchange: what can be read is kept and the rest is described in the turn.
func (p *parser) parse(x *proxy.Exchange) *parsed {
	out := &parsed{}
	t := &out.turn
	t.Request = tape.Request{
		Method:    x.Method,
		Path:      x.Path,
		Headers:   p.headers(x.ReqHeader),
		Truncated: x.Truncated,
		BodySize:  x.ReqSize,
	}
	t.Timing = tape.Timing{
		Start:      x.Start,
		Sent:       x.Sent,
		Headers:    x.HeadersAt,
		End:        x.End,
		ClientGone: x.ClientGone,
	}
	out.session = sessionFromHeaders(x.ReqHeader, p.sessionHeaders)

	if !x.Truncated && len(x.ReqBody) > 0 {
		if req, err := openai.ParseRequest(x.ReqBody); err == nil {
			p.request(out, req)
		}
	}
	p.response(out, x)
	p.tokens(out)
	return out
}

// request fills the request side from a parsed body.
func (p *parser) request(out *parsed, req *openai.Request) {
	r := &out.turn.Request
	r.Model = req.Model
	r.Stream = req.Stream
	if params, err := req.Params(); err == nil {
		r.Params = params
		if out.session == "" {
			out.session = sessionFromBody(params)
		}
	}
	r.Prompt = req.Prompt
	if req.Messages == nil {
		return
	}
	n := len(req.Messages)
	out.msgs = req.Messages
	out.meta = make([]tape.MessageMeta, n)
	out.exact = make([]uint64, n)
	out.chain = make([]uint64, n+1)
	out.chain[0] = chainStart
	for i, m := range req.Messages {
		mi := p.cache.info(m, true)
		out.meta[i] = tape.MessageMeta{Tokens: mi.tokens, Hash: mi.exact}
		out.exact[i] = mi.exact
		out.chain[i+1] = mix(out.chain[i], mi.key)
	}
}

// response fills the response side and the chunk timings.
func (p *parser) response(out *parsed, x *proxy.Exchange) {
	t := &out.turn
	resp := &t.Response
	resp.Status = x.Status
	resp.Headers = p.headers(x.RespHeader)

	switch {
	case x.Status >= 400:
		resp.ErrorClass = errclass.HTTP
		resp.Error = errorText(x.Body)
		if resp.Error == "" {
			resp.Error = x.Err
		}
		if x.ErrClass == errclass.Connect || x.ErrClass == errclass.Timeout {
			resp.ErrorClass = x.ErrClass
		}
	case x.Status == 0:
		resp.ErrorClass = x.ErrClass
		if resp.ErrorClass == "" {
			resp.ErrorClass = errclass.Connect
		}
		resp.Error = x.Err
	case isEventStream(x):
		p.stream(out, x)
	case len(x.Body) > 0:
		if r, err := openai.ParseResponse(x.Body); err == nil {
			fillFromResponse(resp, r, &t.Tokens)
		} else {
			resp.ErrorClass = errclass.Stream
			resp.Error = "parse response: " + err.Error()
		}
	}

	// A failure of the exchange itself (the client went away, the upstream broke off) wins
	// over what the body said, but keeps what had arrived. A stream that had reached [DONE] was
	// whole: clients commonly close the connection as soon as they read [DONE], before the
	// proxy reads the end of the body from the upstream, and that is no failure.
	if out.complete {
		t.Timing.ClientGone = false
	} else if x.ClientGone || x.ErrClass == errclass.Canceled {
		resp.ErrorClass = errclass.Canceled
		if resp.Error == "" {
			resp.Error = x.Err
		}
		if resp.Error == "" {
			resp.Error = "client disconnected"
		}
	} else if x.ErrClass != "" && resp.ErrorClass == "" {
		resp.ErrorClass = x.ErrClass
		resp.Error = x.Err
	}

	reply := tape.ReplyMessage(t)
	out.reply = p.cache.info(reply, false)
	out.state = answered(resp, out.msgs != nil)
}

// answered reports whether a chat turn's reply can be continued: the server answered it, fully
// or in part before the client went away. Failed turns are kept in their conversation but a
// client does not continue from them (it retries them).
func answered(resp *tape.Response, chat bool) bool {
	if !chat || resp.Status < 200 || resp.Status >= 300 {
		return false
	}
	switch resp.ErrorClass {
	case "":
		return true
	case errclass.Canceled:
		return resp.Content != "" || len(resp.ToolCalls) > 0
	}
	return false
}

// isEventStream reports whether the response is an SSE stream.
func isEventStream(x *proxy.Exchange) bool {
	if ct := x.RespHeader.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err == nil {
			return mt == "text/event-stream"
		}
	}
	b := bytes.TrimLeft(x.Body, " \t\r\n")
	return bytes.HasPrefix(b, []byte("data:")) || bytes.HasPrefix(b, []byte("event:")) || bytes.HasPrefix(b, []byte(":"))
}

// stream decodes an SSE body: it assembles the reply and gives every output-carrying event
// the arrival time of the read that completed it.
func (p *parser) stream(out *parsed, x *proxy.Exchange) {
	t := &out.turn
	resp := &t.Response
	resp.Streamed = true
	rr := &readsReader{body: x.Body, reads: x.Reads, end: x.End, last: len(x.Reads)}
	dec := openai.NewDecoder(rr)
	var acc openai.Accumulator
	var texts []string // the output text of each output chunk, for token counts
	for {
		ev, err := dec.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				resp.ErrorClass = errclass.Stream
				resp.Error = "decode stream: " + err.Error()
			}
			break
		}
		if ev.Done {
			out.complete = true
			continue
		}
		resp.Events++
		var c openai.Chunk
		if err := openai.ParseChunk(ev.Data, &c); err != nil {
			// Not a chunk: an error object the parser does not know, or garbage. Keep the first.
			if e, ok := openai.ParseError(ev.Data); ok && resp.Error == "" {
				resp.ErrorClass = errclass.Stream
				resp.Error = e.Message
			}
			continue
		}
		acc.Add(&c)
		if c.Error != nil && resp.Error == "" {
			resp.ErrorClass = errclass.Stream
			resp.Error = c.Error.Message
		}
		if c.HasOutput() {
			t.Timing.Chunks = append(t.Timing.Chunks, tape.Chunk{Offset: rr.at() - x.Sent})
			texts = append(texts, c.OutputText())
		}
	}
	resp.Content = acc.Content()
	resp.Reasoning = acc.Reasoning()
	resp.FinishReason = acc.FinishReason()
	if tcs := acc.ToolCalls(); len(tcs) > 0 {
		resp.ToolCalls = openai.MarshalToolCalls(tcs)
	}
	if u := acc.Usage(); u != nil {
		t.Tokens = tape.Tokens{Prompt: u.PromptTokens, Completion: u.CompletionTokens, Cached: u.Cached(), Source: tape.TokensServer}
	}
	if e := acc.Err(); e != nil && resp.Error == "" {
		resp.ErrorClass = errclass.Stream
		resp.Error = e.Message
	}
	// Tokens per chunk: when the server's count equals the number of output events, each event
	// carried one token (the usual case) and the tokenizer is not needed.
	ch := t.Timing.Chunks
	if t.Tokens.Source == tape.TokensServer && t.Tokens.Completion == len(ch) {
		for i := range ch {
			ch[i].Tokens = 1
		}
		return
	}
	for i := range ch {
		ch[i].Tokens = int32(openai.CountTokens(texts[i]))
	}
}

// fillFromResponse fills a turn's response from a non-streamed body.
func fillFromResponse(resp *tape.Response, r *openai.Response, tok *tape.Tokens) {
	resp.Content = r.Content()
	resp.Reasoning = r.Reasoning()
	resp.FinishReason = r.FinishReason()
	if tcs := r.ToolCalls(); len(tcs) > 0 {
		resp.ToolCalls = openai.MarshalToolCalls(tcs)
	}
	if r.Usage != nil {
		*tok = tape.Tokens{Prompt: r.Usage.PromptTokens, Completion: r.Usage.CompletionTokens, Cached: r.Usage.Cached(), Source: tape.TokensServer}
	}
}

// errorText is an error body as kept in Response.Error: the body itself, bounded.
func errorText(body []byte) string {
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
	}
	return strings.ToValidUTF8(string(body), "\uFFFD")
}

// tokens counts with tiktoken what the server did not report.
func (p *parser) tokens(out *parsed) {
	t := &out.turn
	if t.Tokens.Source == tape.TokensServer {
		return
	}
	resp := &t.Response
	completion := resp.Content + resp.Reasoning
	if len(resp.ToolCalls) > 0 {
		completion += string(resp.ToolCalls)
	}
	prompt := 0
	switch {
	case out.msgs != nil:
		for _, m := range out.meta {
			prompt += int(m.Tokens)
		}
	case len(t.Request.Prompt) > 0:
		prompt = promptTokens(t.Request.Prompt)
	}
	if prompt == 0 && completion == "" {
		return
	}
	t.Tokens = tape.Tokens{Prompt: prompt, Completion: openai.CountTokens(completion), Source: tape.TokensCounted}
}

// promptTokens counts a legacy completion prompt: a string, an array of strings, or token ids.
func promptTokens(raw json.RawMessage) int {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return openai.CountTokens(s)
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		n := 0
		for _, s := range ss {
			n += openai.CountTokens(s)
		}
		return n
	}
	var ids []json.RawMessage
	if json.Unmarshal(raw, &ids) == nil {
		return len(ids)
	}
	return 0
}

// headers flattens a header map, dropping secrets (see Config.RedactHeaders).
func (p *parser) headers(h http.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if p.redact.Secret(k) {
			continue
		}
		out[k] = strings.Join(h[k], ", ")
	}
	return out
}

// readsReader hands the decoder the response body one captured read at a time, so that when
// the decoder returns an event, the read it took last is the one that completed the event.
type readsReader struct {
	body  []byte
	reads []proxy.Read
	end   time.Duration // exchange end, for bytes no read covers
	pos   int           // bytes handed out
	cur   int           // first read that ends past pos
	last  int           // read the bytes handed out last came from; len(reads) when none
}

func (r *readsReader) Read(b []byte) (int, error) {
	if r.pos >= len(r.body) {
		return 0, io.EOF
	}
	for r.cur < len(r.reads) && r.reads[r.cur].End <= r.pos {
		r.cur++
	}
	limit := len(r.body)
	if r.cur < len(r.reads) {
		limit = min(r.reads[r.cur].End, len(r.body))
	}
	n := copy(b, r.body[r.pos:limit])
	r.pos += n
	r.last = r.cur
	return n, nil
}

// at is the arrival of the bytes handed out last: the time of their read, or the exchange's
// end when no read covers them.
func (r *readsReader) at() time.Duration {
	if r.last < len(r.reads) {
		return r.reads[r.last].At
	}
	return r.end
}

// sessionFromHeaders returns the first non-empty session header.
func sessionFromHeaders(h http.Header, names []string) string {
	for _, n := range names {
		if v := strings.TrimSpace(h.Get(n)); v != "" {
			return v
		}
	}
	return ""
}

// sessionFromBody returns conversation_id, session_id or metadata.session_id of the request
// parameters, strings or numbers.
func sessionFromBody(params json.RawMessage) string {
	var body struct {
		ConversationID json.RawMessage `json:"conversation_id"`
		SessionID      json.RawMessage `json:"session_id"`
		Metadata       struct {
			SessionID json.RawMessage `json:"session_id"`
		} `json:"metadata"`
	}
	// Metadata may be something other than an object; decode the top level leniently.
	if err := json.Unmarshal(params, &body); err != nil {
		var top map[string]json.RawMessage
		if json.Unmarshal(params, &top) != nil {
			return ""
		}
		body.ConversationID = top["conversation_id"]
		body.SessionID = top["session_id"]
	}
	for _, raw := range []json.RawMessage{body.ConversationID, body.SessionID, body.Metadata.SessionID} {
		if s := idString(raw); s != "" {
			return s
		}
	}
	return ""
}

// idString is a JSON string or number as text; anything else is "".
func idString(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}
