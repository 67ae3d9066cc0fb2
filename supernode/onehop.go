package supernode

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
)

// One-hop routing: every supernode keeps a Bloom filter of every other's
// index (its one-hop summary), passed on between neighbours as signed
// versions, mostly as diffs. A leaf's query goes straight to the supernodes
// whose filters hold all its keys, a few at a time, nearest first, until
// enough is found. See the protocol's "One-hop summaries".

// DirectOutbox is an Outbox that also reaches supernodes the router is not
// linked to, over a link it opens on demand. The answers come back on that
// link, which the owner of the outbox registers with ContactUp.
type DirectOutbox interface {
	Outbox
	SendDirect(to protocol.PeerID, m protocol.Message)
}

// Limits of the one-hop state.
const (
	// maxRemotes bounds the summaries held; an overlay has far fewer
	// supernodes (members are capped too).
	maxRemotes = 1 << 16
	// maxQueued bounds the updates waiting for one neighbour; past it the
	// oldest go, and the neighbour repairs from announcements.
	maxQueued = 1 << 14
	// flushBytes is about what one neighbour is sent per tick, in two
	// frames at most, within its summary rate: a neighbour that asks for
	// every whole filter at once is served over several ticks.
	flushBytes = 1 << 20
	// MaxContacts is how many links for direct queries a supernode keeps
	// open at once; the least recently used closes first.
	MaxContacts = 256
	// announceEvery is how many ticks pass between the announcements that
	// repair versions lost on the way, each to the next neighbour in turn
	// (40 ticks of the supernode's 250 ms: a supernode hears one every 10 s
	// or so, from one neighbour or another).
	announceEvery = 40
)

// summaryVersion is one version of a supernode's one-hop summary: ours,
// or another's as taken from a neighbour.
type summaryVersion struct {
	inc, ver uint64
	filter   *index.Bloom
	sig      []byte
	leaves   uint32 // the origin's leaves when it issued the version
	enc      []byte // the filter's encoding, made when first needed
	// diffs are the diffs that led to this version from the ones before,
	// oldest first: a neighbour that missed some is sent one diff built
	// from them, not the whole filter.
	diffs []keptDiff
}

// keptDiff is a diff from version base to the next. Only the diff's bytes
// are kept, not the frame it came in.
type keptDiff struct {
	base uint64
	diff []byte
}

// Bounds of the diffs kept per version.
const (
	maxDiffChain = 4
	maxChainSize = 16 << 10
)

// chain is diffs with u's after it, the oldest dropped past the bounds.
func chain(diffs []keptDiff, u *protocol.SummaryUpdate) []keptDiff {
	out := append(slices.Clone(diffs), keptDiff{base: u.Base, diff: u.Diff})
	size := 0
	for i := len(out) - 1; i >= 0; i-- {
		size += len(out[i].diff)
		if len(out)-i > maxDiffChain || size > maxChainSize {
			return out[i+1:]
		}
	}
	return out
}

// since is the version as one diff from version have, or nil when the
// diffs from it are not all kept. Diffs flip bits, so those kept, flipped
// back, give the filter at have. The signature covers the whole filter, so
// it holds for any diff that builds it.
func (s *summaryVersion) since(origin protocol.PeerID, have uint64) *protocol.SummaryUpdate {
	i := slices.IndexFunc(s.diffs, func(d keptDiff) bool { return d.base == have })
	if i < 0 {
		return nil
	}
	old := s.filter.Clone()
	for j := len(s.diffs) - 1; j >= i; j-- {
		if old.ApplyDiff(s.diffs[j].diff) != nil {
			return nil
		}
	}
	d, err := old.Diff(s.filter)
	if err != nil {
		return nil
	}
	return &protocol.SummaryUpdate{Origin: origin, Inc: s.inc, Ver: s.ver, Base: have, Diff: d, Sig: s.sig, Leaves: s.leaves}
}

// whole is the version as an update that carries the whole filter.
func (s *summaryVersion) whole(origin protocol.PeerID) (*protocol.SummaryUpdate, error) {
	if s.enc == nil {
		enc, err := s.filter.MarshalBinary()
		if err != nil {
			return nil, err
		}
		s.enc = enc
	}
	return &protocol.SummaryUpdate{Origin: origin, Inc: s.inc, Ver: s.ver, Filter: s.enc, Sig: s.sig, Leaves: s.leaves}, nil
}

// announce is the version as an update that carries no filter.
func (s *summaryVersion) announce(origin protocol.PeerID) *protocol.SummaryUpdate {
	return &protocol.SummaryUpdate{Origin: origin, Inc: s.inc, Ver: s.ver}
}

// oneHop is the router's one-hop state, under Router.mu.
type oneHop struct {
	remotes  map[protocol.PeerID]*summaryVersion
	contacts map[LinkID]*contact // links opened for direct queries
	queued   map[LinkID][]*protocol.SummaryUpdate
	wants    map[LinkID][]want
	wanted   map[protocol.PeerID]time.Time // asked for whole until then
	behind   map[protocol.PeerID]*behind   // origins a newer version of which is on its way
	pendingB int                           // bytes of the diffs held in behind

	self    *summaryVersion // our current version; nil before the first
	inc     uint64          // our incarnation, which our versions carry
	ownAt   time.Time       // when self was issued
	ownGen  uint64          // index generation self was built from
	flushed time.Time       // when the queues last went out
	// cleanAt is when self last held exactly the index's keys; since then
	// versions only add bits (stale is set once one kept a bit the index
	// no longer has).
	cleanAt time.Time
	stale   bool
	ticks   uint64
}

