package compare

import (
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/attach"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/supernode"
	"github.com/supernet-p2p/supernet/transport"
)

// overlay is the hierarchical supernode overlay: supernodes on hosted
// machines run the project's supernode.Router, peers attach to three each
// and publish to them, and queries go from a peer to its nearest supernode
// and from there in one hop to the supernodes whose summaries may match (or, with
// MultiHop, on to the neighbours whose attenuated summaries may match,
// within the hop limit).
type overlay struct {
	// PerSupernode is how many peers there are per supernode; Neighbours
	// how many supernode links each keeps; SummaryBits the size of every
	// multi-hop summary level.
	PerSupernode, Neighbours, SummaryBits int
	SummaryFP                             float64
	MultiHop, OneHop                      bool
	// Probe is how often a leaf pings each of its supernodes; Gossip the
	// supernodes' gossip interval, MemberTimeout their member timeout and
	// Refresh how often each issues its entry unchanged.
	Probe, Gossip, MemberTimeout, Refresh time.Duration
	// LeafPings is what each supernode asks its leaves' pings to stay
	// under, a second (0: the router's default).
	LeafPings float64
	// Chunk is how many peers attach before the overlay settles while
	// building (0: buildChunk).
	Chunk int

	e     *env
	sns   []*snode
	peers []NodeID
	// of are each peer's supernodes, primary first (up to peer's Attach),
	// and pingAcc the pings owed to each, kept as fractions.
	of      [][]int32
	pingAcc [][]float32
	// cur is the tag of the message a router is handling, for what it sends
	// meanwhile; tags maps the query IDs routers chose to their query.
	cur      int
	tags     map[protocol.QueryID]int
	building bool
	free     []freeMsg // messages of the steady state, delivered at no cost
	// toKeep are the keyword ring's batches of a build in chunks, by
	// keeper, and keepOrder the keepers in the order they got them.
	toKeep    map[int][]protocol.TermBatch
	keepOrder []int
	filters   filterCache
	members   memberLists
	liveSNs   int
	view      *supernode.RingView // the live supernodes, for the keyword ring
	// listed are the ID prefixes of the supernodes in view, sorted: where
	// member refreshes go down the ring's tree.
	listed  []uint64
	settled time.Duration // the routers' clock is this far ahead of the run's: the time building took
}

type snode struct {
	node   NodeID
	r      *supernode.Router
	nbrs   []int // supernode indexes
	alive  bool
	leaves int
	// contacts are the supernodes linked for direct queries, least
	// recently used first, and when each was last used; at most
	// supernode.MaxContacts, as in a real supernode. met are those it has
	// had a link with, whose round trip it remembers.
	contacts []int
	usedAt   []time.Duration
	met      map[int]bool
	// pingEvery is what the router asked its leaves for at pingAt.
	pingEvery, pingAt time.Duration
	// leafSet are its leaves, and rounds its member gossip rounds so far.
	leafSet map[int]struct{}
	rounds  int
	// newsRecs and newsGone are the member entries and gone reports it
	// passes on in its next round, treeOut the refreshes down the tree, by
	// neighbour.
	newsRecs, newsGone int
	treeOut            map[int]int
	// gone is set once the others have taken it as dead.
	gone bool
}

type freeMsg struct {
	from, to int
	m        protocol.Message
}

const (
	leafLinks = 1 << 32 // LinkIDs below are leaves (peer + 1); above, supernodes
	// snTickMulti batches multi-hop summaries: the supernodes tick every
	// 250 ms, a cost those runs do not pay. One-hop runs tick as the
	// supernode does, since the ticks also time query rounds out.
	snTickMulti = 5 * time.Second
)

// snTick is how often a supernode ticks.
func (o *overlay) snTick() time.Duration {
	if o.MultiHop {
		return snTickMulti
	}
	return supernode.DefaultConfig().TickInterval
}

