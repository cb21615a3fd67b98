package simtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
)

// childEnv carries a child's sim.Config, as JSON, from StartChild to ServeChild.
const childEnv = "LLMTAPE_SIMTEST_CHILD"

// Child is a sim serving in a child process: the test binary itself, re-executed by
// StartChild. Benchmarks use one so that the client's CPU time and garbage collection are
// measured apart from the server's.
type Child struct {
	// URL is the child sim's base URL (http://127.0.0.1:port); add "/v1" for an OpenAI client.
	URL string
	cmd *exec.Cmd
}

// StartChild re-executes the test binary as a child process serving a sim with cfg on a free
// port of 127.0.0.1, and stops it when the test or benchmark ends. The package's TestMain must
// call ServeChild first, or the child runs the tests instead.
func StartChild(tb testing.TB, cfg sim.Config) *Child {
	tb.Helper()
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatalf("child sim config: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(cfgJSON))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatalf("child sim: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("child sim: %v", err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start child sim: %v", err)
	}
	// Closing stdin tells the child to stop.
	tb.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("child sim: %v", err)
	}
	return &Child{URL: strings.TrimSpace(line), cmd: cmd}
}

// CPU returns the child's user+system CPU time so far, read from /proc (zero where there is
// no /proc).
func (c *Child) CPU() time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.cmd.Process.Pid), "stat"))
	if err != nil {
		return 0
	}
	// Fields after the command name (which is in parentheses): utime is field 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return 0
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// ServeChild serves the sim of a child started by StartChild, until the parent closes the
// child's stdin, and reports the exit status with served true. In any other process it does
// nothing and reports served false. Call it first in TestMain:
//
//	func TestMain(m *testing.M) {
//		if code, served := simtest.ServeChild(); served {
//			os.Exit(code)
//		}
//		os.Exit(m.Run())
//	}
func ServeChild() (code int, served bool) {
	cfgJSON := os.Getenv(childEnv)
	if cfgJSON == "" {
		return 0, false
	}
	var cfg sim.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child sim config:", err)
		return 2, true
	}
	s, err := sim.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child sim:", err)
		return 2, true
	}
	url, err := s.Start("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child sim:", err)
		return 2, true
	}
	fmt.Println(url)
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "child sim:", err)
		return 1, true
	}
	return 0, true
}
