package index

import (
	"cmp"
	"math"
	"slices"
)

// searchScratch is one search's working memory, pooled so that a search allocates only
// its results.
type searchScratch struct {
	tk    tokenizer
	qs    []qterm
	heap  []hit
	recs  []record
	dense [][]uint64
}

// qterm is one query term's postings and where a search is in them.
type qterm struct {
	pl   *plist
	cur  int         // in pl.flat
	tcur [nTiers]int // in each of pl.tiers
}

// noDoc is past every document ID.
const noDoc = ^uint32(0)

// seek returns the first document at or after d that contains q's term, and whether the
// term is in its name. When q is split into tiers it looks only among documents whose
// names have nameToks terms, which is all a caller needs: it is looking for d, whose
// name has that many. Successive seeks must ask for ascending d (within one nameToks
// when q is split), so each list is walked once; rewind starts over.
func (q *qterm) seek(d uint32, nameToks uint8) (next uint32, inName bool) {
	if q.pl.tiers == nil {
		l := q.pl.flat
		c := gallop(l, q.cur, d<<1)
		q.cur = c
		if c == len(l) {
			return noDoc, false
		}
		return l[c] >> 1, l[c]&1 == 1
	}
	if ts := q.pl.tiers; ts.bits != nil {
		// The caller found d in the bitmap (see inAll); only the name flag is left.
		t := tierOf(true, nameToks)
		l := ts.b[t]
		c := gallop(l, q.tcur[t], d)
		q.tcur[t] = c
		return d, c < len(l) && l[c] == d
	}
	next = noDoc
	for _, in := range [2]bool{true, false} {
		t := tierOf(in, nameToks)
		l := q.pl.tiers.b[t]
		c := gallop(l, q.tcur[t], d)
		q.tcur[t] = c
		if c < len(l) && l[c] < next {
			next, inName = l[c], in
		}
	}
	return next, inName
}

// rewind lets q be sought from the start again for documents whose names have nameToks
// terms.
func (q *qterm) rewind(nameToks uint8) {
	q.cur = 0
	if q.pl.tiers != nil {
		q.tcur[tierOf(true, nameToks)] = 0
		q.tcur[tierOf(false, nameToks)] = 0
	}
}

// Search returns up to limit files (DefaultLimit when limit <= 0) whose name or tags
// contain every term of query, best first. A term found in the name counts more than one
// found only in the tags, and a name made mostly of query terms ranks above a long name
// that merely contains them; ties go to the file with more sources, then to the lower
// content ID. An empty query matches nothing.
//
// Search does not modify the index: any number may run at once, without a writer.
func (ix *Index) Search(query string, limit int) []Result {
	if limit <= 0 {
		limit = DefaultLimit
	}
	s, _ := ix.scratch.Get().(*searchScratch)
	if s == nil {
		s = new(searchScratch)
	}
	defer func() {
		clear(s.qs) // do not keep posting lists alive after a compaction
		clear(s.dense)
		ix.scratch.Put(s)
	}()
	if !ix.plan(s, query) {
		return nil
	}
	hits := ix.topHits(s, limit)
	if len(hits) == 0 {
		return nil
	}
	var out []Result
	out, s.recs = ix.results(hits, s.recs)
	return out
}

// plan looks up the terms of query into s, rarest first, and reports whether every term
// is in the index.
func (ix *Index) plan(s *searchScratch, query string) bool {
	s.tk.reset()
	s.tk.add(query)
	if len(s.tk.toks) == 0 {
		return false
	}
	s.qs = slices.Grow(s.qs[:0], len(s.tk.toks))
	for i := range s.tk.toks {
		id, ok := ix.terms[string(s.tk.token(i))]
		if !ok {
			return false
		}
		s.qs = append(s.qs, qterm{pl: &ix.post[id]})
	}
	// The rarest term's documents are the candidates; the other terms are probed for
	// each, so the work follows the rarest term however common the rest are.
	slices.SortFunc(s.qs, func(a, b qterm) int { return cmp.Compare(a.pl.len(), b.pl.len()) })
	s.dense = s.dense[:0]
	for _, q := range s.qs[1:] {
		if q.pl.tiers != nil && q.pl.tiers.bits != nil {
			s.dense = append(s.dense, q.pl.tiers.bits)
		}
	}
	return true
}