func (*overlay) Name() string { return "supernode" }

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (o *overlay) build(e *env) {
	o.e, o.tags, o.building = e, map[protocol.QueryID]int{}, true
	n := len(e.wd.holds)
	ns := max(2, (n+o.PerSupernode-1)/o.PerSupernode)
	for i := 0; i < ns; i++ {
		// Supernodes started at different times: their rounds are out of step.
		s := &snode{alive: true, leafSet: map[int]struct{}{}, rounds: e.net.random().IntN(supernode.LeafMembersEvery)}
		s.node = e.net.add(snNode{o, i}, serverUplink)
		s.r = supernode.NewRouter(supernode.RouterConfig{
			SummaryBits: o.SummaryBits, SummaryFP: o.SummaryFP, LeafQueryRate: 1e9, LeafQueryBurst: 1 << 30,
			ID: snID(i), Now: func() time.Time { return epoch.Add(o.settled + e.net.Now()) }, Log: zerolog.Nop(),
			Rand: routerRand(e.wd.w.Seed, i), MultiHop: o.MultiHop, Incarnation: 1,
			// Summaries are signed at their real size but not checked: no
			// one lies here, and a check per copy would cost the run hours.
			Sign:      func([]byte) []byte { return blankSig },
			PeerRTT:   o.rttFrom(i),
			LeafPings: o.LeafPings,
			Intern:    o.filters.intern,
			OneHop:    o.OneHop,
			Ring:      func() *supernode.RingView { return o.view },
		}, snOutbox{o, i})
		o.sns = append(o.sns, s)
	}
	o.liveSNs = ns
	o.newView()
	o.linkAll()
	o.of, o.pingAcc = make([][]int32, n), make([][]float32, n)
	e.everyPeer(time.Second, o.ping)
	// Peers attach a share at a time, each settled before the next: the
	// keys of a whole large overlay at once would travel as about a batch
	// per key (10^8 of them at 10,000 supernodes).
	chunk := cmp.Or(o.Chunk, buildChunk)
	chunks := (n + chunk - 1) / chunk
	if chunks > 1 {
		o.toKeep = map[int][]protocol.TermBatch{}
	}
	for c := 0; c < chunks; c++ {
		for p := c * n / chunks; p < (c+1)*n/chunks; p++ {
			o.peers = append(o.peers, e.net.add(snLeaf{o, p}, peerUplink))
			if e.online[p] {
				o.fillSlots(p)
			} else {
				e.net.kill(o.peers[p])
			}
		}
		o.settle()
	}
	o.building, o.toKeep = false, nil
	for i := range o.sns {
		o.tick(i, time.Duration(i)*o.snTick()/time.Duration(ns))
		o.gossip(i, time.Duration(i)*o.Gossip/time.Duration(ns))
		o.refresh(i, time.Duration(e.net.random().Int64N(int64(o.Refresh))))
	}
}

// buildChunk is how many peers attach at once while building: past it a
// build goes in chunks.
const buildChunk = 100_000

// settle runs the routers until what they send has settled, as if long
// running: summaries and keys spread a hop a round, with the routers'
// clock moving on a round at a time, until a round sends nothing (a
// thousand whole filters take a few rounds to cross one link).
func (o *overlay) settle() {
	rounds := 256
	if o.toKeep != nil {
		// Another chunk's keys are in a few rounds: a round flushes, and a
		// key is with its three keepers three flushes after its
		// supernode took it. Routers' other news does not stop in an
		// overlay this large (some supernode's refresh is always due).
		rounds = 16
	}
	for round := 0; round < rounds; round++ {
		o.settled += 2 * time.Second
		for _, s := range o.sns {
			s.r.Tick()
		}
		if round >= 8 && len(o.free) == 0 && len(o.keepOrder) == 0 {
			break
		}
		for len(o.free) > 0 || len(o.keepOrder) > 0 {
			batch := o.free
			o.free = nil
			for _, f := range batch {
				o.sns[f.to].r.Handle(snLink(f.from), f.m)
			}
			o.deliverKept()
		}
	}
}

// keepAtOnce takes the batches of m, sent while building in chunks, for
// their keepers, reporting whether it knew them all: they skip the hops
// on the way, which cost nothing while building but would take hours at a
// million peers, and end with the keepers as the hops would have left
// them.
func (o *overlay) keepAtOnce(m *protocol.TermPuts) bool {
	ks := make([]int, len(m.Batches))
	for i, b := range m.Batches {
		id, ok := o.view.ByPrefix[b.To]
		if ks[i] = snIndex(id); !ok || ks[i] < 0 || len(o.sns[ks[i]].nbrs) == 0 {
			return false
		}
	}
	for i, b := range m.Batches {
		k := ks[i]
		if len(o.toKeep[k]) == 0 {
			o.keepOrder = append(o.keepOrder, k)
		}
		o.toKeep[k] = append(o.toKeep[k], b)
	}
	return true
}

// deliverKept hands each keeper its batches, as from its neighbours in
// turn (the last hop of a batch's way is from a neighbour).
func (o *overlay) deliverKept() {
	order := o.keepOrder
	o.keepOrder = nil
	for _, k := range order {
		bs, s := o.toKeep[k], o.sns[k]
		delete(o.toKeep, k)
		for n := 0; len(bs) > 0; n++ {
			c := min(len(bs), protocol.MaxTermBatches)
			s.r.Handle(snLink(s.nbrs[n%len(s.nbrs)]), &protocol.TermPuts{Batches: bs[:c:c]})
			bs = bs[c:]
		}
	}
}

// routerRand is supernode i's source of query IDs: the same for a seed, so a
// run is repeatable, and apart from the network's, so drawing IDs does not
// shift the rest of the run.
func routerRand(seed uint64, i int) *rand.ChaCha8 {
	return rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "compare router %d %d", seed, i)))
}

// snID is supernode i's ID: spread over the ring as real IDs (hashes of
// keys) are, its first eight bytes a hash of i, the next four i itself.
func snID(i int) protocol.PeerID {
	var id protocol.PeerID
	h := sha256.Sum256(fmt.Appendf(nil, "compare supernode %d", i))
	copy(id[:8], h[:8])
	binary.BigEndian.PutUint32(id[8:12], uint32(i))
	id[31] = 0x5b
	return id
}

