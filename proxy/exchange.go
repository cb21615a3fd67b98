package proxy

import (
	"net/http"
	"time"

	"github.com/llmtape/llmtape/errclass"
)

// Exchange is one request and its response as captured on the hot path: raw bytes and
// monotonic timings, nothing parsed. The proxy hands each finished exchange to a Sink; the
// recorder package turns it into a turn off the hot path.
//
// Secrets are already removed from ReqHeader and RespHeader: every header whose name contains
// auth, key, token, secret, password, cookie or signature (package internal/redact), and
// Config.RedactHeaders, except Config.KeepHeaders.
type Exchange struct {
	Start      time.Time   // wall clock when the request arrived at the proxy
	Method     string      //
	Host       string      // upstream host
	Path       string      // request path as the upstream sees it, e.g. "/v1/chat/completions"
	ReqHeader  http.Header // redacted copy
	ReqBody    []byte      // the request body (decoded if it was compressed); nil when truncated
	ReqSize    int64       // bytes of request body received
	Truncated  bool        // the body was larger than --max-body and was not kept
	Sent       time.Duration
	Status     int         // upstream status; 502 when the upstream could not be reached
	RespHeader http.Header // redacted copy
	HeadersAt  time.Duration
	// Body is the response body, decoded (no Content-Encoding), as the client received it.
	Body []byte
	// Reads records when each piece of Body arrived: Reads[i].End is the offset into Body just
	// past the bytes that arrived at Reads[i].At. An SSE event arrived at the first read whose End
	// is past the event's terminating blank line.
	Reads      []Read
	End        time.Duration // last byte sent to the client (or the failure)
	ClientGone bool          // the client went away before the response ended
	// Err describes a failure: reaching the upstream, reading from it, or writing to the client.
	Err      string
	ErrClass errclass.Class // errclass.Connect, Timeout, Stream, Canceled or None

	// Fields added after the seam was first agreed (additions only).

	// RespSize is the number of response body bytes the client was sent (before decoding).
	RespSize int64
	// RespTruncated is true when the response body was larger than the proxy's MaxBody: Body
	// then holds only its first MaxBody bytes (the client still received all of it).
	RespTruncated bool
	// BodyEncoding is the response's Content-Encoding when Body could not be decoded (an
	// unknown or stacked coding, or corrupt data): Body is then the raw bytes as received.
	// It is empty when Body is plain.
	BodyEncoding string
}

// Read is the arrival of one piece of the response body.
type Read struct {
	At  time.Duration // monotonic offset from Exchange.Start
	End int           // offset in Exchange.Body just past this read's bytes
}

// Sink receives finished exchanges. It must not block: the recorder queues or counts a drop.
type Sink interface {
	Capture(x *Exchange)
}