func newOneHop(inc uint64) oneHop {
	return oneHop{remotes: map[protocol.PeerID]*summaryVersion{}, contacts: map[LinkID]*contact{},
		queued: map[LinkID][]*protocol.SummaryUpdate{}, wants: map[LinkID][]want{},
		wanted: map[protocol.PeerID]time.Time{}, behind: map[protocol.PeerID]*behind{}, inc: inc, ownGen: ^uint64(0)}
}

// behind is an origin of which we heard of a version we could not build:
// announced before its diff reached us, or a diff whose base has not.
// Versions travel on several paths, so the missing one usually arrives
// within catchUpWait; only then is the whole filter asked for.
type behind struct {
	since   time.Time
	from    LinkID                    // the neighbour to ask
	pending []*protocol.SummaryUpdate // diffs waiting for their base, oldest first
}

// catchUpWait is how long a version heard of may take to arrive before the
// whole filter is asked for; maxPending bounds the diffs held per origin,
// and maxPendingBytes all of them (diffs are a few hundred bytes; a
// neighbour that sends large ones ahead of their base only gets the whole
// filters asked for sooner).
const (
	catchUpWait     = 3 * time.Second
	maxPending      = 8
	maxPendingBytes = 1 << 20
)

// dropBehindLocked forgets that we were behind origin, with its held diffs.
func (r *Router) dropBehindLocked(origin protocol.PeerID) {
	if b := r.oh.behind[origin]; b != nil {
		for _, u := range b.pending {
			r.oh.pendingB -= len(u.Diff)
		}
		delete(r.oh.behind, origin)
	}
}

// popPendingLocked takes b's oldest held diff off.
func (r *Router) popPendingLocked(b *behind) *protocol.SummaryUpdate {
	u := b.pending[0]
	b.pending = b.pending[1:]
	r.oh.pendingB -= len(u.Diff)
	return u
}

// oneHopOn reports whether this router routes in one hop.
func (r *Router) oneHopOn() bool {
	_, ok := r.out.(DirectOutbox)
	return ok && !r.cfg.MultiHop && !r.keyRingOn()
}

// ContactUp registers a link to a supernode that is not a neighbour: one
// opened for direct queries, by us or by it.
func (r *Router) ContactUp(id LinkID, peer protocol.PeerID) {
	r.mu.Lock()
	if s := r.slow[peer]; s != nil {
		s.lostUntil = time.Time{}
	}
	r.deliveredDirectLocked(peer)
	r.oh.contacts[id] = &contact{peer: peer,
		queries: rate.NewLimiter(rate.Limit(r.cfg.NeighbourQueryRate), r.cfg.NeighbourQueryBurst),
		puts:    rate.NewLimiter(rate.Limit(r.cfg.NeighbourSummaryRate), r.cfg.NeighbourSummaryBurst)}
	r.mu.Unlock()
}

// contact is a supernode linked for direct queries only.
type contact struct {
	peer          protocol.PeerID
	queries, puts *rate.Limiter
}

// queryLimiterLocked is the query rate of the supernode on link id,
// neighbour or contact.
func (r *Router) queryLimiterLocked(id LinkID) *rate.Limiter {
	if n := r.neighbours[id]; n != nil {
		return n.queries
	}
	return r.oh.contacts[id].queries
}

// ContactDown forgets such a link; direct queries waiting on it go on
// without it.
func (r *Router) ContactDown(id LinkID) {
	r.mu.Lock()
	c := r.oh.contacts[id]
	delete(r.oh.contacts, id)
	var msgs []outMsg
	if c != nil {
		msgs = r.directGoneLocked(c.peer)
	}
	r.mu.Unlock()
	r.flush(msgs)
}

// DirectFailed tells the router that no link to supernode peer could be
// opened: its queries' rounds go on without it.
func (r *Router) DirectFailed(peer protocol.PeerID) {
	r.mu.Lock()
	r.retryDirectLocked(peer)
	msgs := r.directGoneLocked(peer)
	r.mu.Unlock()
	r.flush(msgs)
}

// SupernodeGone drops the summary of a supernode taken as dead, and what
// it put in the keyword ring.
func (r *Router) SupernodeGone(peer protocol.PeerID) {
	r.mu.Lock()
	delete(r.slow, peer)
	r.kr.store.gone(protocol.IDPrefix(peer))
	delete(r.oh.remotes, peer)
	delete(r.oh.wanted, peer)
	r.dropBehindLocked(peer)
	r.mu.Unlock()
}

// Summaries is how many other supernodes' one-hop summaries the router holds.
func (r *Router) Summaries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.oh.remotes)
}

// peerOfLocked is the supernode at the other end of link id, neighbour or
// contact.
func (r *Router) peerOfLocked(id LinkID) (protocol.PeerID, bool) {
	if n := r.neighbours[id]; n != nil {
		return n.peer, true
	}
	if c := r.oh.contacts[id]; c != nil {
		return c.peer, true
	}
	return protocol.PeerID{}, false
}

