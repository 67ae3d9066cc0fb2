package relay

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The relay's sockets and a client's socket to it take the larger buffers:
// all of it as root (the tests run as root in CI), as far as
// net.core.rmem_max allows otherwise.
func TestSocketBuffersGrown(t *testing.T) {
	want := socketBuffer
	if os.Geteuid() != 0 {
		b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
		if err != nil {
			t.Skip(err)
		}
		rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if rmemMax <= 212992 {
			t.Skipf("not root, and net.core.rmem_max is %d, no more than the usual default", rmemMax)
		}
		want = min(want, rmemMax)
	}
	rcvbuf := func(what string, pc any) {
		t.Helper()
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			t.Fatalf("%s is a %T", what, pc)
		}
		rc, err := uc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		rc.Control(func(fd uintptr) { got, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
		if err != nil {
			t.Fatal(err)
		}
		if got < want { // Linux reports twice what was set
			t.Errorf("%s: receive buffer %d, want at least %d", what, got, want)
		}
	}
	s := startRelay(t, Config{})
	rcvbuf("the TURN socket", s.udp)
	a := mustAllocate(t, s, false, "peer-a")
	rcvbuf("the client's socket", a.under)
	s.mu.Lock()
	for _, c := range s.relays {
		rcvbuf("a relay socket", c.PacketConn)
	}
	n := len(s.relays)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d relay sockets, want 1", n)
	}
}
