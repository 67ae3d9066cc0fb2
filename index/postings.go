package index

import "slices"

// A term's postings are the documents that contain it. A short list is one ascending
// slice of docID<<1 | inName. A long list (a common word: "the", "love", "mp3") is split
// into tiers by what ranking depends on, whether the term is in the name and how many
// terms the name has, each tier ascending: a search whose rarest term is common walks
// its tiers best first and stops once no remaining tier can beat the results it holds,
// instead of scoring every file that contains "the". A very common term also keeps a
// bitmap of its documents, so that testing a candidate against it is one load.

// tierMin is the length past which a list is split into tiers. A split list costs about
// 1.6 KiB of slice headers, so only common terms pay it.
const tierMin = 512

// nTiers: tier inName*(MaxTokens+1) + nameToks.
const nTiers = 2 * (MaxTokens + 1)

func tierOf(inName bool, nameToks uint8) int {
	if inName {
		return MaxTokens + 1 + int(nameToks)
	}
	return int(nameToks)
}

// tierRank returns what tier t says about its documents: whether the term is in their
// name, and their name's term count.
func tierRank(t int) (inName bool, nameToks int) {
	if t > MaxTokens {
		return true, t - MaxTokens - 1
	}
	return false, t
}

type plist struct {
	flat  []uint32 // while short: ascending docID<<1 | 1 if the term is in the name
	tiers *tiers   // once long
}

type tiers struct {
	n int
	b [nTiers][]uint32 // doc IDs, ascending
	// bits has bit d set when document d has the term. A search tests a candidate
	// against a very common term ("the", "love") with one load instead of walking its
	// list. Kept while the term is in at least 1 in denseRatio documents and dropped
	// below half that, so it never costs more than twice the term's postings.
	bits []uint64
}

const denseRatio = 32

func (pl *plist) len() int {
	if pl.tiers != nil {
		return pl.tiers.n
	}
	return len(pl.flat)
}

// add appends document d, which is newer than every document in the list. meta holds
// the name term counts of all documents up to d.
func (pl *plist) add(d uint32, inName bool, meta []uint8) {
	if pl.tiers == nil {
		p := d << 1
		if inName {
			p |= 1
		}
		pl.flat = append(pl.flat, p)
		if len(pl.flat) > tierMin {
			pl.split(meta)
		}
		return
	}
	ts := pl.tiers
	t := tierOf(inName, meta[d])
	ts.b[t] = append(ts.b[t], d)
	ts.n++
	ndocs := len(meta)
	switch {
	case ts.bits == nil && ts.n*denseRatio >= ndocs:
		ts.makeBits(ndocs)
	case ts.bits != nil && ts.n*denseRatio*2 < ndocs:
		ts.bits = nil
	case ts.bits != nil:
		ts.setBit(d)
	}
}

func (ts *tiers) makeBits(ndocs int) {
	ts.bits = make([]uint64, (ndocs+63)/64)
	for _, b := range ts.b {
		for _, d := range b {
			ts.setBit(d)
		}
	}
}

func (ts *tiers) setBit(d uint32) {
	if w := int(d / 64); w >= len(ts.bits) {
		ts.bits = append(ts.bits, make([]uint64, w+1-len(ts.bits))...)
	}
	ts.bits[d/64] |= 1 << (d % 64)
}

func (pl *plist) split(meta []uint8) {
	ts := &tiers{}
	for _, p := range pl.flat {
		m := meta[p>>1]
		if m == deadMeta {
			continue // nothing needs a dead document's postings
		}
		t := tierOf(p&1 == 1, m)
		ts.b[t] = append(ts.b[t], p>>1)
		ts.n++
	}
	pl.flat, pl.tiers = nil, ts
	if ts.n*denseRatio >= len(meta) {
		ts.makeBits(len(meta))
	}
}

// anyLive reports whether some document in the list is alive.
func (pl *plist) anyLive(meta []uint8) bool {
	if pl.tiers == nil {
		for _, p := range pl.flat {
			if meta[p>>1] != deadMeta {
				return true
			}
		}
		return false
	}
	for _, b := range pl.tiers.b {
		for _, d := range b {
			if meta[d] != deadMeta {
				return true
			}
		}
	}
	return false
}

// remap renumbers the list in place after a compaction (remap[old] is the new ID + 1, 0
// for a dead document) and reports whether anything is left. Renumbering keeps order, so
// the lists stay sorted.
func (pl *plist) remap(remap []uint32, ndocs int) bool {
	if pl.tiers == nil {
		w := pl.flat[:0]
		for _, p := range pl.flat {
			if r := remap[p>>1]; r != 0 {
				w = append(w, (r-1)<<1|p&1)
			}
		}
		pl.flat = clipSlack(w)
		return len(w) > 0
	}
	n := 0
	for t, b := range pl.tiers.b {
		w := b[:0]
		for _, d := range b {
			if r := remap[d]; r != 0 {
				w = append(w, r-1)
			}
		}
		pl.tiers.b[t] = clipSlack(w)
		n += len(w)
	}
	pl.tiers.n = n
	pl.tiers.bits = nil
	if n*denseRatio >= ndocs {
		pl.tiers.makeBits(ndocs)
	}
	return n > 0
}

// clipSlack copies l to a right-sized array when append growth left it much too large.
func clipSlack(l []uint32) []uint32 {
	if len(l) == 0 {
		return nil
	}
	if cap(l)-len(l) > len(l)/4+4 {
		return slices.Clone(l)
	}
	return l
}
