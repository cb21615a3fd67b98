package recorder

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/llmtape/llmtape/proxy"
)

// AdminStats is the JSON of the admin handler's GET /stats.
type AdminStats struct {
	ExchangesSeen     int64       `json:"exchanges_seen"`     // recordable exchanges the proxy captured
	Recorded          uint64      `json:"recorded"`           // turns handed to the store and not lost
	NotRecorded       uint64      `json:"not_recorded"`       // exchanges not in the store: recorder behind, or store lost them
	Errors            uint64      `json:"errors"`             // exchanges that failed upstream or could not be recorded
	OpenConversations int         `json:"open_conversations"` // conversations the stitcher keeps open
	QueueDepth        int         `json:"queue_depth"`        // exchanges captured, not yet recorded
	InFlight          int64       `json:"in_flight"`          // recordable exchanges still streaming
	Proxy             proxy.Stats `json:"proxy"`
	Recorder          Stats       `json:"recorder"`

	// UpstreamReconnects counts requests sent again on a new connection because the upstream
	// had closed the reused one before answering; they are not errors.
	UpstreamReconnects int64 `json:"upstream_reconnects"`
}

// AdminHandler returns the handler of the session's admin endpoints: GET /health, GET /stats
// (AdminStats), GET /snapshot (a consistent copy of the whole store, bbolt's Tx.WriteTo) and
// Go's profiler under /debug/pprof/. It serves the session once Start has returned. It checks
// neither the Host nor a token: the listener of SessionConfig.Admin does; a caller that mounts
// it elsewhere guards it itself, since /snapshot serves every recorded conversation.
func (s *Session) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		sum := s.Summary()
		ps, rs := sum.Proxy, sum.Recorder
		st := AdminStats{
			ExchangesSeen:     ps.Exchanges,
			Recorded:          rs.Recorded,
			NotRecorded:       rs.NotRecorded,
			Errors:            uint64(ps.Errors) + rs.Errors,
			OpenConversations: rs.Open,
			QueueDepth:        rs.QueueDepth,
			InFlight:          ps.InFlight,
			Proxy:             ps,
			Recorder:          rs,

			UpstreamReconnects: ps.UpstreamReconnects,
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	// Go's profiler, for "why is the proxy slow" questions (the admin listener is off by
	// default and meant for loopback).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /snapshot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="llmtape-snapshot.db"`)
		if _, err := s.store.Snapshot(w); err != nil {
			// Headers are gone already when the copy fails midway; the client sees a short body.
			http.Error(w, "snapshot: "+err.Error(), http.StatusInternalServerError)
		}
	})
	return mux
}

// guardAdmin lets a request through to h only when its Host is the admin listener's own
// (given: the configured admin address; ln: the address it listens on) and, when token is
// set, it carries "Authorization: Bearer <token>".
//
// The Host check defeats DNS rebinding: a web page at evil.example whose name is made to
// resolve to 127.0.0.1 can make a browser send requests here, but they say Host: evil.example.
// Allowed: localhost, 127.0.0.1 and [::1], the configured host, and for a listener on every
// interface (0.0.0.0, ::) the IP addresses of this machine; always with the listener's port.
// Others get 421 Misdirected Request; a missing or wrong token gets 401.
func guardAdmin(h http.Handler, given string, ln net.Addr, token string) http.Handler {
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