func leafLink(p int) supernode.LinkID { return supernode.LinkID(p + 1) }
func snLink(i int) supernode.LinkID   { return supernode.LinkID(leafLinks + i) }

// keyRing reports whether the routers route by the keyword ring.
func (o *overlay) keyRing() bool { return !o.OneHop && !o.MultiHop }

// newView makes the member list's view of the supernodes not yet taken as
// dead, one shared by every router.
func (o *overlay) newView() {
	var gen uint64
	if o.view != nil {
		gen = o.view.Gen + 1
	}
	live := make([]supernode.RingMember, 0, len(o.sns))
	for i, s := range o.sns {
		if !s.gone {
			live = append(live, supernode.RingMember{Peer: snID(i), Inc: 1, Leaves: uint32(o.PerSupernode)})
		}
	}
	o.view = supernode.NewRingView(gen, live)
	o.listed = o.listed[:0]
	for _, m := range live {
		o.listed = append(o.listed, protocol.IDPrefix(m.Peer))
	}
	slices.Sort(o.listed)
}

// linkAll links every live supernode to others until it has Neighbours
// links: at random, or with the keyword ring as a real supernode picks
// them (membership.ToDial): its successor on the ring of live supernodes
// first (all of them, before any takes the links a popular one has room
// for), then the fingers of ring.Links, then at random.
func (o *overlay) linkAll() {
	links := make([][]ring.ID, len(o.sns))
	if o.keyRing() {
		ids := make([]ring.ID, 0, o.liveSNs)
		for j, t := range o.sns {
			if t.alive {
				ids = append(ids, ring.ID(snID(j)))
			}
		}
		rg := ring.New(ids)
		for i, s := range o.sns {
			if s.alive {
				links[i] = rg.Links(ring.ID(snID(i)), o.Neighbours)
				if len(links[i]) > 0 {
					o.linkSN(i, snIndex(protocol.PeerID(links[i][0])))
				}
			}
		}
	}
	for i, s := range o.sns {
		if !s.alive {
			continue
		}
		if len(links[i]) > 0 {
			for _, f := range links[i][1:] {
				if len(s.nbrs) >= o.Neighbours {
					break
				}
				o.linkSN(i, snIndex(protocol.PeerID(f)))
			}
		}
		for tries := 0; len(s.nbrs) < o.Neighbours && tries < 4*o.Neighbours; tries++ {
			o.linkSN(i, o.e.net.random().IntN(len(o.sns)))
		}
	}
}

func (o *overlay) linkSN(i, j int) {
	a, b := o.sns[i], o.sns[j]
	if i == j || !a.alive || !b.alive || slices.Contains(a.nbrs, j) || len(b.nbrs) >= 2*o.Neighbours {
		return
	}
	a.nbrs, b.nbrs = append(a.nbrs, j), append(b.nbrs, i)
	a.r.NeighbourUp(snLink(j), snID(j))
	b.r.NeighbourUp(snLink(i), snID(i))
	if !o.building {
		o.greetSN(i, b.node)
		o.greetSN(j, a.node)
	}
}

// attach makes peer p a leaf of supernode s and publishes its files: at no
// cost while building, over the network after.
func (o *overlay) attach(p, s int) {
	e, sn := o.e, o.sns[s]
	o.of[p] = append(o.of[p], int32(s))
	o.pingAcc[p] = append(o.pingAcc[p], 0)
	sn.leaves++
	sn.leafSet[p] = struct{}{}
	if !o.building {
		o.greet(s, o.peers[p]) // the member list, at once
	}
	sn.r.LeafUp(leafLink(p), supernode.LeafInfo{Peer: peerID(p), Addrs: []string{addr(p)}})
	for _, m := range e.publishes(p) {
		if o.building {
			sn.r.Handle(leafLink(p), m)
		} else {
			e.net.send(o.peers[p], sn.node, tagUpkeep, m)
		}
	}
}

// fillSlots attaches peer p to live supernodes it is not attached to, up to
// the peer's Attach, each picked at random as a leaf picks from its list.
func (o *overlay) fillSlots(p int) {
	for tries := 0; len(o.of[p]) < leafSlots && tries < 4*leafSlots; tries++ {
		if s := o.liveSN(); s >= 0 && !slices.Contains(o.of[p], int32(s)) {
			o.attach(p, s)
		}
	}
}

// leafSlots is how many supernodes a peer attaches to at once.
var leafSlots = peer.DefaultConfig().Attach

// detachFrom ends peer p's attachment to supernode s.
func (o *overlay) detachFrom(p, s int) {
	k := slices.Index(o.of[p], int32(s))
	if k < 0 {
		return
	}
	o.of[p] = slices.Delete(o.of[p], k, k+1)
	o.pingAcc[p] = slices.Delete(o.pingAcc[p], k, k+1)
	sn := o.sns[s]
	sn.leaves--
	delete(sn.leafSet, p)
	sn.r.LeafDown(leafLink(p))
}