// ownSummaryLocked issues f as the next version of our summary, unless it
// is what the last version holds, and queues it for every neighbour.
func (r *Router) ownSummaryLocked(now time.Time, f *index.Bloom, gen uint64) {
	oh := &r.oh
	oh.ownGen = gen
	prev := oh.self
	if prev != nil && prev.filter.Bits() == f.Bits() && now.Sub(oh.cleanAt) < summaryCleanEvery {
		keep := f.Clone()
		keep.Union(prev.filter)
		oh.stale = oh.stale || !keep.Equal(f)
		f = keep
	} else {
		oh.cleanAt, oh.stale = now, false
	}
	if prev != nil && f.Equal(prev.filter) {
		return
	}
	enc, err := f.MarshalBinary()
	if err != nil {
		r.log.Error().Err(err).Msg("encode one-hop summary")
		return
	}
	u := &protocol.SummaryUpdate{Origin: r.cfg.ID, Inc: oh.inc, Ver: 1, Leaves: uint32(len(r.leaves))}
	if prev != nil {
		u.Ver = prev.ver + 1
		if prev.filter.Bits() == f.Bits() {
			if d, err := prev.filter.Diff(f); err == nil && len(d) < len(enc) {
				u.Base, u.Diff = prev.ver, d
			}
		}
	}
	if u.Diff == nil {
		u.Filter = enc
	}
	u.Sig = r.sign(protocol.SummarySigned(u.Origin, u.Inc, u.Ver, enc))
	oh.self = &summaryVersion{inc: u.Inc, ver: u.Ver, filter: f, sig: u.Sig, leaves: u.Leaves, enc: enc}
	if u.Diff != nil {
		oh.self.diffs = chain(prev.diffs, u)
	}
	oh.ownAt = now
	for nid := range r.neighbours {
		r.queueLocked(nid, u)
	}
	r.Stats.SummaryVersions.Add(1)
}

// ownSummaryDue reports whether Tick should build a new version of our
// summary, and the last one, whose size the new one keeps if it can.
func (r *Router) ownSummaryDue(gen uint64, now time.Time) (bool, *index.Bloom) {
	r.mu.Lock()
	defer r.mu.Unlock()
	oh := &r.oh
	if oh.self == nil {
		return gen != oh.ownGen, nil
	}
	changed := gen != oh.ownGen && now.Sub(oh.ownAt) >= r.cfg.SummaryEvery
	clean := oh.stale && now.Sub(oh.cleanAt) >= summaryCleanEvery
	return changed || clean, oh.self.filter
}

// Our summary's versions keep the bits of keys that left for up to
// summaryCleanEvery, so most diffs only add and a leaf that leaves costs
// no version at once: a stale bit costs a query at most a wasted direct
// message. The filter keeps its size until its false positives would pass
// summaryFPSlack times SummaryFP, so a few leaves more do not resend it
// whole.
const (
	summaryCleanEvery = 5 * time.Minute
	summaryFPSlack    = 3
)

func (r *Router) sign(b []byte) []byte {
	if r.cfg.Sign == nil {
		return make([]byte, ed25519.SignatureSize)
	}
	return r.cfg.Sign(b)
}

// summaryFilter builds the filter of the index for the one-hop summary,
// sized for its keys at about SummaryFP false positives; the size changes
// only when the keys outgrow it (past summaryFPSlack) or fit in a quarter
// of it, so most versions go as diffs.
func (r *Router) summaryFilter(prev *index.Bloom) *index.Bloom {
	keys := r.idx.Keys()
	want := index.NewBloom(keys, r.cfg.SummaryFP).Bits()
	bits := want
	if prev != nil && prev.Bits() >= index.NewBloom(keys, summaryFPSlack*r.cfg.SummaryFP).Bits() && prev.Bits() < 4*want {
		bits = prev.Bits()
	}
	f := index.NewBloomBits(bits)
	r.idx.AddTo(f)
	return f
}

func (r *Router) queueLocked(nid LinkID, u *protocol.SummaryUpdate) {
	q := append(r.oh.queued[nid], u)
	if len(q) > maxQueued {
		q = q[len(q)-maxQueued:]
	}
	r.oh.queued[nid] = q
}

// announceLocked queues, for neighbour nid, the version of every summary
// we hold, ours included.
func (r *Router) announceLocked(nid LinkID) {
	if s := r.oh.self; s != nil {
		r.queueLocked(nid, s.announce(r.cfg.ID))
	}
	peers := make([]protocol.PeerID, 0, len(r.oh.remotes))
	for p := range r.oh.remotes {
		peers = append(peers, p)
	}
	slices.SortFunc(peers, cmpPeer)
	for _, p := range peers {
		r.queueLocked(nid, r.oh.remotes[p].announce(p))
	}
}

func cmpPeer(a, b protocol.PeerID) int { return slices.Compare(a[:], b[:]) }

// oneHopTickLocked does the one-hop upkeep of a tick: every announceEvery
// ticks it announces every version held to the next neighbour in turn.
func (r *Router) oneHopTickLocked(now time.Time) {
	oh := &r.oh
	r.catchUpTickLocked(now)
	oh.ticks++
	if oh.ticks%announceEvery != 0 {
		return
	}
	if len(r.neighbours) == 0 {
		return
	}
	ids := make([]LinkID, 0, len(r.neighbours))
	for nid := range r.neighbours {
		ids = append(ids, nid)
	}
	slices.Sort(ids)
	r.announceLocked(ids[int(oh.ticks/announceEvery)%len(ids)])
}

