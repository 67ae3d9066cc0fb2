package swarm

import (
	"cmp"
	"slices"
	"time"
)

// The choker decides whom this peer uploads to. It is plain code: the swarm
// hands it the candidates, the time and a source of randomness, and applies
// its answer (sends the chokes and unchokes) itself.

// chokePeer is what the choker knows of one candidate: a peer that wants
// something from us.
type chokePeer[K comparable] struct {
	key K
	// rate is how fast it uploads to us (when we are complete: how fast we
	// upload to it).
	rate     float64
	unchoked bool      // we upload to it now
	since    time.Time // when it joined the swarm
}

// choker keeps the optimistic unchoke from one choice to the next.
type choker[K comparable] struct {
	slots      int // unchoked by rate
	optimistic bool
	interval   time.Duration // how often the optimistic unchoke moves on

	opt       K
	hasOpt    bool
	lastOptim time.Time
}

// forget drops a peer that left.
func (c *choker[K]) forget(k K) {
	if c.hasOpt && c.opt == k {
		var zero K
		c.opt, c.hasOpt = zero, false
	}
}

// choose unchokes the slots candidates that upload to us fastest and an
// optimistic one, rotated every interval and drawn with peers newer than
// interval three times as likely. A periodic choice may replace regular
// slots; another (a peer left or lost interest) only fills slots that are
// free or held by peers that are no longer candidates. intn(n) draws from
// [0, n).
func (c *choker[K]) choose(cands []chokePeer[K], periodic bool, now time.Time, intn func(int) int) map[K]bool {
	cands = slices.Clone(cands)
	for i := len(cands) - 1; i > 0; i-- {
		j := intn(i + 1)
		cands[i], cands[j] = cands[j], cands[i]
	}
	unchoke := make(map[K]bool)
	if !periodic {
		for _, p := range cands {
			if p.unchoked && (!c.hasOpt || p.key != c.opt) && len(unchoke) < c.slots {
				unchoke[p.key] = true
			}
		}
	}
	slices.SortStableFunc(cands, func(a, b chokePeer[K]) int { return cmp.Compare(b.rate, a.rate) })
	for _, p := range cands {
		if len(unchoke) >= c.slots {
			break
		}
		unchoke[p.key] = true
	}
	if c.hasOpt && (!slices.ContainsFunc(cands, func(p chokePeer[K]) bool { return p.key == c.opt }) || unchoke[c.opt]) {
		c.forget(c.opt)
	}
	if !c.hasOpt || now.Sub(c.lastOptim) >= c.interval {
		var pool []K
		for _, p := range cands {
			if unchoke[p.key] {
				continue
			}
			pool = append(pool, p.key)
			if now.Sub(p.since) < c.interval {
				pool = append(pool, p.key, p.key)
			}
		}
		if len(pool) > 0 {
			c.opt, c.hasOpt = pool[intn(len(pool))], true
			c.lastOptim = now
		}
	}
	if c.hasOpt && c.optimistic {
		unchoke[c.opt] = true
	}
	return unchoke
}
