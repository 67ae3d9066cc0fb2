package compare

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

// design is one architecture's node logic over the simulated network.
type design interface {
	Name() string
	// build makes the nodes in the steady state of a network that has been
	// running: the peers online at the start (env.online) attached and
	// published, the others down, at no cost; the run then charges
	// everything that happens.
	build(e *env)
	up(p int)
	down(p int)
	ask(qi int, q *protocol.Query, from int)
	// fail applies a scheduled failure, if the design has what fails
	// (has).
	fail(f failure)
	has(f failure) bool
	// state is the number of entries each node keeps: index postings,
	// neighbours, routing entries.
	state() []int
}

type failure int

const (
	centralDies failure = iota
	supernodesDie
)

func (f failure) String() string {
	return [...]string{"central server dies (a standby takes over)", "30% of supernodes die (flooding, DHT: 30% of peers)"}[f]
}

// env is what a design is built in: the world, the network, which peers are
// online, and where hits are reported.
type env struct {
	wd     *world
	net    network
	online []bool
	rec    *recorder
	byCID  map[protocol.ContentID]int32
}

// hit reports that the query's asker learnt of source as having file cid.
// Only sources online now count: a hit for a peer that left is no use.
func (e *env) hit(qi int, cid protocol.ContentID, source int) {
	f, ok := e.byCID[cid]
	if !ok || qi < 0 || qi >= len(e.rec.start) || source < 0 || source >= len(e.online) || !e.online[source] {
		return
	}
	e.rec.hit(qi, f, e.net.Now())
}

// takeHits reports the sources of hits that reached peer self, other than
// self.
func (e *env) takeHits(qi, self int, m *protocol.Hits) {
	for _, h := range m.Hits {
		for _, s := range h.Sources {
			if sp := peerOf(s.Peer); sp != self {
				e.hit(qi, h.ID, sp)
			}
		}
	}
}

// publishes are peer p's file list as publish frames of at most
// MaxFilesPerFrame.
func (e *env) publishes(p int) []*protocol.Publish {
	var out []*protocol.Publish
	files := e.wd.holds[p]
	for len(files) > 0 {
		n := min(len(files), protocol.MaxFilesPerFrame)
		m := &protocol.Publish{}
		for _, f := range files[:n] {
			m.Files = append(m.Files, e.record(f))
		}
		out = append(out, m)
		files = files[n:]
	}
	return out
}

// record returns the wire record of file f.
func (e *env) record(f int32) protocol.FileRecord {
	return protocol.FileRecord{ID: e.wd.cids[f], Name: e.wd.titles[f], Size: 4 << 20}
}

// peerID is a peer's ID on the wire.
func peerID(p int) protocol.PeerID {
	var id protocol.PeerID
	id[0], id[1], id[2], id[3] = byte(p>>24), byte(p>>16), byte(p>>8), byte(p)
	id[31] = 0x5a
	return id
}

func peerOf(id protocol.PeerID) int {
	return int(id[0])<<24 | int(id[1])<<16 | int(id[2])<<8 | int(id[3])
}

// addr is a plausible address for a peer, so hits weigh what real ones do.
func addr(p int) string {
	return fmt.Sprintf("198.%d.%d.%d:%d", 18+p>>16&1, p>>8&255, p&255, 40000+p%20000)
}

// source is a peer as a hit names it.
func source(p int) protocol.Source { return protocol.Source{Peer: peerID(p), Addrs: []string{addr(p)}} }

// recorder keeps what each query found, and when.
type recorder struct {
	start       []time.Duration
	first, last []time.Duration
	found       []map[int32]bool
	truth       [][]int32 // files with a live holder other than the asker, when asked
	from        []int
}

func (r *recorder) hit(qi int, f int32, at time.Duration) {
	if !slices.Contains(r.truth[qi], f) {
		return // a file that matches by accident of the words: not what was asked
	}
	if r.found[qi] == nil {
		r.found[qi] = map[int32]bool{}
		r.first[qi] = at - r.start[qi]
	}
	r.found[qi][f] = true
	r.last[qi] = at - r.start[qi]
}

