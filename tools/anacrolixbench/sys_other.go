//go:build !unix

package main

import "time"

// cpuTime is not measured here; the report leaves the CPU lines out.
func cpuTime() time.Duration { return 0 }

func freeBytes(string) (int64, bool) { return 0, false }