// summaryFlush is how often the queued updates and wants go out: batched
// over a second, a supernode sends each neighbour one frame where it would
// send four at the tick's pace, and an update crosses the overlay in a few
// seconds. A whole filter asked for is not asked again for wantAgainAfter:
// the want leaves at our next flush and the answer at the neighbour's.
const (
	summaryFlush   = time.Second
	wantAgainAfter = 3 * summaryFlush
)

// flushSummariesLocked turns the queued updates and wants into frames, at
// most once every summaryFlush.
func (r *Router) flushSummariesLocked(now time.Time) []outMsg {
	if now.Sub(r.oh.flushed) < summaryFlush {
		return nil
	}
	r.oh.flushed = now
	var msgs []outMsg
	ids := make([]LinkID, 0, len(r.oh.queued)+len(r.oh.wants))
	for nid := range r.oh.queued {
		ids = append(ids, nid)
	}
	for nid := range r.oh.wants {
		if _, ok := r.oh.queued[nid]; !ok {
			ids = append(ids, nid)
		}
	}
	slices.Sort(ids)
	for _, nid := range ids {
		if r.neighbours[nid] == nil {
			delete(r.oh.queued, nid)
			delete(r.oh.wants, nid)
			continue
		}
		if w := r.oh.wants[nid]; len(w) > 0 {
			for len(w) > 0 {
				n := min(len(w), protocol.MaxSummaryWants)
				m := &protocol.SummaryWant{}
				held := false
				for _, x := range w[:n] {
					m.Origins = append(m.Origins, x.origin)
					m.Have = append(m.Have, x.have)
					held = held || x.have != 0
				}
				if !held {
					m.Have = nil
				}
				msgs = append(msgs, outMsg{to: nid, m: m})
				w = w[n:]
			}
			delete(r.oh.wants, nid)
		}
		q := r.oh.queued[nid]
		budget := flushBytes
		for len(q) > 0 && budget > 0 {
			m := &protocol.Summaries{}
			size := 0
			for len(q) > 0 && len(m.Updates) < protocol.MaxSummaryUpdates {
				u := q[0]
				sz := 64 + len(u.Filter) + len(u.Diff) + len(u.Sig)
				if len(m.Updates) > 0 && size+sz > protocol.MaxFrameSize/2 {
					break
				}
				m.Updates = append(m.Updates, *u)
				size += sz
				q = q[1:]
			}
			budget -= size
			msgs = append(msgs, outMsg{to: nid, m: m})
			r.Stats.SummaryFrames.Add(1)
		}
		if len(q) == 0 {
			delete(r.oh.queued, nid)
		} else {
			r.oh.queued[nid] = q
		}
	}
	return msgs
}

// summaryFrameLocked reports whether a summaries or summary_want frame
// from link from is to be taken: only neighbours send them, each within
// its summary rate (frames over it are dropped without an error).
func (r *Router) summaryFrameLocked(from LinkID, m protocol.Message, now time.Time) (bool, error) {
	n := r.neighbours[from]
	if n == nil {
		return false, fmt.Errorf("%w: %s from a link that is not a neighbour supernode", protocol.ErrForbidden, m.Type())
	}
	if !n.summaries.AllowN(now, 1) {
		r.Stats.SummariesDropped.Add(1)
		return false, nil
	}
	return true, nil
}

// summaries takes a neighbour's one-hop summary updates.
func (r *Router) summaries(from LinkID, m *protocol.Summaries) error {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok, err := r.summaryFrameLocked(from, m, now); !ok {
		return err
	}
	// Of each origin only the newest update of the frame is taken: a
	// signature is checked at most once per origin and frame, so a
	// neighbour cannot make us check thousands of versions of its own.
	last := make(map[protocol.PeerID]int, len(m.Updates))
	for i := range m.Updates {
		u := &m.Updates[i]
		if j, ok := last[u.Origin]; !ok || newer(u, &m.Updates[j]) {
			last[u.Origin] = i
		}
	}
	for i := range m.Updates {
		if last[m.Updates[i].Origin] != i {
			continue
		}
		if err := r.takeLocked(from, &m.Updates[i], now); err != nil {
			return err
		}
	}
	return nil
}

// newer reports whether a is a later version than b of the same origin.
func newer(a, b *protocol.SummaryUpdate) bool { return later(a.Inc, a.Ver, b.Inc, b.Ver) }

// later reports whether version ver of incarnation inc comes after version
// ver2 of inc2: a later incarnation does, whatever its version.
func later(inc, ver, inc2, ver2 uint64) bool { return inc > inc2 || inc == inc2 && ver > ver2 }