// run runs one design on the workload.
func run(d design, wd *world, o Options) (Result, error) {
	w := wd.w
	var net network = newNet(w.Seed + 1)
	if o.QUIC {
		net = newQuicNet(w.Seed+1, o.Log)
	}
	e := &env{wd: wd, net: net, online: make([]bool, w.Peers), byCID: make(map[protocol.ContentID]int32, len(wd.cids))}
	copy(e.online, wd.startsOnline)
	for f, c := range wd.cids {
		e.byCID[c] = int32(f)
	}
	n := len(wd.queries)
	e.rec = &recorder{start: make([]time.Duration, n), first: make([]time.Duration, n), last: make([]time.Duration, n),
		found: make([]map[int32]bool, n), truth: make([][]int32, n), from: make([]int, n)}
	began := time.Now()
	d.build(e)
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s, %d peers: built in %v\n", d.Name(), w.Peers, time.Since(began).Round(time.Second))
		var tell func(at time.Duration)
		tell = func(at time.Duration) {
			e.net.after(time.Minute, func() {
				fmt.Fprintf(o.Progress, "%s, %d peers: %v of %v simulated, %v\n", d.Name(), w.Peers, at+time.Minute, w.Duration, time.Since(began).Round(time.Second))
				tell(at + time.Minute)
			})
		}
		tell(0)
	}
	for _, c := range wd.churn {
		e.net.after(c.at, func() {
			if e.online[c.peer] == c.up {
				return
			}
			e.online[c.peer] = c.up
			if c.up {
				d.up(c.peer)
			} else {
				d.down(c.peer)
			}
		})
	}
	for qi := range wd.queries {
		q := &wd.queries[qi]
		e.net.after(q.at, func() {
			from := q.from
			for k := 0; k < w.Peers && !e.online[from]; k++ {
				from = (from + 1) % w.Peers
			}
			e.rec.from[qi], e.rec.start[qi] = from, e.net.Now()
			for _, f := range q.files {
				if wd.liveHolder(f, from, e.online) {
					e.rec.truth[qi] = append(e.rec.truth[qi], f)
				}
			}
			var id protocol.QueryID
			id[0], id[1], id[2], id[3] = byte(qi>>24), byte(qi>>16), byte(qi>>8), byte(qi)
			id[15] = 0xc0
			d.ask(qi, &protocol.Query{ID: id, Text: q.text, Limit: 100}, from)
		})
	}
	at := map[failure]time.Duration{
		centralDies:   time.Duration(w.CentralDiesAt * float64(w.Duration)),
		supernodesDie: time.Duration(w.SupernodesDieAt * float64(w.Duration)),
	}
	// In a fixed order: two failures at one instant happen in the order
	// they were scheduled.
	for _, f := range []failure{centralDies, supernodesDie} {
		e.net.after(at[f], func() { d.fail(f) })
	}
	if err := e.net.run(w.Duration); err != nil {
		return Result{}, err
	}
	return summarise(d, e, at), nil
}

// everyPeer calls fn for each online peer once every period, the peers'
// turns spread over it a second at a time (a shorter period has them all
// at once), from one step on.
func (e *env) everyPeer(period time.Duration, fn func(p int)) {
	step := min(period, time.Second)
	n := max(1, int(period/step))
	var tick func(i int)
	tick = func(i int) {
		for p := i % n; p < len(e.online); p += n {
			if e.online[p] {
				fn(p)
			}
		}
		e.net.after(step, func() { tick(i + 1) })
	}
	e.net.after(step, func() { tick(0) })
}

// killShare takes 30% of the online peers down at once, as a design's
// failure where every peer serves: they leave as churn's departures do, and
// come back at their next scheduled join.
func (e *env) killShare(d design) {
	var on []int
	for p, up := range e.online {
		if up {
			on = append(on, p)
		}
	}
	for _, i := range sample(e.net.random(), len(on), len(on)*3/10) {
		e.online[on[i]] = false
		d.down(on[i])
	}
}

