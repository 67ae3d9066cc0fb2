package swarm

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// rateMeter is a rolling transfer rate over a window, kept in buckets so that
// old traffic drops out instead of decaying forever.
type rateMeter struct {
	window  time.Duration
	buckets [20]int64
	start   time.Time // when the meter began, for windows not yet full
	cur     int64     // index of the current bucket since start
}

func newRateMeter(window time.Duration, now time.Time) rateMeter {
	return rateMeter{window: window, start: now}
}

func (m *rateMeter) bucketLen() time.Duration { return m.window / time.Duration(len(m.buckets)) }

func (m *rateMeter) advance(now time.Time) {
	idx := int64(now.Sub(m.start) / m.bucketLen())
	if idx-m.cur >= int64(len(m.buckets)) {
		m.buckets = [20]int64{}
	} else {
		for i := m.cur + 1; i <= idx; i++ {
			m.buckets[i%int64(len(m.buckets))] = 0
		}
	}
	if idx > m.cur {
		m.cur = idx
	}
}

func (m *rateMeter) add(n int64, now time.Time) {
	m.advance(now)
	m.buckets[m.cur%int64(len(m.buckets))] += n
}

// rate is bytes per second over the window, or over the meter's life while it
// is younger than the window.
func (m *rateMeter) rate(now time.Time) float64 {
	m.advance(now)
	var sum int64
	for _, b := range m.buckets {
		sum += b
	}
	span := min(now.Sub(m.start), m.window)
	if span < m.bucketLen() {
		span = m.bucketLen()
	}
	return float64(sum) / span.Seconds()
}

// limiter caps a byte rate; nil means unlimited.
type limiter struct{ l *rate.Limiter }

// newLimiter allows bytesPerSec with a burst of a tenth of a second's bytes
// (at least a few blocks), so a cap holds over fractions of a second, not
// only on average. Larger bursts let QUIC send more packets per system
// call and ack them together (the swarm bench spent about 6% less CPU per
// byte than with a fiftieth of a second).
func newLimiter(bytesPerSec int64) limiter {
	if bytesPerSec <= 0 {
		return limiter{}
	}
	burst := max(4*swarmBlock, int(bytesPerSec/10))
	return limiter{rate.NewLimiter(rate.Limit(bytesPerSec), burst)}
}

// burst is the most bytes the limiter lets through at once, at most max: a
// sender that takes no more than that at a time keeps the rate smooth.
func (l limiter) burst(max int) int {
	if l.l == nil {
		return max
	}
	return min(max, l.l.Burst())
}

// wait blocks until n bytes may pass. n may exceed the burst (a v1 request is up
// to 512 KiB); it is then let through a burst at a time.
func (l limiter) wait(ctx context.Context, n int) error {
	if l.l == nil {
		return nil
	}
	for n > 0 {
		k := min(n, l.l.Burst())
		if err := l.l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
