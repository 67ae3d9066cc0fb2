package supernode

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/transport"
)

// LeafMembersEvery is how many gossip rounds pass between member lists to
// leaves while the supernodes they list stay the same (a change goes out
// at once): half an hour at the default round, about as stale as the loads
// in the entries get. dirSweepEvery is how many pass between sweeps of the
// directory with the ring unchanged.
const LeafMembersEvery, dirSweepEvery = 1800, 10

// maxNews bounds the entries and reports waiting for the next round; past it
// the oldest go, and the refresh repairs what they carried.
const maxNews = 4 * protocol.MaxMembers

// membershipConfig configures the membership core.
type membershipConfig struct {
	// Identity signs our own entry; Chain is our certificate chain now
	// (nil until we have one: until then others would refuse our entry).
	Identity *protocol.Identity
	Chain    func() protocol.Chain
	// Advertise are the addresses in our entry; Leaves counts our leaves
	// now, Cap is how many we take.
	Advertise   []string
	Leaves      func() int
	Cap         uint32
	Incarnation uint64
	// GossipInterval is the time between rounds: a supernode may send us
	// a list about twice a round. MemberTimeout is how long a neighbour may
	// stay silent (or unlinked) before we report it gone, and how long a
	// listed supernode that did not answer a dial is left alone, halved.
	// RefreshInterval is how often we issue our entry unchanged.
	GossipInterval, MemberTimeout, RefreshInterval time.Duration
	// Gone is told of each supernode taken as dead; Silent of each
	// neighbour reported gone while still linked, to close its link.
	Gone   func(protocol.PeerID)
	Silent func(protocol.PeerID)
	// Links is how many ring links ToDial picks before any at random
	// (default 8).
	Links int
	Now   func() time.Time
	Rand  io.Reader
	Log   zerolog.Logger
}

// membership keeps the member list by passing on changes: our entry when it
// changes and every refresh interval, the entries and gone reports that are
// news to us, each once to every neighbour, in the next round; a refresh
// that changed nothing but the beat goes down the ring's tree instead
// (spread), once to each supernode. A neighbour
// that is silent for the member timeout (every round sends it something),
// or whose link went and did not come back by then, is reported gone. A
// supernode reported gone while alive hears of it and issues a later entry.
// Now and then the list goes to the leaves. The membership also picks which
// listed supernode to link to next; dialling is the server's.
type membership struct {
	cfg     membershipConfig
	members *Members
	links   linkView
	out     peerOutbox
	rnd     randSource
	log     zerolog.Logger

	mu         sync.Mutex
	beat       uint64 // the last beat of our own entry
	rounds     uint64 // gossip rounds so far
	limits     map[limitKey]*rate.Limiter
	reporters  map[protocol.PeerID]*rate.Limiter // gone reports taken, by reporter
	wants      map[protocol.PeerID]*rate.Limiter // entries sent for member_want, by neighbour
	dialFailed map[protocol.PeerID]time.Time     // listed supernodes not redialled until then
	heard      map[protocol.PeerID]time.Time     // neighbours, linked or lately lost: when last heard
	told       map[protocol.PeerID]time.Time     // neighbours sent the report of their death, when
	news       []news                            // for the next round
	// flooded is the entry (incarnation and beat) of each supernode last
	// passed on over every link, so that each is flooded once.
	flooded  map[protocol.PeerID][2]uint64
	died     []protocol.PeerID      // by reports, for the next round
	issued   *protocol.MemberRecord // our last entry
	issuedAt time.Time
	refute   bool // a report of us gone came: issue our entry again
	// leafPrint is what the leaves were last sent (leafView), leafAt the
	// round it went.
	leafPrint uint64
	leafAt    uint64
}

// news is an entry or a gone report to pass on, and the neighbour it came
// from, which does not get it back. A refresh going down the ring's spanning
// tree (tree) is passed on over the arc of the ring up to upto.
type news struct {
	rec  *protocol.MemberRecord
	gone *protocol.MemberGone
	from protocol.PeerID
	tree bool
	upto uint64
}

// limitKey names a neighbour's rate for one kind of member message.
type limitKey struct {
	p    protocol.PeerID
	kind uint8
}

// Kinds of member message a neighbour is held to a rate for, each apart.
const (
	kindMembers = iota
	kindTree
	kindDigest
)