// liveHolder reports whether a peer other than asker holding f is online.
func (wd *world) liveHolder(f int32, asker int, online []bool) bool {
	for _, p := range wd.holders[f] {
		if int(p) != asker && online[p] {
			return true
		}
	}
	return false
}

// Designs are the names Run takes, in the order tables list them.
var Designs = []string{"supernode", "flooding", "central", "dht"}

// Options tune the designs.
type Options struct {
	FloodDegree, FloodTTL int // default 4 and 7, Gnutella 0.4's
	// PerSupernode (default 100) peers per supernode, Neighbours (8) links
	// per supernode, SummaryBits (2^16) per multi-hop summary level;
	// SummaryFP the false positive rate one-hop summaries are sized for
	// (default the router's).
	PerSupernode, Neighbours, SummaryBits int
	SummaryFP                             float64
	// MultiHop routes the overlay's queries hop by hop, the oldest way;
	// OneHop by one-hop summaries instead of the keyword ring.
	MultiHop, OneHop bool
	// Probe is how often a leaf pings each of its supernodes (default the
	// peer's ProbeInterval), or as seldom as its supernode asks; a leaf
	// notices a dead one after two to three. Gossip is
	// the supernodes' gossip interval (default theirs), and their member
	// timeout keeps its default ratio to it. Stabilize is how often a DHT
	// peer runs Chord's upkeep (default 30 s).
	Probe, Gossip, Stabilize time.Duration
	// LeafPings is the pings a second a supernode asks all its leaves
	// together to keep under (default the router's).
	LeafPings float64
	// QUIC runs the designs over real QUIC links on loopback, in real time,
	// instead of the simulated network: for small N (each node has its own
	// socket).
	QUIC bool
	Log  zerolog.Logger
	// Progress, when set, is told when each design is built and as each
	// simulated minute passes: a run of a million peers takes half an hour.
	Progress io.Writer
}

func newDesign(name string, o Options) (design, error) {
	switch name {
	case "flooding":
		return &flood{Degree: cmp.Or(o.FloodDegree, 4), TTL: cmp.Or(o.FloodTTL, 7)}, nil
	case "central":
		return &central{}, nil
	case "dht":
		return &dht{Copies: 3, Stabilize: cmp.Or(o.Stabilize, 30*time.Second)}, nil
	case "supernode":
		snc := supernode.DefaultConfig()
		gossip := cmp.Or(o.Gossip, snc.GossipInterval)
		return &overlay{PerSupernode: cmp.Or(o.PerSupernode, 100), Neighbours: cmp.Or(o.Neighbours, 8), SummaryBits: cmp.Or(o.SummaryBits, 1<<16), SummaryFP: o.SummaryFP,
			MultiHop: o.MultiHop, OneHop: o.OneHop, Probe: cmp.Or(o.Probe, peer.DefaultConfig().ProbeInterval), LeafPings: o.LeafPings,
			Gossip: gossip, MemberTimeout: gossip * snc.MemberTimeout / snc.GossipInterval, Refresh: snc.MemberRefresh}, nil
	}
	return nil, fmt.Errorf("compare: no design %q (have %v)", name, Designs)
}

// Run runs each named design on the same workload and returns their results
// in that order.
func Run(w Workload, o Options, names ...string) ([]Result, error) {
	if w.Peers < 2 {
		return nil, fmt.Errorf("compare: %d peers; at least 2", w.Peers)
	}
	if d := w.Duration; d != 0 && (d < 0 || d <= w.Warmup+w.QueryTimeout) {
		return nil, fmt.Errorf("compare: a run of %v leaves no time for queries after the warm-up and the query timeout", d)
	}
	wd := newWorld(w)
	var out []Result
	for _, n := range names {
		d, err := newDesign(n, o)
		if err != nil {
			return nil, err
		}
		r, err := run(d, wd, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, r)
	}
	return out, nil
}
