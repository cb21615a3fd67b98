package proxy

import (
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// hopHeaders are the hop-by-hop headers (RFC 9110 section 7.6.1, plus the non-standard ones
// clients still send): they describe one connection and are not forwarded by a reverse proxy
// in either direction. Proxy-Authorization is among them: it is addressed to this proxy.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by curl and old clients
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",      // canonical form of "TE"
	"Trailer", // not Trailers (plural): that is a TE value
	"Transfer-Encoding",
	"Upgrade",
}

// copyBufs are the pooled 32 KiB buffers of the response copy loop.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// serveReverse forwards one request to the upstream and copies the answer back, flushing
// every read to the client at once.
func (p *Proxy) serveReverse(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// The transport may still be sending the request body upstream when the response
	// headers come back (an upstream that answers before reading it, such as a 401). Without
	// full duplex, net/http's server would then discard the rest of the body under the
	// transport's feet and the upstream connection would break.
	_ = http.NewResponseController(w).EnableFullDuplex()
	out := new(http.Request)
	*out = *r // shallow copy; keeps r's context, which ends when the client goes away
	u := *p.upstream
	u.Path = joinPath(p.upstream.Path, r.URL.Path)
	u.RawPath = ""
	u.RawQuery = r.URL.RawQuery
	out.URL = &u
	out.Host = ""
	out.RequestURI = ""
	out.Close = false
	out.Header = forwardHeader(r.Header)
	if r.ContentLength == 0 {
		out.Body = nil // the transport must not wait for a body that is not coming
	}
	resp := p.roundTrip(out, start)
	defer resp.Body.Close()

	h := w.Header()
	removeConnectionHeaders(resp.Header)
	for k, vv := range resp.Header {
		if isHop(k) {
			continue
		}
		h[k] = vv
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Set("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush() // headers now: an SSE client may wait for them before the first event
	}

	bp := copyBufs.Get().(*[]byte)
	buf := *bp
	var upErr error
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				break // client gone: Close sees the early end and cancels the upstream
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			if rerr != io.EOF {
				upErr = rerr
			}
			break
		}
	}
	copyBufs.Put(bp)
	if upErr != nil && r.Context().Err() == nil {
		// The upstream broke off mid-response: break off the client's response too, rather
		// than end it cleanly, so the client sees what the server did. (The deferred Close
		// records the exchange first.)
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

// forwardHeader copies a request header for the upstream without hop-by-hop headers.
// Credentials are kept: the upstream needs them.
func forwardHeader(src http.Header) http.Header {
	dst := make(http.Header, len(src)+1)
	for k, vv := range src {
		dst[k] = vv
	}
	removeConnectionHeaders(dst)
	for _, k := range hopHeaders {
		delete(dst, k)
	}
	if _, ok := dst["User-Agent"]; !ok {
		dst["User-Agent"] = []string{""} // stop the transport from adding Go's own
	}
	return dst
}

// removeConnectionHeaders removes the headers named in Connection (they are hop-by-hop too).
// h must be a copy the caller owns.
func removeConnectionHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, http.CanonicalHeaderKey(sf))
			}
		}
	}
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if h == k {
			return true
		}
	}
	return false
}

// joinPath joins the upstream's base path and the request path with one slash.
func joinPath(base, p string) string {
	if base == "" || base == "/" {
		return p
	}
	return strings.TrimSuffix(base, "/") + "/" + strings.TrimPrefix(p, "/")
}
