package supernode

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
)

// The keyword ring: the keys of every supernode's index (the hashes of its
// terms and content IDs) are kept by the ring.Copies supernodes that follow
// each key on the ring of supernode IDs. A supernode sends the keepers only
// what changed, hop by hop over its links; a query's supernode asks the
// keepers of the query's keys which supernodes hold them all, then asks
// those in rounds as one-hop routing does. What a supernode pays for this
// grows with its own leaves' changes, not with the size of the overlay.
// See the protocol's "Keyword ring".

// RingMember is a live supernode as the member list has it.
type RingMember struct {
	Peer protocol.PeerID
	// Inc is its incarnation: a keeper that restarted has lost what it kept.
	Inc    uint64
	Leaves uint32
}

// RingView is the live supernodes at one generation of the member list,
// which changes whenever they or their incarnations do. It is not changed
// once made, so routers of one process may share it.
type RingView struct {
	Gen     uint64
	Ring    *ring.Ring
	Members map[protocol.PeerID]RingMember
	// ByPrefix resolves the ID prefixes that name supernodes in term
	// messages.
	ByPrefix map[uint64]protocol.PeerID
}

// NewRingView makes the view of live at generation gen.
func NewRingView(gen uint64, live []RingMember) *RingView {
	v := &RingView{Gen: gen, Members: make(map[protocol.PeerID]RingMember, len(live)),
		ByPrefix: make(map[uint64]protocol.PeerID, len(live))}
	ids := make([]ring.ID, 0, len(live))
	for _, m := range live {
		v.Members[m.Peer] = m
		v.ByPrefix[protocol.IDPrefix(m.Peer)] = m.Peer
		ids = append(ids, ring.ID(m.Peer))
	}
	v.Ring = ring.New(ids)
	return v
}

// with is the view with m on it, a copy if it was not.
func (v *RingView) with(m RingMember) *RingView {
	if _, ok := v.Members[m.Peer]; ok {
		return v
	}
	live := make([]RingMember, 0, len(v.Members)+1)
	for _, x := range v.Members {
		live = append(live, x)
	}
	return NewRingView(v.Gen, append(live, m))
}

// Limits of the keyword ring.
const (
	// maxTermPostings bounds the keys a keeper holds for all publishers,
	// maxPublisherKeys those of one: a supernode with the largest index
	// (MaxIndexBytes) has about 700,000 keys, a thousandth of which would
	// come to one keeper in an overlay of a thousand supernodes.
	maxTermPostings  = 1 << 22
	maxPublisherKeys = 1 << 20
	// maxForward and maxForwardKeys bound the batches of others held for
	// the next flush, and their keys: 8 MiB of keys whatever neighbours
	// send.
	maxForward     = 1 << 14
	maxForwardKeys = 1 << 20
	// termFlushBytes bounds what one TermPuts frame carries.
	termFlushBytes = protocol.MaxFrameSize / 2
)

// termRing is the router's keyword ring state, under Router.mu.
type termRing struct {
	view *RingView // nil until the first Tick
	// pub are our keys as the keepers were last told, sorted; pubGen the
	// index generation they were taken from, at pubAt.
	pub    []uint64
	pubGen uint64
	pubAt  time.Time
	// cleanAt is when removed keys last went to their keepers; stale is
	// set while pub holds some our index no longer has.
	cleanAt time.Time
	stale   bool
	// out are our changes for each keeper, true to add, false to remove,
	// and fwd the batches of others passing through, for the next flush.
	out     map[outKey]map[uint64]bool
	fwd     []protocol.TermBatch
	fwdKeys int
	// direct are the batches sent over direct links that were opening:
	// sent again should the link not open.
	direct   map[protocol.PeerID][]protocol.TermBatch
	directAt map[protocol.PeerID]time.Time
	flushed  time.Time
	// refreshAt is when all our keys go to their keepers again, refreshed
	// when they last did. chained are the keys of other changes sent down
	// their chains of keepers within passOnWithin, and when.
	refreshAt, refreshed time.Time
	chained              map[uint64]time.Time
	store                termStore
}

func newTermRing() termRing {
	return termRing{pubGen: ^uint64(0), out: map[outKey]map[uint64]bool{}, store: newTermStore(), chained: map[uint64]time.Time{},
		direct: map[protocol.PeerID][]protocol.TermBatch{}, directAt: map[protocol.PeerID]time.Time{}}
}

// keyRingOn reports whether this router routes by the keyword ring: the
// default, given a DirectOutbox and the member list's ring.
func (r *Router) keyRingOn() bool {
	_, ok := r.out.(DirectOutbox)
	return ok && r.cfg.Ring != nil && !r.cfg.OneHop && !r.cfg.MultiHop
}

// outKey is where a queued change goes: a keeper, and the keepers it
// passes the change on to, by ID prefix.
type outKey struct {
	to   protocol.PeerID
	then [ring.Copies - 1]uint64
	n    uint8
}

// thenOf is the list of keepers k names.
func (k outKey) thenOf() protocol.KeyList {
	if k.n == 0 {
		return nil
	}
	return slices.Clone(protocol.KeyList(k.then[:k.n]))
}

