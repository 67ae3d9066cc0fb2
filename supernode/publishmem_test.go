package supernode

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/index/indextest"
	"github.com/supernet-p2p/supernet/protocol"
)

// BenchmarkPublish1M publishes a million typical files (200 leaves of 5,000, names
// such as "Artist - Title.mp3", some with audio tags) through the router as leaves
// send them (frames of 512 files, encoded and decoded), with eight neighbours to
// summarise for, and reports what each file costs beside the 1 KiB target: the live
// heap after a GC, the process's resident memory after returning free pages to the
// system, and its peak resident memory while publishing. The index's limit is raised
// to hold them all (at the default it holds about 170,000). Run with -benchtime=1x.
func BenchmarkPublish1M(b *testing.B) {
	for range b.N {
		m := measurePublish(b, 200, 5000)
		b.ReportMetric(m.heapPerFile, "heap-B/file")
		b.ReportMetric(m.rssPerFile, "rss-B/file")
		if m.peakRSSPerFile >= 0 {
			b.ReportMetric(m.peakRSSPerFile, "peak-rss-B/file")
		}
		b.Log(m)
		if m.heapPerFile > 1024 || m.rssPerFile > 1024 {
			b.Errorf("over 1 KiB a file: %v", m)
		}
	}
}

// measurePublish attaches leaves leaves and has each publish per typical files.
func measurePublish(tb testing.TB, leaves, per int) publishMem {
	tb.Helper()
	r := NewRouter(RouterConfig{MaxIndexBytes: 1 << 30}, nopOutbox{})
	for i := range 8 {
		r.NeighbourUp(LinkID(1_000_000+i), protocol.PeerID{0xee, byte(i)})
	}
	heap0 := heapAlloc()
	debug.FreeOSMemory()
	rss0, rssOK := residentBytes()
	peakOK := resetPeakRSS()
	start := time.Now()
	for l := range leaves {
		id := LinkID(l + 1)
		r.LeafUp(id, LeafInfo{Peer: protocol.PeerID{byte(l), byte(l >> 8)}, Name: fmt.Sprint("leaf", l), Addrs: []string{fmt.Sprintf("192.0.%d.%d:4000", byte(l>>8), byte(l))}})
		// A different seed per leaf: different files, drawn from the same names.
		for _, m := range wireFrames(tb, records(indextest.Names(int64(l+1), per))) {
			if err := r.Handle(id, m); err != nil {
				tb.Fatalf("leaf %d: %v", l, err)
			}
		}
	}
	r.Tick()
	elapsed := time.Since(start)
	n := leaves * per
	if got := r.IndexedFiles(); got != n {
		tb.Fatalf("%d files indexed, want %d", got, n)
	}
	m := publishMem{files: n, elapsed: elapsed, rssPerFile: -1, peakRSSPerFile: -1}
	m.heapPerFile = float64(heapAlloc()-heap0) / float64(n)
	if peakOK {
		if peak, ok := peakRSS(); ok {
			m.peakRSSPerFile = float64(peak-rss0) / float64(n)
		}
	}
	debug.FreeOSMemory()
	if rss, ok := residentBytes(); ok && rssOK {
		m.rssPerFile = float64(rss-rss0) / float64(n)
	}
	runtime.KeepAlive(r)
	return m
}

// residentBytes is the process's resident set size (Linux only).
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * int64(os.Getpagesize()), err == nil
}

// resetPeakRSS starts the kernel's peak resident size afresh (Linux 4.0 on).
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS is the process's peak resident set size since resetPeakRSS.
func peakRSS() (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := bytes.Fields(v)
			if len(f) == 2 && string(f[1]) == "kB" {
				kb, err := strconv.ParseInt(string(f[0]), 10, 64)
				return kb << 10, err == nil
			}
		}
	}
	return 0, false
}
