package relay

import (
	"testing"

	"go.uber.org/goleak"
)

// TestCloseLeavesNoGoroutines: a relay that carried QUIC for allocations over
// UDP and TCP leaves nothing running once it and its clients are closed, and
// its Close ends the allocations still open.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := startRelay(t, Config{})
	var open []*Allocation
	for _, tcp := range []bool{false, true} {
		alloc := mustAllocate(t, s, tcp, "peer-a")
		quicThrough(t, alloc, 64<<10)
		open = append(open, alloc)
	}
	if n := s.Load().Allocations; n != 2 {
		t.Fatalf("%d allocations open before Close, want 2", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, a := range open {
		a.Close()
	}
}
