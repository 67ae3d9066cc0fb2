package index

import (
	"fmt"
	"slices"

	"github.com/supernet-p2p/supernet/protocol"
)

// Check verifies the index's internal invariants, for tests that drive it through its
// exported API.
func (ix *Index) Check() error {
	if len(ix.meta) != len(ix.docs) || len(ix.tie) != len(ix.docs) {
		return fmt.Errorf("meta %d, tie %d, docs %d", len(ix.meta), len(ix.tie), len(ix.docs))
	}
	live := 0
	pairs := map[[2]uint32]bool{} // (source, doc) pairs the documents hold
	for d := range ix.docs {
		dc := &ix.docs[d]
		if dc.nsrc == 0 {
			if ix.meta[d] != deadMeta {
				return fmt.Errorf("dead doc %d has meta %d", d, ix.meta[d])
			}
			if ix.tie[d] != 0 {
				return fmt.Errorf("dead doc %d has tie key %#x", d, ix.tie[d])
			}
			if _, ok := ix.multi[uint32(d)]; ok {
				return fmt.Errorf("dead doc %d has overflow sources", d)
			}
			continue
		}
		live++
		if ix.meta[d] > MaxTokens {
			return fmt.Errorf("live doc %d has meta %d", d, ix.meta[d])
		}
		if ix.tie[d] != tieKey(dc.nsrc, ix.cid(uint32(d))) {
			return fmt.Errorf("doc %d: stale tie key", d)
		}
		if got, ok := ix.cids.find(ix, ix.cid(uint32(d))); !ok || got != uint32(d) {
			return fmt.Errorf("doc %d: content ID table gives %d, %v", d, got, ok)
		}
		srcs := ix.appendSources(nil, uint32(d))
		if len(srcs) != int(dc.nsrc) {
			return fmt.Errorf("doc %d: nsrc %d but %d sources", d, dc.nsrc, len(srcs))
		}
		if dc.nsrc > 1 && (!slices.IsSorted(srcs) || len(slices.Compact(slices.Clone(srcs))) != len(srcs)) {
			return fmt.Errorf("doc %d: sources %v not ascending and distinct", d, srcs)
		}
		for _, s := range srcs {
			pairs[[2]uint32{uint32(s), uint32(d)}] = true
		}
	}
	if live != ix.live || len(ix.docs)-live != ix.dead || ix.cids.live != live {
		return fmt.Errorf("live %d dead %d docs %d table %d", ix.live, ix.dead, len(ix.docs), ix.cids.live)
	}
	uses := map[SourceID]Usage{}
	for p := range pairs {
		u := uses[SourceID(p[0])]
		u.Files++
		u.Bytes += int64(ix.docs[p[1]].charge)
		uses[SourceID(p[0])] = u
	}
	for src, sd := range ix.bySrc {
		if sd.use != uses[src] {
			return fmt.Errorf("source %d: usage %+v, its files add up to %+v", src, sd.use, uses[src])
		}
		delete(uses, src)
		for _, d := range sd.docs {
			delete(pairs, [2]uint32{uint32(src), d})
		}
	}
	for src, u := range uses {
		return fmt.Errorf("source %d with %+v has no source list", src, u)
	}
	for p := range pairs {
		return fmt.Errorf("source %d of doc %d missing from its source list", p[0], p[1])
	}
	if n := len(pairsOf(ix)); n != ix.pairs {
		return fmt.Errorf("%d pairs counted, %d held", ix.pairs, n)
	}
	if h := ix.countHeld(); h != ix.held {
		return fmt.Errorf("held %d, counted afresh %d", ix.held, h)
	}
	for d := range ix.docs {
		dc := &ix.docs[d]
		if dc.nsrc == 0 {
			continue
		}
		r := ix.record(dc)
		e := Entry{ContentID: *r.cid, Name: string(r.name), Size: r.size, Tags: protocol.Tags{
			Title: string(r.title), Artist: string(r.artist), Album: string(r.album), Genre: string(r.genre), Year: r.year}}
		if c := Charge(e); c != int64(dc.charge) {
			return fmt.Errorf("doc %d charged %d, Charge gives %d", d, dc.charge, c)
		}
	}
	if len(ix.post) != len(ix.terms) {
		return fmt.Errorf("%d posting lists for %d terms", len(ix.post), len(ix.terms))
	}
	for t, id := range ix.terms {
		pl := &ix.post[id]
		if pl.tiers == nil {
			for i := 1; i < len(pl.flat); i++ {
				if pl.flat[i]>>1 <= pl.flat[i-1]>>1 {
					return fmt.Errorf("term %q: postings out of order", t)
				}
			}
			continue
		}
		n := 0
		for tier, b := range pl.tiers.b {
			n += len(b)
			_, nameToks := tierRank(tier)
			for i, d := range b {
				if i > 0 && d <= b[i-1] {
					return fmt.Errorf("term %q tier %d: postings out of order", t, tier)
				}
				if m := ix.meta[d]; m != deadMeta && int(m) != nameToks {
					return fmt.Errorf("term %q: doc %d with %d name terms in tier %d", t, d, m, tier)
				}
			}
		}
		if bits := pl.tiers.bits; bits != nil {
			for _, b := range pl.tiers.b {
				for _, d := range b {
					if int(d/64) >= len(bits) || bits[d/64]&(1<<(d%64)) == 0 {
						return fmt.Errorf("term %q: doc %d missing from the bitmap", t, d)
					}
				}
			}
		}
		if n != pl.tiers.n {
			return fmt.Errorf("term %q: tiers count %d, hold %d", t, pl.tiers.n, n)
		}
	}
	return nil
}

// Dead returns the number of dead documents awaiting compaction.
func (ix *Index) Dead() int { return ix.dead }

// Tiered returns the number of terms whose postings are split into tiers, and how many
// of those have a bitmap.
func (ix *Index) Tiered() (tiered, dense int) {
	for i := range ix.post {
		if ts := ix.post[i].tiers; ts != nil {
			tiered++
			if ts.bits != nil {
				dense++
			}
		}
	}
	return tiered, dense
}

// pairsOf lists the (source, document) pairs of live documents.
func pairsOf(ix *Index) [][2]uint32 {
	var out [][2]uint32
	for d := range ix.docs {
		for _, s := range ix.appendSources(nil, uint32(d)) {
			out = append(out, [2]uint32{uint32(s), uint32(d)})
		}
	}
	return out
}

// Compact rebuilds the index without its dead documents now.
func (ix *Index) Compact() { ix.compact() }
