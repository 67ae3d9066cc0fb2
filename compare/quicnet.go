package compare

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// quicNet runs the designs over real QUIC on loopback: every node has its own
// UDP socket and identity, and a message goes over a QUIC link between the
// two nodes, dialled the first time one sends to the other. Time is real.
// Handlers and timers still run one at a time, on the goroutine that calls
// run, so the designs need no locks; the links' goroutines only queue what
// arrives.
//
// A node that is "dead" keeps its socket: the harness drops what it sends and
// what reaches it, as the simulation does.
type quicNet struct {
	rng    *rand.Rand
	log    zerolog.Logger
	nodes  []*qnode
	alive  []bool
	byID   map[protocol.PeerID]NodeID
	start  time.Time
	began  bool
	early  []timer // timers set before run, armed when it starts
	timers []*time.Timer
	frame  []byte
	counters

	mu      sync.Mutex // guards the fields below, shared with the links' goroutines
	queue   []func()
	wake    chan struct{}
	pairs   map[[2]NodeID]*qlink
	byToken map[string]*qlink
	nextTok int
	errs    []error

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type qnode struct {
	h    handler
	id   *protocol.Identity
	node *transport.Node
}

type timer struct {
	d  time.Duration
	fn func()
}

// qlink is one QUIC connection between two nodes, a < b. Each end has its
// own transport.Link; tags[0] are the tags of what a sent, in order, and
// tags[1] of what b sent, so the receiver learns which query a message
// belongs to (bookkeeping of the harness, not part of the wire).
type qlink struct {
	a, b    NodeID
	ends    [2]*transport.Link
	tags    [2][]int
	pending [2][]pendingMsg
}

type pendingMsg struct {
	tag int
	m   protocol.Message
}

func newQuicNet(seed uint64, log zerolog.Logger) *quicNet {
	ctx, cancel := context.WithCancel(context.Background())
	return &quicNet{
		rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995)), log: log, byID: map[protocol.PeerID]NodeID{},
		counters: newCounters(), wake: make(chan struct{}, 1), pairs: map[[2]NodeID]*qlink{},
		byToken: map[string]*qlink{}, ctx: ctx, cancel: cancel,
	}
}

func (q *quicNet) add(h handler, _ float64) NodeID {
	id, err := protocol.GenerateIdentity()
	if err != nil {
		panic(err)
	}
	pc, err := transport.ListenUDP("127.0.0.1:0")
	if err != nil {
		q.fail(err)
		return q.addNode(h, id, nil)
	}
	n, err := transport.New(transport.Config{Identity: id, Conn: pc, Log: q.log, Listen: true, Agent: "supernet-compare",
		AnySender: true}) // the designs compared are not the overlay, and have no roles
	if err != nil {
		pc.Close()
		q.fail(err)
	}
	return q.addNode(h, id, n)
}

func (q *quicNet) addNode(h handler, id *protocol.Identity, n *transport.Node) NodeID {
	nid := NodeID(len(q.nodes))
	q.nodes = append(q.nodes, &qnode{h: h, id: id, node: n})
	q.alive = append(q.alive, true)
	q.byID[id.ID] = nid
	q.counters.addNode()
	return nid
}

func (q *quicNet) fail(err error) {
	q.mu.Lock()
	q.errs = append(q.errs, err)
	q.mu.Unlock()
}

func (q *quicNet) Now() time.Duration {
	if !q.began {
		return 0
	}
	return time.Since(q.start)
}

func (q *quicNet) random() *rand.Rand { return q.rng }
func (q *quicNet) stats() *counters   { return &q.counters }
func (q *quicNet) kill(id NodeID)     { q.alive[id] = false }
func (q *quicNet) revive(id NodeID)   { q.alive[id] = true }

func (q *quicNet) after(d time.Duration, fn func()) {
	if !q.began {
		q.early = append(q.early, timer{d, fn})
		return
	}
	q.timers = append(q.timers, time.AfterFunc(d, func() { q.push(fn) }))
}

// push queues fn for the run goroutine; the queue has no bound, so a link's
// goroutine never waits on the run goroutine, which may be sending to it.
func (q *quicNet) push(fn func()) {
	q.mu.Lock()
	q.queue = append(q.queue, fn)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *quicNet) charge(from, to NodeID, tag int, m protocol.Message) {
	if !q.alive[from] {
		return
	}
	f, err := protocol.AppendFrame(nil, m)
	if err != nil {
		panic("compare: a design built a message the protocol refuses: " + err.Error())
	}
	q.sent(from, tag, uint64(len(f)))
	if q.alive[to] {
		q.received(to, uint64(len(f)))
	}
}

func (q *quicNet) send(from, to NodeID, tag int, m protocol.Message) {
	if !q.alive[from] || q.nodes[from].node == nil || q.nodes[to].node == nil {
		return
	}
	var err error
	if q.frame, err = protocol.AppendFrame(q.frame[:0], m); err != nil {
		panic("compare: a design built a message the protocol refuses: " + err.Error())
	}
	q.sent(from, tag, uint64(len(q.frame)))
	a, b := min(from, to), max(from, to)
	side := 0
	if from == b {
		side = 1
	}
	q.mu.Lock()
	ql := q.pairs[[2]NodeID{a, b}]
	if ql == nil {
		ql = &qlink{a: a, b: b}
		q.pairs[[2]NodeID{a, b}] = ql
		q.nextTok++
		tok := strconv.Itoa(q.nextTok)
		q.byToken[tok] = ql
		q.wg.Add(1)
		go q.dial(ql, from, to, tok)
	}
	if ql.ends[side] == nil {
		ql.pending[side] = append(ql.pending[side], pendingMsg{tag, m})
		q.mu.Unlock()
		return
	}
	ql.tags[side] = append(ql.tags[side], tag)
	end := ql.ends[side]
	q.mu.Unlock()
	q.write(ql, side, end, m)
}

