package supernode

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

// coreNet is an in-memory network for the directory, membership and election
// cores, as memNet is for Router: supernodes that hold the cores, leaves that
// are an identity and an inbox, one FIFO queue of messages addressed by peer
// ID, and a fake clock. Every delivered message goes through the wire
// encoding. The directory's store writes on its own goroutine; after each
// delivery the net waits until every store is idle, so the order of messages
// is the same on every run.
type coreNet struct {
	t     testing.TB
	clock *fakeClock
	seed  uint64

	mu        sync.Mutex // the queue and the links: stores send from their writers
	queue     []coreMsg
	nodes     []*coreNode
	leaves    map[protocol.PeerID]*coreLeaf
	delivered int
	nextReq   int // leaves' request IDs
	// entries counts the member entries and gone reports delivered between
	// supernodes in members messages, treeEntries those in member_tree.
	entries, treeEntries int
}

type coreMsg struct {
	from, to protocol.PeerID
	m        protocol.Message
}

type coreNode struct {
	net     *coreNet
	name    string
	id      *protocol.Identity
	members *Members
	memb    *membership
	chain   protocol.Chain // nil: not admitted
	store   *dirStore
	dir     *directory
	elect   *election
	dataDir string
	// probeErr is what the probes of promoted supernodes find; stopped is
	// set when the election stopped the node.
	probeErr error
	stopped  bool
	// nbrs and leaves are the peers linked to the node, with the protocol
	// version of each link.
	nbrs   map[protocol.PeerID]uint16
	leaves map[protocol.PeerID]uint16
	// closed are the links the node closed because the peer sent something
	// bad, and why.
	closed map[protocol.PeerID]error
	got    map[protocol.MsgType]int
	down   bool
}

type coreLeaf struct {
	net   *coreNet
	id    *protocol.Identity
	node  *coreNode
	inbox []protocol.Message
}

var coreEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// seededIdentity is a key made from a name: the same on every run, so ring
// positions are too.
func seededIdentity(t testing.TB, name string) *protocol.Identity {
	t.Helper()
	seed := sha256.Sum256([]byte("core test " + name))
	id, err := protocol.NewIdentity(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newCoreNet(t testing.TB, seed uint64) *coreNet {
	return &coreNet{t: t, clock: &fakeClock{now: coreEpoch}, seed: seed, leaves: map[protocol.PeerID]*coreLeaf{}}
}

func (net *coreNet) log() zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(net.t)).Level(zerolog.WarnLevel)
}

// rand is a seeded reader for a node's cores.
func (net *coreNet) rand(name string) *rand.ChaCha8 {
	var seed [32]byte
	copy(seed[:], fmt.Sprintf("%d %s", net.seed, name))
	return rand.NewChaCha8(seed)
}

// addNode makes a supernode with a directory; dataDir "" keeps its records
// in memory.
func (net *coreNet) addNode(name, dataDir string) *coreNode {
	net.t.Helper()
	n := &coreNode{net: net, name: name, id: seededIdentity(net.t, name), dataDir: dataDir,
		nbrs: map[protocol.PeerID]uint16{}, leaves: map[protocol.PeerID]uint16{},
		closed: map[protocol.PeerID]error{}, got: map[protocol.MsgType]int{}}
	n.members = NewMembers(testNetwork, memberExpiry(30*time.Minute, 4*time.Second), SuspectFor(4*time.Second), maxMembersHeld)
	n.chain = net.admit(n.id)
	n.memb = newMembership(membershipConfig{Identity: n.id, Chain: func() protocol.Chain { return n.chain },
		Advertise: []string{fmt.Sprintf("192.0.2.%d:6346", len(net.nodes)+1)}, Leaves: func() int { return len(n.Leaves(0)) },
		Cap: 200, Incarnation: 1, GossipInterval: time.Second, MemberTimeout: 4 * time.Second, RefreshInterval: 30 * time.Minute,
		Now: net.clock.Now, Rand: net.rand("members " + name), Log: net.log()}, n.members, n, nodeOut{n})
	n.setElection(func(*electionConfig) {})
	n.start()
	net.nodes = append(net.nodes, n)
	return n
}

