package supernode

import (
	"fmt"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

// maxSeen bounds the duplicate-suppression set; past it the oldest IDs go first.
const maxSeen = 1 << 18

func (r *Router) markSeenLocked(id protocol.QueryID, now time.Time) {
	r.seen[id] = now.Add(r.cfg.SeenTTL)
	r.seenOrder = append(r.seenOrder, id)
	for len(r.seenOrder) > maxSeen {
		delete(r.seen, r.seenOrder[0])
		r.seenOrder = r.seenOrder[1:]
	}
}

func (r *Router) expireSeenLocked(now time.Time) {
	i := 0
	for ; i < len(r.seenOrder); i++ {
		id := r.seenOrder[i]
		if exp, ok := r.seen[id]; ok && now.Before(exp) {
			break
		}
		delete(r.seen, id)
	}
	if i > 0 {
		r.seenOrder = append(r.seenOrder[:0:0], r.seenOrder[i:]...)
	}
}

func (r *Router) summary(from LinkID, m *protocol.Summary) error {
	if m.Level >= r.cfg.HopLimit { // a level past our hop limit is never consulted
		return nil
	}
	b := new(index.Bloom)
	if err := b.UnmarshalBinary(m.Filter); err != nil {
		return fmt.Errorf("%w: summary level %d: %v", protocol.ErrBadRequest, m.Level, err)
	}
	if b.Count() == 0 {
		// An empty level is stored as none. An empty filter kept as a level would
		// still take part in the unions of BuildSummary, and fold them down to its
		// size: a summary made of a small empty filter and a big full one would
		// match every key.
		b = nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.neighbours[from]
	if n == nil {
		return fmt.Errorf("%w: summary from a link that is not a supernode", protocol.ErrForbidden)
	}
	if !n.summaries.AllowN(r.cfg.Now(), 1) {
		// Each accepted level is work for every other neighbour: a flood of
		// them is dropped rather than passed on. The sender sends a level
		// again only when it changes, so a dropped one stays stale until then.
		r.Stats.SummariesDropped.Add(1)
		return nil
	}
	depth := min(int(m.Depth), int(r.cfg.HopLimit))
	for len(n.summary.Levels) < depth {
		n.summary.Levels = append(n.summary.Levels, nil) // not received yet: matches nothing
	}
	n.summary.Levels = n.summary.Levels[:depth]
	n.summary.Levels[m.Level] = b
	n.received = true
	r.dirty = true
	return nil
}

// Tick does the periodic work: it rebuilds the local summary when the index
// changed, sends each neighbour the levels that changed for it, and ends queries
// whose neighbours did not answer in time. Call it every few hundred milliseconds.
func (r *Router) Tick() {
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	now := r.cfg.Now()
	oneHop := r.oneHopOn()
	keyRing := r.keyRingOn()
	var view *RingView
	if keyRing {
		view = r.cfg.Ring()
	}
	r.ixMu.RLock()
	gen := r.idx.Generation()
	var own, hop *index.Bloom
	if !oneHop && !keyRing && gen != r.ownGen {
		own = index.NewBloomBits(r.cfg.SummaryBits)
		r.idx.AddTo(own)
	}
	r.ixMu.RUnlock()
	var keys []uint64
	if keyRing && r.keysDue(gen, now) {
		r.ixMu.RLock()
		gen = r.idx.Generation()
		keys = r.keyRingKeys()
		r.ixMu.RUnlock()
	}
	if oneHop {
		if due, prev := r.ownSummaryDue(gen, now); due {
			r.ixMu.RLock()
			gen = r.idx.Generation()
			hop = r.summaryFilter(prev)
			r.ixMu.RUnlock()
		}
	}

	r.mu.Lock()
	if own != nil {
		r.own, r.dirty = own, true
		r.ownGen = gen
	}
	var msgs []outMsg
	if r.dirty && !oneHop && !keyRing {
		r.dirty = false
		msgs = r.summariesLocked()
	}
	if oneHop {
		if hop != nil {
			r.ownSummaryLocked(now, hop, gen)
		}
		r.oneHopTickLocked(now)
		msgs = append(msgs, r.directTickLocked(now)...)
		msgs = append(msgs, r.flushSummariesLocked(now)...)
	}
	if keyRing {
		r.ringTickLocked(view, keys, gen, now)
		r.refreshKeysLocked(now)
		msgs = append(msgs, r.directTickLocked(now)...)
		msgs = append(msgs, r.flushTermsLocked(now)...)
	}
	var late []protocol.QueryID
	for id, p := range r.queries {
		if now.After(p.deadline) {
			p.status = protocol.StatusTimeout
			late = append(late, id)
			r.missedLocked(p, now)
		}
	}
	slices.SortFunc(late, cmpQueryID)
	r.Stats.QueryTimeouts.Add(uint64(len(late)))
	msgs = append(msgs, r.finishLocked(late)...)
	r.expireSeenLocked(now)
	r.mu.Unlock()
	r.flush(msgs)
}

// summariesLocked computes, for every neighbour, the attenuated filter of what is
// reachable through us without going back through it, and returns the levels
// that differ from what it last got.
func (r *Router) summariesLocked() []outMsg {
	if r.own == nil {
		return nil
	}
	depth := int(r.cfg.HopLimit)
	var msgs []outMsg
	ids := make([]LinkID, 0, len(r.neighbours))
	from := make([]index.Summary, 0, len(r.neighbours))
	for nid := range r.neighbours {
		ids = append(ids, nid)
	}
	slices.Sort(ids) // the order of sends does not hang on the map's
	for _, nid := range ids {
		n := r.neighbours[nid]
		var got index.Summary
		if n.received {
			got = n.summary
		}
		from = append(from, got)
	}
	all := index.BuildSummaries(r.own, from, depth)
	for i, nid := range ids {
		n, s := r.neighbours[nid], all[i]
		// A level that was sent before and is now empty or gone (BuildSummary leaves
		// out trailing empty levels, as when the neighbour that fed it went away) is
		// sent as an empty filter: the receiver would otherwise keep the old one.
		for lvl := range max(len(s.Levels), len(n.sent)) {
			var b, prev *index.Bloom
			if lvl < len(s.Levels) {
				b = s.Levels[lvl]
			}
			if lvl < len(n.sent) {
				prev = n.sent[lvl]
			}
			if b.Equal(prev) { // nil for both: the receiver has nothing at lvl
				continue
			}
			if b == nil {
				b = new(index.Bloom) // encodes as an empty filter, which the receiver stores as none
			}
			raw, err := b.MarshalBinary()
			if err != nil {
				r.log.Error().Err(err).Msg("encode summary")
				continue
			}
			msgs = append(msgs, outMsg{to: nid, m: &protocol.Summary{Level: uint8(lvl), Depth: uint8(depth), Filter: raw}})
			r.Stats.SummariesSent.Add(1)
		}
		n.sent = s.Levels
	}
	return msgs
}

// missedLocked counts a query's unanswered neighbours against them; one that
// leaves SlowAfter queries in a row to the timeout gets none for SlowHoldoff.
func (r *Router) missedLocked(p *pending, now time.Time) {
	for nid := range p.waiting {
		n := r.neighbours[nid]
		if n == nil {
			continue
		}
		if n.missed++; n.missed >= r.cfg.SlowAfter {
			n.missed, n.heldUntil = 0, now.Add(r.cfg.SlowHoldoff)
			r.Stats.SlowNeighbours.Add(1)
			r.log.Warn().Str("peer_id", n.peer.Short()).Int("missed", r.cfg.SlowAfter).Dur("holdoff", r.cfg.SlowHoldoff).
				Msg("neighbour leaves queries unanswered; sending it none for a while")
		}
	}
}
