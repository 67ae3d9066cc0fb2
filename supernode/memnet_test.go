package supernode

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

// memNet is an in-memory overlay for testing Router: supernodes joined by links,
// leaves that are only a link ID and an inbox, one FIFO queue of messages in flight,
// and a fake clock. Nothing runs concurrently: a Router's Send only enqueues, and
// run delivers, so every test is deterministic.
//
// Every link end has its own LinkID, unique across the whole net, so a message
// sent on one end is delivered to the router (or leaf) at the other end under the
// receiver's ID for the link. Every delivered message is encoded with
// protocol.AppendFrame and decoded again, so the wire format is exercised too.
type memNet struct {
	t      testing.TB
	clock  *fakeClock
	nodes  []*memNode
	queue  []envelope
	ends   map[LinkID]linkEnd // a link end's ID -> the other end
	leaves map[LinkID]*memLeaf
	nextID LinkID
	frame  []byte

	nextQuery int // leaves' query IDs

	// drop, when set, loses the messages it returns true for.
	drop func(from, to *memNode, m protocol.Message) bool

	delivered int // messages delivered so far, for the bound and for settle
}

// maxDeliveries bounds one run: a routing loop fails the test instead of hanging it.
const maxDeliveries = 1_000_000

type memNode struct {
	net  *memNet
	name string
	peer protocol.PeerID
	r    *Router
	// mute drops everything the node sends: a supernode that never answers.
	mute bool
	// got counts the messages delivered to the node, by type.
	got map[protocol.MsgType]int
	// errs are the errors Handle returned for delivered messages.
	errs []error
	// queries are the Query messages delivered to the node, in order.
	queries []protocol.Query
	// links maps a neighbour's index to this node's link ID for the link;
	// contacts the same for links opened for direct queries.
	links, contacts map[int]LinkID
	// key signs the node's one-hop summaries (newOneHopNet).
	key ed25519.PrivateKey
}

// linkEnd is where a message sent on a link end arrives.
type linkEnd struct {
	node *memNode // nil for a leaf
	id   LinkID   // the receiver's ID for the link
}

type memLeaf struct {
	net   *memNet
	node  *memNode // the leaf's supernode
	id    LinkID   // the supernode's ID for the leaf link
	name  string
	peer  protocol.PeerID
	inbox []protocol.Message
}