// start opens the node's store and makes its directory, as a restart does.
func (n *coreNode) start() {
	net := n.net
	st, err := openDirStoreClock(n.dataDir, 1, net.log(), net.clock.Now)
	if err != nil {
		net.t.Fatal(err)
	}
	net.t.Cleanup(func() { st.close() })
	n.store = st
	n.dir = newDirectory(directoryConfig{ID: n.id.ID, LeafRate: 1e9, LeafBurst: 1 << 30, Now: net.clock.Now,
		Rand: net.rand(n.name), Log: net.log()}, st, n.members, n, nodeOut{n})
}

// restart stops the node's store, once what it queued is written, and
// starts it again from its data directory.
func (n *coreNode) restart() {
	n.net.t.Helper()
	if err := n.store.close(); err != nil {
		n.net.t.Fatal(err)
	}
	n.start()
}

func (n *coreNode) peer() protocol.PeerID { return n.id.ID }

// setElection makes the node's election, with the settings of a supernode
// that never promotes, as changed by set.
func (n *coreNode) setElection(set func(*electionConfig)) {
	net := n.net
	cfg := electionConfig{Identity: n.id, Network: testNetwork, Chain: func() protocol.Chain { return n.chain },
		LeafLimit: -1, PromoteEvery: time.Minute, StepDownBelow: 1, StepDownAfter: 10 * time.Minute,
		GossipInterval: time.Second, MemberTimeout: 4 * time.Second, PromotedCertTTL: DefaultPromotedCertTTL,
		Leaves: func() int { return len(n.Leaves(0)) },
		Probe:  func(_ protocol.PeerID, _ string, done func(error)) { done(n.probeErr) },
		Stop:   func() { n.stopped = true },
		Now:    net.clock.Now, Rand: net.rand("election " + n.name), Log: net.log()}
	set(&cfg)
	n.elect = newElection(cfg, n.members, n, nodeOut{n})
}

// Neighbours and Leaves make the node the directory's linkView.
func (n *coreNode) Neighbours(t protocol.MsgType) []protocol.PeerID { return n.net.linked(n.nbrs, t) }
func (n *coreNode) Leaves(t protocol.MsgType) []protocol.PeerID     { return n.net.linked(n.leaves, t) }

func (net *coreNet) linked(m map[protocol.PeerID]uint16, t protocol.MsgType) []protocol.PeerID {
	net.mu.Lock()
	defer net.mu.Unlock()
	var out []protocol.PeerID
	for p, pv := range m {
		if speaks(pv, t) {
			out = append(out, p)
		}
	}
	return sortPeers(out)
}

type nodeOut struct{ n *coreNode }

func (o nodeOut) Send(to protocol.PeerID, m protocol.Message) {
	net := o.n.net
	net.mu.Lock()
	net.queue = append(net.queue, coreMsg{from: o.n.peer(), to: to, m: m})
	net.mu.Unlock()
}

func (net *coreNet) node(p protocol.PeerID) *coreNode {
	for _, n := range net.nodes {
		if n.peer() == p {
			return n
		}
	}
	return nil
}

// connect links two supernodes, speaking the current version.
func (net *coreNet) connect(a, b *coreNode) {
	net.mu.Lock()
	a.nbrs[b.peer()], b.nbrs[a.peer()] = protocol.MaxVersion, protocol.MaxVersion
	net.mu.Unlock()
}

// disconnect takes the link between a and b down on both sides.
func (net *coreNet) disconnect(a, b *coreNode) {
	net.mu.Lock()
	_, ab := a.nbrs[b.peer()]
	_, ba := b.nbrs[a.peer()]
	delete(a.nbrs, b.peer())
	delete(b.nbrs, a.peer())
	net.mu.Unlock()
	if ab {
		a.linkDown(b.peer())
	}
	if ba {
		b.linkDown(a.peer())
	}
}

func (n *coreNode) linkDown(p protocol.PeerID) {
	n.dir.NeighbourDown(p)
	n.memb.NeighbourDown(p)
}

