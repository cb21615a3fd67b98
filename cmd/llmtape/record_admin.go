package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// adminToken checks --admin and --admin-token-env before anything starts. It returns the
// token requests must carry ("" when none is set) and whether the address is reachable from
// other machines. An admin listener beyond loopback serves the whole store (/snapshot), so
// it refuses to start without a token.
func adminToken(addr, tokenEnv string) (token string, public bool, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false, usageErrorf("--admin %q: want host:port", addr)
	}
	public = !isLoopbackHost(host)
	if tokenEnv != "" {
		token = os.Getenv(tokenEnv)
		if token == "" {
			return "", public, usageErrorf("--admin-token-env %s: the environment variable %s is empty or not set", tokenEnv, tokenEnv)
		}
	}
	if public && token == "" {
		return "", public, usageErrorf("--admin %s is reachable from other machines and serves the whole store (/snapshot): "+
			"put a token in an environment variable and name it with --admin-token-env VAR (clients then send Authorization: Bearer <token>), or listen on 127.0.0.1", addr)
	}
	return token, public, nil
}

// isLoopbackHost reports whether a listen host is loopback only: "localhost" or a loopback IP.
// An empty host or 0.0.0.0 listens on every interface; other names are not trusted to be local.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// adminGuard lets a request through to h only when its Host is the admin listener's own
// (given: the --admin host; ln: the address it listens on) and, when token is set, it carries
// "Authorization: Bearer <token>".
//
// The Host check defeats DNS rebinding: a web page at evil.example whose name is made to
// resolve to 127.0.0.1 can make a browser send requests here, but they say Host: evil.example.
// Allowed: localhost, 127.0.0.1 and [::1], the --admin host, and for a listener on every
// interface (0.0.0.0, ::) the IP addresses of this machine; always with the listener's port.
// Others get 421 Misdirected Request; a missing or wrong token gets 401.
func adminGuard(h http.Handler, given string, ln net.Addr, token string) http.Handler {
	_, port, _ := net.SplitHostPort(ln.String())
	hosts := map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}
	gh, _, _ := net.SplitHostPort(given)
	gh = strings.ToLower(strings.Trim(gh, "[]"))
	if ip := net.ParseIP(gh); gh == "" || (ip != nil && ip.IsUnspecified()) {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					hosts[n.IP.String()] = true
				}
			}
		}
	} else {
		hosts[gh] = true
	}
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, p, err := net.SplitHostPort(r.Host)
		if err != nil {
			host, p = r.Host, "80"
		}
		host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
		if ip := net.ParseIP(host); ip != nil {
			host = ip.String() // one spelling of an IPv6 address
		}
		if p != port || !hosts[host] {
			http.Error(w, fmt.Sprintf("llmtape admin: host %q is not this listener's", r.Host), http.StatusMisdirectedRequest)
			return
		}
		if token != "" {
			// Hashing first makes the comparison constant-time in the length as well.
			got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="llmtape admin"`)
				http.Error(w, "llmtape admin: want Authorization: Bearer <token> (see --admin-token-env)", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