// Leaf pings, as the peer's liveness does them: to each supernode every
// ProbeInterval, or as seldom as the supernode asks (Router.PingEvery),
// with the pong naming the interval.
var (
	leafPing = &protocol.Ping{Seq: 1 << 20, Pad: make([]byte, protocol.PingPad)}
	leafPong = &protocol.Pong{Seq: 1 << 20, Every: 15000}
)

// ping charges a second of peer p's pings to its supernodes.
func (o *overlay) ping(p int) {
	for k, s := range o.of[p] {
		sn := o.sns[s]
		if !sn.alive {
			continue
		}
		if now := o.e.net.Now(); sn.pingAt != now || now == 0 {
			sn.pingEvery, sn.pingAt = sn.r.PingEvery(), now
		}
		every := max(o.Probe, sn.pingEvery)
		o.pingAcc[p][k] += float32(time.Second) / float32(every)
		for ; o.pingAcc[p][k] >= 1; o.pingAcc[p][k]-- {
			o.e.net.charge(o.peers[p], sn.node, tagLiveness, leafPing)
			o.e.net.charge(sn.node, o.peers[p], tagLiveness, leafPong)
		}
	}
}

// Member upkeep, as supernode.membership does it: every Gossip a
// supernode sends each supernode neighbour one members message, empty
// unless news came since its last round: entries issued on a change and
// reports of supernodes gone. A flood passes each on every link, once each
// way at most; it is charged both ways, the most it costs. Refreshes (each
// supernode's entry every Refresh) go down the ring's tree instead, in
// member_tree messages (treeRefresh). Leaves get their list (a sample in a large overlay) every
// LeafMembersEvery rounds or when a supernode in it died, which is
// charged as if every sample held one; a new neighbour gets a digest of
// every entry (greetSN), a new leaf its list.
func (o *overlay) gossip(i int, d time.Duration) {
	o.e.net.after(d, func() {
		s := o.sns[i]
		if !s.alive {
			return
		}
		s.rounds++
		for _, m := range o.members.news(s.newsRecs, s.newsGone) {
			for _, j := range s.nbrs {
				o.e.net.charge(s.node, o.sns[j].node, tagMembers, m)
			}
		}
		for j, n := range s.treeOut {
			if o.sns[j].alive {
				for ; n > 0; n -= protocol.MaxMembers {
					o.e.net.charge(s.node, o.sns[j].node, tagMembers, o.members.tree(min(n, protocol.MaxMembers)))
				}
			}
		}
		s.newsRecs, s.newsGone = 0, 0
		clear(s.treeOut)
		if s.rounds%supernode.LeafMembersEvery == 0 {
			o.toLeaves(i)
		}
		o.gossip(i, o.Gossip)
	})
}

// refresh issues supernode i's entry again every Refresh.
func (o *overlay) refresh(i int, d time.Duration) {
	o.e.net.after(d, func() {
		if o.sns[i].alive {
			o.treeRefresh(i)
			o.refresh(i, o.Refresh)
		}
	})
}

// treeRefresh passes supernode i's refresh down the ring's tree, as
// supernode.membership does: each supernode splits its arc among its
// neighbours on it (supernode.SplitArc), in its next round's member_tree.
// One whose successor in the list is not its first neighbour on the arc
// (it died and is not taken as dead yet, or was never linked) floods the
// entry instead, which then goes over every link once.
func (o *overlay) treeRefresh(i int) {
	pos := func(j int) uint64 { return protocol.IDPrefix(snID(j)) }
	type hop struct {
		x    int
		upto uint64
	}
	stack := []hop{{i, pos(i)}}
	flooded := false
	var nbrs []int
	var dists []uint64
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		self, s := pos(h.x), o.sns[h.x]
		dist := func(j int) uint64 { return pos(j) - self }
		nbrs = append(nbrs[:0], s.nbrs...)
		slices.SortFunc(nbrs, func(a, b int) int { return cmp.Compare(dist(a), dist(b)) })
		dists = dists[:0]
		for _, j := range nbrs {
			dists = append(dists, dist(j))
		}
		whole := supernode.SplitArc(self, h.upto, o.successorDist(self), dists, func(k int, end uint64) {
			j := nbrs[k]
			if s.treeOut == nil {
				s.treeOut = map[int]int{}
			}
			s.treeOut[j]++
			if o.sns[j].alive {
				stack = append(stack, hop{j, end})
			}
		})
		if !whole && !flooded {
			o.news(1, 0)
			flooded = true
		}
	}
}

// successorDist is how far round the ring the next listed supernode is from
// position self; 0 if none.
func (o *overlay) successorDist(self uint64) uint64 {
	n := len(o.listed)
	if n == 0 {
		return 0
	}
	k, _ := slices.BinarySearch(o.listed, self+1)
	for range n {
		if k == n {
			k = 0
		}
		if d := o.listed[k] - self; d != 0 {
			return d
		}
		k++
	}
	return 0
}

// news gives every live supernode entries and gone reports to pass on.
func (o *overlay) news(recs, gone int) {
	for _, s := range o.sns {
		if s.alive {
			s.newsRecs += recs
			s.newsGone += gone
		}
	}
}

