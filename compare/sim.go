// Package compare runs one workload on four designs of a file-sharing
// overlay and measures each: the hierarchical supernode overlay (the
// project's own supernode.Router), Gnutella-style query flooding, a
// Napster-style central directory, and a Chord-style DHT that hashes
// keywords to their owner. All four speak the project's protocol messages,
// whose encoded size is what the network charges, and match names with the
// project's index.
//
// The network here is in memory: a discrete-event simulation with modelled
// link latency and uplink bandwidth, single-threaded and deterministic for a
// seed, so it reaches 100,000 peers on a small machine.
package compare

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// NodeID names a node of the simulated network.
type NodeID int32

// network is what the designs run over: the simulation here (Net), or real
// QUIC links on loopback (quicNet). Designs call it from one goroutine at a
// time, and it calls their handlers and timers the same way.
type network interface {
	// add makes a node with the given uplink (bytes/s).
	add(h handler, upBW float64) NodeID
	send(from, to NodeID, tag int, m protocol.Message)
	// charge counts m as sent, and as received if to is alive, without
	// delivering it: for a model's messages whose effect the model applies
	// itself.
	charge(from, to NodeID, tag int, m protocol.Message)
	after(d time.Duration, fn func())
	Now() time.Duration
	// kill and revive change whether a node takes part: what is sent to or
	// by a dead node is lost.
	kill(id NodeID)
	revive(id NodeID)
	random() *rand.Rand
	run(until time.Duration) error
	stats() *counters
}

// counters are what a network counts: per node, messages sent and received
// (Msgs) and bytes sent and received (Bytes); per tag (a query's index, or
// tagUpkeep), messages and bytes sent.
type counters struct {
	Msgs, Bytes       []uint64
	tagMsgs, tagBytes map[int]uint64
}

func newCounters() counters {
	return counters{tagMsgs: map[int]uint64{}, tagBytes: map[int]uint64{}}
}

func (c *counters) addNode() {
	c.Msgs = append(c.Msgs, 0)
	c.Bytes = append(c.Bytes, 0)
}

func (c *counters) sent(from NodeID, tag int, size uint64) {
	c.Msgs[from]++
	c.Bytes[from] += size
	c.tagMsgs[tag]++
	c.tagBytes[tag] += size
}

func (c *counters) received(to NodeID, size uint64) {
	c.Msgs[to]++
	c.Bytes[to] += size
}

// handler receives the messages sent to a node.
type handler interface {
	receive(from NodeID, tag int, m protocol.Message)
}

// Net is the simulated network: every node has a place on a plane (its
// distance to another is the one-way latency beyond a base) and an uplink
// whose bandwidth serialises what it sends. A message to a dead node is lost.
type Net struct {
	now   time.Duration
	seq   uint64
	queue events
	rng   *rand.Rand

	nodes []handler
	alive []bool
	x, y  []float64 // milliseconds on the plane
	upBW  []float64 // bytes per second
	upAt  []time.Duration

	// sized are the last two messages sized: a ping and its pong, or a
	// message sent on to several neighbours, are encoded once.
	frame []byte
	sized [2]sizedMsg

	counters
}

// Tags below zero mark messages that serve no one query, by kind:
// tagUpkeep publishing, repairs and the rest; tagLiveness pings that
// detect failures (a leaf's, Chord's stabilisation, Gnutella's ping/pong);
// tagMembers the supernodes' member gossip; tagSummaries one-hop
// summaries; tagLinks opening direct links.
const (
	tagUpkeep = -1 - iota
	tagLiveness
	tagMembers
	tagSummaries
	tagLinks
	nUpkeepTags = iota
)

// upkeepKinds name the upkeep tags, by -1-tag.
var upkeepKinds = [nUpkeepTags]string{"other", "liveness", "members", "summaries", "links"}

// Link model.
const (
	baseLatency = 5 * time.Millisecond
	planeSize   = 100.0 // ms: the farthest two nodes are about 140 ms + base apart
)