// takeLocked takes one update from neighbour from: a newer version is
// kept and passed on; one that cannot be applied is asked for whole.
func (r *Router) takeLocked(from LinkID, u *protocol.SummaryUpdate, now time.Time) error {
	oh := &r.oh
	if u.Origin == r.cfg.ID {
		return nil
	}
	var key ed25519.PublicKey
	if r.cfg.MemberKey != nil {
		if key = r.cfg.MemberKey(u.Origin); key == nil {
			return nil // not a live member: nothing to route to
		}
	}
	held := oh.remotes[u.Origin]
	if held != nil && !later(u.Inc, u.Ver, held.inc, held.ver) {
		return nil
	}
	if held == nil && len(oh.remotes) >= maxRemotes {
		return nil
	}
	if u.Announce() || u.Diff != nil && (held == nil || held.inc != u.Inc || held.ver != u.Base) {
		r.behindLocked(from, u, held, now)
		return nil
	}
	var f *index.Bloom
	var bad error
	build := func() *index.Bloom {
		switch {
		case u.Diff != nil:
			f := held.filter.Clone()
			if f.ApplyDiff(u.Diff) != nil {
				return nil
			}
			return f
		default:
			f := new(index.Bloom)
			if err := f.UnmarshalBinary(u.Filter); err != nil {
				bad = fmt.Errorf("%w: one-hop summary of %s: %v", protocol.ErrBadRequest, u.Origin.Short(), err)
				return nil
			}
			return f
		}
	}
	if r.cfg.Intern != nil {
		f = r.cfg.Intern(u.Origin, u.Inc, u.Ver, build)
	} else {
		f = build()
	}
	if bad != nil {
		return bad
	}
	if f == nil {
		r.wantLocked(from, u.Origin, 0, now)
		return nil
	}
	var enc []byte
	if key != nil {
		var err error
		if enc, err = f.MarshalBinary(); err != nil {
			return err
		}
		if err := protocol.VerifySummary(key, u.Origin, u.Inc, u.Ver, enc, u.Sig); err != nil {
			// Neighbours pass updates on unchanged: the signature was bad
			// when it left the sender.
			return err
		}
	}
	rs := &summaryVersion{inc: u.Inc, ver: u.Ver, filter: f, sig: u.Sig, leaves: u.Leaves, enc: enc}
	if held != nil {
		if u.Diff != nil {
			rs.diffs = chain(held.diffs, u)
		}
	}
	oh.remotes[u.Origin] = rs
	delete(oh.wanted, u.Origin)
	r.Stats.SummariesTaken.Add(1)
	ids := make([]LinkID, 0, len(r.neighbours))
	for nid := range r.neighbours {
		if nid != from {
			ids = append(ids, nid)
		}
	}
	slices.Sort(ids) // then shuffled: the order does not hang on the map's
	shuffle(&r.rnd, ids)
	for _, nid := range ids[:min(len(ids), summaryFanout)] {
		r.queueLocked(nid, u)
	}
	return r.caughtUpLocked(u.Origin, rs, now)
}

// want is an origin whose summary we ask a neighbour for, and the version
// of it we hold (0: none that the answer can build on).
type want struct {
	origin protocol.PeerID
	have   uint64
}

// wantLocked asks neighbour from for origin's current summary, unless it was
// asked for lately: the diffs from version have, or the whole filter.
func (r *Router) wantLocked(from LinkID, origin protocol.PeerID, have uint64, now time.Time) {
	oh := &r.oh
	r.dropBehindLocked(origin)
	if now.After(oh.wanted[origin]) {
		oh.wanted[origin] = now.Add(wantAgainAfter)
		oh.wants[from] = append(oh.wants[from], want{origin: origin, have: have})
	}
}

// behindLocked notes that neighbour from told of a version of u.Origin
// newer than the one we hold, which we cannot build from what we hold. Of
// an origin we hold nothing of, or of a new incarnation, only the whole
// filter will do, and is asked for at once; otherwise the version is given
// catchUpWait to arrive by another path.
func (r *Router) behindLocked(from LinkID, u *protocol.SummaryUpdate, held *summaryVersion, now time.Time) {
	if held == nil || held.inc != u.Inc {
		r.wantLocked(from, u.Origin, 0, now)
		return
	}
	oh := &r.oh
	b := oh.behind[u.Origin]
	if b == nil {
		b = &behind{since: now}
		oh.behind[u.Origin] = b
	}
	b.from = from
	if u.Diff != nil && oh.pendingB+len(u.Diff) <= maxPendingBytes {
		c := *u
		b.pending = append(b.pending, &c)
		oh.pendingB += len(c.Diff)
		slices.SortFunc(b.pending, func(x, y *protocol.SummaryUpdate) int { return cmp.Compare(x.Ver, y.Ver) })
		for len(b.pending) > maxPending {
			r.popPendingLocked(b)
		}
	}
}

// caughtUpLocked applies the diffs that waited for version rs of origin,
// and forgets that we were behind once nothing newer is pending.
func (r *Router) caughtUpLocked(origin protocol.PeerID, rs *summaryVersion, now time.Time) error {
	b := r.oh.behind[origin]
	if b == nil {
		return nil
	}
	for len(b.pending) > 0 && (b.pending[0].Inc != rs.inc || b.pending[0].Ver <= rs.ver) {
		r.popPendingLocked(b)
	}
	if len(b.pending) == 0 {
		r.dropBehindLocked(origin)
		return nil
	}
	if b.pending[0].Base == rs.ver {
		return r.takeLocked(b.from, r.popPendingLocked(b), now)
	}
	return nil
}

// catchUpTickLocked asks for the whole filters of the origins whose missing
// versions did not arrive within catchUpWait.
func (r *Router) catchUpTickLocked(now time.Time) {
	var late []protocol.PeerID
	for p, b := range r.oh.behind {
		if now.Sub(b.since) >= catchUpWait {
			late = append(late, p)
		}
	}
	slices.SortFunc(late, cmpPeer)
	for _, p := range late {
		b := r.oh.behind[p]
		if r.neighbours[b.from] == nil {
			r.dropBehindLocked(p)
			continue
		}
		var have uint64
		if held := r.oh.remotes[p]; held != nil {
			have = held.ver
		}
		r.wantLocked(b.from, p, have, now)
	}
}