// toLeaves charges supernode i's member list to each of its leaves.
func (o *overlay) toLeaves(i int) {
	s := o.sns[i]
	m := o.members.leafList(o.liveSNs)
	for p := range s.leafSet {
		o.e.net.charge(s.node, o.peers[p], tagMembers, m)
	}
}

// greet charges supernode i's member list to a leaf just attached.
func (o *overlay) greet(i int, to NodeID) {
	o.e.net.charge(o.sns[i].node, to, tagMembers, o.members.leafList(o.liveSNs))
}

// greetSN charges a digest of every live entry from supernode i to a
// supernode just linked. The simulated supernodes share one list, so
// neither asks for an entry.
func (o *overlay) greetSN(i int, to NodeID) {
	for n := o.liveSNs; n > 0; n -= protocol.MaxDigest {
		o.e.net.charge(o.sns[i].node, to, tagMembers, o.members.digest(min(n, protocol.MaxDigest)))
	}
}

// memberLists are members messages of real entries, one per length: what
// is charged is their encoded size.
type memberLists struct {
	by       map[int]*protocol.Members
	newsBy   map[[2]int]*protocol.Members
	treeBy   map[int]*protocol.MemberTree
	digestBy map[int]*protocol.MemberDigest
	sample   *protocol.Members
	entry    protocol.MemberRecord
	gone     protocol.MemberGone
}

// news are the messages that carry recs entries and gone reports: one, empty
// when there are none.
func (ml *memberLists) news(recs, gone int) []*protocol.Members {
	var out []*protocol.Members
	for first := true; first || recs > 0 || gone > 0; first = false {
		r, g := min(recs, protocol.MaxMembers), min(gone, protocol.MaxMembers)
		k := [2]int{r, g}
		m := ml.newsBy[k]
		if m == nil {
			m = &protocol.Members{Members: slices.Clone(ml.list(r).Members)}
			for range g {
				m.Gone = append(m.Gone, ml.gone)
			}
			ml.newsBy[k] = m
		}
		out = append(out, m)
		recs, gone = recs-r, gone-g
	}
	return out
}

// digest is a member_digest message of n entries.
func (ml *memberLists) digest(n int) *protocol.MemberDigest {
	if m := ml.digestBy[n]; m != nil {
		return m
	}
	e := ml.list(1).Members[0]
	m := &protocol.MemberDigest{Entries: make([]protocol.DigestEntry, n)}
	for k := range m.Entries {
		m.Entries[k] = protocol.DigestEntry{Peer: protocol.IDPrefix(peerID(k)), Incarnation: e.Incarnation, Beat: e.Beat}
	}
	if ml.digestBy == nil {
		ml.digestBy = map[int]*protocol.MemberDigest{}
	}
	ml.digestBy[n] = m
	return m
}

// tree is a member_tree message of n entries.
func (ml *memberLists) tree(n int) *protocol.MemberTree {
	if m := ml.treeBy[n]; m != nil {
		return m
	}
	m := &protocol.MemberTree{Entries: make([]protocol.TreeEntry, n)}
	for k := range m.Entries {
		m.Entries[k] = protocol.TreeEntry{Rec: ml.list(1).Members[0], Upto: 1 << 63}
	}
	if ml.treeBy == nil {
		ml.treeBy = map[int]*protocol.MemberTree{}
	}
	ml.treeBy[n] = m
	return m
}

// leafList is a leaf's list when live supernodes are: all of them, or a
// sample of supernode.LeafList.
func (ml *memberLists) leafList(live int) *protocol.Members {
	if live <= supernode.LeafList {
		return ml.list(live)
	}
	if ml.sample == nil {
		ml.sample = supernode.BareSample(&protocol.Members{Members: ml.list(supernode.LeafList).Members, Of: 1})
	}
	return &protocol.Members{Members: ml.sample.Members, Of: uint32(live)}
}

func (ml *memberLists) list(live int) *protocol.Members {
	n := min(live, protocol.MaxMembers)
	if m := ml.by[n]; m != nil {
		return m
	}
	if ml.by == nil {
		id, err := protocol.GenerateIdentity()
		if err != nil {
			panic(err)
		}
		_, network, _ := ed25519.GenerateKey(nil)
		ml.entry = protocol.MemberRecord{Addrs: []string{"203.0.113.70:6346"}, Beat: uint64(epoch.UnixMilli()),
			Leaves: 150, Cap: 4000, Incarnation: uint64(epoch.UnixNano()),
			Chain: protocol.Admit(network, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, epoch.AddDate(1, 0, 0))}
		ml.entry.Sign(id)
		ml.gone = protocol.MemberGone{Peer: peerID(0), Incarnation: ml.entry.Incarnation, Beat: ml.entry.Beat}
		ml.gone.Sign(id)
		ml.by, ml.newsBy = map[int]*protocol.Members{}, map[[2]int]*protocol.Members{}
	}
	m := &protocol.Members{Members: make([]protocol.MemberRecord, n)}
	for k := range m.Members {
		m.Members[k] = ml.entry
	}
	ml.by[n] = m
	return m
}

