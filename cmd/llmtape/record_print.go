package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
)

// printStarted warns about listeners that other machines can reach, then says where the proxy
// listens and how to point clients at it. The warnings come first: whoever waits for the
// listening line (a script, a test) has them by then.
func (o *recordOptions) printStarted(stdout, logw io.Writer, s *recorder.Session, store string, adminPublic bool) {
	addr := s.Addr().String()
	if a := s.AdminAddr(); a != nil && adminPublic {
		fmt.Fprintf(logw, "llmtape record: warning: admin listener on %s is reachable from other machines; it serves the whole store to anyone holding the token, in clear text over HTTP\n", a)
	}
	if a, ok := s.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		to := "the upstream"
		if o.mode == proxy.ModeForward {
			to = "the --intercept and --allow-connect hosts"
		}
		fmt.Fprintf(logw, "llmtape record: warning: listening on %s, reachable from other machines; anyone who can connect can send requests through it to %s\n", addr, to)
	}
	fmt.Fprintf(stdout, "llmtape record: %s proxy listening on http://%s, recording %d into %s\n", o.mode, addr, s.Summary().Recording, store)
	if o.mode == proxy.ModeReverse {
		fmt.Fprintf(stdout, "  forwarding to %s; point clients at it: export OPENAI_BASE_URL=http://%s/v1\n", redact.URL(o.upstream), addr)
	} else {
		fmt.Fprintf(stdout, "  point clients at it: export HTTPS_PROXY=http://%s HTTP_PROXY=http://%s\n", addr, addr)
	}
	if a := s.AdminAddr(); a != nil {
		fmt.Fprintf(stdout, "  admin on http://%s (/health, /stats, /snapshot)\n", a)
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

// printSummary prints what the session recorded in format f (stdout or the -o file), and on
// stderr whether its streams were cut and whether the recording is incomplete.
func (o *recordOptions) printSummary(cmd *cobra.Command, f output.Format, logw io.Writer, sum recorder.Summary) error {
	if sum.DrainErr != nil {
		fmt.Fprintf(logw, "llmtape record: streams still running were cut: %v\n", sum.DrainErr)
	}
	ps, rs := sum.Proxy, sum.Recorder
	err := o.out.print(cmd, f, sum, func(w io.Writer) error {
		fmt.Fprintf(w, "llmtape record: %d exchanges (%d failed upstream or client went away), %d turns recorded, %d not recorded, %d recording errors, %d requests passed through\n",
			ps.Exchanges, ps.Errors, rs.Recorded, rs.NotRecorded, rs.Errors, ps.Passed)
		if ps.UpstreamReconnects > 0 {
			fmt.Fprintf(w, "llmtape record: %d requests sent again on a new connection because the upstream had closed the reused one (not errors)\n", ps.UpstreamReconnects)
		}
		return nil
	}, func() output.Section {
		return output.Section{
			Cols: []string{"recording", "exchanges", "errors", "client_gone", "passed", "upstream_reconnects",
				"recorded", "not_recorded", "dropped", "lost", "recording_errors", "drain_error", "close_error"},
			Rows: [][]output.Cell{{output.Int(sum.Recording), output.Int(ps.Exchanges), output.Int(ps.Errors),
				output.Int(ps.ClientGone), output.Int(ps.Passed), output.Int(ps.UpstreamReconnects),
				output.Int(rs.Recorded), output.Int(rs.NotRecorded), output.Int(rs.Dropped), output.Int(rs.Lost),
				output.Int(rs.Errors), output.Text(errText(sum.DrainErr)), output.Text(errText(sum.CloseErr))}},
		}
	})
	recordSummaryStatus(logw, sum.Recording, rs, sum.CloseErr)
	return err
}

// errText is err's message, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
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
