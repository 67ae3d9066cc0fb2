package swarm

import (
	"context"
	"testing"
	"time"
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

// A cap lets through at most a tenth of a second's bytes at once, and over a
// second no more than the rate and that burst.
func TestLimiterCapHolds(t *testing.T) {
	const r = 2_500_000
	l := newLimiter(r).l
	t0 := time.Now()
	if !l.AllowN(t0, r/10) {
		t.Fatal("a tenth of a second's bytes were not let through at once")
	}
	if l.AllowN(t0, 1) {
		t.Fatal("more than a tenth of a second's bytes were let through at once")
	}
	passed := r / 10
	for i := 1; i <= 100; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		for l.AllowN(at, swarmBlock) {
			passed += swarmBlock
		}
	}
	if passed > r+r/10 || passed < r-swarmBlock {
		t.Fatalf("%d bytes in the first second at %d/s", passed, r)
	}
	if b := newLimiter(100_000).l.Burst(); b != 4*swarmBlock {
		t.Fatalf("a low cap's burst is %d, want 4 blocks", b)
	}
}