// summaryFanout is how many neighbours a supernode passes a version it took
// on to, chosen at random: every neighbour would have each supernode get
// each version once per link it has. Most get it still, and one that did
// not asks for the whole filter when the next diff does not apply, or
// learns of it from an announcement. At 10,000 peers in p2pbench compare
// (with announcements every minute), fanouts of 2, 3, 4 and 6 cost 0.38,
// 0.42, 0.52 and 0.76 GB of upkeep where passing to all cost 1.10 GB, and
// recall stayed 1.000.
const summaryFanout = 3

// summaryWant answers a neighbour's wants: with the diffs from the version it
// holds when we still have them all, else with the whole filter.
func (r *Router) summaryWant(from LinkID, m *protocol.SummaryWant) error {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok, err := r.summaryFrameLocked(from, m, now); !ok {
		return err
	}
	for i, p := range m.Origins {
		s := r.oh.remotes[p]
		if p == r.cfg.ID {
			s = r.oh.self
		}
		if s == nil {
			continue
		}
		if len(m.Have) > 0 && m.Have[i] != 0 {
			if u := s.since(p, m.Have[i]); u != nil {
				r.queueLocked(from, u)
				r.Stats.SummaryRepairs.Add(1)
				continue
			}
		}
		u, err := s.whole(p)
		if err != nil {
			return err
		}
		r.queueLocked(from, u)
	}
	return nil
}

// direct is the one-hop state of a query from a leaf.
type direct struct {
	cands   []protocol.PeerID // supernodes to ask, best first
	next    int               // cands[:next] have been asked
	round   int               // the size of the last round
	asked   map[protocol.PeerID]bool
	waiting map[protocol.PeerID]bool // asked in this round and not done
	ends    time.Time                // when this round times out
	found   map[protocol.ContentID]*foundFile
	held    []protocol.Hit // for the leaf at the end of the round
	look    *lookup        // the keyword ring's lookup, until it ends
}

// foundFile is a file a direct query found: its distinct sources so far
// (up to maxCounted), and the summary hash of its content ID.
type foundFile struct {
	seen map[protocol.PeerID]struct{}
	hash uint64
}

// maxCounted bounds the sources counted per file found: past any enough
// the configuration may set, more tell nothing. A leaf attached to several
// supernodes is found through each, and counts once.
func (r *Router) maxCounted() int { return max(r.cfg.EnoughSources, r.cfg.EnoughSourcesByID) }

// candidatesLocked are the supernodes whose summaries hold every key, in
// the order orderLocked gives.
func (r *Router) candidatesLocked(hashes []uint64) []protocol.PeerID {
	var cs []cand
	for p, s := range r.oh.remotes {
		if !s.filter.HasAllHashes(hashes) {
			r.Stats.QueriesPruned.Add(1) // a supernode the summary spares the query
			continue
		}
		cs = append(cs, cand{p: p, leaves: s.leaves})
	}
	return r.orderLocked(cs)
}

// cand is a supernode a query may ask.
type cand struct {
	p      protocol.PeerID
	rtt    time.Duration
	leaves uint32
	tie    uint64
}

// orderLocked puts candidates the nearest first, then the least loaded.
// Those held off as slow are left out unless there are no others: a search
// they alone may answer waits a round for them rather than finding nothing.
func (r *Router) orderLocked(all []cand) []protocol.PeerID {
	var cs, held []cand
	now := r.cfg.Now()
	open := r.contactPeersLocked()
	for _, c := range all {
		if r.lostLocked(c.p, now) {
			continue
		}
		c.rtt = r.reachLocked(c.p, open)
		if r.heldOffLocked(c.p, now) {
			held = append(held, c)
			continue
		}
		cs = append(cs, c)
	}
	if len(cs) == 0 {
		cs = held
	}
	// Ties are broken at random, drawn in the order of the IDs, not of the
	// map: a run with one seed stays one run.
	slices.SortFunc(cs, func(a, b cand) int { return cmpPeer(a.p, b.p) })
	for i := range cs {
		cs[i].tie = r.rnd.Uint64()
	}
	slices.SortFunc(cs, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.rtt, b.rtt), cmp.Compare(a.leaves, b.leaves), cmp.Compare(a.tie, b.tie))
	})
	out := make([]protocol.PeerID, len(cs))
	for i, c := range cs {
		out[i] = c.p
	}
	return out
}

// reachLocked is how long a message to supernode peer takes to be
// answered, as far as we know: a round trip over a link that is open
// (neighbour, or a contact in contacts), two over one that must open first
// (its handshake), and unknown (the most) where no link to it was ever
// measured.
func (r *Router) reachLocked(peer protocol.PeerID, contacts map[protocol.PeerID]bool) time.Duration {
	var d time.Duration
	if r.cfg.PeerRTT != nil {
		d = r.cfg.PeerRTT(peer)
	}
	_, nbr := r.nbrByPeer[peer]
	switch {
	case d <= 0:
		return time.Duration(math.MaxInt64)
	case nbr || contacts[peer]:
		return d
	}
	return 2 * d
}

