package supernode

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

func unexpected(m protocol.Message) error {
	return fmt.Errorf("%w: unexpected %s", protocol.ErrBadRequest, m.Type())
}

func (r *Router) leafOf(from LinkID) *leaf {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaves[from]
}

func (r *Router) publish(from LinkID, m *protocol.Publish) error {
	l := r.leafOf(from)
	if l == nil {
		return fmt.Errorf("%w: publish from a link that is not a leaf", protocol.ErrForbidden)
	}
	r.ixMu.Lock()
	defer r.ixMu.Unlock()
	if r.sources[l.src] != l {
		// LeafDown ran since leafOf: what we added now would outlive the leaf.
		return fmt.Errorf("%w: publish from a leaf that is gone", protocol.ErrForbidden)
	}
	if m.Reset {
		r.idx.RemoveSource(l.src)
		l.refused = false
	}
	if l.refused {
		return fmt.Errorf("%w: this leaf's share is over the supernode's limits; publish with reset, or unpublish first", protocol.ErrOverloaded)
	}
	now := r.cfg.Now()
	// What the leaves of l's address hold: summed once, since within the
	// frame only l's own share changes.
	block := r.blockUsageLocked(l)
	for i := range m.Files {
		f := &m.Files[i]
		// A file is taken while the leaf's publishing bucket is not empty, and
		// its charge then taken out of it, so the bucket goes at most one file
		// into debt.
		var err error
		if l.publishes.TokensAt(now) <= 0 {
			err = fmt.Errorf("publishing faster than %.0f bytes a second", r.cfg.LeafPublishRate)
		} else {
			before := r.idx.SourceUsage(l.src).Bytes
			err = r.idx.Add(l.src, index.Entry{ContentID: f.ID, Name: f.Name, Size: f.Size, Tags: f.Tags})
			c := r.idx.SourceUsage(l.src).Bytes - before
			switch {
			case c > 0 && l.block.IsValid() && block+c > r.cfg.MaxIndexBytesPerAddr:
				r.idx.Remove(l.src, f.ID)
				err = fmt.Errorf("the leaves of your address have %d bytes of index (at most %d)", block, r.cfg.MaxIndexBytesPerAddr)
			case c > 0:
				l.publishes.ReserveN(now, int(c))
			}
			if err == nil {
				block += c
			}
		}
		if err != nil {
			l.refused = true
			return fmt.Errorf("%w: %v; %d of the frame's %d files indexed, and no more until a reset or an unpublish",
				protocol.ErrOverloaded, err, i, len(m.Files))
		}
	}
	return nil
}

func (r *Router) unpublish(from LinkID, m *protocol.Unpublish) error {
	l := r.leafOf(from)
	if l == nil {
		return fmt.Errorf("%w: unpublish from a link that is not a leaf", protocol.ErrForbidden)
	}
	r.ixMu.Lock()
	defer r.ixMu.Unlock()
	for _, id := range m.IDs {
		if r.idx.Remove(l.src, id) {
			l.refused = false
		}
	}
	return nil
}

