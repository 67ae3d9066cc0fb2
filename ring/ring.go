// Package ring places the username directory on the supernodes: a circle of
// 256-bit positions on which each supernode sits at its peer ID and each name
// at the SHA-256 of the name. The supernode that follows a name's position owns
// it and the next ones hold copies. Lookups travel by shortcuts (fingers) at
// power-of-two distances, as Chord does, so they take O(log N) hops without any
// supernode knowing every other. It is pure data: no I/O, no clock.
package ring

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// Copies is how many supernodes keep the names at a position: its owner and
// the owner's successors.
const Copies = 3

// ID is a position on the ring.
type ID [32]byte

// KeyOf is the position of a username.
func KeyOf(name string) ID { return sha256.Sum256([]byte("supernet user\x00" + name)) }

// Ring is a set of supernodes, in ring order.
type Ring struct{ ids []ID }

// New makes a ring of ids; duplicates count once.
func New(ids []ID) *Ring {
	s := slices.Clone(ids)
	slices.SortFunc(s, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	return &Ring{ids: slices.Compact(s)}
}

// Len is the number of supernodes.
func (r *Ring) Len() int { return len(r.ids) }

// IDs are the supernodes in ring order.
func (r *Ring) IDs() []ID { return slices.Clone(r.ids) }

// Successor is the first supernode at k or after it, going round: the owner
// of the names at k. The zero ID when the ring is empty.
func (r *Ring) Successor(k ID) ID {
	if len(r.ids) == 0 {
		return ID{}
	}
	return r.ids[r.index(k)]
}

func (r *Ring) index(k ID) int {
	i, _ := slices.BinarySearchFunc(r.ids, k, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	return i % len(r.ids)
}

// Replicas are the owner of k and the supernodes after it, n in all (fewer
// on a smaller ring): where the records at k are kept.
func (r *Ring) Replicas(k ID, n int) []ID {
	n = min(n, len(r.ids))
	out := make([]ID, 0, n)
	for i, j := 0, r.index(k); i < n; i, j = i+1, (j+1)%len(r.ids) {
		out = append(out, r.ids[j])
	}
	return out
}

// Fingers are self's shortcuts: the successors of self+2^i for i = 0..255,
// each once, nearest first. The first is self's successor on the ring.
func (r *Ring) Fingers(self ID) []ID {
	var out []ID
	for i := range 256 {
		f := r.Successor(add(self, i))
		if f != self && (len(out) == 0 || out[len(out)-1] != f) {
			out = append(out, f)
		}
	}
	return out
}

// NextHop is where a lookup of k goes from self, which knows its fingers
// (fingers[0] its successor): done when self's successor owns k, else on to
// the finger closest before k. A lookup that repeats this from each hop
// reaches the owner in O(log N) hops.
func NextHop(self ID, fingers []ID, k ID) (next ID, owner bool) {
	if len(fingers) == 0 {
		return self, true // alone on the ring
	}
	if k == self {
		return self, true
	}
	if between(self, k, fingers[0]) {
		return fingers[0], true
	}
	for i := len(fingers) - 1; i >= 0; i-- {
		if f := fingers[i]; f != k && between(self, f, k) {
			return f, false
		}
	}
	return fingers[0], false
}

// between reports whether x lies in (a, b] going round the ring from a.
func between(a, x, b ID) bool {
	ab, ax, xb := bytes.Compare(a[:], b[:]), bytes.Compare(a[:], x[:]), bytes.Compare(x[:], b[:])
	switch {
	case ab < 0:
		return ax < 0 && xb <= 0
	case ab > 0:
		return ax < 0 || xb <= 0
	}
	return true // a == b: the whole ring
}

// add is id + 2^bit, modulo 2^256.
func add(id ID, bit int) ID {
	i := 31 - bit/8
	carry := uint16(1) << (bit % 8)
	for ; i >= 0 && carry > 0; i-- {
		s := uint16(id[i]) + carry
		id[i] = byte(s)
		carry = s >> 8
	}
	return id
}

// Toward is the step from self toward target among the supernodes self is
// linked to: the one at or before target that is farthest round from self, so
// each step covers as much of the way as the links allow. False when none of
// them lies between self and target.
func Toward(self ID, linked []ID, target ID) (ID, bool) {
	var best ID
	found := false
	for _, l := range linked {
		if l == self || !between(self, l, target) {
			continue
		}
		if !found || between(best, l, target) {
			best, found = l, true
		}
	}
	return best, found
}

// KeyPos is the position of a 64-bit key (a term's or content ID's hash):
// its bits lead, the rest are zero. Keys spread over the ring as evenly as
// peer IDs do.
func KeyPos(k uint64) ID {
	var id ID
	binary.BigEndian.PutUint64(id[:8], k)
	return id
}

// Prefix is the first 64 bits of id. A key k lies in the arc (a, b] of the
// ring exactly when k lies in (Prefix(a), Prefix(b)] going round 2^64: the
// zero bits after a key's place it at or before any ID of its prefix.
func Prefix(id ID) uint64 { return binary.BigEndian.Uint64(id[:8]) }

// Has reports whether id is on the ring.
func (r *Ring) Has(id ID) bool {
	_, ok := slices.BinarySearchFunc(r.ids, id, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// Before is the supernode n places before id going back round the ring (id
// itself for n = 0); id must be on it. The keys whose n copies include id
// are those in the arc (Before(id, n), id], unless the ring has n
// supernodes or fewer, when every key's copies include it.
func (r *Ring) Before(id ID, n int) ID {
	i, _ := slices.BinarySearchFunc(r.ids, id, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	l := len(r.ids)
	return r.ids[((i-n)%l+l)%l]
}

// Links are the n supernodes self should link to so that routing round the
// ring takes few hops: its successor, then fingers spread evenly over the
// distances from the farthest in (every finger when there are no more than
// n). Chord keeps every finger, about log2 N of them; fewer links spread
// this way cost a hop or two more rather than a walk along successors.
func (r *Ring) Links(self ID, n int) []ID {
	fs := r.Fingers(self)
	if n <= 0 || len(fs) == 0 {
		return nil
	}
	out := []ID{fs[0]}
	rest := fs[1:]
	want := min(n-1, len(rest))
	for i := range want {
		// From the farthest in, at even steps over the rest.
		j := len(rest) - 1 - i*len(rest)/want
		out = append(out, rest[j])
	}
	return out
}
