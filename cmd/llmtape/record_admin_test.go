package main

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// adminStatus sends GET path to the admin listener at addr with the given Host (empty: addr)
// and Authorization (empty: none) and returns the status.
func adminStatus(t *testing.T, addr, path, host, auth string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRecordAdminBeyondLoopbackNeedsAToken(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s.db")
	t.Setenv("LLMTAPE_TEST_EMPTY", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--admin", "0.0.0.0:0"}, "--admin 0.0.0.0:0 is reachable from other machines"},
		{[]string{"--admin", ":0"}, "is reachable from other machines"},
		{[]string{"--admin", "0.0.0.0:0", "--admin-token-env", "LLMTAPE_TEST_EMPTY"}, "LLMTAPE_TEST_EMPTY is empty or not set"},
		{[]string{"--admin-token-env", "LLMTAPE_TEST_EMPTY"}, "--admin-token-env is for the --admin listener"},
	} {
		args := append([]string{"record", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--store", store}, tc.args...)
		c, _, stderr := execCmd(context.Background(), args...)
		if c != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, c, stderr, tc.want)
		}
	}
}

func TestRecordAdminTokenAndHost(t *testing.T) {
	up := recStartSim(t, 0, 0)
	t.Setenv("LLMTAPE_TEST_ADMIN_TOKEN", "admin-tok-123")
	rp := recRun(t, "--upstream", up, "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0",
		"--admin-token-env", "LLMTAPE_TEST_ADMIN_TOKEN", "--store", filepath.Join(t.TempDir(), "s.db"))
	if !strings.Contains(rp.errb.String(), "warning: admin listener on") {
		t.Errorf("no warning about the admin listener: %s", rp.errb.String())
	}
	_, port, _ := net.SplitHostPort(rp.admin)
	addr := "127.0.0.1:" + port
	const bearer = "Bearer admin-tok-123"
	for _, tc := range []struct {
		path, host, auth string
		want             int
	}{
		{"/stats", "", "", http.StatusUnauthorized},
		{"/snapshot", "", "", http.StatusUnauthorized},
		{"/stats", "", "Bearer wrong", http.StatusUnauthorized},
		{"/stats", "", "admin-tok-123", http.StatusUnauthorized},
		{"/stats", "", bearer, http.StatusOK},
		{"/stats", "localhost:" + port, bearer, http.StatusOK},
		{"/stats", "[::1]:" + port, bearer, http.StatusOK},
		{"/stats", "evil.example:" + port, bearer, http.StatusMisdirectedRequest},
		{"/stats", "evil.example", bearer, http.StatusMisdirectedRequest},
		{"/stats", "127.0.0.1:1", bearer, http.StatusMisdirectedRequest},
	} {
		if got := adminStatus(t, addr, tc.path, tc.host, tc.auth); got != tc.want {
			t.Errorf("GET %s Host %q Authorization %q: %d, want %d", tc.path, tc.host, tc.auth, got, tc.want)
		}
	}
	rp.stop(t)
}

// On loopback no token is needed, but the Host check stands: DNS rebinding reaches loopback.
func TestRecordAdminLoopbackRefusesForeignHost(t *testing.T) {
	up := recStartSim(t, 0, 0)
	rp := recRun(t, "--upstream", up, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--store", filepath.Join(t.TempDir(), "s.db"))
	_, port, _ := net.SplitHostPort(rp.admin)
	if got := adminStatus(t, rp.admin, "/snapshot", "evil.example:"+port, ""); got != http.StatusMisdirectedRequest {
		t.Errorf("snapshot for Host evil.example: %d, want 421", got)
	}
	if got := adminStatus(t, rp.admin, "/health", "localhost:"+port, ""); got != http.StatusOK {
		t.Errorf("health for Host localhost: %d, want 200", got)
	}
	if strings.Contains(rp.errb.String(), "warning: admin") {
		t.Errorf("warning for a loopback admin: %s", rp.errb.String())
	}
	rp.stop(t)
}
