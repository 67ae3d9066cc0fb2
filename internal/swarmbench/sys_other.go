//go:build !unix

package swarmbench

import "time"

// cpuTime is not measured here; the report leaves the CPU line out.
func cpuTime() time.Duration { return 0 }

func freeBytes(string) (int64, bool) { return 0, false }
