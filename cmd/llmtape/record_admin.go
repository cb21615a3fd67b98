package main

import (
	"net"
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