// mesh links every pair of nodes.
func (net *coreNet) mesh() {
	for i, a := range net.nodes {
		for _, b := range net.nodes[i+1:] {
			net.connect(a, b)
		}
	}
}

// admit is a chain for id that outlives every test. (protocol.Chain.Extend
// checks the issuer's chain against the real clock, not the net's.)
func (net *coreNet) admit(id *protocol.Identity) protocol.Chain {
	return testAdmit(id, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))
}

// meet gives every node every node's signed member entry, as gossip would.
func (net *coreNet) meet() {
	net.t.Helper()
	var recs []*protocol.MemberRecord
	for _, n := range net.nodes {
		if n.down {
			continue
		}
		r := &protocol.MemberRecord{Addrs: []string{"192.0.2.1:6346"}, Beat: uint64(net.clock.Now().UnixMilli()),
			Incarnation: 1, Chain: net.admit(n.id)}
		r.Sign(n.id)
		recs = append(recs, r)
	}
	for _, n := range net.nodes {
		if _, bad := n.members.Merge(recs, net.clock.Now()); bad > 0 {
			net.t.Fatalf("%s refused %d member entries", n.name, bad)
		}
	}
}

// addLeaf attaches a leaf named name to node n.
func (net *coreNet) addLeaf(n *coreNode, name string) *coreLeaf {
	l := &coreLeaf{net: net, id: seededIdentity(net.t, "leaf "+name), node: n}
	net.mu.Lock()
	n.leaves[l.id.ID] = protocol.MaxVersion
	net.leaves[l.id.ID] = l
	net.mu.Unlock()
	return l
}

// roundTrip encodes m as a frame and decodes it again.
func (net *coreNet) roundTrip(m protocol.Message) protocol.Message {
	net.t.Helper()
	frame, err := protocol.AppendFrame(nil, m)
	if err != nil {
		net.t.Fatalf("encode %s: %v", m.Type(), err)
	}
	out, err := protocol.Decode(protocol.MsgType(frame[0]), frame[protocol.HeaderSize:])
	if err != nil {
		net.t.Fatalf("decode %s: %v", m.Type(), err)
	}
	return out
}

// handle gives m from peer from, linked as role, to the node's cores; an
// error closes the link, as Server's dispatch does.
func (n *coreNode) handle(from protocol.PeerID, role protocol.Role, m protocol.Message) {
	n.got[m.Type()]++
	var err error
	switch m := m.(type) {
	case *protocol.UserPut, *protocol.UserGet, *protocol.UserReply, *protocol.UserStore:
		err = n.dir.Handle(from, role, m)
	case *protocol.Members:
		err = n.memb.Handle(from, m)
	case *protocol.MemberTree:
		err = n.memb.HandleTree(from, m)
	case *protocol.MemberDigest:
		n.memb.HandleDigest(from, m)
	case *protocol.MemberWant:
		n.memb.HandleWant(from, m)
	case *protocol.Candidacy:
		n.elect.Candidacy(from, m)
	case *protocol.Promoted:
		n.elect.Promoted(from, m)
	default:
		n.net.t.Fatalf("%s: no core takes %s", n.name, m.Type())
	}
	if err != nil {
		n.closed[from] = err
		if o := n.net.node(from); o != nil {
			n.net.disconnect(n, o)
		}
	}
}

// send hands m from the leaf to its supernode, through the wire encoding.
func (l *coreLeaf) send(m protocol.Message) {
	l.net.t.Helper()
	l.node.handle(l.id.ID, protocol.RoleLeaf, l.net.roundTrip(m))
	l.net.run()
}

// maxCoreDeliveries bounds the deliveries of one run: a loop fails the test
// instead of hanging it.
const maxCoreDeliveries = 200_000