// leafView is a fingerprint of what leaves use of the list: which
// supernodes live, where, and since which start. Beats and loads change
// and do not count.
func leafView(live []protocol.MemberRecord) uint64 {
	keys := make([]string, 0, len(live))
	for i := range live {
		m := &live[i]
		p := m.Peer()
		k := string(p[:]) + strconv.FormatUint(m.Incarnation, 10)
		for _, a := range m.Addrs {
			k += "|" + a
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := fnv.New64a()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

func newMembership(cfg membershipConfig, members *Members, links linkView, out peerOutbox) *membership {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &membership{cfg: cfg, members: members, links: links, out: out, rnd: randSource{r: cfg.Rand}, log: cfg.Log,
		limits: make(map[limitKey]*rate.Limiter), reporters: make(map[protocol.PeerID]*rate.Limiter),
		wants:      make(map[protocol.PeerID]*rate.Limiter),
		dialFailed: make(map[protocol.PeerID]time.Time), heard: make(map[protocol.PeerID]time.Time),
		told: make(map[protocol.PeerID]time.Time), flooded: make(map[protocol.PeerID][2]uint64)}
}

// gossipRound is what one round found.
type gossipRound struct {
	live   []*protocol.MemberRecord
	died   []protocol.PeerID
	rounds uint64 // this round's number, from 1
}

// Round issues our entry when due, reports silent neighbours gone, expires
// what was not issued again in time and passes on the news.
func (g *membership) Round(now time.Time) gossipRound {
	g.mu.Lock()
	g.rounds++
	rounds := g.rounds
	g.mu.Unlock()
	g.issue(now)
	silent := g.detect(now)
	died := g.members.Expire(now)
	slices.SortFunc(died, cmpPeer)
	for _, id := range died {
		g.log.Info().Str("peer_id", id.Short()).Msg("supernode taken as dead")
		if g.cfg.Gone != nil {
			g.cfg.Gone(id)
		}
	}
	if g.cfg.Silent != nil {
		for _, p := range silent {
			g.cfg.Silent(p)
		}
	}
	live := g.members.Live()
	g.spread(live)
	// Leaves get their list when what they use of it changed: they need it
	// to find a supernode when theirs are gone (they keep it on disk for
	// that) and, in a small overlay, to see the supernodes holding their
	// username record restart. Otherwise it goes seldom, for the loads: a
	// supernode with thousands of leaves would else send thousands of lists
	// whenever a supernode anywhere came or went.
	leafMsg := g.message(live)
	view := leafView(leafMsg.Members)
	g.mu.Lock()
	toLeaves := view != g.leafPrint || rounds-g.leafAt >= LeafMembersEvery
	if toLeaves {
		g.leafPrint, g.leafAt = view, rounds
	}
	g.mu.Unlock()
	if toLeaves {
		// Leaves of v11 and later take a sample without the chains.
		bare := BareSample(leafMsg)
		newer := make(map[protocol.PeerID]bool)
		for _, p := range g.links.Leaves(bareSince) {
			newer[p] = true
		}
		for _, p := range g.links.Leaves(protocol.TypeMembers) {
			if newer[p] {
				g.out.Send(p, bare)
			} else {
				g.out.Send(p, leafMsg)
			}
		}
	}
	return gossipRound{live: live, died: died, rounds: rounds}
}

// issue signs our entry again when it is due: the first once we have a
// chain, a new chain, a report of us gone, or the refresh interval passed.
func (g *membership) issue(now time.Time) {
	ch := g.cfg.Chain()
	if len(ch) == 0 {
		return
	}
	g.mu.Lock()
	changed := g.issued == nil || g.refute || !g.issued.Chain.Equal(ch)
	if !changed && now.Sub(g.issuedAt) < g.cfg.RefreshInterval {
		g.mu.Unlock()
		return
	}
	// The clock in milliseconds keeps beats rising across restarts.
	g.beat = max(g.beat+1, uint64(now.UnixMilli()))
	self := &protocol.MemberRecord{Addrs: g.cfg.Advertise, Beat: g.beat,
		Leaves: uint32(g.cfg.Leaves()), Cap: g.cfg.Cap, Incarnation: g.cfg.Incarnation, Chain: ch}
	self.Sign(g.cfg.Identity)
	g.issued, g.issuedAt, g.refute = self, now, false
	g.mu.Unlock()
	if fresh, _ := g.members.MergeNews([]*protocol.MemberRecord{self}, now); len(fresh) > 0 {
		// A mere refresh goes down the tree, over the whole ring; a change
		// floods, to be heard at once whatever links are missing.
		self := g.cfg.Identity.ID
		g.queue(news{rec: fresh[0], from: self, tree: !changed, upto: protocol.IDPrefix(self)})
	}
}

// detect reports gone the neighbours not heard from for the member timeout,
// linked or not, and returns those still linked.
func (g *membership) detect(now time.Time) (silent []protocol.PeerID) {
	linked := g.links.Neighbours(protocol.TypeMembers)
	var lost []protocol.PeerID
	g.mu.Lock()
	for _, p := range linked {
		if _, ok := g.heard[p]; !ok {
			g.heard[p] = now
		}
	}
	for p, at := range g.heard {
		if now.Sub(at) < g.cfg.MemberTimeout {
			continue
		}
		delete(g.heard, p)
		lost = append(lost, p)
		if slices.Contains(linked, p) {
			silent = append(silent, p)
		}
	}
	g.mu.Unlock()
	slices.SortFunc(lost, cmpPeer)
	for _, p := range lost {
		inc, beat, ok := g.members.Held(p)
		if !ok {
			continue
		}
		r := &protocol.MemberGone{Peer: p, Incarnation: inc, Beat: beat}
		r.Sign(g.cfg.Identity)
		if ok, err := g.members.Gone(r, now, nil); ok && err == nil {
			g.log.Info().Str("peer_id", p.Short()).Dur("silent", g.cfg.MemberTimeout).Msg("reporting a neighbour gone")
			g.queue(news{gone: r, from: g.cfg.Identity.ID})
		}
	}
	return silent
}

// queue keeps n for the next round, dropping the oldest past maxNews.
func (g *membership) queue(n news) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.news) >= maxNews {
		g.news = slices.Delete(g.news, 0, len(g.news)-maxNews+1)
	}
	g.news = append(g.news, n)
	if n.rec != nil && !n.tree {
		g.floodingLocked(n.rec)
	}
}

// floodingLocked notes that r goes over every link.
func (g *membership) floodingLocked(r *protocol.MemberRecord) {
	if len(g.flooded) >= 2*maxMembersHeld {
		clear(g.flooded) // the dead that piled up; at worst an entry floods twice
	}
	g.flooded[r.Peer()] = [2]uint64{r.Incarnation, r.Beat}
}

// spread sends each neighbour the news it did not bring, or an empty list
// so that it hears from us every round. Refreshes go down the tree, except
// where it cannot reach: those flood from here, as news.
func (g *membership) spread(live []*protocol.MemberRecord) {
	g.mu.Lock()
	batch := g.news
	g.news = nil
	g.mu.Unlock()
	nbrs := g.links.Neighbours(protocol.TypeMembers)
	var arcs *arcView
	trees := map[protocol.PeerID][]protocol.TreeEntry{}
	flood := batch[:0:0]
	for _, n := range batch {
		if n.tree {
			if arcs == nil {
				arcs = g.arcView(nbrs, live)
			}
			if arcs.split(n.upto, func(to protocol.PeerID, upto uint64) {
				trees[to] = append(trees[to], protocol.TreeEntry{Rec: *n.rec, Upto: upto})
			}) {
				continue
			}
			g.mu.Lock()
			g.floodingLocked(n.rec)
			g.mu.Unlock()
		}
		flood = append(flood, n)
	}
	for _, p := range nbrs {
		var msgs []protocol.Message
		cur := &protocol.Members{}
		for _, n := range flood {
			if n.from == p {
				continue
			}
			if len(cur.Members) == protocol.MaxMembers || len(cur.Gone) == protocol.MaxMembers {
				msgs = append(msgs, cur)
				cur = &protocol.Members{}
			}
			if n.rec != nil {
				cur.Members = append(cur.Members, *n.rec)
			} else {
				cur.Gone = append(cur.Gone, *n.gone)
			}
		}
		msgs = append(msgs, cur)
		for es := trees[p]; len(es) > 0; {
			k := min(len(es), protocol.MaxMembers)
			msgs = append(msgs, &protocol.MemberTree{Entries: es[:k]})
			es = es[k:]
		}
		for _, m := range msgs {
			g.out.Send(p, m)
		}
	}
}

// arcView is what splitting arcs of the ring takes: our position, our
// neighbours and their distances round from us, ascending, and the
// distance to our successor among the live.
type arcView struct {
	self  uint64
	nbrs  []protocol.PeerID
	dists []uint64
	succ  uint64 // 0: no other supernode is live
	// old is set when a neighbour does not speak member_tree.
	old bool
}

func (g *membership) arcView(nbrs []protocol.PeerID, live []*protocol.MemberRecord) *arcView {
	v := &arcView{self: protocol.IDPrefix(g.cfg.Identity.ID)}
	tree := g.links.Neighbours(protocol.TypeMemberTree)
	v.old = len(tree) != len(nbrs)
	dist := func(p protocol.PeerID) uint64 { return protocol.IDPrefix(p) - v.self }
	for _, p := range tree {
		if dist(p) != 0 {
			v.nbrs = append(v.nbrs, p)
		}
	}
	slices.SortFunc(v.nbrs, func(a, b protocol.PeerID) int { return cmp.Compare(dist(a), dist(b)) })
	for _, p := range v.nbrs {
		v.dists = append(v.dists, dist(p))
	}
	for _, m := range live {
		if d := dist(m.Peer()); d != 0 && (v.succ == 0 || d < v.succ) {
			v.succ = d
		}
	}
	return v
}

// split is SplitArc from us, except that with a neighbour that speaks no
// member_tree the tree from here may miss a supernode on the arc.
func (v *arcView) split(upto uint64, send func(to protocol.PeerID, upto uint64)) bool {
	if v.old && onArc(v.self, upto, v.succ) {
		return false
	}
	return SplitArc(v.self, upto, v.succ, v.dists, func(i int, end uint64) { send(v.nbrs[i], end) })
}

// onArc reports whether the supernode dist round from self lies on the arc
// from self to upto, both left out (upto at self is the whole ring).
func onArc(self, upto, dist uint64) bool {
	arc := upto - self
	return dist != 0 && (arc == 0 || dist < arc)
}

// SplitArc hands the arc of the ring from position self to upto (ID
// prefixes, both left out; upto at self is the whole ring) to the
// neighbours on it, each its part up to the next, as a member refresh goes
// down the ring's tree: send gets each one's index in dists, their
// distances round from self, ascending, and the end of its part. succ is
// the distance to the next live supernode (0: none). It reports false,
// sending nothing, when the successor lies on the arc but is not the first
// neighbour: the tree from here would miss it.
func SplitArc(self, upto, succ uint64, dists []uint64, send func(i int, upto uint64)) bool {
	if !onArc(self, upto, succ) {
		return true // no one else lives on the arc
	}
	if len(dists) == 0 || dists[0] != succ {
		return false
	}
	last := -1
	for i, d := range dists {
		if !onArc(self, upto, d) {
			break
		}
		if last >= 0 {
			send(last, self+d)
		}
		last = i
	}
	send(last, upto)
	return true
}

// NeighbourUp sends a newly linked supernode every live entry at once rather
// than as they change: until two supernodes swap lists, each takes itself
// for the whole ring of the directory. One of v11 gets a digest, and asks
// for the entries it lacks: two supernodes of one overlay hold nearly the
// same list, and a digest entry is a tenth of an entry.
func (g *membership) NeighbourUp(p protocol.PeerID) {
	g.mu.Lock()
	g.heard[p] = g.cfg.Now()
	delete(g.told, p)
	g.mu.Unlock()
	live := g.members.Live()
	if slices.Contains(g.links.Neighbours(protocol.TypeMemberDigest), p) {
		for len(live) > 0 {
			n := min(len(live), protocol.MaxDigest)
			d := &protocol.MemberDigest{Entries: make([]protocol.DigestEntry, n)}
			for i, m := range live[:n] {
				d.Entries[i] = protocol.DigestEntry{Peer: protocol.IDPrefix(m.Peer()), Incarnation: m.Incarnation, Beat: m.Beat}
			}
			g.out.Send(p, d)
			live = live[n:]
		}
		return
	}
	for len(live) > 0 {
		n := min(len(live), protocol.MaxMembers)
		g.out.Send(p, listMessage(live[:n]))
		live = live[n:]
	}
}

// byPrefix are the live entries by ID prefix.
func (g *membership) byPrefix() map[uint64]*protocol.MemberRecord {
	live := g.members.Live()
	out := make(map[uint64]*protocol.MemberRecord, len(live))
	for _, m := range live {
		out[protocol.IDPrefix(m.Peer())] = m
	}
	return out
}

// HandleDigest asks neighbour from for the entries of its digest that we
// lack or hold older.
func (g *membership) HandleDigest(from protocol.PeerID, m *protocol.MemberDigest) {
	g.mu.Lock()
	ok := g.allowLocked(limitKey{p: from, kind: kindDigest}, g.cfg.Now())
	g.mu.Unlock()
	if !ok {
		return
	}
	held := g.byPrefix()
	want := &protocol.MemberWant{}
	for _, e := range m.Entries {
		h := held[e.Peer]
		if h == nil || h.Incarnation < e.Incarnation || h.Incarnation == e.Incarnation && h.Beat < e.Beat {
			want.Peers = append(want.Peers, e.Peer)
		}
	}
	if len(want.Peers) > 0 {
		g.out.Send(from, want)
	}
}

// HandleWant sends neighbour from the entries it asked for. Entries are
// what a want costs us, so a neighbour gets about a whole list every
// wantEvery and no more.
func (g *membership) HandleWant(from protocol.PeerID, m *protocol.MemberWant) {
	now := g.cfg.Now()
	g.mu.Lock()
	lim := g.wants[from]
	if lim == nil {
		lim = rate.NewLimiter(rate.Every(wantEvery/maxMembersHeld), maxMembersHeld)
		g.wants[from] = lim
	}
	ok := lim.AllowN(now, len(m.Peers))
	g.mu.Unlock()
	if !ok {
		g.log.Debug().Str("peer_id", from.Short()).Int("wanted", len(m.Peers)).Msg("member entries asked for over the rate")
		return
	}
	held := g.byPrefix()
	var recs []*protocol.MemberRecord
	for _, p := range m.Peers {
		if r := held[p]; r != nil {
			recs = append(recs, r)
		}
	}
	for len(recs) > 0 {
		n := min(len(recs), protocol.MaxMembers)
		g.out.Send(from, listMessage(recs[:n]))
		recs = recs[n:]
	}
}

// wantEvery is how often a neighbour may ask for a whole list.
const wantEvery = 10 * time.Minute

// Greet sends a newly attached leaf the list at once; bare (the leaf
// speaks v11) leaves the chains out of a sample.
func (g *membership) Greet(p protocol.PeerID, bare bool) {
	m := g.message(g.members.Live())
	if bare {
		m = BareSample(m)
	}
	g.out.Send(p, m)
}

// bareSince is a message type of the first version whose leaves take a
// sample without chains (BareSample); leaves never get it.
const bareSince = protocol.TypeMemberTree

// BareSample is a leaf's sample of the overlay without the entries'
// chains, which are most of an entry: a leaf checks a supernode's chain in
// its welcome when it attaches, and a sample does not make the ring of the
// username directory, which a full list (Of 0) does and keeps its chains
// for. The signatures do not cover the chains.
func BareSample(m *protocol.Members) *protocol.Members {
	if m.Of == 0 {
		return m
	}
	out := &protocol.Members{Members: slices.Clone(m.Members), Of: m.Of}
	for i := range out.Members {
		out.Members[i].Chain = nil
	}
	return out
}

func (g *membership) message(live []*protocol.MemberRecord) *protocol.Members {
	return leafList(live, g.cfg.Identity.ID)
}

// LeafList is how many entries a leaf's member list carries at most. A leaf
// needs a few supernodes to fail over to, not the whole overlay: it has
// three supernodes' lists, and each entry is a few hundred bytes, which a
// supernode with thousands of leaves would otherwise send to each of them.
const LeafList = 16

// leafList is the list for our leaves: every live entry, or with more than
// LeafList our own and those that rank first by a hash of their ID and ours.
// The rank keeps the sample the same from round to round, so it changes, and
// goes out again, only when a supernode in it does; each supernode samples
// others, so orphaned leaves spread over the overlay.
func leafList(live []*protocol.MemberRecord, self protocol.PeerID) *protocol.Members {
	if len(live) <= LeafList {
		return listMessage(live)
	}
	rank := func(m *protocol.MemberRecord) uint64 {
		p := m.Peer()
		if p == self {
			return 0
		}
		h := fnv.New64a()
		h.Write(self[:])
		h.Write(p[:])
		return h.Sum64() | 1
	}
	type ranked struct {
		m *protocol.MemberRecord
		r uint64
	}
	rs := make([]ranked, len(live))
	for i, m := range live {
		rs[i] = ranked{m, rank(m)}
	}
	slices.SortFunc(rs, func(a, b ranked) int { return cmp.Compare(a.r, b.r) })
	out := make([]*protocol.MemberRecord, LeafList)
	for i := range out {
		out[i] = rs[i].m
	}
	msg := listMessage(out)
	msg.Of = uint32(len(live))
	return msg
}

// listMessage is a members message carrying live, at most MaxMembers.
func listMessage(live []*protocol.MemberRecord) *protocol.Members {
	msg := &protocol.Members{Members: make([]protocol.MemberRecord, 0, len(live))}
	for _, m := range live {
		msg.Members = append(msg.Members, *m)
	}
	return msg
}

// Handle merges a member list from supernode from. Only supernodes send one,
// and only entries and reports they checked, so a bad one means a bad
// sender: the error closes its link. A supernode is kept to a list every
// half round or so, beyond the lists of a greeting, since each entry in one
// costs a signature check.
func (g *membership) Handle(from protocol.PeerID, m *protocol.Members) error {
	now, ok := g.heardFrom(from, kindMembers)
	if !ok {
		return nil
	}
	recs := make([]*protocol.MemberRecord, len(m.Members))
	for i := range m.Members {
		recs[i] = &m.Members[i]
	}
	fresh, bad := g.members.MergeNews(recs, now)
	if bad > 0 {
		return fmt.Errorf("%w: %d member entries with bad signatures or no valid certificate", protocol.ErrForbidden, bad)
	}
	for _, r := range fresh {
		g.queue(news{rec: r, from: from})
	}
	// An entry we hold that came down the tree is flooded by a supernode
	// that could not reach part of its arc: it goes on over every link
	// once, so that it reaches what the tree missed. The copy held goes,
	// checked, not the one that came.
	for _, r := range recs {
		id := r.Peer()
		g.mu.Lock()
		done := g.flooded[id] == [2]uint64{r.Incarnation, r.Beat}
		g.mu.Unlock()
		if held := g.members.Entry(id, r.Incarnation, r.Beat); !done && held != nil {
			g.queue(news{rec: held, from: from})
		}
	}
	for i := range m.Gone {
		if err := g.takeGone(from, &m.Gone[i]); err != nil {
			return fmt.Errorf("%w: %w", protocol.ErrForbidden, err)
		}
	}
	// A neighbour we hold as suspected or dead is alive after all: it is
	// told why, and answers with a later entry.
	if r := g.members.GoneReport(from); r != nil {
		g.mu.Lock()
		tell := now.Sub(g.told[from]) >= g.cfg.MemberTimeout
		if tell {
			g.told[from] = now
		}
		g.mu.Unlock()
		if tell {
			g.out.Send(from, &protocol.Members{Gone: []protocol.MemberGone{*r}})
		}
	}
	return nil
}

// heardFrom notes that neighbour from was heard from now, and takes one
// message of a kind from it against its rate: false drops the message.
func (g *membership) heardFrom(from protocol.PeerID, kind uint8) (now time.Time, ok bool) {
	now = g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.heard[from]; ok {
		g.heard[from] = now
	}
	return now, g.allowLocked(limitKey{p: from, kind: kind}, now)
}

// allowLocked takes one message of a kind from a neighbour against its rate.
func (g *membership) allowLocked(k limitKey, now time.Time) bool {
	lim := g.limits[k]
	if lim == nil {
		lim = rate.NewLimiter(rate.Every(g.cfg.GossipInterval/2), 4+maxMembersHeld/protocol.MaxMembers)
		if k.kind == kindDigest {
			// A neighbour sends its digest when the link opens: each
			// costs us a pass over the whole list.
			lim = rate.NewLimiter(rate.Every(time.Minute), 1+maxMembersHeld/protocol.MaxDigest)
		}
		g.limits[k] = lim
	}
	return lim.AllowN(now, 1)
}

// HandleTree merges refreshes from supernode from and passes those that are
// news on down the tree. Like a members message, a bad entry means a bad
// sender.
func (g *membership) HandleTree(from protocol.PeerID, m *protocol.MemberTree) error {
	now, ok := g.heardFrom(from, kindTree)
	if !ok {
		return nil
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		fresh, bad := g.members.MergeNews([]*protocol.MemberRecord{&e.Rec}, now)
		if bad > 0 {
			return fmt.Errorf("%w: a tree entry with a bad signature or no valid certificate", protocol.ErrForbidden)
		}
		if len(fresh) > 0 {
			g.queue(news{rec: fresh[0], from: from, tree: true, upto: e.Upto})
		}
	}
	return nil
}

// maxMembersHeld bounds the supernodes a view holds: a million peers at
// about a hundred a supernode, with room.
const maxMembersHeld = 16384

// A reporter may report reportBurst supernodes gone at once, about as many
// as it has links, then one every reportEvery: more would be a liar's.
const (
	reportEvery = 15 * time.Second
	reportBurst = 32
)

// takeGone takes a gone report r that came from neighbour from.
func (g *membership) takeGone(from protocol.PeerID, r *protocol.MemberGone) error {
	self := g.cfg.Identity.ID
	if r.Peer == self {
		if r.Incarnation == g.cfg.Incarnation {
			g.mu.Lock()
			if g.issued != nil && r.Beat >= g.issued.Beat {
				g.refute = true
			}
			g.mu.Unlock()
		}
		return nil
	}
	now := g.cfg.Now()
	ok, err := g.members.Gone(r, now, func(by protocol.PeerID) bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		lim := g.reporters[by]
		if lim == nil {
			if len(g.reporters) >= maxMembersHeld {
				clear(g.reporters)
			}
			lim = rate.NewLimiter(rate.Every(reportEvery), reportBurst)
			g.reporters[by] = lim
		}
		return lim.AllowN(now, 1)
	})
	if err != nil || !ok {
		return err
	}
	g.queue(news{gone: r, from: from})
	return nil
}