// liveSN picks a live supernode at random, as a leaf picks from its list.
func (o *overlay) liveSN() int {
	for tries := 0; tries < 64; tries++ {
		if s := o.e.net.random().IntN(len(o.sns)); o.sns[s].alive {
			return s
		}
	}
	for s, sn := range o.sns {
		if sn.alive {
			return s
		}
	}
	return -1
}

func (o *overlay) up(p int) {
	o.e.net.revive(o.peers[p])
	o.fillSlots(p)
}

func (o *overlay) down(p int) {
	o.e.net.kill(o.peers[p])
	for len(o.of[p]) > 0 {
		o.detachFrom(p, int(o.of[p][0]))
	}
}

// ask sends the query to the nearest of the peer's supernodes, as the
// peer's search picks one, and hedges it as the search does: one that does
// not acknowledge it (it died, and the leaf has not noticed yet) is given
// about a probe timeout, and the query goes to the next nearest. A
// supernode that did not acknowledge is suspected: the leaf pings at its
// own interval and leaves the dead after SilentProbes of them, attaching
// elsewhere; when all its supernodes were dead, the query goes on through
// the nearest new one.
func (o *overlay) ask(qi int, q *protocol.Query, from int) {
	ss := o.nearestFirst(from)
	if len(ss) > 0 && !o.sns[ss[0]].alive {
		// The first leg is not acknowledged: that urges the pings, and the
		// suspicion ends SilentProbes intervals on, a round trip to spare.
		allDead := !slices.ContainsFunc(ss, func(s int32) bool { return o.sns[s].alive })
		rtt := o.rtt(o.peers[from], o.sns[ss[0]].node)
		o.e.net.after(ackWait(rtt)+attach.SilentProbes*o.Probe+rtt, func() { o.suspected(qi, q, from, allDead) })
	}
	o.askVia(qi, q, from, ss)
}

// nearestFirst are peer p's supernodes, the nearest first.
func (o *overlay) nearestFirst(p int) []int32 {
	ss := slices.Clone(o.of[p])
	slices.SortStableFunc(ss, func(a, b int32) int {
		return cmp.Compare(o.rtt(o.peers[p], o.sns[a].node), o.rtt(o.peers[p], o.sns[b].node))
	})
	return ss
}

// ackWait is how long the peer's search waits for a supernode to
// acknowledge a query over a round trip of rtt.
func ackWait(rtt time.Duration) time.Duration {
	return min(max(2*rtt+25*time.Millisecond, 150*time.Millisecond), time.Second)
}

func (o *overlay) askVia(qi int, q *protocol.Query, from int, ss []int32) {
	if len(ss) == 0 {
		return
	}
	sn := o.sns[ss[0]]
	o.e.net.send(o.peers[from], sn.node, qi, q)
	if !sn.alive {
		o.e.net.after(ackWait(o.rtt(o.peers[from], sn.node)), func() { o.askVia(qi, q, from, ss[1:]) })
	}
}

// suspected leaves peer p's dead supernodes and fills the slots, and sends
// the query on through the nearest new one when none of those it had was
// alive.
func (o *overlay) suspected(qi int, q *protocol.Query, p int, allDead bool) {
	// The pings at the probe interval, for the live.
	for _, s := range o.of[p] {
		if !o.sns[s].alive {
			continue
		}
		for range attach.SilentProbes {
			o.e.net.charge(o.peers[p], o.sns[s].node, tagLiveness, leafPing)
			o.e.net.charge(o.sns[s].node, o.peers[p], tagLiveness, leafPong)
		}
	}
	o.leaveDead(p)
	if !o.e.online[p] || !allDead {
		return
	}
	if ss := o.nearestFirst(p); len(ss) > 0 {
		o.e.net.send(o.peers[p], o.sns[ss[0]].node, qi, q)
	}
}

// leaveDead ends peer p's attachments to dead supernodes and, while it is
// online, attaches it to others in their place.
func (o *overlay) leaveDead(p int) {
	for _, s := range slices.Clone(o.of[p]) {
		if !o.sns[s].alive {
			o.detachFrom(p, int(s))
		}
	}
	if o.e.online[p] {
		o.fillSlots(p)
	}
}