// queueKeyLocked queues a change of key k for keeper to, to be passed on
// to the keepers then: a change that undoes one not yet sent cancels it.
func (r *Router) queueKeyLocked(to protocol.PeerID, then []protocol.PeerID, k uint64, add bool) {
	ok := outKey{to: to, n: uint8(len(then))}
	for i, p := range then {
		ok.then[i] = protocol.IDPrefix(p)
	}
	if to == r.cfg.ID {
		var a, d []uint64
		if add {
			a = []uint64{k}
		} else {
			d = []uint64{k}
		}
		r.keepLocked(protocol.TermBatch{To: protocol.IDPrefix(to), Publisher: protocol.IDPrefix(to), Inc: r.cfg.Incarnation,
			Then: ok.thenOf(), Add: a, Del: d})
		return
	}
	m := r.kr.out[ok]
	if m == nil {
		m = map[uint64]bool{}
		r.kr.out[ok] = m
	}
	if was, ok := m[k]; ok && was != add {
		delete(m, k)
		return
	}
	m[k] = add
}

// ringTickLocked takes the member list's view when it changed, telling
// the keepers that gained or lost keys of ours, then our index's changes
// when keys (sorted) were taken from it at generation gen.
func (r *Router) ringTickLocked(v *RingView, keys []uint64, keysGen uint64, now time.Time) {
	kr := &r.kr
	if kr.view == nil || v.Gen != kr.view.Gen {
		v = v.with(RingMember{Peer: r.cfg.ID, Inc: r.cfg.Incarnation, Leaves: uint32(len(r.leaves))})
		if kr.view != nil {
			r.reassignLocked(kr.view, v)
		}
		kr.view = v
	}
	if keys == nil {
		return
	}
	// Both sorted: one pass finds what came and what went. Keys that went
	// stay with their keepers until the next clean-up, so that removals go
	// out together.
	clean := now.Sub(kr.cleanAt) >= keyCleanEvery
	pub := make([]uint64, 0, len(keys))
	stale := false
	i, j := 0, 0
	for i < len(kr.pub) || j < len(keys) {
		switch {
		case j == len(keys) || i < len(kr.pub) && kr.pub[i] < keys[j]:
			if clean {
				r.keepersLocked(kr.pub[i], false)
				kr.chained[kr.pub[i]] = now
			} else {
				pub = append(pub, kr.pub[i])
				stale = true
			}
			i++
		case i == len(kr.pub) || keys[j] < kr.pub[i]:
			r.keepersLocked(keys[j], true)
			kr.chained[keys[j]] = now
			pub = append(pub, keys[j])
			j++
		default:
			pub = append(pub, keys[j])
			i, j = i+1, j+1
		}
	}
	if clean {
		kr.cleanAt = now
		for k, at := range kr.chained {
			if now.Sub(at) >= passOnWithin {
				delete(kr.chained, k)
			}
		}
	}
	kr.pub, kr.pubGen, kr.pubAt, kr.stale = pub, keysGen, now, stale
}

// passOnWithin is how long after a change went to the first of its keepers
// one that died may not have passed it on yet: a flush or two there, and
// the time the member list takes to see the death. A change older than
// that reached the keepers after it.
const passOnWithin = 3 * time.Minute

// chainedLately reports whether key k went down its chain of keepers within
// passOnWithin of now.
func (r *Router) chainedLately(k uint64, now time.Time) bool {
	kr := &r.kr
	at, ok := kr.chained[k]
	return now.Sub(kr.refreshed) < passOnWithin || ok && now.Sub(at) < passOnWithin
}

// keyCleanEvery is how long a key our index no longer has may stay with
// its keepers: a leaf that leaves costs no batch at once, and the
// removals of a few minutes share their batches. A stale key costs a query
// at most a wasted direct message.
const keyCleanEvery = 5 * time.Minute

// prefixTarget is where on the ring a batch for the keeper of ID prefix x
// heads: the keeper itself when known, else the last position of its
// prefix, which no other supernode lies between it and.
func prefixTarget(x uint64, id protocol.PeerID, known bool) ring.ID {
	if known {
		return ring.ID(id)
	}
	t := ring.KeyPos(x)
	for i := 8; i < len(t); i++ {
		t[i] = 0xff
	}
	return t
}

// keepersLocked queues a change of key k for its keepers: for the first,
// which passes it on down its successors. Sending it to each of them
// would take the way round the ring three times, not once and two steps.
func (r *Router) keepersLocked(k uint64, add bool) {
	r.chainLocked(r.kr.view.Ring.Replicas(ring.KeyPos(k), ring.Copies), k, add)
}

// chainLocked queues a change of key k for the keepers ks, in ring order.
// A keeper whose link went down lately is likely dead, and would pass
// nothing on: the chain starts after it (at the last, if all are).
func (r *Router) chainLocked(ks []ring.ID, k uint64, add bool) {
	now, i := r.cfg.Now(), 0
	for i < len(ks)-1 && r.lostLocked(protocol.PeerID(ks[i]), now) {
		i++
	}
	then := make([]protocol.PeerID, 0, len(ks)-1-i)
	for _, id := range ks[i+1:] {
		then = append(then, protocol.PeerID(id))
	}
	r.queueKeyLocked(protocol.PeerID(ks[i]), then, k, add)
}