// write sends m on one end; a message that could not be queued takes its tag
// back, so the tags the receiver reads stay in step.
func (q *quicNet) write(ql *qlink, side int, end *transport.Link, m protocol.Message) {
	if err := end.Send(m); err != nil {
		q.mu.Lock()
		ql.tags[side] = ql.tags[side][:len(ql.tags[side])-1]
		q.mu.Unlock()
		q.log.Debug().Err(err).Msg("compare: send failed")
	}
}

// dial opens the connection from the node that sent first; the hello names
// the connection, so the other end finds its qlink.
func (q *quicNet) dial(ql *qlink, from, to NodeID, tok string) {
	defer q.wg.Done()
	ctx, cancel := context.WithTimeout(q.ctx, 10*time.Second)
	l, _, err := q.nodes[from].node.Dial(ctx, q.nodes[to].node.Addr().String(), q.nodes[to].id.ID,
		&protocol.Hello{Role: protocol.RoleTransfer, Name: tok})
	cancel()
	if err != nil {
		if q.ctx.Err() == nil {
			q.fail(fmt.Errorf("dial %d -> %d: %w", from, to, err))
		}
		return
	}
	side := 0
	if from == ql.b {
		side = 1
	}
	q.ready(ql, side, l, to)
}

// ready starts reading one end of a connection, and has the run goroutine
// record it and send what waited for it: every send on an end comes from
// that goroutine, in the order of its tags.
func (q *quicNet) ready(ql *qlink, side int, l *transport.Link, other NodeID) {
	q.push(func() {
		q.mu.Lock()
		ql.ends[side] = l
		waiting := ql.pending[side]
		ql.pending[side] = nil
		q.mu.Unlock()
		for _, p := range waiting {
			q.mu.Lock()
			ql.tags[side] = append(ql.tags[side], p.tag)
			q.mu.Unlock()
			q.write(ql, side, l, p.m)
		}
	})
	me := ql.a
	if side == 1 {
		me = ql.b
	}
	q.wg.Add(1)
	go q.read(ql, side, l, me, other)
}

// read delivers what arrives on one end, with the tag its sender recorded.
func (q *quicNet) read(ql *qlink, side int, l *transport.Link, me, from NodeID) {
	defer q.wg.Done()
	for {
		m, err := l.Recv()
		if err != nil {
			return
		}
		q.mu.Lock()
		tags := &ql.tags[1-side]
		tag := tagUpkeep
		if len(*tags) > 0 {
			tag, *tags = (*tags)[0], (*tags)[1:]
		}
		q.mu.Unlock()
		q.push(func() {
			if q.alive[me] && q.alive[from] {
				f, _ := protocol.AppendFrame(nil, m)
				q.received(me, uint64(len(f)))
				q.nodes[me].h.receive(from, tag, m)
			}
		})
	}
}

// accept takes the connections other nodes dial to node n.
func (q *quicNet) accept(n NodeID) {
	defer q.wg.Done()
	for {
		in, err := q.nodes[n].node.Accept(q.ctx)
		if err != nil {
			return
		}
		q.mu.Lock()
		ql := q.byToken[in.Hello.Name]
		q.mu.Unlock()
		from, known := q.byID[in.Peer]
		if ql == nil || !known {
			in.Reject(fmt.Errorf("%w: not a connection of this run", protocol.ErrForbidden))
			continue
		}
		l, err := in.Accept(&protocol.Welcome{Role: protocol.RoleTransfer, Agent: "supernet-compare"})
		if err != nil {
			continue
		}
		side := 0
		if n == ql.b {
			side = 1
		}
		q.ready(ql, side, l, from)
	}
}

// run serves until the time passes until, then closes every node.
func (q *quicNet) run(until time.Duration) error {
	q.start, q.began = time.Now(), true
	for i, n := range q.nodes {
		if n.node != nil {
			q.wg.Add(1)
			go q.accept(NodeID(i))
		}
	}
	for _, t := range q.early {
		q.after(t.d, t.fn)
	}
	q.early = nil
	end := time.NewTimer(until)
	defer end.Stop()
	for done := false; !done; {
		select {
		case <-q.wake:
		case <-end.C:
			done = true
		}
		for {
			q.mu.Lock()
			batch := q.queue
			q.queue = nil
			q.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, fn := range batch {
				fn()
			}
		}
	}
	for _, t := range q.timers {
		t.Stop()
	}
	q.cancel()
	for _, n := range q.nodes {
		if n.node != nil {
			n.node.Close()
		}
	}
	q.wg.Wait()
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.errs) > 0 {
		return fmt.Errorf("compare: %d network errors, the first: %w", len(q.errs), q.errs[0])
	}
	return nil
}
