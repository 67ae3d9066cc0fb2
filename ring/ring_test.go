package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func id(b ...byte) ID {
	var x ID
	copy(x[:], b)
	return x
}

func randomIDs(rng *rand.Rand, n int) []ID {
	ids := make([]ID, n)
	for i := range ids {
		for j := range ids[i] {
			ids[i][j] = byte(rng.UintN(256))
		}
	}
	return ids
}

func TestSuccessorAndReplicas(t *testing.T) {
	r := New([]ID{id(0x80), id(0x20), id(0x50), id(0x20)})
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3 (a duplicate counts once)", r.Len())
	}
	cases := []struct {
		k, owner ID
		replicas []ID
	}{
		{id(0x10), id(0x20), []ID{id(0x20), id(0x50), id(0x80)}},
		{id(0x20), id(0x20), []ID{id(0x20), id(0x50), id(0x80)}},
		{id(0x20, 1), id(0x50), []ID{id(0x50), id(0x80), id(0x20)}},
		{id(0x90), id(0x20), []ID{id(0x20), id(0x50), id(0x80)}}, // round past the top
	}
	for _, c := range cases {
		if got := r.Successor(c.k); got != c.owner {
			t.Errorf("Successor(%x) = %x, want %x", c.k[:2], got[:1], c.owner[:1])
		}
		if got := r.Replicas(c.k, 3); !slices.Equal(got, c.replicas) {
			t.Errorf("Replicas(%x) = %x, want %x", c.k[:2], got, c.replicas)
		}
	}
	if got := r.Replicas(id(0x10), 5); len(got) != 3 {
		t.Errorf("5 replicas on a ring of 3: %d, want 3", len(got))
	}
	if New(nil).Successor(id(1)) != (ID{}) {
		t.Error("an empty ring has an owner")
	}
}

func TestAddAndBetween(t *testing.T) {
	var top ID
	for i := range top {
		top[i] = 0xff
	}
	if add(top, 0) != (ID{}) {
		t.Error("the top position plus one does not wrap to zero")
	}
	if got := add(id(0, 0xff), 240); got != id(1, 0) { // the carry crosses a byte
		t.Errorf("add at bit 240 = %x", got[:2])
	}
	if got := add(ID{}, 255); got != id(0x80) {
		t.Errorf("2^255 = %x", got[:1])
	}
	for _, c := range []struct {
		a, x, b ID
		want    bool
	}{
		{id(1), id(2), id(3), true},
		{id(1), id(3), id(3), true},
		{id(1), id(1), id(3), false},
		{id(1), id(4), id(3), false},
		{id(9), id(0xa), id(3), true}, // round the top
		{id(9), id(2), id(3), true},
		{id(9), id(5), id(3), false},
		{id(5), id(7), id(5), true}, // the whole ring
	} {
		if got := between(c.a, c.x, c.b); got != c.want {
			t.Errorf("between(%x, %x, %x) = %v", c.a[:1], c.x[:1], c.b[:1], got)
		}
	}
}

// Every lookup, started at any supernode and moved on by NextHop, ends at the
// owner the whole ring would name, in O(log N) hops.
func TestLookupReachesOwner(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 8, 32, 128, 1024} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := New(randomIDs(rng, n))
			fingers := make(map[ID][]ID, n)
			for _, s := range r.IDs() {
				fingers[s] = r.Fingers(s)
			}
			ids := r.IDs()
			const lookups = 2000
			total, worst := 0, 0
			for i := range lookups {
				k := KeyOf(fmt.Sprintf("user%d", i))
				at := ids[rng.IntN(len(ids))]
				hops := 0
				for {
					next, done := NextHop(at, fingers[at], k)
					if next != at {
						hops++
					}
					at = next
					if done {
						break
					}
					if hops > 4*64 {
						t.Fatalf("lookup of %x did not end", k[:4])
					}
				}
				if want := r.Successor(k); at != want {
					t.Fatalf("lookup of %x ended at %x, owner is %x", k[:4], at[:4], want[:4])
				}
				total += hops
				worst = max(worst, hops)
			}
			logN := math.Log2(float64(n))
			t.Logf("N=%d: %.2f hops on average, %d at most (log2 N = %.1f)", n, float64(total)/lookups, worst, logN)
			if n > 1 && float64(worst) > 2*logN+1 {
				t.Errorf("a lookup took %d hops on a ring of %d", worst, n)
			}
		})
	}
}