// keepLocked takes a batch for us: we keep its keys, and pass it on to
// the next keeper it names.
func (r *Router) keepLocked(b protocol.TermBatch) {
	r.kr.store.put(b.Publisher, b.Inc, b.Add, b.Del)
	if len(b.Then) > 0 {
		r.passOnLocked(b)
	}
}

// passOnLocked sends batch b on to the first keeper it names after To,
// which names the rest: kept here if that is us.
func (r *Router) passOnLocked(b protocol.TermBatch) {
	b.To, b.Then, b.Hops = b.Then[0], b.Then[1:], protocol.MaxTermHops
	if len(b.Then) == 0 {
		b.Then = nil
	}
	if b.To == protocol.IDPrefix(r.cfg.ID) {
		r.keepLocked(b)
		return
	}
	r.forwardLocked(b)
}

// heldDirectLocked keeps a batch sent to keeper to over a direct link that
// may not be open yet, until it opens or fails to; within the bounds of
// the batches held to pass on, which it counts against.
func (r *Router) heldDirectLocked(to protocol.PeerID, b protocol.TermBatch) {
	kr := &r.kr
	n := len(b.Add) + len(b.Del)
	if kr.fwdKeys+n > maxForwardKeys {
		return
	}
	if len(kr.direct[to]) == 0 {
		kr.directAt[to] = r.cfg.Now()
	}
	kr.direct[to] = append(kr.direct[to], b)
	kr.fwdKeys += n
}

// directHeldFor is how long batches are held for a direct link: past the
// time a dial takes to fail, they went.
const directHeldFor = 3 * directDialTimeout

// deliveredDirectLocked forgets the batches held for peer: a link to it
// is up, and they went behind its hello.
func (r *Router) deliveredDirectLocked(peer protocol.PeerID) {
	for _, b := range r.kr.direct[peer] {
		r.kr.fwdKeys -= len(b.Add) + len(b.Del)
	}
	delete(r.kr.direct, peer)
	delete(r.kr.directAt, peer)
}

// retryDirectLocked queues again the batches held for peer, whose direct
// link did not open: for it again, a hop the poorer, until MaxTermHops
// tries, and no longer to be passed on; the passing on starts at its
// successor instead (a key's keepers follow each other on the ring), in
// case it died.
func (r *Router) retryDirectLocked(peer protocol.PeerID) {
	bs := r.kr.direct[peer]
	r.deliveredDirectLocked(peer)
	for _, b := range bs {
		if len(b.Then) > 0 {
			r.passOnLocked(b)
			b.Then = nil
		}
		if b.Hops > 0 {
			b.Hops--
			r.forwardLocked(b)
		}
	}
}

// forwardLocked holds a batch for the next flush, within the bounds.
func (r *Router) forwardLocked(b protocol.TermBatch) {
	kr := &r.kr
	if len(kr.fwd) >= maxForward || kr.fwdKeys+len(b.Add)+len(b.Del) > maxForwardKeys {
		r.Stats.SummariesDropped.Add(1)
		return
	}
	kr.fwd = append(kr.fwd, b)
	kr.fwdKeys += len(b.Add) + len(b.Del)
}

// arcKeys appends to dst the keys of pub (sorted) that supernode x keeps on
// ring rg: those after the ring.Copies-th supernode before it, up to x.
func arcKeys(dst, pub []uint64, rg *ring.Ring, x ring.ID) []uint64 {
	if rg.Len() <= ring.Copies {
		return append(dst, pub...)
	}
	from, to := ring.Prefix(rg.Before(x, ring.Copies)), ring.Prefix(x)
	lo, _ := slices.BinarySearch(pub, from+1)
	hi, _ := slices.BinarySearch(pub, to+1)
	if from == math.MaxUint64 {
		lo = len(pub)
	}
	if to == math.MaxUint64 {
		hi = len(pub)
	}
	if from < to {
		return append(dst, pub[lo:hi]...)
	}
	return append(append(dst, pub[lo:]...), pub[:hi]...)
}

// reassignLocked tells keepers of the ring's change from old to next: those
// that now keep keys of ours get them, those that no longer do (and live)
// lose them. Only the keys near a supernode that came, went or restarted
// change keepers: those in its arc. A keeper after one that went may have
// missed batches the one that went was to pass on, and gets again those
// sent down the chain lately: an older one was passed on, and what a crash
// lost otherwise is back at the next refresh.
func (r *Router) reassignLocked(oldV, nextV *RingView) {
	old, oldM, next, nextM := oldV.Ring, oldV.Members, nextV.Ring, nextV.Members
	at := r.cfg.Now()
	pub := r.kr.pub
	if len(pub) == 0 {
		return
	}
	var affected []uint64
	restarted := map[protocol.PeerID]bool{}
	for p := range oldM {
		if _, ok := nextM[p]; !ok {
			affected = arcKeys(affected, pub, old, ring.ID(p))
		}
	}
	for p, m := range nextM {
		o, ok := oldM[p]
		switch {
		case !ok:
			affected = arcKeys(affected, pub, next, ring.ID(p))
		case o.Inc != m.Inc:
			restarted[p] = true
			affected = arcKeys(affected, pub, next, ring.ID(p))
		}
	}
	slices.Sort(affected)
	affected = slices.Compact(affected)
	for _, k := range affected {
		was := old.Replicas(ring.KeyPos(k), ring.Copies)
		now := next.Replicas(ring.KeyPos(k), ring.Copies)
		// The chain of keepers broke at the first that went.
		broke := slices.IndexFunc(was, func(id ring.ID) bool { return !next.Has(id) })
		if broke < 0 {
			broke = len(now)
		}
		lately := broke < len(now) && r.chainedLately(k, at)
		for j, id := range now {
			if j >= broke && lately || !slices.Contains(was, id) || restarted[protocol.PeerID(id)] {
				r.queueKeyLocked(protocol.PeerID(id), nil, k, true)
			}
		}
		for _, id := range was {
			if !slices.Contains(now, id) && next.Has(id) {
				r.queueKeyLocked(protocol.PeerID(id), nil, k, false)
			}
		}
	}
}