// run delivers queued messages, and whatever their handling sends, until the
// queue is empty and every store idle. It returns how many it delivered.
func (net *coreNet) run() int {
	net.t.Helper()
	n := 0
	for {
		net.waitStores()
		net.mu.Lock()
		if len(net.queue) == 0 {
			net.mu.Unlock()
			return n
		}
		e := net.queue[0]
		net.queue = net.queue[1:]
		src := net.node(e.from)
		_, linked := src.nbrs[e.to]
		_, isLeaf := src.leaves[e.to]
		leaf := net.leaves[e.to]
		net.mu.Unlock()
		dst := net.node(e.to)
		switch {
		case src.down:
		case linked && dst != nil && !dst.down:
			n++
			net.delivered++
			switch m := e.m.(type) {
			case *protocol.Members:
				net.entries += len(m.Members) + len(m.Gone)
			case *protocol.MemberTree:
				net.treeEntries += len(m.Entries)
			}
			dst.handle(e.from, protocol.RoleSupernode, net.roundTrip(e.m))
		case isLeaf && leaf != nil:
			n++
			net.delivered++
			leaf.inbox = append(leaf.inbox, net.roundTrip(e.m))
		}
		if n > maxCoreDeliveries {
			net.t.Fatalf("more than %d messages delivered: a loop?", maxCoreDeliveries)
		}
	}
}

// waitStores waits until no store has writes queued: their answers are sent.
func (net *coreNet) waitStores() {
	net.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range net.nodes {
		for n.store.queued.Load() > 0 {
			if time.Now().After(deadline) {
				net.t.Fatalf("%s: the store's writes did not finish in 10 s", n.name)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// replies are the UserReply messages the leaf received for request id.
func (l *coreLeaf) replies(id protocol.QueryID) []*protocol.UserReply {
	var out []*protocol.UserReply
	for _, m := range l.inbox {
		if r, ok := m.(*protocol.UserReply); ok && r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// ask sends a directory request under a fresh ID and returns its one reply.
func (l *coreLeaf) ask(m protocol.Message) *protocol.UserReply {
	l.net.t.Helper()
	l.net.nextReq++
	id := protocol.QueryID{0xd1, byte(l.net.nextReq >> 16), byte(l.net.nextReq >> 8), byte(l.net.nextReq)}
	switch m := m.(type) {
	case *protocol.UserPut:
		m.ID = id
	case *protocol.UserGet:
		m.ID = id
	}
	l.send(m)
	rs := l.replies(id)
	if len(rs) != 1 {
		l.net.t.Fatalf("%s: %d replies, want 1", m.Type(), len(rs))
	}
	return rs[0]
}

// holders are the nodes that hold a record for name.
func (net *coreNet) holders(name string) []string {
	var out []string
	for _, n := range net.nodes {
		if _, ok := n.store.get(name, net.clock.Now()); ok && !n.down {
			out = append(out, n.name)
		}
	}
	slices.Sort(out)
	return out
}

// gossip runs a membership round on every live node at the net's clock and
// delivers what it sends. It returns how many nodes died in the round, by
// the nodes' own account.
func (net *coreNet) gossip() int {
	died := 0
	for _, n := range net.nodes {
		if !n.down {
			died += len(n.memb.Round(net.clock.Now()).died)
		}
	}
	net.run()
	return died
}

// linkMore does for every live node what the server does after a round: it
// links to the member the membership picks, while it has fewer than want
// neighbours (its ring successor even beyond), and both sides swap lists.
func (net *coreNet) linkMore(want int) {
	for _, n := range net.nodes {
		if n.down {
			continue
		}
		m := n.memb.ToDial(n.members.Live(), len(n.Neighbours(0)) < want, net.clock.Now())
		if m == nil {
			continue
		}
		o := net.node(m.Peer())
		if o == nil || o.down {
			n.memb.DialFailed(m.Peer(), net.clock.Now())
			continue
		}
		net.connect(n, o)
		n.memb.NeighbourUp(o.peer())
		o.memb.NeighbourUp(n.peer())
		net.run()
	}
}

// listed are the names of the supernodes n takes as live, sorted.
func (net *coreNet) listed(n *coreNode) []string {
	var out []string
	for _, m := range n.members.Live() {
		if o := net.node(m.Peer()); o != nil {
			out = append(out, o.name)
		} else {
			out = append(out, m.Peer().Short())
		}
	}
	slices.Sort(out)
	return out
}
