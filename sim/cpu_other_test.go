//go:build !unix

package sim

import "time"

// cpuNow is zero where getrusage does not exist.
func cpuNow() time.Duration { return 0 }