// keeperLostLocked sends our keys that peer keeps and that went down their
// chain lately (chainedLately), now that its link went down, to the keepers
// after it: a keeper that died passes on nothing, and
// those after it would lack what it was to pass on until the member list
// takes it as dead (SuspectFor after it is reported gone).
func (r *Router) keeperLostLocked(peer protocol.PeerID) {
	kr := &r.kr
	if kr.view == nil || !kr.view.Ring.Has(ring.ID(peer)) || len(kr.pub) == 0 {
		return
	}
	now := r.cfg.Now()
	for _, k := range arcKeys(nil, kr.pub, kr.view.Ring, ring.ID(peer)) {
		if !r.chainedLately(k, now) {
			continue // passed on long since
		}
		ks := kr.view.Ring.Replicas(ring.KeyPos(k), ring.Copies)
		if after := ks[slices.Index(ks, ring.ID(peer))+1:]; len(after) > 0 {
			r.chainLocked(after, k, true)
		}
	}
}

// refreshKeysLocked sends all our keys to their keepers again every
// keyRefreshEvery, from a random phase so that supernodes do not refresh
// together: what a batch dropped on its way (a crash, a full queue, a rate
// limit) is back within that time.
func (r *Router) refreshKeysLocked(now time.Time) {
	kr := &r.kr
	switch {
	case len(kr.pub) == 0 || kr.view == nil:
		return
	case kr.refreshAt.IsZero():
		kr.refreshAt = now.Add(time.Duration(r.rnd.Uint64() % uint64(keyRefreshEvery)))
		return
	case now.Before(kr.refreshAt):
		return
	}
	kr.refreshAt, kr.refreshed = now.Add(keyRefreshEvery), now
	r.Stats.KeyRefreshes.Add(1)
	for _, k := range kr.pub {
		r.keepersLocked(k, true)
	}
}

// keyRefreshEvery is how often a supernode sends its keys to their
// keepers again, as DHTs republish their records.
const keyRefreshEvery = 30 * time.Minute

// flushTermsLocked sends our queued changes and the batches passing
// through, at most once every summaryFlush: each batch to its keeper if
// linked, else to the link that gets farthest round the ring toward it,
// else over a direct link.
func (r *Router) flushTermsLocked(now time.Time) []outMsg {
	kr := &r.kr
	if now.Sub(kr.flushed) < summaryFlush || len(kr.out) == 0 && len(kr.fwd) == 0 {
		return nil
	}
	kr.flushed = now
	for p, at := range kr.directAt {
		if now.Sub(at) > directHeldFor {
			r.deliveredDirectLocked(p)
		}
	}
	batches := kr.fwd
	for _, b := range batches {
		kr.fwdKeys -= len(b.Add) + len(b.Del)
	}
	kr.fwd = nil
	keepers := slices.SortedFunc(maps.Keys(kr.out), func(a, b outKey) int {
		return cmp.Or(cmpPeer(a.to, b.to), cmp.Compare(a.n, b.n), slices.Compare(a.then[:], b.then[:]))
	})
	for _, ok := range keepers {
		var add, del []uint64
		for k, a := range kr.out[ok] {
			if a {
				add = append(add, k)
			} else {
				del = append(del, k)
			}
		}
		slices.Sort(add)
		slices.Sort(del)
		for len(add) > 0 || len(del) > 0 {
			na, nd := min(len(add), protocol.MaxTermKeys), min(len(del), protocol.MaxTermKeys)
			batches = append(batches, protocol.TermBatch{To: protocol.IDPrefix(ok.to), Publisher: protocol.IDPrefix(r.cfg.ID), Inc: r.cfg.Incarnation,
				Hops: protocol.MaxTermHops, Then: ok.thenOf(), Add: add[:na:na], Del: del[:nd:nd]})
			add, del = add[na:], del[nd:]
		}
	}
	// A new map, not a cleared one: a map keeps the room it grew to, and
	// the first flush to thousands of keepers would hold it for good.
	kr.out = map[outKey]map[uint64]bool{}

	linked := make(map[uint64]LinkID, len(r.neighbours))
	nbrs := make([]ring.ID, 0, len(r.neighbours))
	for id, n := range r.neighbours {
		linked[protocol.IDPrefix(n.peer)] = id
		nbrs = append(nbrs, ring.ID(n.peer))
	}
	for id, c := range r.oh.contacts {
		if _, ok := linked[protocol.IDPrefix(c.peer)]; !ok {
			linked[protocol.IDPrefix(c.peer)] = id
		}
	}
	type hop struct {
		to   LinkID
		peer protocol.PeerID // for a direct link
	}
	var order []hop
	by := map[hop][]protocol.TermBatch{}
	for _, b := range batches {
		var h hop
		to, known := kr.view.ByPrefix[b.To]
		if id, ok := linked[b.To]; ok {
			h.to = id
		} else if next, ok := ring.Toward(ring.ID(r.cfg.ID), nbrs, prefixTarget(b.To, to, known)); ok {
			h.to = linked[protocol.IDPrefix(protocol.PeerID(next))]
		} else if known {
			h.peer = to
			r.heldDirectLocked(to, b)
		} else {
			r.Stats.SummariesDropped.Add(1) // a keeper we cannot name or reach
			continue
		}
		if _, ok := by[h]; !ok {
			order = append(order, h)
		}
		by[h] = append(by[h], b)
	}
	var msgs []outMsg
	for _, h := range order {
		bs := by[h]
		for len(bs) > 0 {
			m := &protocol.TermPuts{}
			size := 0
			for len(bs) > 0 && len(m.Batches) < protocol.MaxTermBatches {
				sz := 80 + 9*(len(bs[0].Add)+len(bs[0].Del))
				if len(m.Batches) > 0 && size+sz > termFlushBytes {
					break
				}
				m.Batches = append(m.Batches, bs[0])
				size += sz
				bs = bs[1:]
			}
			r.Stats.TermBatches.Add(uint64(len(m.Batches)))
			msgs = append(msgs, outMsg{to: h.to, peer: h.peer, m: m})
		}
	}
	return msgs
}

