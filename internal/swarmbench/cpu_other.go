//go:build !unix

package swarmbench

import "time"

// cpuTime is not measured here; the report leaves the CPU line out.
func cpuTime() time.Duration { return 0 }
