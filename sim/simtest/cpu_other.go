//go:build !unix

package simtest

import "time"

// SelfCPU returns this process's user+system CPU time so far (getrusage), zero where the
// platform does not tell.
func SelfCPU() time.Duration { return 0 }