// termPuts takes term batches from a supernode link: ours to keep, the
// others to pass on toward their keepers.
func (r *Router) termPuts(from LinkID, m *protocol.TermPuts) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	lim := r.putLimiterLocked(from)
	if lim == nil {
		return fmt.Errorf("%w: term_puts from a link that is not a supernode", protocol.ErrForbidden)
	}
	if !lim.AllowN(r.cfg.Now(), 1) {
		r.Stats.SummariesDropped.Add(1)
		return nil
	}
	for _, b := range m.Batches {
		switch {
		case b.To == protocol.IDPrefix(r.cfg.ID):
			r.keepLocked(b)
		case b.Hops == 0:
			r.Stats.SummariesDropped.Add(1)
		default:
			b.Hops--
			r.forwardLocked(b)
		}
	}
	return nil
}

// putLimiterLocked is the summary rate of the supernode on link id,
// neighbour or contact, or nil for a link that is neither.
func (r *Router) putLimiterLocked(id LinkID) *rate.Limiter {
	if n := r.neighbours[id]; n != nil {
		return n.summaries
	}
	if c := r.oh.contacts[id]; c != nil {
		return c.puts
	}
	return nil
}

// termLookup answers a keeper's lookup from a supernode, within that
// supernode's query rate.
func (r *Router) termLookup(from LinkID, m *protocol.TermLookup) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.peerOfLocked(from); !ok {
		return fmt.Errorf("%w: term_lookup from a link that is not a supernode", protocol.ErrForbidden)
	}
	r.Stats.QueriesFromNeighbors.Add(1)
	if !r.queryLimiterLocked(from).AllowN(r.cfg.Now(), 1) {
		r.Stats.NeighbourQueriesRefused.Add(1)
		r.out.Send(from, &protocol.Error{Code: protocol.StatusOverloaded, Message: "too many lookups; slow down", Ref: m.ID})
		return nil
	}
	ans := &protocol.TermHolders{ID: m.ID}
	for _, k := range m.Keys {
		hs, more := r.kr.store.holders(k, protocol.MaxTermHolders, &r.rnd)
		ans.Lists = append(ans.Lists, protocol.HolderList{Key: k, Holders: protocol.KeyList(hs), More: more})
	}
	r.out.Send(from, ans)
	return nil
}

// lookup is the keyword ring phase of a leaf's query: the keepers of its
// keys asked which supernodes hold them. A keeper that does not answer
// within the round's timeout is not waited for: the key's next keeper is
// asked, and whichever answers first counts. The last is given two rounds.
type lookup struct {
	words []lookupKey
	ends  time.Time
}

// lookupKey is one key of a lookup.
type lookupKey struct {
	key     uint64
	asked   []protocol.PeerID // the keepers asked, in order
	waiting protocol.PeerID   // the keeper it waits on now
	grace   bool              // the last keeper's second round began
	done    bool
	list    []uint64 // holders by ID prefix
	more    bool     // the list is a sample
	unknown bool     // no keeper answered
}

// waitsOn reports whether the lookup waits on keeper peer.
func (lk *lookup) waitsOn(peer protocol.PeerID) bool {
	return slices.ContainsFunc(lk.words, func(w lookupKey) bool { return !w.done && w.waiting == peer })
}

