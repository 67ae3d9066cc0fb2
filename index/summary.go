package index

import "github.com/cespare/xxhash/v2"

// Summary is an attenuated Bloom filter: what a supernode tells one neighbour it can
// reach. Levels[0] holds the keys of the sender's own leaves; Levels[d] the keys
// reachable d more supernode hops beyond the sender. A nil level holds nothing.
//
// Keys are the raw 32 bytes of a content ID and the bytes of a term as Tokenize returns
// it.
type Summary struct {
	Levels []*Bloom
}

// MayMatch reports whether some level d < hops may hold every key: a query with hops
// hops left is worth forwarding to this neighbour. False is certain; true may be a false
// positive. A query with no keys matches any level that is present.
func (s Summary) MayMatch(keys [][]byte, hops int) bool {
	var buf [MaxTokens + 1]uint64 // a query's terms, or its terms and a content ID
	hs := buf[:0]
	for _, k := range keys {
		hs = append(hs, xxhash.Sum64(k)) // hash once, test at every level
	}
	for d := 0; d < hops && d < len(s.Levels); d++ {
		l := s.Levels[d]
		if l == nil || len(l.words) == 0 {
			continue
		}
		all := true
		for _, h := range hs {
			if !l.hasHash(h) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// BuildSummary returns the summary to send to one neighbour X, with up to depth levels:
// level 0 is a copy of own (the keys of this node's leaves, nil if own is nil), and level
// d is the union of level d-1 of the summaries received from every neighbour except X
// (fromOthers must leave X out, so that X's own keys do not echo back to it). Unions fold
// to the smallest filter involved. Trailing empty levels are left out.
func BuildSummary(own *Bloom, fromOthers []Summary, depth int) Summary {
	if depth < 1 {
		return Summary{}
	}
	levels := make([]*Bloom, depth)
	if own != nil {
		levels[0] = own.Clone()
	}
	for d := 1; d < depth; d++ {
		var acc *Bloom
		for _, s := range fromOthers {
			if d-1 >= len(s.Levels) || s.Levels[d-1] == nil || len(s.Levels[d-1].words) == 0 {
				continue
			}
			if acc == nil {
				acc = s.Levels[d-1].Clone()
			} else {
				acc.Union(s.Levels[d-1])
			}
		}
		levels[d] = acc
	}
	for len(levels) > 0 && levels[len(levels)-1] == nil {
		levels = levels[:len(levels)-1]
	}
	return Summary{Levels: levels}
}

// BuildSummaries returns, for each i, BuildSummary(own, every summary in
// from but from[i], depth): what to send to each neighbour. Each level is the
// union of a prefix and a suffix of the others, so it takes about 3n unions
// per level rather than the n(n-1) of n separate calls.
func BuildSummaries(own *Bloom, from []Summary, depth int) []Summary {
	n := len(from)
	out := make([]Summary, n)
	if depth < 1 {
		return out
	}
	for i := range out {
		out[i].Levels = make([]*Bloom, depth)
		if own != nil {
			out[i].Levels[0] = own.Clone()
		}
	}
	level := func(s Summary, d int) *Bloom {
		if d >= len(s.Levels) || s.Levels[d] == nil || len(s.Levels[d].words) == 0 {
			return nil
		}
		return s.Levels[d]
	}
	// union is a new filter of a and b, either of which may be nil.
	union := func(a, b *Bloom) *Bloom {
		switch {
		case a == nil && b == nil:
			return nil
		case a == nil:
			return b.Clone()
		}
		u := a.Clone()
		u.Union(b)
		return u
	}
	suffix := make([]*Bloom, n+1) // suffix[i]: the union of from[i:] at one level
	for d := 1; d < depth; d++ {
		for i := n - 1; i >= 0; i-- {
			suffix[i] = union(suffix[i+1], level(from[i], d-1))
		}
		var prefix *Bloom // the union of from[:i], grown in place
		for i := range out {
			out[i].Levels[d] = union(prefix, suffix[i+1])
			if b := level(from[i], d-1); b != nil {
				if prefix == nil {
					prefix = b.Clone()
				} else {
					prefix.Union(b)
				}
			}
		}
	}
	for i := range out {
		l := out[i].Levels
		for len(l) > 0 && l[len(l)-1] == nil {
			l = l[:len(l)-1]
		}
		out[i].Levels = l
	}
	return out
}