// contactPeersLocked are the supernodes a contact link is open to: taken
// once for all the candidates a query orders.
func (r *Router) contactPeersLocked() map[protocol.PeerID]bool {
	out := make(map[protocol.PeerID]bool, len(r.oh.contacts))
	for _, c := range r.oh.contacts {
		out[c.peer] = true
	}
	return out
}

// keyHashes hashes a query's routing keys once for every filter probed.
func keyHashes(keys [][]byte) []uint64 {
	out := make([]uint64, len(keys))
	for i, k := range keys {
		out[i] = index.Hash(k)
	}
	return out
}

// startDirectLocked registers a leaf's query for one-hop routing and sends
// its first round; it reports false when no summary may match. The local
// hits count towards enough.
func (r *Router) startDirectLocked(id protocol.QueryID, p *pending, keys [][]byte, local []protocol.Hit, now time.Time) ([]outMsg, bool) {
	hs := keyHashes(keys)
	cands := r.candidatesLocked(hs)
	if len(cands) == 0 {
		return nil, false
	}
	p.direct = &direct{cands: cands, asked: map[protocol.PeerID]bool{}, waiting: map[protocol.PeerID]bool{},
		found: map[protocol.ContentID]*foundFile{}}
	p.countSources(local, r.maxCounted())
	p.deadline = now.Add(r.cfg.DirectTimeout)
	r.queries[id] = p
	return r.nextRoundLocked(id, p, now), true
}

// nextRoundLocked asks the next candidates: one at first, then twice as
// many each round. With none left, or enough found, the query ends.
func (r *Router) nextRoundLocked(id protocol.QueryID, p *pending, now time.Time) []outMsg {
	d := p.direct
	msgs := r.releaseLocked(p)
	d.round = max(r.cfg.DirectFirstRound, 2*d.round)
	// The last round that ends before the query's deadline asks every
	// candidate left: rounds that waited out their time on dead or distant
	// supernodes must not leave a rare file's holder unasked.
	size := d.round
	if now.Add(2 * r.cfg.RoundTimeout).After(p.deadline) {
		size = len(d.cands)
	}
	var round []protocol.PeerID
	if p.hits < p.limit {
		for ; d.next < len(d.cands) && len(round) < size; d.next++ {
			if c := d.cands[d.next]; r.worthAskingLocked(p, c) {
				round = append(round, c)
			}
		}
	}
	if len(round) == 0 {
		return append(msgs, r.finishLocked([]protocol.QueryID{id})...)
	}
	for _, c := range round {
		d.asked[c] = true
		d.waiting[c] = true
		r.Stats.QueriesForwarded.Add(1)
		msgs = append(msgs, outMsg{peer: c, m: &protocol.Query{ID: id, Text: p.text, CID: p.cid, Direct: true,
			Limit: uint16(min(p.limit-p.hits, math.MaxUint16))}})
	}
	d.ends = now.Add(r.cfg.RoundTimeout)
	return msgs
}

// worthAskingLocked reports whether candidate c may add to what a direct
// query found. Its summary holds the query's keys; when it also holds the
// content ID of a file found, that file is likely why, and c is worth
// asking only while some file it holds has fewer than enough sources
// (EnoughSources, or EnoughSourcesByID for a lookup by content ID). One
// that holds none of the files found may hold another.
func (r *Router) worthAskingLocked(p *pending, c protocol.PeerID) bool {
	enough := r.cfg.EnoughSources
	if !p.cid.IsZero() {
		enough = r.cfg.EnoughSourcesByID
	}
	if r.keyRingOn() {
		// Nothing tells which of the files found c holds: it is worth
		// asking while any has fewer than enough sources.
		if !r.kr.view.Ring.Has(ring.ID(c)) {
			return false // gone since the query started
		}
		for _, f := range p.direct.found {
			if len(f.seen) < enough {
				return true
			}
		}
		return len(p.direct.found) == 0
	}
	s := r.oh.remotes[c]
	if s == nil {
		return false // gone since the query started
	}
	known := false
	for _, f := range p.direct.found {
		if s.filter.HasAllHashes([]uint64{f.hash}) {
			if len(f.seen) < enough {
				return true
			}
			known = true
		}
	}
	return !known
}

// releaseLocked sends the leaf the hits held for the end of the round.
func (r *Router) releaseLocked(p *pending) []outMsg {
	if p.direct == nil {
		return nil
	}
	msgs := r.hitFrames(p.origin, p.originID, p.direct.held)
	p.direct.held = nil
	return msgs
}

// directGoneLocked ends the waits of direct queries on a supernode whose
// link went down.
func (r *Router) directGoneLocked(peer protocol.PeerID) []outMsg {
	now := r.cfg.Now()
	var msgs []outMsg
	ids := make([]protocol.QueryID, 0)
	for qid, p := range r.queries {
		if p.direct != nil && (p.direct.waiting[peer] || p.direct.look != nil && p.direct.look.waitsOn(peer)) {
			ids = append(ids, qid)
		}
	}
	slices.SortFunc(ids, cmpQueryID)
	for _, qid := range ids {
		p := r.queries[qid]
		if p.direct.look != nil {
			msgs = append(msgs, r.lookupTickLocked(qid, p, peer, now)...)
			continue
		}
		delete(p.direct.waiting, peer)
		if len(p.direct.waiting) == 0 {
			msgs = append(msgs, r.nextRoundLocked(qid, p, now)...)
		}
	}
	return msgs
}