// pending reports whether some key is not answered yet.
func (lk *lookup) pending() bool {
	return slices.ContainsFunc(lk.words, func(w lookupKey) bool { return !w.done })
}

// startKeyRingLocked registers a leaf's query for the keyword ring and
// asks the keepers of its keys; the local hits count towards enough.
func (r *Router) startKeyRingLocked(id protocol.QueryID, p *pending, keys [][]byte, local []protocol.Hit, now time.Time) ([]outMsg, bool) {
	if r.kr.view == nil {
		return nil, false
	}
	hs := keyHashes(keys)
	slices.Sort(hs)
	hs = slices.Compact(hs)
	hs = hs[:min(len(hs), protocol.MaxLookupKeys)]
	lk := &lookup{words: make([]lookupKey, len(hs))}
	for i, k := range hs {
		lk.words[i].key = k
	}
	p.direct = &direct{asked: map[protocol.PeerID]bool{}, waiting: map[protocol.PeerID]bool{},
		found: map[protocol.ContentID]*foundFile{}, look: lk}
	p.countSources(local, r.maxCounted())
	p.deadline = now.Add(r.cfg.DirectTimeout)
	r.queries[id] = p
	return r.askKeepersLocked(id, p, now), true
}

// keepersLeftLocked are the keepers of w, in ring order, that may still
// be asked: neither asked nor lost lately. Those after us are not among
// them, when we keep w ourselves (self).
func (r *Router) keepersLeftLocked(w *lookupKey, now time.Time) (left []protocol.PeerID, self bool) {
	for _, id := range r.kr.view.Ring.Replicas(ring.KeyPos(w.key), ring.Copies) {
		p := protocol.PeerID(id)
		if p == r.cfg.ID {
			return left, true
		}
		if !slices.Contains(w.asked, p) && !r.lostLocked(p, now) {
			left = append(left, p)
		}
	}
	return left, false
}

// askKeepersLocked asks, for each key not yet answered and waiting on
// none, its next keeper: ourselves at once when we are one, the others in
// one lookup each. With every key answered, or given up, the rounds begin.
// The next keeper is the first on the ring not asked yet, as the ring is
// now: a keeper that died may have been replaced since it was asked.
func (r *Router) askKeepersLocked(id protocol.QueryID, p *pending, now time.Time) []outMsg {
	lk := p.direct.look
	by := map[protocol.PeerID][]uint64{}
	var order []protocol.PeerID
	for i := range lk.words {
		w := &lk.words[i]
		if w.done || !w.waiting.IsZero() {
			continue
		}
		left, self := r.keepersLeftLocked(w, now)
		if self {
			// Our own list, unless it is empty and a keeper before us
			// may know more: we may have become one only lately, and
			// the keys not have reached us yet.
			hs, more := r.kr.store.holders(w.key, protocol.MaxTermHolders, &r.rnd)
			if len(hs) > 0 || len(left) == 0 {
				w.list, w.more, w.done = hs, more, true
				continue
			}
		}
		if len(left) == 0 {
			w.done, w.unknown = true, true // no keeper answered: the key rules nothing out
			continue
		}
		to := r.keeperToAskLocked(left, now)
		w.asked = append(w.asked, to)
		w.waiting = to
		if _, ok := by[to]; !ok {
			order = append(order, to)
		}
		by[to] = append(by[to], w.key)
	}
	if !lk.pending() {
		return r.candidatesFromLookupLocked(id, p, now)
	}
	var msgs []outMsg
	for _, to := range order {
		r.Stats.TermLookups.Add(1)
		msgs = append(msgs, outMsg{peer: to, m: &protocol.TermLookup{ID: id, Keys: by[to]}})
	}
	lk.ends = now.Add(r.cfg.RoundTimeout)
	return msgs
}

// keeperToAskLocked is the keeper of left (in ring order) to ask: the
// first, which has the key's changes first, and which a keeper that took
// over from a dead one only lately is not. Those held off as slow are
// passed over while another is left.
func (r *Router) keeperToAskLocked(left []protocol.PeerID, now time.Time) protocol.PeerID {
	for _, k := range left[:len(left)-1] {
		if !r.heldOffLocked(k, now) {
			return k
		}
	}
	return left[len(left)-1]
}

// termHolders takes a keeper's answer to a lookup of ours: from any of the
// keepers asked for a key, late or not.
func (r *Router) termHolders(from LinkID, m *protocol.TermHolders) {
	now := r.cfg.Now()
	r.mu.Lock()
	peer, ok := r.peerOfLocked(from)
	p := r.queries[m.ID]
	if !ok || p == nil || p.direct == nil || p.direct.look == nil {
		r.mu.Unlock()
		return
	}
	lk := p.direct.look
	for _, l := range m.Lists {
		for i := range lk.words {
			w := &lk.words[i]
			if w.key == l.Key && !w.done && slices.Contains(w.asked, peer) {
				w.list, w.more, w.done = slices.Clone(l.Holders), l.More, true
			}
		}
	}
	if s := r.slow[peer]; s != nil {
		s.missed = 0
	}
	var msgs []outMsg
	if !lk.pending() {
		msgs = r.candidatesFromLookupLocked(m.ID, p, now)
	}
	r.mu.Unlock()
	r.flush(msgs)
}