// With each name on its owner and the owner's two successors, a supernode's
// departure leaves every name on at least two of its new replicas already, so
// the records it held are copied from those, not lost.
func TestReplicasSurviveADeparture(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ids := randomIDs(rng, 32)
	before := New(ids)
	for _, gone := range ids[:8] {
		after := New(slices.DeleteFunc(slices.Clone(ids), func(x ID) bool { return x == gone }))
		for i := range 500 {
			k := KeyOf(fmt.Sprint("u", i))
			old, now := before.Replicas(k, 3), after.Replicas(k, 3)
			kept := 0
			for _, s := range now {
				if slices.Contains(old, s) {
					kept++
				}
			}
			if kept < 2 {
				t.Fatalf("name %x: replicas %x before, %x after; only %d already held it", k[:2], old, now, kept)
			}
		}
	}
}

func TestToward(t *testing.T) {
	linked := []ID{id(0x30), id(0x60), id(0xa0), id(0x10)}
	cases := []struct {
		self, target, want ID
		ok                 bool
	}{
		{id(0x20), id(0x70), id(0x60), true}, // the farthest not past the target
		{id(0x20), id(0x60), id(0x60), true}, // the target itself
		{id(0x20), id(0x15), id(0x10), true}, // round past the top
		{id(0xb0), id(0x05), ID{}, false},    // nothing between
		{id(0x30), id(0x40), ID{}, false},    // self does not count
		{id(0x70), id(0x20), id(0x10), true}, // across zero
		{id(0x05), id(0xff), id(0xa0), true}, // almost the whole way round
	}
	for _, c := range cases {
		got, ok := Toward(c.self, linked, c.target)
		if got != c.want || ok != c.ok {
			t.Errorf("Toward(%x, %x) = %x, %v; want %x, %v", c.self[0], c.target[0], got[0], ok, c.want[0], c.ok)
		}
	}
}

// TestArcsHoldTheKeysOfTheirCopies checks, on random rings, that a key's n
// copies include a supernode exactly when the key's prefix lies in that
// supernode's arc (Prefix(Before(id, n)), Prefix(id)].
func TestArcsHoldTheKeysOfTheirCopies(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, size := range []int{1, 2, 3, 4, 50} {
		r := New(randomIDs(rng, size))
		for range 2000 {
			k := rng.Uint64()
			if rng.IntN(4) == 0 { // a key on a supernode's own prefix
				k = Prefix(r.ids[rng.IntN(size)])
			}
			copies := r.Replicas(KeyPos(k), Copies)
			for _, x := range r.ids {
				from, to := Prefix(r.Before(x, Copies)), Prefix(x)
				in := size <= Copies || (from < to && k > from && k <= to) || (from >= to && (k > from || k <= to))
				if in != slices.Contains(copies, x) {
					t.Fatalf("ring of %d: key %x in the arc of %x is %v, among its copies %v", size, k, to, in, !in)
				}
			}
		}
	}
}

// Links spread over the distances, and greedy routing over them (and the
// supernodes' successors) takes a few hops more than log2 N at most.
func TestLinksRouteInFewHops(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, size := range []int{10, 1000, 10000} {
		ids := randomIDs(rng, size)
		r := New(ids)
		links := map[ID][]ID{}
		for _, id := range ids {
			links[id] = r.Links(id, 8)
			if got := len(links[id]); got > 8 || got == 0 {
				t.Fatalf("%d links", got)
			}
			if links[id][0] != r.Fingers(id)[0] {
				t.Fatal("the first link is not the successor")
			}
		}
		// For comparison: the successor and the farthest fingers.
		farthest := map[ID][]ID{}
		for _, id := range ids {
			fs := r.Fingers(id)
			o := []ID{fs[0]}
			for k := len(fs) - 1; k > 0 && len(o) < 8; k-- {
				o = append(o, fs[k])
			}
			farthest[id] = o
		}
		const lookups = 2000
		route := func(links map[ID][]ID, from, to ID) int {
			hops := 0
			for at := from; at != to; hops++ {
				next, ok := Toward(at, links[at], to)
				if !ok || hops > 1000 {
					t.Fatalf("%d supernodes: no way on from %x to %x", size, at[:4], to[:4])
				}
				at = next
			}
			return hops
		}
		worst, sum, sumFar := 0, 0, 0
		for range lookups {
			from, to := ids[rng.IntN(size)], ids[rng.IntN(size)]
			hops := route(links, from, to)
			worst, sum = max(worst, hops), sum+hops
			sumFar += route(farthest, from, to)
		}
		log2 := int(math.Ceil(math.Log2(float64(size))))
		t.Logf("%d supernodes: %.1f hops on average, %d at worst (log2 N = %d); the successor and the 7 farthest fingers: %.1f",
			size, float64(sum)/lookups, worst, log2, float64(sumFar)/lookups)
		if worst > 2*log2 {
			t.Errorf("%d supernodes: a lookup took %d hops, over 2 log2 N", size, worst)
		}
	}
}