// query runs a search: locally, then through the neighbours whose summaries may
// match within the hops left. A leaf's query gets a fresh overlay-wide ID, so
// leaves cannot collide or replay IDs in the overlay.
//
// The local search runs before the query is registered and forwarded. Handle runs
// on one goroutine per link, so a neighbour's answer can arrive while this one is
// still searching: searching first keeps the local hits ahead of the QueryDone that
// answer may trigger, and counts them against the limit before any neighbour's.
func (r *Router) query(from LinkID, q *protocol.Query) error {
	now := r.cfg.Now()
	r.mu.Lock()
	_, fromLeaf := r.leaves[from]
	_, fromNeighbour := r.neighbours[from]
	_, fromContact := r.oh.contacts[from]
	switch {
	case !fromLeaf && !fromNeighbour && !fromContact:
		r.mu.Unlock()
		return fmt.Errorf("%w: query from an unknown link", protocol.ErrForbidden)
	case fromContact && !fromNeighbour && !q.Direct:
		r.mu.Unlock()
		return fmt.Errorf("%w: a query over a direct link must be direct", protocol.ErrForbidden)
	case !fromLeaf && q.Direct:
		r.mu.Unlock()
		return r.directQuery(from, q, now)
	}
	originID, id, hops := q.ID, q.ID, q.Hops
	if fromLeaf {
		r.Stats.QueriesFromLeaves.Add(1)
		if !r.leaves[from].queries.AllowN(now, 1) {
			r.mu.Unlock()
			r.Stats.QueriesRefused.Add(1)
			r.out.Send(from, &protocol.Error{Code: protocol.StatusOverloaded, Message: "too many queries; slow down", Ref: originID})
			return nil
		}
		id = r.rnd.queryID()
		if hops == 0 || hops > r.cfg.HopLimit {
			hops = r.cfg.HopLimit
		}
	} else {
		if done := r.refuseLocked(from, id, now); done != nil {
			r.mu.Unlock()
			r.out.Send(from, done)
			return nil
		}
		hops = min(hops, r.cfg.HopLimit)
	}
	r.markSeenLocked(id, now)
	r.mu.Unlock()

	limit := r.limitOf(q)
	keys := r.routingKeys(q)
	local := r.searchLocal(from, originID, q, limit)
	n := len(local)
	if fromLeaf && r.keyRingOn() {
		return r.queryDirect(from, originID, id, q, keys, local, limit, now, r.startKeyRingLocked)
	}
	if fromLeaf && r.oneHopOn() {
		return r.queryDirect(from, originID, id, q, keys, local, limit, now, r.startDirectLocked)
	}

	// Supernodes further out wait less, so their partial answers still reach
	// the origin before it gives up.
	wait := r.cfg.QueryTimeout * time.Duration(hops+1) / time.Duration(r.cfg.HopLimit+1)
	p := &pending{origin: from, originID: originID, text: q.Text, cid: q.CID, waiting: map[LinkID]bool{}, searched: 1,
		hits: n, limit: limit, deadline: now.Add(wait)}
	if fromLeaf {
		p.arrived = now
	}
	// A keyword query already answered in full here goes no further; a lookup by
	// content ID goes on, since every supernode may add sources.
	full := q.CID.IsZero() && n >= limit
	var fwd []LinkID
	r.mu.Lock()
	_, leafStill := r.leaves[from]
	_, neighbourStill := r.neighbours[from]
	if hops > 0 && len(keys) > 0 && !full && (leafStill || neighbourStill) {
		for nid, nb := range r.neighbours {
			if nid == from || now.Before(nb.heldUntil) {
				continue
			}
			// A neighbour that has sent no summary has told us of nothing
			// to find through it: a silent one would otherwise get every query.
			if !nb.received || !nb.summary.MayMatch(keys, int(hops)) {
				r.Stats.QueriesPruned.Add(1)
				continue
			}
			fwd = append(fwd, nid)
			p.waiting[nid] = true
		}
	}
	if len(fwd) > 0 {
		r.queries[id] = p
	}
	slices.Sort(fwd) // the order of sends does not hang on the map's
	r.mu.Unlock()

	if len(fwd) == 0 {
		if fromLeaf {
			r.leafQueryEnded(now, 1)
		}
		r.out.Send(from, &protocol.QueryDone{ID: originID, Supernodes: 1})
		return nil
	}
	for _, nid := range fwd {
		r.Stats.QueriesForwarded.Add(1)
		r.out.Send(nid, &protocol.Query{ID: id, Text: q.Text, CID: q.CID, Hops: hops - 1, Limit: uint16(min(limit, math.MaxUint16))})
	}
	return nil
}

func (r *Router) limitOf(q *protocol.Query) int {
	if q.Limit > 0 && int(q.Limit) < r.cfg.MaxResults {
		return int(q.Limit)
	}
	return r.cfg.MaxResults
}

// queryDirect routes a leaf's query, already answered from the local index
// with the hits local, straight to other supernodes: start registers it
// and sends what goes first, by the keyword ring or the one-hop summaries,
// or reports that nothing need be asked.
func (r *Router) queryDirect(from LinkID, originID, id protocol.QueryID, q *protocol.Query, keys [][]byte, local []protocol.Hit, limit int, now time.Time,
	start func(protocol.QueryID, *pending, [][]byte, []protocol.Hit, time.Time) ([]outMsg, bool)) error {
	n := len(local)
	p := &pending{origin: from, originID: originID, text: q.Text, cid: q.CID, waiting: map[LinkID]bool{}, searched: 1,
		hits: n, limit: limit, arrived: now}
	var msgs []outMsg
	started := false
	r.mu.Lock()
	if _, still := r.leaves[from]; still && len(keys) > 0 && (!q.CID.IsZero() || n < limit) {
		msgs, started = start(id, p, keys, local, now)
	}
	r.mu.Unlock()
	if !started {
		r.leafQueryEnded(now, 1)
		r.out.Send(from, &protocol.QueryDone{ID: originID, Supernodes: 1})
		return nil
	}
	r.flush(msgs)
	return nil
}