// lookupTickLocked asks the next keepers of the keys whose keeper did not
// answer within the round's timeout, or that is gone (gone, if set).
func (r *Router) lookupTickLocked(id protocol.QueryID, p *pending, gone protocol.PeerID, now time.Time) []outMsg {
	lk := p.direct.look
	for i := range lk.words {
		w := &lk.words[i]
		switch {
		case w.done || w.waiting.IsZero():
			continue
		case !gone.IsZero():
			if w.waiting == gone {
				w.waiting = protocol.PeerID{}
			}
			continue
		}
		r.directMissedLocked(w.waiting, now)
		if left, _ := r.keepersLeftLocked(w, now); len(left) == 0 && !w.grace {
			w.grace = true // the last keeper: a round more
			continue
		}
		w.waiting = protocol.PeerID{}
	}
	msgs := r.askKeepersLocked(id, p, now)
	if p.direct.look != nil && now.After(lk.ends) {
		lk.ends = now.Add(r.cfg.RoundTimeout)
	}
	return msgs
}

// candidatesFromLookupLocked ends the lookup: the supernodes named for
// every key (where a key's list is whole), ordered as orderLocked does,
// are the candidates for the rounds.
func (r *Router) candidatesFromLookupLocked(id protocol.QueryID, p *pending, now time.Time) []outMsg {
	ws := p.direct.look.words
	p.direct.look = nil
	// The shortest whole list, else the shortest sample, is where the
	// candidates come from; the other whole lists rule some out. A key no
	// keeper answered for rules nothing out and names no one.
	var base *lookupKey
	for i := range ws {
		w := &ws[i]
		if w.unknown {
			continue
		}
		if base == nil || base.more && !w.more || base.more == w.more && len(w.list) < len(base.list) {
			base = w
		}
	}
	var cs []cand
	self := protocol.IDPrefix(r.cfg.ID)
	if base != nil {
		for _, x := range base.list {
			c, ok := r.kr.view.ByPrefix[x]
			if x == self || !ok {
				continue
			}
			in := !slices.ContainsFunc(ws, func(w lookupKey) bool {
				return !w.unknown && !w.more && !slices.Contains(w.list, x)
			})
			if in && !slices.ContainsFunc(cs, func(x cand) bool { return x.p == c }) {
				cs = append(cs, cand{p: c, leaves: r.kr.view.Members[c].Leaves})
			}
		}
	}
	p.direct.cands = r.orderLocked(cs)
	// The others are spared the query: what summaries did in one hop.
	r.Stats.QueriesPruned.Add(uint64(max(0, r.kr.view.Ring.Len()-1-len(p.direct.cands))))
	return r.nextRoundLocked(id, p, now)
}

// KeptKeys is how many keys of other supernodes (and ours) this one keeps
// in the keyword ring.
func (r *Router) KeptKeys() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kr.store.held - r.kr.store.dead
}

// termStore is what a keeper holds: for each key, the publishers that hold
// it, as slots of a table of publishers. Most keys have one publisher (a
// content ID, a rare word), and take a map entry of 12 bytes, not a list.
type termStore struct {
	one  map[uint64]uint32   // keys with one publisher
	many map[uint64][]uint32 // keys with more
	pubs []pubSlot
	// slotPeer are the live publishers' ID prefixes, ascending, and
	// slotIdx their slots: sorted slices, not a map, as a keeper of a
	// large overlay has a slot for most supernodes.
	slotPeer []uint64
	slotIdx  []uint32
	held     int // postings, dead slots' included
	dead     int // postings of dead slots, not yet swept
	// Refused counts keys not taken for the limits.
	refused int
}

type pubSlot struct {
	peer uint64 // ID prefix
	inc  uint64
	n    uint32 // at most maxPublisherKeys
	dead bool
}

func newTermStore() termStore {
	return termStore{one: map[uint64]uint32{}, many: map[uint64][]uint32{}}
}

// slot is publisher pub's live slot.
func (s *termStore) slot(pub uint64) (uint32, bool) {
	if j, ok := slices.BinarySearch(s.slotPeer, pub); ok {
		return s.slotIdx[j], true
	}
	return 0, false
}

// setSlot makes i publisher pub's live slot.
func (s *termStore) setSlot(pub uint64, i uint32) {
	j, ok := slices.BinarySearch(s.slotPeer, pub)
	if ok {
		s.slotIdx[j] = i
		return
	}
	s.slotPeer = slices.Insert(s.slotPeer, j, pub)
	s.slotIdx = slices.Insert(s.slotIdx, j, i)
}

// keys is how many keys the store holds.
func (s *termStore) keys() int { return len(s.one) + len(s.many) }

// add records slot i as holding k, reporting whether it was new.
func (s *termStore) add(k uint64, i uint32) bool {
	if l, ok := s.many[k]; ok {
		if slices.Contains(l, i) {
			return false
		}
		s.many[k] = append(l, i)
		return true
	}
	if j, ok := s.one[k]; ok {
		if j == i {
			return false
		}
		delete(s.one, k)
		s.many[k] = []uint32{j, i}
		return true
	}
	s.one[k] = i
	return true
}

