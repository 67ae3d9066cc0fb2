package swarm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// These tests call the choker with candidates named by numbers: no swarm,
// no session, no clock but the times passed in.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func unchoked(m map[int]bool) []int {
	var out []int
	for k, on := range m {
		if on {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// first draws 0 every time: the shuffle then is a fixed permutation and the
// optimistic pick is the first of its pool.
func first(int) int { return 0 }

func TestChokerUnchokesFastestAndOneOptimistic(t *testing.T) {
	c := &choker[int]{slots: 2, optimistic: true, interval: 30 * time.Second}
	old := t0.Add(-time.Hour)
	cands := []chokePeer[int]{{key: 1, rate: 10, since: old}, {key: 2, rate: 50, since: old},
		{key: 3, rate: 30, since: old}, {key: 4, rate: 0, since: old}}
	got := unchoked(c.choose(cands, true, t0, first))
	if len(got) != 3 || !slices.Contains(got, 2) || !slices.Contains(got, 3) {
		t.Fatalf("unchoked %v; want 2 and 3 (fastest) and one optimistic", got)
	}
	if !c.hasOpt || c.opt == 2 || c.opt == 3 {
		t.Fatalf("optimistic %d (%v); want one of the slower peers", c.opt, c.hasOpt)
	}
	// No optimistic slot: only the fastest.
	c2 := &choker[int]{slots: 2, interval: 30 * time.Second}
	if got := unchoked(c2.choose(cands, true, t0, first)); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("without an optimistic slot: %v", got)
	}
}

func TestChokerOptimisticRotatesOnItsInterval(t *testing.T) {
	c := &choker[int]{slots: 1, optimistic: true, interval: 30 * time.Second}
	old := t0.Add(-time.Hour)
	cands := []chokePeer[int]{{key: 1, rate: 100, since: old}, {key: 2, since: old}, {key: 3, since: old}, {key: 4, since: old}}
	rng := rand.New(rand.NewPCG(3, 4))
	c.choose(cands, true, t0, rng.IntN)
	opt := c.opt
	// Within the interval the optimistic peer stays, whatever the draws.
	for i := 1; i < 10; i++ {
		c.choose(cands, true, t0.Add(time.Duration(i)*time.Second), rng.IntN)
		if c.opt != opt {
			t.Fatalf("the optimistic unchoke moved after %ds, before its interval", i)
		}
	}
	// Past it, it moves on (over a few rounds, at least once).
	moved := false
	for i := 0; i < 20 && !moved; i++ {
		c.choose(cands, true, t0.Add(time.Duration(31+31*i)*time.Second), rng.IntN)
		moved = c.opt != opt
	}
	if !moved {
		t.Fatal("the optimistic unchoke never moved on")
	}
	// One that leaves is forgotten, and another takes its place at once.
	gone := c.opt
	c.forget(gone)
	var rest []chokePeer[int]
	for _, p := range cands {
		if p.key != gone {
			rest = append(rest, p)
		}
	}
	c.choose(rest, false, c.lastOptim.Add(time.Second), rng.IntN)
	if !c.hasOpt || c.opt == gone {
		t.Fatalf("after the optimistic peer left: %d (%v)", c.opt, c.hasOpt)
	}
}

func TestChokerNewPeersThreeTimesAsLikely(t *testing.T) {
	c := &choker[int]{slots: 0, optimistic: true, interval: 30 * time.Second}
	// Peer 1 joined long ago, peer 2 just now: the pool is [1 2 2 2] in
	// some order, and a draw of i takes its i-th entry.
	cands := []chokePeer[int]{{key: 1, since: t0.Add(-time.Hour)}, {key: 2, since: t0}}
	counts := map[int]int{}
	for draw := range 4 {
		c := *c
		c.choose(cands, true, t0, func(n int) int {
			if n == 4 {
				return draw
			}
			return 0
		})
		counts[c.opt]++
	}
	if counts[1] != 1 || counts[2] != 3 {
		t.Fatalf("draws over the pool gave %v; want the new peer 3 times in 4", counts)
	}
}

func TestChokerKickedRunKeepsRegularSlots(t *testing.T) {
	c := &choker[int]{slots: 2, optimistic: false, interval: 30 * time.Second}
	old := t0.Add(-time.Hour)
	// 1 and 2 hold the slots; 3 is faster now.
	cands := []chokePeer[int]{{key: 1, rate: 1, unchoked: true, since: old},
		{key: 2, rate: 2, unchoked: true, since: old}, {key: 3, rate: 100, since: old}}
	if got := unchoked(c.choose(cands, false, t0, first)); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("a kicked run replaced a regular slot: %v", got)
	}
	if got := unchoked(c.choose(cands, true, t0, first)); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("a periodic run kept a slow peer: %v", got)
	}
	// A slot freed (1 no longer a candidate) goes to the next at once.
	if got := unchoked(c.choose(cands[1:], false, t0, first)); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("after a peer left: %v", got)
	}
}
