package transport

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// stunBuckets is the number of per-source token buckets. The table is fixed:
// its memory (12 bytes a bucket, 48 KiB) does not grow with the number of
// sources, and nothing is ever evicted. Sources share buckets by a keyed hash.
const stunBuckets = 4096

// sourceLimiter rate-limits by source address with a fixed table of token
// buckets. Each source hashes to two buckets and is served from whichever has
// a token (two choices): a flooder drains its own two, and an honest source
// whose one bucket it shares still has the other, unless both collide (about
// one source in 4 million for one flooder).
type sourceLimiter struct {
	seed  maphash.Seed
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	tokens  [stunBuckets]float32
	last    [stunBuckets]int64 // unix nanoseconds of the last refill
	started time.Time
}

func newSourceLimiter(rate float64, burst int) *sourceLimiter {
	return &sourceLimiter{seed: maphash.MakeSeed(), rate: rate, burst: float64(burst), started: time.Now()}
}

// buckets are src's two buckets.
func (l *sourceLimiter) buckets(src netip.Prefix) (uint64, uint64) {
	a := src.Addr().As16()
	h := maphash.Bytes(l.seed, append(a[:], byte(src.Bits())))
	return h % stunBuckets, (h >> 32) % stunBuckets
}

// allow takes a token for src at now, if either of its buckets has one.
func (l *sourceLimiter) allow(src netip.Prefix, now time.Time) bool {
	i, j := l.buckets(src)
	t := now.Sub(l.started).Nanoseconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.take(i, t) || l.take(j, t)
}

func (l *sourceLimiter) take(i uint64, now int64) bool {
	tok := float64(l.tokens[i])
	if l.last[i] == 0 {
		tok = l.burst // a bucket never used is full
	} else if now > l.last[i] {
		tok = min(l.burst, tok+float64(now-l.last[i])*l.rate/1e9)
	}
	l.last[i] = max(now, 1)
	if tok < 1 {
		l.tokens[i] = float32(tok)
		return false
	}
	l.tokens[i] = float32(tok - 1)
	return true
}