// remove drops slot i from k, reporting whether it held it.
func (s *termStore) remove(k uint64, i uint32) bool {
	if j, ok := s.one[k]; ok {
		if j != i {
			return false
		}
		delete(s.one, k)
		return true
	}
	l := s.many[k]
	j := slices.Index(l, i)
	if j < 0 {
		return false
	}
	l[j] = l[len(l)-1]
	l = l[:len(l)-1]
	if len(l) == 1 {
		delete(s.many, k)
		s.one[k] = l[0]
	} else {
		s.many[k] = l
	}
	return true
}

// put applies a publisher's batch: keys removed, then keys added, within
// the limits. A batch of an earlier incarnation than the one held is
// dropped; one of a later drops what the earlier put.
func (s *termStore) put(pub, inc uint64, add, del []uint64) {
	i, ok := s.slot(pub)
	if ok && s.pubs[i].inc > inc {
		return
	}
	if ok && s.pubs[i].inc < inc {
		s.gone(pub)
		ok = false
	}
	if !ok {
		if len(add) == 0 {
			return
		}
		i = uint32(len(s.pubs))
		s.pubs = append(s.pubs, pubSlot{peer: pub, inc: inc})
		s.setSlot(pub, i)
	}
	ps := &s.pubs[i]
	for _, k := range del {
		if s.remove(k, i) {
			ps.n--
			s.held--
		}
	}
	for _, k := range add {
		if s.held >= maxTermPostings || ps.n >= maxPublisherKeys {
			if !s.has(k, i) {
				s.refused++
			}
			continue
		}
		if s.add(k, i) {
			ps.n++
			s.held++
		}
	}
}

// has reports whether slot i holds k.
func (s *termStore) has(k uint64, i uint32) bool {
	if j, ok := s.one[k]; ok {
		return j == i
	}
	return slices.Contains(s.many[k], i)
}

// gone drops what a publisher put: its slot is dead, and its postings go
// at the next sweep.
func (s *termStore) gone(pub uint64) {
	j, ok := slices.BinarySearch(s.slotPeer, pub)
	if !ok {
		return
	}
	i := s.slotIdx[j]
	s.slotPeer = slices.Delete(s.slotPeer, j, j+1)
	s.slotIdx = slices.Delete(s.slotIdx, j, j+1)
	s.pubs[i].dead = true
	s.dead += int(s.pubs[i].n)
	if s.dead > 1<<12 && 2*s.dead > s.held {
		s.sweep()
	}
}

// sweep drops the postings of dead slots and numbers the live slots anew.
func (s *termStore) sweep() {
	renum := make([]uint32, len(s.pubs))
	var pubs []pubSlot
	for i, p := range s.pubs {
		if !p.dead {
			renum[i] = uint32(len(pubs))
			s.setSlot(p.peer, uint32(len(pubs)))
			pubs = append(pubs, p)
		}
	}
	for k, i := range s.one {
		if s.pubs[i].dead {
			delete(s.one, k)
		} else {
			s.one[k] = renum[i]
		}
	}
	for k, l := range s.many {
		out := l[:0]
		for _, i := range l {
			if !s.pubs[i].dead {
				out = append(out, renum[i])
			}
		}
		switch len(out) {
		case 0:
			delete(s.many, k)
		case 1:
			delete(s.many, k)
			s.one[k] = out[0]
		default:
			s.many[k] = out
		}
	}
	s.pubs, s.held, s.dead = pubs, s.held-s.dead, 0
}

// holders are the live publishers of key k: all, or a random sample of max
// and true.
func (s *termStore) holders(k uint64, max int, rnd *randSource) ([]uint64, bool) {
	var out []uint64
	if i, ok := s.one[k]; ok && !s.pubs[i].dead {
		out = append(out, s.pubs[i].peer)
	}
	for _, i := range s.many[k] {
		if !s.pubs[i].dead {
			out = append(out, s.pubs[i].peer)
		}
	}
	if len(out) <= max {
		return out, false
	}
	for i := 0; i < max; i++ {
		j := i + int(rnd.Uint64()%uint64(len(out)-i))
		out[i], out[j] = out[j], out[i]
	}
	return out[:max], true
}

// keyRingKeys are the sorted, distinct hashes of our index's keys.
func (r *Router) keyRingKeys() []uint64 {
	ks := r.idx.AppendKeyHashes(make([]uint64, 0, r.idx.Keys()))
	slices.Sort(ks)
	return slices.Compact(ks)
}

// keysDue reports whether Tick should take our index's keys for the
// keepers: the index changed since they were last taken, SummaryEvery ago
// or more, or keys it no longer has are due to go.
func (r *Router) keysDue(gen uint64, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	kr := &r.kr
	// The first keys go at once: a supernode's files are findable as soon
	// as it has any.
	changed := gen != kr.pubGen && (len(kr.pub) == 0 || now.Sub(kr.pubAt) >= r.cfg.SummaryEvery)
	return changed || kr.stale && now.Sub(kr.cleanAt) >= keyCleanEvery
}