// NeighbourDown forgets a supernode's rate. It stays among those heard
// from: not linked again within the member timeout, it is reported gone.
func (g *membership) NeighbourDown(p protocol.PeerID) {
	g.mu.Lock()
	for k := range uint8(kindDigest + 1) {
		delete(g.limits, limitKey{p: p, kind: k})
	}
	delete(g.wants, p)
	delete(g.told, p)
	g.mu.Unlock()
}

// ToDial picks the live supernode to link to next, or nil: our successor on
// the ring of supernode IDs first, then (with more) the other links of
// ring.Links, fingers spread over the distances, so that the links are the
// shortcuts a lookup on the ring takes, and with all of those linked any
// listed supernode at random. It skips those linked, those without a
// dialable address and those that did not answer lately.
func (g *membership) ToDial(live []*protocol.MemberRecord, more bool, now time.Time) *protocol.MemberRecord {
	self := g.cfg.Identity.ID
	byID := make(map[ring.ID]*protocol.MemberRecord, len(live))
	ids := make([]ring.ID, 0, len(live))
	for _, m := range live {
		byID[ring.ID(m.Peer())] = m
		ids = append(ids, ring.ID(m.Peer()))
	}
	order := ring.New(ids).Links(ring.ID(self), cmp.Or(g.cfg.Links, 8))
	if !more {
		order = order[:min(len(order), 1)]
	} else {
		shuffle(&g.rnd, ids)
		order = append(order, ids...)
	}
	linked := g.links.Neighbours(0)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range order {
		c := byID[id]
		p := protocol.PeerID(id)
		if p == self || slices.Contains(linked, p) || !transport.Dialable(c.Addrs[0]) || now.Before(g.dialFailed[p]) {
			continue
		}
		return c
	}
	return nil
}

