package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
)

// sessionConfig checks the flags and turns them into the session's configuration; forward
// mode loads (or creates) the CA and prints how clients trust it. adminPublic says that the
// admin listener is reachable from other machines.
func (o *recordOptions) sessionConfig(store string, logw io.Writer) (cfg recorder.SessionConfig, adminPublic bool, err error) {
	maxBody, err := parseByteSize(o.maxBody)
	if err != nil {
		return cfg, false, usageErrorf("--max-body %q: %v", o.maxBody, err)
	}
	if o.drainTimeout < 0 || o.commitInterval < 0 {
		return cfg, false, usageErrorf("--drain-timeout and --commit-interval must not be negative")
	}
	if o.queueSize < 1 {
		return cfg, false, usageErrorf("--queue %d: want at least 1", o.queueSize)
	}
	if o.bodyTimeout <= 0 {
		return cfg, false, usageErrorf("--body-timeout %v: want a positive duration such as 60s", o.bodyTimeout)
	}
	for _, s := range o.sessionHeaders {
		for _, r := range o.redact {
			if strings.EqualFold(strings.TrimSpace(s), strings.TrimSpace(r)) {
				return cfg, false, usageErrorf("--session-header %s is also a --redact-header: a header that is never stored cannot name conversations", s)
			}
		}
	}
	switch {
	case o.mode != proxy.ModeReverse && o.mode != proxy.ModeForward:
		return cfg, false, usageErrorf("--mode %q: want reverse or forward", o.mode)
	case o.mode == proxy.ModeReverse && o.upstream == "":
		return cfg, false, usageErrorf("reverse mode needs --upstream URL (or use --mode forward)")
	case o.mode == proxy.ModeForward && o.upstream != "":
		return cfg, false, usageErrorf("--upstream is for reverse mode; in forward mode clients name the server")
	case len(o.allowConnect) > 0 && o.mode != proxy.ModeForward:
		return cfg, false, usageErrorf("--allow-connect is for forward mode")
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return cfg, false, usageErrorf("--listen %q: want host:port", o.listen)
	}
	cfg = recorder.SessionConfig{StorePath: store, Listen: o.listen, Admin: o.admin,
		Proxy: proxy.Config{Mode: o.mode, Upstream: o.upstream, MaxBody: maxBody, RedactHeaders: o.redact, KeepHeaders: o.sessionHeaders,
			Intercept: o.intercept, AllowConnect: o.allowConnect, BodyTimeout: o.bodyTimeout},
		Recorder: recorder.Config{QueueSize: o.queueSize, Name: o.name,
			Logger: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))},
	}
	cfg.Recorder.Writer.MaxDelay = o.commitInterval
	if o.admin != "" {
		if cfg.AdminToken, adminPublic, err = adminToken(o.admin, o.adminTokenEnv); err != nil {
			return cfg, false, err
		}
	} else if o.adminTokenEnv != "" {
		return cfg, false, usageErrorf("--admin-token-env is for the --admin listener")
	}
	if o.upstreamCA != "" {
		if cfg.Proxy.UpstreamTLS, err = upstreamTLS(o.upstreamCA); err != nil {
			return cfg, false, err
		}
	}
	cfg.Proxy.Logf = func(format string, args ...any) {
		fmt.Fprintf(logw, "llmtape record: "+format+"\n", args...)
	}
	if o.mode == proxy.ModeForward {
		ca, err := proxy.LoadOrCreateCA(o.caDir)
		if err != nil {
			return cfg, false, err
		}
		cfg.Proxy.CA = &ca.Cert
		if ca.Created {
			fmt.Fprintf(logw, "llmtape record: created CA %s (key %s, mode 0600)\n", ca.CertFile, ca.KeyFile)
		}
		fmt.Fprint(logw, ca.TrustHint())
	}
	return cfg, adminPublic, nil
}

// upstreamTLS trusts the certificates of the PEM file besides the system roots.
func upstreamTLS(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read upstream ca: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, usageErrorf("--upstream-ca %s: no PEM certificate in it", file)
	}
	return &tls.Config{RootCAs: roots}, nil
}

// parseByteSize parses a byte size: "1048576", "32MiB", "512KiB", "1GB" (units case-insensitive;
// K, M and G alone are binary).
func parseByteSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive size such as 32MiB or 1048576")
	}
	if n > (1<<62)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// defaultCADir is $XDG_CONFIG_HOME/llmtape (or the platform's config directory).
func defaultCADir() string {
	d, err := os.UserConfigDir()
	if err != nil {
		return ".llmtape-ca"
	}
	return filepath.Join(d, "llmtape")
}
