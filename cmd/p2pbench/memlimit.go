package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
)

// setMemoryLimit keeps the heap of a large run under 90% of the machine's
// memory, unless GOMEMLIMIT says otherwise: the garbage collector's default
// lets a heap grow to twice what is live, which a run of a million peers
// (about 13 GB live) cannot have on 24 GB.
func setMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if total, ok := memTotal(); ok {
		debug.SetMemoryLimit(total / 10 * 9)
	}
}

// memTotal is the machine's memory in bytes, from /proc/meminfo.
func memTotal() (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb << 10, true
		}
	}
	return 0, false
}
