package main

import (
	"os"
	"testing"
)

// On Linux the machine's memory is read, to within what /proc/meminfo
// says, or no limit is set.
func TestMemTotal(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc/meminfo here")
	}
	total, ok := memTotal()
	if !ok || total < 64<<20 {
		t.Fatalf("memTotal %d, %v: want the machine's memory", total, ok)
	}
}
