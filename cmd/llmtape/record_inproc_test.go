package main

import (
	"context"
	"testing"
)

// recProcess is a "llmtape record" running in the test's process.
type recProcess struct {
	addr, admin string     // the proxy's and the admin listener's address
	out, errb   *simBuffer // its stdout and stderr
	code        chan int   // its exit status, once it has returned
	cancel      func()     // stops it as SIGTERM does
	done        chan struct{}
}

// recRunInProcess runs "llmtape record args..." (which must include --admin) and waits for its
// listeners. The test's cleanup stops it and waits for it to return (so the store is closed).
func recRunInProcess(t *testing.T, args ...string) *recProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rp := &recProcess{out: &simBuffer{}, errb: &simBuffer{}, code: make(chan int, 1), cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() { cancel(); <-rp.done })
	go func() {
		defer close(rp.done)
		rp.code <- run(ctx, append([]string{"record"}, args...), rp.out, rp.errb)
	}()
	recWaitFor(t, "the proxy's address", func() bool {
		select {
		case c := <-rp.code:
			t.Fatalf("record exited with %d: %s", c, rp.errb.String())
		default:
		}
		m, a := recordProxyRe.FindStringSubmatch(rp.out.String()), recordAdminRe.FindStringSubmatch(rp.out.String())
		if m != nil && a != nil {
			rp.addr, rp.admin = m[1], a[1]
			return true
		}
		return false
	})
	return rp
}