// DialFailed holds off redials to a listed supernode that did not answer.
func (g *membership) DialFailed(p protocol.PeerID, now time.Time) {
	g.mu.Lock()
	g.dialFailed[p] = now.Add(2 * g.cfg.MemberTimeout)
	g.mu.Unlock()
}

// gossipLoop runs a gossip round every GossipInterval.
func (s *Server) gossipLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.GossipInterval)
	defer t.Stop()
	for {
		s.gossip(time.Now())
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}

// gossip is one round: our admission, the member list, the directory's
// sweep, the election, and links to more supernodes while we have fewer
// neighbours than Config.Neighbours.
func (s *Server) gossip(now time.Time) {
	s.checkAdmission(now)
	r := s.memb.Round(now)
	s.dropSilentLeaves(now)
	neighbours := len(peers{s: s}.Neighbours(0))
	// Every few rounds, even with the ring unchanged: copies and handovers
	// that found no link at the change go out then.
	s.dir.Sweep(now, r.rounds%dirSweepEvery == 0)
	s.elect.Round(now)
	if every := max(1, uint64(statusLogEvery/s.cfg.GossipInterval)); r.rounds%every == 0 {
		s.logStatus(len(r.live), neighbours)
	}
	if s.cfg.Neighbours >= 0 && len(s.Chain()) > 0 {
		// The ring successor is linked even beyond the count: a lookup on
		// the ring ends through it.
		s.linkMore(s.memb.ToDial(r.live, neighbours < s.cfg.Neighbours, now))
	}
}