// fail kills 30% of the supernodes at once: their neighbours link to others,
// and their leaves attach elsewhere once they notice.
func (o *overlay) fail(f failure) {
	if f != supernodesDie {
		return
	}
	e := o.e
	dead := sample(e.net.random(), len(o.sns), len(o.sns)*3/10)
	o.liveSNs -= len(dead)
	for _, i := range dead {
		s := o.sns[i]
		s.alive = false
		e.net.kill(s.node)
		for _, j := range s.nbrs {
			nb := o.sns[j]
			nb.nbrs = slices.DeleteFunc(nb.nbrs, func(x int) bool { return x == i })
			nb.r.NeighbourDown(snLink(i))
		}
		s.nbrs = nil
	}
	o.linkAll()
	// The dead supernodes' neighbours hear nothing from them for the
	// member timeout and report them gone; the reports flood the overlay,
	// a gossip round or less per hop. Unanswered for SuspectFor, they make
	// every supernode take the dead as dead and send its leaves the
	// changed list.
	hops := int(math.Ceil(math.Log(float64(max(2, o.liveSNs))) / math.Log(float64(max(2, o.Neighbours)))))
	suspect := supernode.SuspectFor(o.MemberTimeout)
	e.net.after(o.MemberTimeout, func() { o.news(0, len(dead)) })
	e.net.after(o.MemberTimeout+suspect, func() {
		for i, s := range o.sns {
			if s.alive {
				o.toLeaves(i)
			}
		}
	})
	for _, i := range dead {
		wait := o.MemberTimeout + suspect
		for range hops {
			wait += time.Duration(e.net.random().Int64N(int64(o.Gossip)))
		}
		e.net.after(wait, func() {
			o.sns[i].gone = true
			o.newView()
			for _, s := range o.sns {
				if s.alive {
					s.r.SupernodeGone(snID(i))
				}
			}
		})
	}
	// A leaf notices that a supernode died two to three of the ping
	// intervals it asked for after its last pong, drops it (the next slot
	// becomes its primary) and attaches to another.
	for p, ss := range o.of {
		var every time.Duration
		for _, s := range ss {
			if sn := o.sns[s]; !sn.alive {
				every = max(every, o.Probe, sn.pingEvery)
			}
		}
		if every == 0 {
			continue
		}
		e.net.after(2*every+time.Duration(e.net.random().Int64N(int64(every))), func() { o.leaveDead(p) })
	}
}

func (o *overlay) servingNodes() int { return len(o.sns) }

func (*overlay) has(f failure) bool { return f == supernodesDie }

func (o *overlay) tick(i int, d time.Duration) {
	o.e.net.after(d, func() {
		if s := o.sns[i]; s.alive {
			o.cur = tagUpkeep
			s.r.Tick()
		}
		o.tick(i, o.snTick())
	})
}

func (o *overlay) state() []int {
	var out []int
	for i, s := range o.sns {
		o.closeIdle(i)
		if s.alive {
			out = append(out, s.r.IndexedFiles()+len(s.nbrs)+s.r.Summaries()+s.r.KeptKeys()+len(s.contacts))
		}
	}
	for range o.peers {
		out = append(out, 1)
	}
	return out
}

// tagFor is the query a message belongs to: by the ID a router chose, by
// the asker's ID, or else the one being handled.
func (o *overlay) tagFor(id protocol.QueryID) int {
	if t, ok := o.tags[id]; ok {
		return t
	}
	if id[15] == 0xc0 {
		return int(id[0])<<24 | int(id[1])<<16 | int(id[2])<<8 | int(id[3])
	}
	return o.cur
}

type snOutbox struct {
	o *overlay
	i int
}

func (b snOutbox) Send(to supernode.LinkID, m protocol.Message) {
	o := b.o
	tag := o.cur
	switch m := m.(type) {
	case *protocol.Query:
		if tag != tagUpkeep {
			o.tags[m.ID] = tag
		}
	case *protocol.Hits:
		tag = o.tagFor(m.ID)
	case *protocol.QueryDone:
		tag = o.tagFor(m.ID)
	case *protocol.TermLookup:
		if tag != tagUpkeep {
			o.tags[m.ID] = tag
		}
	case *protocol.TermHolders:
		tag = o.tagFor(m.ID)
	case *protocol.Summaries, *protocol.SummaryWant, *protocol.TermPuts:
		tag = tagSummaries
	}
	if to >= leafLinks {
		j := int(to - leafLinks)
		if o.building {
			if tp, ok := m.(*protocol.TermPuts); !ok || o.toKeep == nil || !o.keepAtOnce(tp) {
				o.free = append(o.free, freeMsg{b.i, j, m})
			}
			return
		}
		o.e.net.send(o.sns[b.i].node, o.sns[j].node, tag, m)
		return
	}
	if !o.building {
		o.e.net.send(o.sns[b.i].node, o.peers[int(to)-1], tag, m)
	}
}

var blankSig = make([]byte, 64)

// rttFrom is what supernode i knows of the round trip to another: measured
// on a link it has or had, unknown otherwise.
func (o *overlay) rttFrom(i int) func(protocol.PeerID) time.Duration {
	return func(p protocol.PeerID) time.Duration {
		j := snIndex(p)
		s := o.sns[i]
		if j < 0 || !slices.Contains(s.nbrs, j) && !s.met[j] {
			return 0
		}
		return o.rtt(s.node, o.sns[j].node)
	}
}

// rtt is the modelled round trip between two nodes, 0 on a network without
// a model (real QUIC).
func (o *overlay) rtt(a, b NodeID) time.Duration { return modelRTT(o.e.net, a, b) }

func snIndex(p protocol.PeerID) int {
	if p[31] != 0x5b {
		return -1
	}
	return int(binary.BigEndian.Uint32(p[8:12]))
}

