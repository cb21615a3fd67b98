package main

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// onSecondInterrupt calls abort when a SIGINT or SIGTERM arrives between now and stop.
//
// The first Ctrl-C reaches a command through its context (see main), and a command that then
// winds down gently (record drains its streams, replay lets its requests finish) lets a second
// one cut that short. It subscribes with onSecondInterrupt before it prints the line that
// invites the second Ctrl-C, so that a signal sent on seeing that line counts. stop
// unsubscribes and returns once abort has returned, when it was called.
func onSecondInterrupt(abort func()) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-sig:
			abort()
		case <-quit:
		}
	}()
	return sync.OnceFunc(func() {
		signal.Stop(sig)
		close(quit)
		<-finished
	})
}