// directQuery answers a direct query from another supernode: from this
// index alone, within that supernode's query rate.
func (r *Router) directQuery(from LinkID, q *protocol.Query, now time.Time) error {
	r.mu.Lock()
	if done := r.refuseLocked(from, q.ID, now); done != nil {
		r.mu.Unlock()
		r.out.Send(from, done)
		return nil
	}
	r.markSeenLocked(q.ID, now)
	r.mu.Unlock()
	r.answerDirect(from, q, r.limitOf(q))
	return nil
}

// refuseLocked counts a query from the supernode on link from, neighbour or
// contact, and returns the QueryDone that answers it without a search: over
// that supernode's query rate, or a duplicate. It returns nil for a query
// to take.
func (r *Router) refuseLocked(from LinkID, id protocol.QueryID, now time.Time) *protocol.QueryDone {
	r.Stats.QueriesFromNeighbors.Add(1)
	if !r.queryLimiterLocked(from).AllowN(now, 1) {
		r.Stats.NeighbourQueriesRefused.Add(1)
		return &protocol.QueryDone{ID: id, Status: protocol.StatusOverloaded}
	}
	if _, dup := r.seen[id]; dup {
		r.Stats.DuplicateQueries.Add(1)
		return &protocol.QueryDone{ID: id}
	}
	return nil
}

// routingKeys are the summary keys a query needs: its terms, or its content ID.
func (r *Router) routingKeys(q *protocol.Query) [][]byte {
	if !q.CID.IsZero() {
		return [][]byte{q.CID[:]}
	}
	terms := r.idx.QueryTerms(q.Text)
	keys := make([][]byte, len(terms))
	for i, t := range terms {
		keys[i] = []byte(t)
	}
	return keys
}

// searchLocal answers from the local index and returns the hits it sent.
func (r *Router) searchLocal(to LinkID, qid protocol.QueryID, q *protocol.Query, limit int) []protocol.Hit {
	hits := r.localHits(q, limit)
	r.sendHits(to, qid, hits)
	return hits
}

// localHits are the hits of the local index for q.
func (r *Router) localHits(q *protocol.Query, limit int) []protocol.Hit {
	r.ixMu.RLock()
	var res []index.Result
	if !q.CID.IsZero() {
		if x, ok := r.idx.Lookup(q.CID); ok {
			res = append(res, x)
		}
	} else {
		res = r.idx.Search(q.Text, limit)
	}
	hits := make([]protocol.Hit, 0, len(res))
	for _, x := range res {
		h := protocol.Hit{
			FileRecord: protocol.FileRecord{ID: x.ContentID, Name: x.Name, Size: x.Size, Tags: x.Tags},
			Score:      float32(x.Score),
		}
		for _, s := range x.Sources {
			if len(h.Sources) == protocol.MaxSourcesPerHit {
				break
			}
			if l := r.sources[s]; l != nil {
				h.Sources = append(h.Sources, protocol.Source{Peer: l.info.Peer, Name: l.info.Name,
					Addrs: l.info.Addrs, SN: &r.cfg.ID, NAT: l.info.NAT})
			}
		}
		if len(h.Sources) > 0 {
			hits = append(hits, h)
		}
	}
	r.ixMu.RUnlock()
	return hits
}

// hitsPerFrame is how many hits a supernode puts in one frame.
const hitsPerFrame = 64

func (r *Router) sendHits(to LinkID, qid protocol.QueryID, hits []protocol.Hit) {
	r.flush(r.hitFrames(to, qid, hits))
}

// hitFrames are the frames that carry hits for query qid to link to.
func (r *Router) hitFrames(to LinkID, qid protocol.QueryID, hits []protocol.Hit) []outMsg {
	var msgs []outMsg
	for len(hits) > 0 {
		n := min(len(hits), hitsPerFrame)
		msgs = append(msgs, outMsg{to: to, m: &protocol.Hits{ID: qid, Hits: hits[:n]}})
		r.Stats.HitsSent.Add(uint64(n))
		hits = hits[n:]
	}
	return msgs
}

func (r *Router) hits(from LinkID, m *protocol.Hits) {
	r.relayHits(from, m.ID, m.Hits)
}

// expectsLocked reports whether query p waits for answers on link from.
func (r *Router) expectsLocked(p *pending, from LinkID) bool {
	if p.direct == nil {
		return p.waiting[from]
	}
	peer, ok := r.peerOfLocked(from)
	return ok && p.direct.asked[peer]
}

