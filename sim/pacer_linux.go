package sim

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// startPreciseClock starts the pacer's goroutine on a timerfd (CLOCK_MONOTONIC). The fd is
// non-blocking, so os.NewFile puts it in Go's netpoller: the goroutine parks in Read and
// epoll reports the expiry with the timer's own precision. It returns nil if the timerfd
// cannot be made; the pacer lives as long as the process.
func startPreciseClock() *pacer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "sim-pacer-timerfd")
	p := &pacer{arm: func(d time.Duration) {
		ts := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
		// An error here (a closed fd) cannot happen while the process runs.
		_ = unix.TimerfdSettime(fd, 0, &ts, nil)
	}}
	go func() {
		var buf [8]byte // the expiration count
		for {
			if _, err := f.Read(buf[:]); err != nil {
				return
			}
			p.fire()
		}
	}()
	return p
}
