package reconn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/llmtape/llmtape/internal/reconn"
)

func TestClosed(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{fmt.Errorf("write: %w", net.ErrClosed), true},
		{errors.New("http: server closed idle connection"), true},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
	} {
		if got := reconn.Closed(tc.err); got != tc.want {
			t.Errorf("Closed(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestLostNeedsAReusedConnection(t *testing.T) {
	var tr reconn.Trace
	if tr.Lost(io.EOF) {
		t.Fatal("a request that never got a connection was lost to a close")
	}
}
