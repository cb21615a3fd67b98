// Package proxy is llmtape's recording HTTP(S) proxy.
//
// # Basics
//
// In reverse mode (ModeReverse) clients set their base URL to the proxy and every request is
// forwarded to Config.Upstream. In forward mode (ModeForward, built on goproxy) clients set
// HTTP_PROXY / HTTPS_PROXY; TLS to the intercepted hosts is terminated with a certificate
// signed by a CA from LoadOrCreateCA, and CONNECTs to other hosts are tunnelled untouched.
//
// Both modes share one capture path. For a recordable request (DefaultRecordable: POST to
// …/chat/completions or …/completions) the proxy tees the request body and the response body
// as they pass and takes a monotonic timestamp of every read; when the response has been
// copied to the client, the finished Exchange is handed to the Config.Sink. Everything else
// is forwarded without being recorded.
//
// The client receives exactly the bytes the upstream sent: every read is written and flushed
// at once (an event stream is never buffered), Accept-Encoding and Content-Encoding pass
// through untouched. Exchange.Body is decoded after the end of the exchange (see decode.go for
// how Reads stay meaningful for a compressed stream).
//
// # Caveats
//
//   - Secret headers (by the rule of internal/redact: names containing auth, key, token,
//     secret, password, cookie or signature; and Config.RedactHeaders) never reach an
//     Exchange, but are forwarded to the upstream untouched. Proxy-Authorization is hop-by-hop
//     and is not forwarded in reverse mode.
//   - The Sink is called on the goroutine that copied the response (or on a decoding goroutine
//     for compressed bodies); it must not block.
//   - Exchange.End is when the last byte was handed to the client connection (or the failure).
//     In forward mode the copy is goproxy's; timestamps are still taken when bytes arrive from
//     the upstream.
//   - Forward mode is no open relay: a CONNECT goes only to an intercepted host or one that
//     Config.AllowConnect lists; others get 403 before any connection is made. The default
//     Intercept (every host) intercepts, and so accepts, every CONNECT.
//   - A client that pauses mid-body longer than Config.BodyTimeout gets a 408 and its
//     connection is closed (not inside intercepted TLS connections, whose requests goproxy
//     reads).
//   - An exchange whose upstream failed (or answered before it read the request body) still
//     has the whole request body: the proxy reads from the client what the upstream did not
//     take, before it answers 502 or finishes the exchange (not when the client waits for a
//     100 Continue that the early answer ruled out: it never sends the body).
//   - Bodies larger than Config.MaxBody pass through and are kept truncated (request: not kept,
//     Truncated set; response: the first MaxBody bytes, RespTruncated set).
//   - A request that fails on a reused upstream connection before any byte of the answer (the
//     upstream had closed it: llama.cpp's server closes every connection after a stream) is
//     sent once more on a new connection, its body replayed (not when it is over MaxBody).
//     Stats.UpstreamReconnects counts these; they are not errors. An upstream that processed
//     the request and dropped the connection without a byte of answer sees it twice. See
//     reconnect.go.
package proxy
