//go:build !linux

package sim

// startPreciseClock has no precise clock outside Linux: streams use time.Timer.
func startPreciseClock() *pacer { return nil }