// relayHits checks hits that came back for query id on link from and
// passes them to where the query came from, up to its limit.
func (r *Router) relayHits(from LinkID, id protocol.QueryID, in []protocol.Hit) {
	if len(in) == 0 {
		return
	}
	r.mu.Lock()
	p := r.queries[id]
	if p == nil || !r.expectsLocked(p, from) || p.hits >= p.limit {
		r.mu.Unlock()
		return
	}
	text, cid := p.text, p.cid
	r.mu.Unlock()
	hits := checkHits(in, text, cid)
	if d := len(in) - len(hits); d > 0 {
		r.Stats.HitsDropped.Add(uint64(d))
	}
	r.mu.Lock()
	if r.queries[id] != p {
		r.mu.Unlock()
		return
	}
	n := min(len(hits), p.limit-p.hits)
	first := p.hits == 0
	p.hits += n
	p.countSources(hits[:n], r.maxCounted())
	if p.direct != nil && !first {
		// The leaf has hits to show: the rest of the round goes in one
		// frame when it ends.
		p.direct.held = append(p.direct.held, hits[:n]...)
		r.mu.Unlock()
		return
	}
	to, oid := p.origin, p.originID
	r.mu.Unlock()
	r.sendHits(to, oid, hits[:n])
}

// checkHits keeps the hits that answer the query and scores them here: a
// neighbour's hit for another file, or with a score it made up, would
// otherwise rank first at the leaf.
func checkHits(hits []protocol.Hit, text string, cid protocol.ContentID) []protocol.Hit {
	out := hits[:0]
	for _, h := range hits {
		if !cid.IsZero() {
			if h.ID != cid {
				continue
			}
			h.Score = 0
		} else {
			s, ok := index.ScoreOf(text, h.Name, h.Tags)
			if !ok {
				continue
			}
			h.Score = float32(s)
		}
		out = append(out, h)
	}
	return out
}

func (r *Router) queryDone(from LinkID, m *protocol.QueryDone) {
	r.relayHits(from, m.ID, m.Hits)
	r.mu.Lock()
	p := r.queries[m.ID]
	if p != nil && p.direct != nil {
		var msgs []outMsg
		if peer, ok := r.peerOfLocked(from); ok {
			msgs = r.directDoneLocked(m.ID, p, peer, m, r.cfg.Now())
		}
		r.mu.Unlock()
		r.flush(msgs)
		return
	}
	if p == nil || !p.waiting[from] {
		r.mu.Unlock()
		return
	}
	delete(p.waiting, from)
	if n := r.neighbours[from]; n != nil {
		n.missed = 0
	}
	p.searched += m.Supernodes
	if m.Status != protocol.StatusOK {
		p.status = m.Status
	}
	var msgs []outMsg
	if len(p.waiting) == 0 {
		msgs = r.finishLocked([]protocol.QueryID{m.ID})
	}
	r.mu.Unlock()
	r.flush(msgs)
}

// leafQueryEnded tells the LeafQueryEnded hook of a leaf query that
// arrived at arrived and was searched by supernodes.
func (r *Router) leafQueryEnded(arrived time.Time, supernodes uint32) {
	if f := r.cfg.LeafQueryEnded; f != nil {
		f(r.cfg.Now().Sub(arrived), supernodes)
	}
}

// finishLocked ends queries and returns the QueryDone messages to send.
func (r *Router) finishLocked(ids []protocol.QueryID) []outMsg {
	var msgs []outMsg
	for _, id := range ids {
		p := r.queries[id]
		if p == nil {
			continue
		}
		delete(r.queries, id)
		if !p.arrived.IsZero() {
			r.leafQueryEnded(p.arrived, p.searched)
		}
		msgs = append(msgs, r.releaseLocked(p)...)
		msgs = append(msgs, outMsg{to: p.origin, m: &protocol.QueryDone{ID: p.originID, Status: p.status, Supernodes: p.searched}})
	}
	return msgs
}

// blockUsageLocked is what the leaves of l's address block cost the index.
func (r *Router) blockUsageLocked(l *leaf) int64 {
	if !l.block.IsValid() {
		return 0
	}
	var n int64
	for o := range r.blocks[l.block] {
		n += r.idx.SourceUsage(o.src).Bytes
	}
	return n
}

// addrBlock is the block a "host:port" address is counted in: its IPv4
// address, or the /64 of its IPv6 one.
func addrBlock(addr string) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Prefix{}, false
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}