// ranker keeps the best hits seen so far.
type ranker struct {
	ix    *Index
	limit int
	n     int     // query terms
	h     []hit   // a heap with the worst kept hit at the root
	worst float64 // h[0].score once the heap is full
	dense [][]uint64
	// best[t] is the highest score a document whose name has t terms can reach, and
	// skip[m] says that a document with meta m cannot make the results: one byte of
	// meta rules most candidates of a common term out before its other terms are probed.
	best [MaxTokens + 1]float64
	skip [256]bool
}

func (r *ranker) full() bool { return len(r.h) == r.limit }

func (r *ranker) offer(score float64, d uint32) { r.offerKey(score, r.ix.tie[d], d) }

func (r *ranker) offerKey(score float64, key, d uint32) {
	x := hit{score: score, key: key, doc: d}
	switch {
	case len(r.h) < r.limit:
		r.h = append(r.h, x)
		r.ix.siftUp(r.h, len(r.h)-1)
	case r.ix.better(x, r.h[0]):
		r.h[0] = x
		r.ix.siftDown(r.h, 0)
	default:
		return
	}
	if r.full() && r.h[0].score != r.worst {
		r.worst = r.h[0].score
		for t, b := range r.best {
			r.skip[t] = b < r.worst
		}
	}
}

// topHits intersects the terms in s.qs, rarest first, scores the live matches and
// returns the best limit of them, best first.
func (ix *Index) topHits(s *searchScratch, limit int) []hit {
	r := ranker{ix: ix, limit: limit, n: len(s.qs), h: s.heap[:0], worst: math.Inf(-1), dense: s.dense}
	for t := range r.best {
		r.best[t] = score(min(r.n, t), r.n, t)
	}
	r.skip[deadMeta] = true
	if s.qs[0].pl.tiers == nil {
		ix.scanFlat(&r, s.qs)
	} else {
		ix.scanTiers(&r, s.qs)
	}
	s.heap = r.h
	slices.SortFunc(r.h, func(a, b hit) int {
		if ix.better(a, b) {
			return -1
		}
		return 1
	})
	return r.h
}

// scanFlat takes the candidates from a short list, in document order. Once the results
// are full, a candidate whose name length rules it out is dropped on one byte of meta.
func (ix *Index) scanFlat(r *ranker, qs []qterm) {
	meta := ix.meta
	first := qs[0].pl.flat
	for i := 0; i < len(first); {
		p := first[i]
		d := p >> 1
		m := meta[d]
		if r.skip[m] || !inAll(r.dense, d) {
			i++
			continue
		}
		nameHits, next, j := int(p&1), d, 1
		for ; j < len(qs) && next == d; j++ {
			var inName bool
			if next, inName = qs[j].seek(d, m); inName && next == d {
				nameHits++
			}
		}
		switch {
		case next == d:
		case qs[j-1].pl.tiers != nil:
			// A term split into tiers only said where its next document with d's
			// name length is; documents between may have other lengths.
			i++
			continue
		case next == noDoc:
			return // a term has no documents left
		default:
			i = gallop(first, i, next<<1) // leap to the next document that may have them all
			continue
		}
		r.offer(score(nameHits, r.n, int(m)), d)
		i++
	}
}

