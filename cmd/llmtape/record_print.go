package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
)

// printStarted says where the proxy listens and how to point clients at it, and warns about
// listeners that other machines can reach.
func (o *recordOptions) printStarted(stdout, logw io.Writer, s *recorder.Session, store string, adminPublic bool) {
	addr := s.Addr().String()
	fmt.Fprintf(stdout, "llmtape record: %s proxy listening on http://%s, recording %d into %s\n", o.mode, addr, s.Summary().Recording, store)
	if o.mode == proxy.ModeReverse {
		fmt.Fprintf(stdout, "  forwarding to %s; point clients at it: export OPENAI_BASE_URL=http://%s/v1\n", redact.URL(o.upstream), addr)
	} else {
		fmt.Fprintf(stdout, "  point clients at it: export HTTPS_PROXY=http://%s HTTP_PROXY=http://%s\n", addr, addr)
	}
	if a := s.AdminAddr(); a != nil {
		fmt.Fprintf(stdout, "  admin on http://%s (/health, /stats, /snapshot)\n", a)
		if adminPublic {
			fmt.Fprintf(logw, "llmtape record: warning: admin listener on %s is reachable from other machines; it serves the whole store to anyone holding the token, in clear text over HTTP\n", a)
		}
	}
	if a, ok := s.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		to := "the upstream"
		if o.mode == proxy.ModeForward {
			to = "the --intercept and --allow-connect hosts"
		}
		fmt.Fprintf(logw, "llmtape record: warning: listening on %s, reachable from other machines; anyone who can connect can send requests through it to %s\n", addr, to)
	}
}

// recordSummaryStatus says loudly, on stderr, when the recording is not complete: exchanges
// were not recorded, or its final state could not even be written to the store.
func recordSummaryStatus(w io.Writer, id uint64, rs recorder.Stats, closeErr error) {
	switch {
	case errors.Is(closeErr, recorder.ErrStatusNotWritten):
		fmt.Fprintf(w, "llmtape record: ERROR: recording %d could not be marked in the store: it shows as incomplete, without its end and without saying that %d exchanges were not recorded (%d lost by the store)\n",
			id, rs.NotRecorded, rs.Lost)
	case rs.NotRecorded > 0:
		fmt.Fprintf(w, "llmtape record: WARNING: recording %d is marked incomplete: %d exchanges were not recorded (%d lost by the store, %d dropped because the recorder was behind)\n",
			id, rs.NotRecorded, rs.Lost, rs.Dropped)
	}
}

// printRecordSummary prints what the session recorded, on stdout, and on stderr whether its
// streams were cut and whether the recording is incomplete.
func printRecordSummary(stdout, logw io.Writer, sum recorder.Summary) {
	if sum.DrainErr != nil {
		fmt.Fprintf(logw, "llmtape record: streams still running were cut: %v\n", sum.DrainErr)
	}
	ps, rs := sum.Proxy, sum.Recorder
	fmt.Fprintf(stdout, "llmtape record: %d exchanges (%d failed upstream or client went away), %d turns recorded, %d not recorded, %d recording errors, %d requests passed through\n",
		ps.Exchanges, ps.Errors, rs.Recorded, rs.NotRecorded, rs.Errors, ps.Passed)
	if ps.UpstreamReconnects > 0 {
		fmt.Fprintf(stdout, "llmtape record: %d requests sent again on a new connection because the upstream had closed the reused one (not errors)\n", ps.UpstreamReconnects)
	}
	recordSummaryStatus(logw, sum.Recording, rs, sum.CloseErr)
}

// recordLogWriter serialises writes from the proxy's, the recorder's and the command's goroutines.
type recordLogWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *recordLogWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