// slowness is how a supernode asked direct queries has answered: missed
// counts the queries in a row it left to the round's timeout; past
// SlowAfter it is asked nothing until heldUntil. lostUntil is set when its
// neighbour link went down: it is likely dead, and asked nothing at all
// until then, or until a link to it comes up again.
type slowness struct {
	missed               int
	heldUntil, lostUntil time.Time
}

// lostFor is how long a supernode whose neighbour link went down is left
// out of queries: about until the member list has taken it as dead.
const lostFor = 30 * time.Second

// lostLocked reports whether peer's link went down lately.
func (r *Router) lostLocked(peer protocol.PeerID, now time.Time) bool {
	s := r.slow[peer]
	return s != nil && now.Before(s.lostUntil)
}

// slowOfLocked is peer's slowness, made when it has none.
func (r *Router) slowOfLocked(peer protocol.PeerID) *slowness {
	s := r.slow[peer]
	if s == nil {
		if len(r.slow) >= maxRemotes {
			clear(r.slow)
		}
		s = &slowness{}
		r.slow[peer] = s
	}
	return s
}

// heldOffLocked reports whether peer is asked nothing for now.
func (r *Router) heldOffLocked(peer protocol.PeerID, now time.Time) bool {
	s := r.slow[peer]
	return s != nil && now.Before(s.heldUntil)
}

// directMissedLocked counts a direct query peer left to the round's
// timeout; one that leaves SlowAfter in a row is asked nothing for
// SlowHoldoff, so it cannot hold every search up.
func (r *Router) directMissedLocked(peer protocol.PeerID, now time.Time) {
	s := r.slowOfLocked(peer)
	if s.missed++; s.missed >= r.cfg.SlowAfter {
		s.missed, s.heldUntil = 0, now.Add(r.cfg.SlowHoldoff)
		r.Stats.SlowNeighbours.Add(1)
		r.log.Warn().Str("peer_id", peer.Short()).Int("missed", r.cfg.SlowAfter).Dur("holdoff", r.cfg.SlowHoldoff).
			Msg("supernode leaves direct queries unanswered; asking it none for a while")
	}
}

// directTickLocked moves on the direct queries whose round timed out.
func (r *Router) directTickLocked(now time.Time) []outMsg {
	var ids []protocol.QueryID
	for qid, p := range r.queries {
		if p.direct == nil {
			continue
		}
		ends := p.direct.ends
		if p.direct.look != nil {
			ends = p.direct.look.ends
		}
		if now.After(ends) && !now.After(p.deadline) {
			ids = append(ids, qid)
		}
	}
	slices.SortFunc(ids, cmpQueryID)
	var msgs []outMsg
	for _, qid := range ids {
		p := r.queries[qid]
		if p.direct.look != nil {
			msgs = append(msgs, r.lookupTickLocked(qid, p, protocol.PeerID{}, now)...)
			continue
		}
		if len(p.direct.waiting) > 0 {
			p.status = protocol.StatusTimeout
			r.Stats.QueryTimeouts.Add(1)
			for peer := range p.direct.waiting {
				r.directMissedLocked(peer, now)
			}
			clear(p.direct.waiting) // late answers are still taken: asked holds them
		}
		msgs = append(msgs, r.nextRoundLocked(qid, p, now)...)
	}
	return msgs
}

// countSources counts the distinct sources of hits for a direct query, up
// to limit per file.
func (p *pending) countSources(hits []protocol.Hit, limit int) {
	if p.direct == nil {
		return
	}
	for _, h := range hits {
		f := p.direct.found[h.ID]
		if f == nil {
			f = &foundFile{hash: index.Hash(h.ID[:]), seen: map[protocol.PeerID]struct{}{}}
			p.direct.found[h.ID] = f
		}
		for _, s := range h.Sources {
			if len(f.seen) >= limit {
				break
			}
			f.seen[s.Peer] = struct{}{}
		}
	}
}

// answerDirect answers a direct query from the local index alone, with the
// last hits in the QueryDone.
func (r *Router) answerDirect(from LinkID, q *protocol.Query, limit int) {
	hits := r.localHits(q, limit)
	for len(hits) > hitsPerFrame {
		r.sendHits(from, q.ID, hits[:hitsPerFrame])
		hits = hits[hitsPerFrame:]
	}
	r.Stats.HitsSent.Add(uint64(len(hits)))
	r.out.Send(from, &protocol.QueryDone{ID: q.ID, Supernodes: 1, Hits: hits})
}

// directDoneLocked takes a direct query's QueryDone from peer: its hits,
// then the round moves on when it was the last one waited for.
func (r *Router) directDoneLocked(id protocol.QueryID, p *pending, peer protocol.PeerID, m *protocol.QueryDone, now time.Time) []outMsg {
	d := p.direct
	if !d.asked[peer] {
		return nil
	}
	delete(d.asked, peer)
	if s := r.slow[peer]; s != nil {
		s.missed = 0
	}
	p.searched += m.Supernodes
	if m.Status != protocol.StatusOK {
		p.status = m.Status
	}
	if !d.waiting[peer] {
		return nil // a late answer: its round moved on already
	}
	delete(d.waiting, peer)
	if len(d.waiting) > 0 {
		return nil // the round's other answers are on their way: take them too
	}
	return r.nextRoundLocked(id, p, now)
}
