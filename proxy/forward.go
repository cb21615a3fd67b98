package proxy

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// newForward builds the forward-mode handler on goproxy: plain HTTP proxy requests and
// intercepted CONNECTs go through the capture path (roundTrip); CONNECTs to hosts that are
// not intercepted are tunnelled untouched when Config.AllowConnect lists them, and refused
// with 403 otherwise (no connection is made).
func (p *Proxy) newForward() (http.Handler, error) {
	gp := goproxy.NewProxyHttpServer()
	gp.Verbose = false
	gp.Logger = log.New(io.Discard, "", 0)
	if p.cfg.Logf != nil {
		gp.Logger = logfLogger(p.cfg.Logf)
	}
	gp.Tr = p.transport
	// Tunnels dial directly: never through $HTTPS_PROXY, which may point at this proxy.
	gp.ConnectDial = nil
	// Pass Accept-Encoding through so the client gets exactly what it asked for.
	gp.KeepAcceptEncoding = true
	gp.CertStore = &certCache{m: make(map[string]*tls.Certificate)}
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "llmtape forward proxy: set HTTP_PROXY/HTTPS_PROXY to this address, or run llmtape record in reverse mode (--upstream)", http.StatusBadRequest)
	})

	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(p.cfg.CA)}
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if p.intercepts(host) {
			return mitm, host
		}
		return goproxy.OkConnect, host
	})
	rt := goproxy.RoundTripperFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Response, error) {
		return p.roundTrip(req, time.Now()), nil
	})
	gp.OnRequest().DoFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		ctx.RoundTripper = rt
		return req, nil
	})
	base := p.recordable
	p.recordable = func(r *http.Request) bool { return p.intercepts(r.URL.Host) && base(r) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect && !p.intercepts(r.URL.Host) && !p.allowsConnect(r.URL.Host) {
			// Not an open relay: a tunnel goes only where the user said.
			p.refused.Add(1)
			http.Error(w, "llmtape forward proxy: CONNECT to "+r.URL.Host+" is not allowed (see --intercept and --allow-connect)", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodConnect {
			// See serveReverse: the request body may still be on its way upstream when the
			// response headers are written.
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
		gp.ServeHTTP(w, r)
	}), nil
}

// intercepts reports whether host (with or without port) is one of Config.Intercept.
func (p *Proxy) intercepts(host string) bool {
	if len(p.cfg.Intercept) == 0 {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, pat := range p.cfg.Intercept {
		if h, _, err := net.SplitHostPort(pat); err == nil {
			pat = h
		}
		if hostMatches(pat, host) {
			return true
		}
	}
	return false
}

// allowsConnect reports whether a CONNECT to hostport ("host:port") may be tunnelled
// untouched: it matches an entry of Config.AllowConnect, whose port is 443 when not given.
func (p *Proxy) allowsConnect(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	for _, pat := range p.cfg.AllowConnect {
		ph, pp, err := net.SplitHostPort(pat)
		if err != nil {
			ph, pp = pat, "443"
		}
		if (pp == "*" || pp == port) && hostMatches(ph, host) {
			return true
		}
	}
	return false
}

// hostMatches reports whether host (no port) matches a pattern: a name, "*.domain" or "*";
// case-insensitive, a trailing dot and IPv6 brackets ignored.
func hostMatches(pat, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), "."))
	pat = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(pat, "["), "]"))
	switch {
	case pat == "*" || pat == host:
		return true
	case strings.HasPrefix(pat, "*.") && strings.HasSuffix(host, pat[1:]):
		return true
	}
	return false
}

// certCache keeps the certificates signed for intercepted hosts (signing costs milliseconds).
type certCache struct {
	mu sync.Mutex
	m  map[string]*tls.Certificate
}

func (c *certCache) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert, ok := c.m[host]; ok {
		return cert, nil
	}
	cert, err := gen()
	if err != nil {
		return nil, err
	}
	c.m[host] = cert
	return cert, nil
}

// logfLogger adapts a Logf function to goproxy's Logger.
type logfLogger func(format string, args ...any)

func (l logfLogger) Printf(format string, args ...any) { l(strings.TrimSuffix(format, "\n"), args...) }