type event struct {
	at   time.Duration
	seq  uint64
	from NodeID
	to   NodeID
	tag  int
	size uint64
	m    protocol.Message
	fn   func()
}

type events []event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)   { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

func newNet(seed uint64) *Net {
	return &Net{rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995)), counters: newCounters()}
}

// add places a node with the given uplink (bytes/s) and returns its ID.
func (n *Net) add(h handler, upBW float64) NodeID {
	id := NodeID(len(n.nodes))
	n.nodes = append(n.nodes, h)
	n.alive = append(n.alive, true)
	n.x = append(n.x, n.rng.Float64()*planeSize)
	n.y = append(n.y, n.rng.Float64()*planeSize)
	n.upBW = append(n.upBW, upBW)
	n.upAt = append(n.upAt, 0)
	n.addNode()
	return id
}

// Now is the simulated time since the start.
func (n *Net) Now() time.Duration { return n.now }

func (n *Net) latency(a, b NodeID) time.Duration {
	d := math.Hypot(n.x[a]-n.x[b], n.y[a]-n.y[b])
	return baseLatency + time.Duration(d*float64(time.Millisecond))
}

// send queues m from one node to another: it leaves when the sender's uplink
// is free, takes its size over the uplink's bandwidth, then the latency.
func (n *Net) send(from, to NodeID, tag int, m protocol.Message) {
	if !n.alive[from] {
		return
	}
	size := n.size(m)
	start := max(n.now, n.upAt[from])
	n.upAt[from] = start + time.Duration(float64(size)/n.upBW[from]*float64(time.Second))
	n.sent(from, tag, size)
	n.push(event{at: n.upAt[from] + n.latency(from, to), from: from, to: to, tag: tag, size: size, m: m})
}

type sizedMsg struct {
	m    protocol.Message
	size uint64
}

// size is m's encoded size. Designs do not change a message once sent, so
// a message seen lately is not encoded again.
func (n *Net) size(m protocol.Message) uint64 {
	switch m {
	case n.sized[0].m:
		return n.sized[0].size
	case n.sized[1].m:
		n.sized[0], n.sized[1] = n.sized[1], n.sized[0]
		return n.sized[0].size
	}
	var err error
	n.frame, err = protocol.AppendFrame(n.frame[:0], m)
	if err != nil {
		panic("compare: a design built a message the protocol refuses: " + err.Error())
	}
	n.sized[1], n.sized[0] = n.sized[0], sizedMsg{m, uint64(len(n.frame))}
	return n.sized[0].size
}

func (n *Net) charge(from, to NodeID, tag int, m protocol.Message) {
	if !n.alive[from] {
		return
	}
	size := n.size(m)
	n.sent(from, tag, size)
	if n.alive[to] {
		n.received(to, size)
	}
}

// modelRTT is the modelled round trip between two nodes, 0 on a network
// without a model (real QUIC).
func modelRTT(n network, a, b NodeID) time.Duration {
	if l, ok := n.(*Net); ok {
		return 2 * l.latency(a, b)
	}
	return 0
}

// after runs fn d from now.
func (n *Net) after(d time.Duration, fn func()) { n.push(event{at: n.now + d, fn: fn}) }

func (n *Net) push(e event) {
	n.seq++
	e.seq = n.seq
	heap.Push(&n.queue, e)
}

func (n *Net) kill(id NodeID)   { n.alive[id] = false }
func (n *Net) revive(id NodeID) { n.alive[id] = true; n.upAt[id] = n.now }

func (n *Net) random() *rand.Rand { return n.rng }
func (n *Net) stats() *counters   { return &n.counters }

// run delivers events until the queue is empty or the time passes until.
func (n *Net) run(until time.Duration) error {
	for n.queue.Len() > 0 && n.queue[0].at <= until {
		e := heap.Pop(&n.queue).(event)
		n.now = e.at
		if e.fn != nil {
			e.fn()
			continue
		}
		if !n.alive[e.to] {
			continue
		}
		n.received(e.to, e.size)
		n.nodes[e.to].receive(e.from, e.tag, e.m)
	}
	n.now = max(n.now, until)
	return nil
}