// scanTiers takes the candidates from a long list split into tiers, best tier first,
// and stops when the next tier cannot beat the worst hit kept. Within a tier it leaps
// between the lists (each term's documents with the same name length), so the driving
// term's documents that another term lacks are mostly stepped over, not visited.
func (ix *Index) scanTiers(r *ranker, qs []qterm) {
	ts := qs[0].pl.tiers
	scanned := 0
	for _, t := range tierOrder[r.n] {
		l := ts.b[t]
		if len(l) == 0 {
			continue
		}
		inName, nameToks := tierRank(int(t))
		hits0 := 0
		if inName {
			hits0 = 1
		}
		bound := score(min(r.n-1, nameToks-hits0)+hits0, r.n, nameToks)
		if r.full() && bound < r.worst {
			return
		}
		for j := 1; j < len(qs); j++ {
			qs[j].rewind(uint8(nameToks))
		}
	tier:
		for i := 0; i < len(l); {
			if scanned++; scanned > MaxScan || r.full() && bound < r.worst {
				return
			}
			d := l[i]
			if !inAll(r.dense, d) {
				i++
				continue
			}
			nameHits, next := hits0, d
			for j := 1; j < len(qs) && next == d; j++ {
				var in bool
				if next, in = qs[j].seek(d, uint8(nameToks)); in && next == d {
					nameHits++
				}
			}
			switch {
			case next == noDoc:
				break tier
			case next != d:
				i = gallop(l, i, next)
				continue
			}
			i++
			if key := r.ix.tie[d]; key != 0 { // 0: dead
				r.offerKey(score(nameHits, r.n, nameToks), key, d)
			}
		}
	}
}

// inAll reports whether bit d is set in every bitmap: the cheap test of a candidate
// against the query's very common terms, before any list is searched.
func inAll(bitmaps [][]uint64, d uint32) bool {
	w, bit := int(d/64), uint64(1)<<(d%64)
	for _, b := range bitmaps {
		if w >= len(b) || b[w]&bit == 0 {
			return false
		}
	}
	return true
}

// tierOrder[n] lists the tiers best first for a query of n terms, by the highest score a
// document in each can reach.
var tierOrder = func() (o [MaxTokens + 1][nTiers]uint8) {
	for n := 1; n <= MaxTokens; n++ {
		bound := func(t uint8) float64 {
			inName, nameToks := tierRank(int(t))
			h0 := 0
			if inName {
				h0 = 1
			}
			return score(min(n-1, nameToks-h0)+h0, n, nameToks)
		}
		for t := range o[n] {
			o[n][t] = uint8(t)
		}
		slices.SortStableFunc(o[n][:], func(a, b uint8) int { return cmp.Compare(bound(b), bound(a)) })
	}
	return o
}()

// score ranks a document whose name has nameToks terms, nameHits of them among the n
// query terms (the others hit only its tags): name hits count twice tag-only ones (the
// first half, in [0.5, 1]), and the share of the name the query covers adds up to 0.5.
func score(nameHits, n, nameToks int) float64 {
	s := float64(nameHits+n) / float64(2*n)
	if nameToks > 0 {
		s += float64(nameHits) / float64(2*nameToks)
	}
	return s
}

// The heap keeps the worst kept hit at its root, so a new hit is compared with it once.

func (ix *Index) siftUp(h []hit, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !ix.better(h[p], h[i]) {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (ix *Index) siftDown(h []hit, i int) {
	for {
		w := i
		if l := 2*i + 1; l < len(h) && ix.better(h[w], h[l]) {
			w = l
		}
		if r := 2*i + 2; r < len(h) && ix.better(h[w], h[r]) {
			w = r
		}
		if w == i {
			return
		}
		h[i], h[w] = h[w], h[i]
		i = w
	}
}

// gallop returns the first index at or after i where l[index] >= x (len(l) if none),
// probing 1, 2, 4, ... ahead and then bisecting: cheap both when the next match is near
// (similar-sized lists) and when it is far (a rare term probing a common one).
func gallop(l []uint32, i int, x uint32) int {
	if i >= len(l) || l[i] >= x {
		return i
	}
	lo, step := i, 1 // l[lo] < x
	hi := lo + step
	for hi < len(l) && l[hi] < x {
		lo = hi
		step <<= 1
		hi = lo + step
	}
	hi = min(hi, len(l))
	lo++
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
