package swarm

import (
	"context"
	"testing"
)

// A wait for more bytes than the limiter's burst (a v1 request of 512 KiB at a
// low rate) passes a burst at a time instead of failing.
func TestLimiterWaitBeyondBurst(t *testing.T) {
	l := newLimiter(1 << 30)
	n := 8 * l.burst(1<<30)
	if err := l.wait(context.Background(), n); err != nil {
		t.Fatalf("wait for %d bytes, burst %d: %v", n, l.burst(1<<30), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := newLimiter(1000).wait(ctx, 1<<20); err == nil {
		t.Fatal("wait with a cancelled context returned no error")
	}
	if err := (limiter{}).wait(ctx, 1<<20); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}
