package proxy

import "net/http"

// CredentialHeaders are the headers never copied into an Exchange (they still reach the
// upstream). Config.RedactHeaders adds more.
var CredentialHeaders = []string{
	"Authorization",
	"Proxy-Authorization",
	"Api-Key",
	"X-Api-Key",
	"Cookie",
	"Set-Cookie",
}

func redactSet(extra []string) map[string]bool {
	m := make(map[string]bool, len(CredentialHeaders)+len(extra))
	for _, h := range CredentialHeaders {
		m[http.CanonicalHeaderKey(h)] = true
	}
	for _, h := range extra {
		m[http.CanonicalHeaderKey(h)] = true
	}
	return m
}

// redactedCopy returns a deep copy of h without credential headers. Header names are
// compared in canonical form, and also case-insensitively for names that a client sent
// uncanonicalised.
func (p *Proxy) redactedCopy(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vv := range h {
		if p.redact[k] || p.redact[http.CanonicalHeaderKey(k)] {
			continue
		}
		out[k] = append([]string(nil), vv...)
	}
	return out
}