// statusLogEvery is how often the supernode logs its state.
const statusLogEvery = time.Minute

func (s *Server) logStatus(live, neighbours int) {
	el := s.Election()
	ev := s.log.Info().Int("leaves", el.Leaves).Int("leaf_limit", el.LeafLimit).Int("candidates", el.Candidates).
		Int("promoted_leaves", len(el.Promotions)).Int("supernodes_live", live).Int("neighbours", neighbours).
		Int("user_records", s.store.users.Len())
	if el.Promoted {
		ev = ev.Str("promoted_by", el.Parent)
	}
	ev.Msg("supernode status")
}

// advertised are the addresses for our member entry.
func (s *Server) advertised() []string {
	if len(s.cfg.Advertise) > 0 {
		return s.cfg.Advertise[:min(len(s.cfg.Advertise), protocol.MaxAddrs)]
	}
	return []string{s.Addr().String()}
}

// linkMore dials m, the member the membership picked, unless a dial is under
// way. The link then runs like a configured one, without redials.
func (s *Server) linkMore(m *protocol.MemberRecord) {
	if m == nil || !s.dialling.CompareAndSwap(false, true) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.dialling.Store(false)
		// A listed supernode may have died since its last beat: do not let it
		// hold up the next try for long, but give a loaded one time for
		// its handshake.
		ctx, cancel := context.WithTimeout(s.ctx, max(s.cfg.MemberTimeout, 2*time.Second))
		defer cancel()
		l, w, err := s.node.Dial(ctx, m.Addrs[0], m.Peer(), s.supernodeHello())
		if err == nil {
			if err = s.checkWelcome(l, w); err != nil {
				l.Close(fmt.Errorf("%w: %w", protocol.ErrForbidden, err))
			}
		}
		if err != nil {
			s.log.Debug().Err(err).Str("peer_id", m.Peer().Short()).Msg("cannot link to a listed supernode")
			s.memb.DialFailed(m.Peer(), time.Now())
			return
		}
		if _, ok := s.neighbourUp(l, true, w.Chain.Expires()); ok {
			l.Log().Info().Msg("linked to a supernode from the member list")
		}
	}()
}

// GossipRounds is how many gossip rounds the supernode has run.
func (s *Server) GossipRounds() uint64 {
	s.memb.mu.Lock()
	defer s.memb.mu.Unlock()
	return s.memb.rounds
}

// Members returns the live supernodes this one knows of, its own entry included.
func (s *Server) Members() []*protocol.MemberRecord { return s.members.Live() }

// Linked are the supernodes this one has a link to.
func (s *Server) Linked() []protocol.PeerID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]protocol.PeerID, 0, len(s.byPeer))
	for p := range s.byPeer {
		out = append(out, p)
	}
	return out
}
