// Package redact decides what never reaches the store: secret headers (by a rule on their
// names, not by a list) and the user info of URLs. It is the one home of that decision for the
// proxy, the recorder, the replayer and the commands.
package redact

import (
	"net/http"
	"net/url"
	"strings"
)

// Placeholder replaces a secret value where the fact that a value was there is worth keeping
// (a replay's --header options).
const Placeholder = "<redacted>"

// secretParts are the fragments that make a header name a secret, compared case-insensitively
// anywhere in the name: Authorization, Proxy-Authorization, Api-Key, X-Goog-Api-Key,
// Ocp-Apim-Subscription-Key, X-Amz-Security-Token, Cookie, Set-Cookie, X-Hub-Signature, …
// "session-token" is caught by "token"; it is listed to say that session *tokens* are secrets
// while session *ids* (X-Session-ID, Helicone-Session-Id) are not, and are kept for stitching.
var secretParts = []string{"auth", "key", "token", "secret", "password", "cookie", "session-token", "signature"}

// SecretName reports whether a header name is a secret by the fixed rule alone: it contains
// one of auth, key, token, secret, password, cookie, session-token or signature, in any case.
func SecretName(name string) bool {
	for _, p := range secretParts {
		if containsFold(name, p) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII sub, ignoring ASCII case. It does
// not allocate: the proxy asks it for every header of every recorded exchange.
func containsFold(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for j < n {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
			j++
		}
		if j == n {
			return true
		}
	}
	return false
}

// Rule is the redaction rule with its configuration: the fixed rule (SecretName), plus extra
// names that are secrets (--redact-header), minus names that must be kept although the rule
// matches them (the recorder's --session-header names, whose value names a conversation).
// Extra wins over keep. The zero Rule is the fixed rule alone. A Rule is safe for concurrent
// use once made.
type Rule struct {
	extra, keep map[string]struct{} // canonical header names
}

// New returns the rule with extra secret names and kept names (both case-insensitive).
func New(extra, keep []string) Rule {
	r := Rule{}
	if len(extra) > 0 {
		r.extra = make(map[string]struct{}, len(extra))
		for _, h := range extra {
			r.extra[http.CanonicalHeaderKey(strings.TrimSpace(h))] = struct{}{}
		}
	}
	if len(keep) > 0 {
		r.keep = make(map[string]struct{}, len(keep))
		for _, h := range keep {
			r.keep[http.CanonicalHeaderKey(strings.TrimSpace(h))] = struct{}{}
		}
	}
	return r
}

// Secret reports whether the header name is a secret under r.
func (r Rule) Secret(name string) bool {
	if len(r.extra) > 0 || len(r.keep) > 0 {
		c := http.CanonicalHeaderKey(name)
		if _, ok := r.extra[c]; ok {
			return true
		}
		if _, ok := r.keep[c]; ok {
			return false
		}
	}
	return SecretName(name)
}

// Header returns a deep copy of h without the headers that are secrets under r; nil for nil.
func (r Rule) Header(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, len(h))
	for k, vv := range h {
		if r.Secret(k) {
			continue
		}
		out[k] = append([]string(nil), vv...)
	}
	return out
}

// URL returns s with the password of its user info replaced by "xxxxx"
// (http://user:xxxxx@host), as url.URL.Redacted does, and a user name without a password
// (often a token: https://TOKEN@host) replaced by "xxxxx" too. A string that does not parse as a URL
// but looks like one with user info (scheme://…@) gets its whole user info replaced, so an
// error message about a bad URL does not print the password either.
func URL(s string) string {
	if u, err := url.Parse(s); err == nil {
		if u.User == nil {
			return s
		}
		if _, ok := u.User.Password(); !ok {
			u.User = url.User("xxxxx")
		}
		return u.Redacted()
	}
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return s
	}
	return s[:i+3] + "xxxxx" + rest[at:]
}
