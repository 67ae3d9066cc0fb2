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