type envelope struct {
	from *memNode
	to   LinkID // the sender's ID for the link
	m    protocol.Message
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type memOutbox struct{ n *memNode }

func (o memOutbox) Send(to LinkID, m protocol.Message) {
	o.n.net.queue = append(o.n.net.queue, envelope{from: o.n, to: to, m: m})
}

// memDirectOutbox also reaches any supernode of the net, over its
// neighbour link or a contact link opened on first use.
type memDirectOutbox struct{ memOutbox }

func (o memDirectOutbox) SendDirect(to protocol.PeerID, m protocol.Message) {
	net, a := o.n.net, o.n
	for b, nd := range net.nodes {
		if nd.peer != to {
			continue
		}
		id, ok := a.links[b]
		if !ok {
			id, ok = a.contacts[b]
		}
		if !ok {
			ia, ib := net.pair(a, nd)
			a.contacts[b], nd.contacts[slices.Index(net.nodes, a)] = ia, ib
			a.r.ContactUp(ia, nd.peer)
			nd.r.ContactUp(ib, a.peer)
			id = ia
		}
		o.Send(id, m)
		return
	}
}

// newOneHopNet is newMemNet with one-hop routing: every supernode has a
// key, signs its summaries, and checks the others' against the net's keys.
func newOneHopNet(t testing.TB, n int, cfg RouterConfig) *memNet {
	t.Helper()
	net := newMemNet(t, n, cfg)
	keys := map[protocol.PeerID]ed25519.PublicKey{}
	for _, nd := range net.nodes {
		id, err := protocol.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		nd.peer, nd.key = id.ID, id.Key
		keys[nd.peer] = id.Key.Public().(ed25519.PublicKey)
	}
	for _, nd := range net.nodes {
		c := cfg
		c.Now = net.clock.Now
		c.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
		c.ID = nd.peer
		key := nd.key
		c.Sign = func(b []byte) []byte { return ed25519.Sign(key, b) }
		c.MemberKey = func(p protocol.PeerID) ed25519.PublicKey { return keys[p] }
		nd.r = NewRouter(c, memDirectOutbox{memOutbox{nd}})
	}
	return net
}

// testRouterConfig is the configuration tests start from: small summaries, so
// encoding them on every delivery stays cheap.
func testRouterConfig() RouterConfig {
	// Routing tests send many queries at one fake instant; the rate limit has its own test.
	return RouterConfig{SummaryBits: 1 << 16, LeafQueryRate: 1e9, LeafQueryBurst: 1 << 30}
}

// newMemNet makes n supernodes named A, B, C, ... with cfg; Now and Log are set
// by the net.
func newMemNet(t testing.TB, n int, cfg RouterConfig) *memNet {
	t.Helper()
	net := &memNet{
		t:      t,
		clock:  &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		ends:   make(map[LinkID]linkEnd),
		leaves: make(map[LinkID]*memLeaf),
		nextID: 100,
	}
	cfg.Now = net.clock.Now
	cfg.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	for i := range n {
		name := string(rune('A' + i))
		nd := &memNode{
			net:      net,
			name:     name,
			peer:     protocol.PeerID(sha256.Sum256([]byte("supernode " + name))),
			got:      make(map[protocol.MsgType]int),
			links:    make(map[int]LinkID),
			contacts: make(map[int]LinkID),
		}
		c := cfg
		c.ID = nd.peer
		nd.r = NewRouter(c, memOutbox{nd})
		net.nodes = append(net.nodes, nd)
	}
	return net
}

func (net *memNet) newID() LinkID {
	net.nextID++
	return net.nextID
}

// pair makes the two ends of a link between a and b: a's ID for it, and b's.
func (net *memNet) pair(a, b *memNode) (LinkID, LinkID) {
	ia, ib := net.newID(), net.newID()
	net.ends[ia] = linkEnd{node: b, id: ib}
	net.ends[ib] = linkEnd{node: a, id: ia}
	return ia, ib
}

// connect links supernodes a and b (NeighbourUp on both sides) and delivers what
// that sends.
func (net *memNet) connect(a, b int) {
	net.t.Helper()
	na, nb := net.nodes[a], net.nodes[b]
	if _, ok := na.links[b]; ok {
		net.t.Fatalf("%s and %s are already linked", na.name, nb.name)
	}
	ia, ib := net.pair(na, nb)
	na.links[b], nb.links[a] = ia, ib
	na.r.NeighbourUp(ia, nb.peer)
	nb.r.NeighbourUp(ib, na.peer)
	net.run()
}

// disconnect takes the link between a and b down on both sides. Messages already
// queued on it are lost, as they would be with a real connection.
func (net *memNet) disconnect(a, b int) {
	net.t.Helper()
	na, nb := net.nodes[a], net.nodes[b]
	ia, ok := na.links[b]
	if !ok {
		net.t.Fatalf("%s and %s are not linked", na.name, nb.name)
	}
	ib := nb.links[a]
	delete(net.ends, ia)
	delete(net.ends, ib)
	delete(na.links, b)
	delete(nb.links, a)
	na.r.NeighbourDown(ia)
	nb.r.NeighbourDown(ib)
}

// line links the supernodes 0-1-2-...-n-1.
func (net *memNet) line() {
	for i := 1; i < len(net.nodes); i++ {
		net.connect(i-1, i)
	}
}

// ring links the supernodes in a line and the last to the first.
func (net *memNet) ring() {
	net.line()
	net.connect(len(net.nodes)-1, 0)
}

// addLeaf attaches a leaf to supernode i, seen at an IPv4 address.
func (net *memNet) addLeaf(i int, name string) *memLeaf {
	return net.addLeafAt(i, name, "192.0.2.1:4000")
}

// addLeafAt attaches a leaf to supernode i, seen at addr.
func (net *memNet) addLeafAt(i int, name, addr string) *memLeaf {
	net.t.Helper()
	nd := net.nodes[i]
	l := &memLeaf{
		net:  net,
		node: nd,
		id:   net.newID(),
		name: name,
		peer: protocol.PeerID(sha256.Sum256([]byte("leaf " + name))),
	}
	net.leaves[l.id] = l
	nd.r.LeafUp(l.id, LeafInfo{Peer: l.peer, Name: name, Addrs: []string{addr}})
	return l
}

// remove detaches the leaf (LeafDown).
func (l *memLeaf) remove() {
	delete(l.net.leaves, l.id)
	l.node.r.LeafDown(l.id)
}

// roundTrip encodes m as a frame and decodes it again.
func (net *memNet) roundTrip(m protocol.Message) protocol.Message {
	net.t.Helper()
	var err error
	net.frame, err = protocol.AppendFrame(net.frame[:0], m)
	if err != nil {
		net.t.Fatalf("encode %s: %v", m.Type(), err)
	}
	out, err := protocol.Decode(protocol.MsgType(net.frame[0]), net.frame[protocol.HeaderSize:])
	if err != nil {
		net.t.Fatalf("decode %s: %v", m.Type(), err)
	}
	return out
}

// send hands a message from the leaf to its supernode, through the wire encoding,
// and returns Handle's error.
func (l *memLeaf) send(m protocol.Message) error {
	l.net.t.Helper()
	return l.node.r.Handle(l.id, l.net.roundTrip(m))
}

// publish shares files named names; a file's content ID is cidOf(name).
func (l *memLeaf) publish(names ...string) error {
	l.net.t.Helper()
	return l.send(&protocol.Publish{Files: files(names...)})
}

func files(names ...string) []protocol.FileRecord {
	fs := make([]protocol.FileRecord, len(names))
	for i, n := range names {
		fs[i] = protocol.FileRecord{ID: cidOf(n), Name: n, Size: int64(1000 + i)}
	}
	return fs
}

func cidOf(name string) protocol.ContentID { return protocol.ContentID(sha256.Sum256([]byte(name))) }

// run delivers queued messages, and whatever their handling sends, until the queue
// is empty. It returns how many it delivered.
func (net *memNet) run() int {
	net.t.Helper()
	n := 0
	for len(net.queue) > 0 {
		e := net.queue[0]
		net.queue[0] = envelope{}
		net.queue = net.queue[1:]
		if e.from.mute {
			continue
		}
		dst, ok := net.ends[e.to]
		leaf := net.leaves[e.to]
		if !ok && leaf == nil {
			continue // the link is gone
		}
		if dst.node != nil && net.drop != nil && net.drop(e.from, dst.node, e.m) {
			continue
		}
		n++
		net.delivered++
		if net.delivered > maxDeliveries {
			net.t.Fatalf("more than %d messages delivered: a routing loop?", maxDeliveries)
		}
		m := net.roundTrip(e.m)
		if leaf != nil {
			leaf.inbox = append(leaf.inbox, m)
			continue
		}
		dst.node.got[m.Type()]++
		if q, ok := m.(*protocol.Query); ok {
			dst.node.queries = append(dst.node.queries, *q)
		}
		if err := dst.node.r.Handle(dst.id, m); err != nil {
			dst.node.errs = append(dst.node.errs, fmt.Errorf("%s from %s: %w", m.Type(), e.from.name, err))
		}
	}
	return n
}

// tick runs Tick on every supernode, then delivers what that sends.
func (net *memNet) tick() int {
	net.t.Helper()
	for _, nd := range net.nodes {
		nd.r.Tick()
	}
	return net.run()
}

// settle ticks and delivers until a round sends nothing: every summary has
// propagated as far as it goes.
func (net *memNet) settle() {
	net.t.Helper()
	for range 100 {
		if net.tick() == 0 {
			return
		}
	}
	net.t.Fatal("summaries did not settle in 100 rounds")
}

// queriesGot returns how many Query messages each supernode has received.
func (net *memNet) queriesGot() []int {
	out := make([]int, len(net.nodes))
	for i, nd := range net.nodes {
		out[i] = nd.got[protocol.TypeQuery]
	}
	return out
}

// noErrors fails the test if any supernode refused a message.
func (net *memNet) noErrors() {
	net.t.Helper()
	for _, nd := range net.nodes {
		for _, err := range nd.errs {
			net.t.Errorf("supernode %s: %v", nd.name, err)
		}
	}
}

// result is what a leaf received for one query.
type result struct {
	hits  []protocol.Hit
	done  *protocol.QueryDone // nil while the query is open
	after int                 // Hits received after the QueryDone: always a bug
	dones int                 // QueryDones received: more than one is a bug
}

// names returns the file names of the hits.
func (r result) names() []string {
	out := make([]string, len(r.hits))
	for i, h := range r.hits {
		out[i] = h.Name
	}
	return out
}

// start sends q (its ID filled in) to the leaf's supernode and delivers
// everything that follows. It returns the query's ID.
func (l *memLeaf) start(q protocol.Query) protocol.QueryID {
	l.net.t.Helper()
	l.net.nextQuery++
	q.ID = protocol.QueryID{0xee, byte(l.net.nextQuery >> 8), byte(l.net.nextQuery)}
	if err := l.send(&q); err != nil {
		l.net.t.Fatalf("query %q: %v", q.Text, err)
	}
	l.net.run()
	return q.ID
}

// collect returns what the leaf has received for query id so far.
func (l *memLeaf) collect(id protocol.QueryID) result {
	var r result
	for _, m := range l.inbox {
		switch m := m.(type) {
		case *protocol.Hits:
			if m.ID != id {
				continue
			}
			if r.done != nil {
				r.after += len(m.Hits)
			}
			r.hits = append(r.hits, m.Hits...)
		case *protocol.QueryDone:
			if m.ID != id {
				continue
			}
			r.dones++
			if r.done == nil {
				r.done = m
			}
		}
	}
	return r
}

// query runs a query to the end and checks that it ended exactly once, with no
// hits after its end.
func (l *memLeaf) query(q protocol.Query) result {
	l.net.t.Helper()
	r := l.collect(l.start(q))
	if r.done == nil {
		l.net.t.Fatalf("query %q from %s: no QueryDone", q.Text, l.node.name)
	}
	if r.dones != 1 || r.after != 0 {
		l.net.t.Fatalf("query %q from %s: %d QueryDones, %d hits after the first", q.Text, l.node.name, r.dones, r.after)
	}
	return r
}

// search is query for text with no other options.
func (l *memLeaf) search(text string) result {
	l.net.t.Helper()
	return l.query(protocol.Query{Text: text})
}
