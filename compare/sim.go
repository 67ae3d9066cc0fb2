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

	frame    []byte
	lastMsg  protocol.Message
	lastSize uint64

	// Per node: messages sent and received, and bytes.
	Msgs  []uint64
	Bytes []uint64
	// Per tag (a query's index, or tagUpkeep): messages and bytes sent.
	tagMsgs, tagBytes map[int]uint64
	total             struct{ msgs, bytes uint64 }
	delivered         uint64
}

// tagUpkeep marks messages that serve no one query: publishing, summaries,
// membership, repairs.
const tagUpkeep = -1

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
	return &Net{rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995)), tagMsgs: map[int]uint64{}, tagBytes: map[int]uint64{}}
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
	n.Msgs = append(n.Msgs, 0)
	n.Bytes = append(n.Bytes, 0)
	return id
}

// setHandler replaces a node's handler (nodes are added before their logic exists).
func (n *Net) setHandler(id NodeID, h handler) { n.nodes[id] = h }

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
	// A message sent on to several neighbours is encoded once: designs do
	// not change a message once sent.
	if m != n.lastMsg {
		var err error
		n.frame, err = protocol.AppendFrame(n.frame[:0], m)
		if err != nil {
			panic("compare: a design built a message the protocol refuses: " + err.Error())
		}
		n.lastMsg, n.lastSize = m, uint64(len(n.frame))
	}
	size := n.lastSize
	start := max(n.now, n.upAt[from])
	n.upAt[from] = start + time.Duration(float64(size)/n.upBW[from]*float64(time.Second))
	n.Msgs[from]++
	n.Bytes[from] += size
	n.tagMsgs[tag]++
	n.tagBytes[tag] += size
	n.total.msgs++
	n.total.bytes += size
	n.push(event{at: n.upAt[from] + n.latency(from, to), from: from, to: to, tag: tag, m: m})
}

// after runs fn d from now.
func (n *Net) after(d time.Duration, fn func()) { n.push(event{at: n.now + d, fn: fn}) }

func (n *Net) push(e event) {
	n.seq++
	e.seq = n.seq
	heap.Push(&n.queue, e)
}

// kill and revive change whether a node takes part; messages in flight to a
// dead node are lost.
func (n *Net) kill(id NodeID)   { n.alive[id] = false }
func (n *Net) revive(id NodeID) { n.alive[id] = true; n.upAt[id] = n.now }

// run delivers events until the queue is empty or the time passes until.
func (n *Net) run(until time.Duration) {
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
		n.delivered++
		n.Msgs[e.to]++
		n.nodes[e.to].receive(e.from, e.tag, e.m)
	}
	n.now = max(n.now, until)
}