// SendDirect sends m to supernode `to` over a direct link, opened first
// when there is none: the opening costs a QUIC handshake, two packets of
// 1,200 bytes and a round trip before m leaves right behind the hello
// (transport.DialEarly), and a hello and a welcome. At most
// supernode.MaxContacts stay open; the least recently used closes.
func (b snOutbox) SendDirect(to protocol.PeerID, m protocol.Message) {
	o := b.o
	j := snIndex(to)
	if j < 0 || j == b.i {
		return
	}
	s, t := o.sns[b.i], o.sns[j]
	if slices.Contains(s.nbrs, j) {
		b.Send(snLink(j), m)
		return
	}
	o.closeIdle(b.i)
	o.closeIdle(j)
	if slices.Contains(s.contacts, j) {
		o.used(b.i, j)
		o.used(j, b.i)
		b.Send(snLink(j), m)
		return
	}
	if len(s.contacts) >= supernode.MaxContacts {
		o.closeContact(b.i, s.contacts[0])
	}
	if len(t.contacts) >= supernode.MaxContacts {
		o.closeContact(j, t.contacts[0])
	}
	o.used(b.i, j)
	o.used(j, b.i)
	s.r.ContactUp(snLink(j), snID(j))
	t.r.ContactUp(snLink(b.i), snID(b.i))
	net := o.e.net
	net.send(s.node, t.node, tagLinks, handshakePing)
	net.send(t.node, s.node, tagLinks, handshakePing)
	net.send(s.node, t.node, tagLinks, helloWeight)
	net.send(t.node, s.node, tagLinks, helloWeight)
	tag := o.cur
	net.after(o.rtt(s.node, t.node), func() {
		cur := o.cur
		o.cur = tag
		b.Send(snLink(j), m)
		o.cur = cur
	})
}

// directIdle is how long a direct link lasts without traffic: it sends no
// keep-alives, and closes at the idle timeout a listener allows.
const directIdle = transport.LeafIdleFactor * transport.DefaultIdleTimeout

// forget takes supernode j out of s's contacts.
func (s *snode) forget(j int) {
	if k := slices.Index(s.contacts, j); k >= 0 {
		s.contacts = slices.Delete(s.contacts, k, k+1)
		s.usedAt = slices.Delete(s.usedAt, k, k+1)
	}
}

// used moves j to the most recently used end of i's contacts, adding it.
func (o *overlay) used(i, j int) {
	s := o.sns[i]
	s.forget(j)
	s.contacts = append(s.contacts, j)
	if s.met == nil {
		s.met = map[int]bool{}
	}
	s.met[j] = true
	s.usedAt = append(s.usedAt, o.e.net.Now())
}

// closeIdle closes supernode i's direct links that have been idle past
// directIdle.
func (o *overlay) closeIdle(i int) {
	s := o.sns[i]
	for len(s.contacts) > 0 && o.e.net.Now()-s.usedAt[0] >= directIdle {
		o.closeContact(i, s.contacts[0])
	}
}

// handshakePing weighs what a QUIC handshake packet does, and helloWeight
// what a supernode's hello or welcome with its membership chain does.
var (
	handshakePing = &protocol.Ping{Pad: make([]byte, 1180)}
	helloWeight   = &protocol.Ping{Pad: make([]byte, 400)}
)

// closeContact closes the direct link between supernodes i and j.
func (o *overlay) closeContact(i, j int) {
	a, b := o.sns[i], o.sns[j]
	a.forget(j)
	b.forget(i)
	if !slices.Contains(a.nbrs, j) {
		a.r.ContactDown(snLink(j))
		b.r.ContactDown(snLink(i))
	}
}

// filterCache shares one copy of each supernode's current summary among
// all the simulated routers, which would otherwise each hold their own:
// a thousand supernodes would need gigabytes for the same filters.
type filterCache struct {
	m map[protocol.PeerID]cachedFilter
}

type cachedFilter struct {
	inc, ver uint64
	f        *index.Bloom
}

func (c *filterCache) intern(origin protocol.PeerID, inc, ver uint64, build func() *index.Bloom) *index.Bloom {
	if c.m == nil {
		c.m = map[protocol.PeerID]cachedFilter{}
	}
	if x, ok := c.m[origin]; ok && x.inc == inc && x.ver == ver {
		return x.f
	}
	f := build()
	if x, ok := c.m[origin]; f != nil && (!ok || inc > x.inc || inc == x.inc && ver > x.ver) {
		c.m[origin] = cachedFilter{inc, ver, f}
	}
	return f
}

type snNode struct {
	o *overlay
	i int
}

func (n snNode) receive(from NodeID, tag int, m protocol.Message) {
	o := n.o
	var link supernode.LinkID
	if int(from) >= int(o.peers[0]) {
		link = leafLink(int(from - o.peers[0]))
	} else {
		link = snLink(int(from - o.sns[0].node))
	}
	o.cur = tag
	o.sns[n.i].r.Handle(link, m)
	o.cur = tagUpkeep
}

type snLeaf struct {
	o *overlay
	p int
}

func (l snLeaf) receive(from NodeID, tag int, m protocol.Message) {
	if h, ok := m.(*protocol.Hits); ok {
		l.o.e.takeHits(tag, l.p, h)
	}
}
