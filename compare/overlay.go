package compare

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

// overlay is the hierarchical supernode overlay: supernodes on hosted
// machines run the project's supernode.Router, peers attach to one each and
// publish to it, and queries go from a peer to its supernode and on to the
// neighbours whose Bloom summaries may match, within the hop limit.
type overlay struct {
	// PerSupernode is how many peers there are per supernode; Neighbours
	// how many supernode links each keeps; SummaryBits the size of every
	// summary level.
	PerSupernode, Neighbours, SummaryBits int

	e     *env
	sns   []*snode
	peers []NodeID
	of    []int // peer -> its supernode, -1 while it has none
	// cur is the tag of the message a router is handling, for what it sends
	// meanwhile; tags maps the query IDs routers chose to their query.
	cur      int
	tags     map[protocol.QueryID]int
	building bool
	free     []freeMsg // messages of the steady state, delivered at no cost
}

type snode struct {
	node   NodeID
	r      *supernode.Router
	nbrs   []int // supernode indexes
	alive  bool
	leaves int
}

type freeMsg struct {
	from, to int
	m        protocol.Message
}

const (
	leafLinks    = 1 << 32         // LinkIDs below are leaves (peer + 1); above, supernodes
	snTick       = 5 * time.Second // summaries batched: the supernodes tick every 250 ms, a cost the run does not need to pay
	failoverWait = time.Second     // a leaf notices its supernode died
)

func (*overlay) Name() string { return "supernode" }

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (o *overlay) build(e *env) {
	o.e, o.tags, o.building = e, map[protocol.QueryID]int{}, true
	n := len(e.wd.holds)
	ns := max(2, (n+o.PerSupernode-1)/o.PerSupernode)
	for i := 0; i < ns; i++ {
		s := &snode{alive: true}
		s.node = e.net.add(snNode{o, i}, serverUplink)
		s.r = supernode.NewRouter(supernode.RouterConfig{
			SummaryBits: o.SummaryBits, LeafQueryRate: 1e9, LeafQueryBurst: 1 << 30,
			ID: snID(i), Now: func() time.Time { return epoch.Add(e.net.Now()) }, Log: zerolog.Nop(),
			Rand: routerRand(e.wd.w.Seed, i),
		}, snOutbox{o, i})
		o.sns = append(o.sns, s)
	}
	rng := e.net.random()
	for i := range o.sns {
		for tries := 0; len(o.sns[i].nbrs) < o.Neighbours && tries < 4*o.Neighbours; tries++ {
			o.linkSN(i, rng.IntN(ns))
		}
	}
	o.of = make([]int, n)
	for p := 0; p < n; p++ {
		o.peers = append(o.peers, e.net.add(snLeaf{o, p}, peerUplink))
		o.attach(p, rng.IntN(ns))
	}
	// Summaries spread a level a round: settle them as if long running.
	for round := 0; round < 8; round++ {
		for _, s := range o.sns {
			s.r.Tick()
		}
		for len(o.free) > 0 {
			batch := o.free
			o.free = nil
			for _, f := range batch {
				o.sns[f.to].r.Handle(snLink(f.from), f.m)
			}
		}
	}
	o.building = false
	for i := range o.sns {
		o.tick(i, time.Duration(i)*snTick/time.Duration(ns))
	}
}

// routerRand is supernode i's source of query IDs: the same for a seed, so a
// run is repeatable, and apart from the network's, so drawing IDs does not
// shift the rest of the run.
func routerRand(seed uint64, i int) *rand.ChaCha8 {
	return rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "compare router %d %d", seed, i)))
}

func snID(i int) protocol.PeerID {
	id := peerID(i)
	id[31] = 0x5b
	return id
}

func leafLink(p int) supernode.LinkID { return supernode.LinkID(p + 1) }
func snLink(i int) supernode.LinkID   { return supernode.LinkID(leafLinks + i) }

func (o *overlay) linkSN(i, j int) {
	a, b := o.sns[i], o.sns[j]
	if i == j || !a.alive || !b.alive || slices.Contains(a.nbrs, j) || len(b.nbrs) >= 2*o.Neighbours {
		return
	}
	a.nbrs, b.nbrs = append(a.nbrs, j), append(b.nbrs, i)
	a.r.NeighbourUp(snLink(j), snID(j))
	b.r.NeighbourUp(snLink(i), snID(i))
}

// attach makes peer p a leaf of supernode s and publishes its files: at no
// cost while building, over the network after.
func (o *overlay) attach(p, s int) {
	e, sn := o.e, o.sns[s]
	o.of[p] = s
	sn.leaves++
	sn.r.LeafUp(leafLink(p), supernode.LeafInfo{Peer: peerID(p), Addrs: []string{addr(p)}})
	for _, m := range e.publishes(p) {
		if o.building {
			sn.r.Handle(leafLink(p), m)
		} else {
			e.net.send(o.peers[p], sn.node, tagUpkeep, m)
		}
	}
}

func (o *overlay) detach(p int) {
	if s := o.of[p]; s >= 0 {
		o.sns[s].leaves--
		o.sns[s].r.LeafDown(leafLink(p))
		o.of[p] = -1
	}
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
	if s := o.liveSN(); s >= 0 {
		o.attach(p, s)
	}
}

func (o *overlay) down(p int) {
	o.e.net.kill(o.peers[p])
	o.detach(p)
}

func (o *overlay) ask(qi int, q *protocol.Query, from int) {
	if s := o.of[from]; s >= 0 {
		o.e.net.send(o.peers[from], o.sns[s].node, qi, q)
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
	for i, s := range o.sns {
		for tries := 0; s.alive && len(s.nbrs) < o.Neighbours && tries < 4*o.Neighbours; tries++ {
			o.linkSN(i, e.net.random().IntN(len(o.sns)))
		}
	}
	for p, s := range o.of {
		if s < 0 || o.sns[s].alive {
			continue
		}
		o.of[p] = -1
		e.net.after(failoverWait+time.Duration(e.net.random().Int64N(int64(failoverWait))), func() {
			if e.online[p] && o.of[p] < 0 {
				if s := o.liveSN(); s >= 0 {
					o.attach(p, s)
				}
			}
		})
	}
}

func (*overlay) has(f failure) bool { return f == supernodesDie }

func (o *overlay) tick(i int, d time.Duration) {
	o.e.net.after(d, func() {
		if s := o.sns[i]; s.alive {
			o.cur = tagUpkeep
			s.r.Tick()
		}
		o.tick(i, snTick)
	})
}

func (o *overlay) state() []int {
	var out []int
	for _, s := range o.sns {
		if s.alive {
			out = append(out, s.r.IndexedFiles()+len(s.nbrs))
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
	}
	if to >= leafLinks {
		j := int(to - leafLinks)
		if o.building {
			o.free = append(o.free, freeMsg{b.i, j, m})
			return
		}
		o.e.net.send(o.sns[b.i].node, o.sns[j].node, tag, m)
		return
	}
	if !o.building {
		o.e.net.send(o.sns[b.i].node, o.peers[int(to)-1], tag, m)
	}
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
