package compare

import (
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// flood is Gnutella-style query flooding: peers in a random graph, each
// keeping Degree neighbours, flood a query to all of them with a TTL; every
// peer that sees it for the first time answers from its own files and
// passes it on, and hits go back along the path the query came.
type flood struct {
	Degree, TTL int

	e     *env
	nodes []NodeID
	nbrs  [][]int
	seen  []map[protocol.QueryID]int // peer -> query -> the neighbour it came from (-1: asked here)
}

func (f *flood) Name() string { return "flooding" }

func (f *flood) build(e *env) {
	f.e = e
	n := len(e.wd.holds)
	f.nbrs = make([][]int, n)
	f.seen = make([]map[protocol.QueryID]int, n)
	for p := 0; p < n; p++ {
		f.nodes = append(f.nodes, e.net.add(floodPeer{f, p}, peerUplink))
		f.seen[p] = map[protocol.QueryID]int{}
		if !e.online[p] {
			e.net.kill(f.nodes[p])
		}
	}
	e.everyPeer(pingEvery, f.ping)
	rng := e.net.random()
	for p := 0; p < n; p++ {
		for tries := 0; e.online[p] && len(f.nbrs[p]) < f.Degree && tries < 4*f.Degree; tries++ {
			if q := rng.IntN(n); e.online[q] {
				f.link(p, q)
			}
		}
	}
}

// Gnutella 0.6's ping/pong with pong caching: a peer pings each neighbour
// every pingEvery and is answered from the neighbour's cache with
// cachedPongs pongs of 37 bytes each (a 23-byte descriptor header, a port,
// an IPv4 address, a file count and a size).
const (
	pingEvery   = 30 * time.Second
	cachedPongs = 10
)

var (
	gnutellaPing  = &protocol.Ping{Pad: make([]byte, 23)}
	gnutellaPongs = &protocol.Ping{Pad: make([]byte, 37*cachedPongs)}
)

// ping is peer p's keepalive and host discovery round.
func (f *flood) ping(p int) {
	for _, q := range f.nbrs[p] {
		f.e.net.charge(f.nodes[p], f.nodes[q], tagLiveness, gnutellaPing)
		f.e.net.charge(f.nodes[q], f.nodes[p], tagLiveness, gnutellaPongs)
	}
}

// link joins two peers unless they are the same, linked, or q is full.
func (f *flood) link(p, q int) bool {
	if p == q || slices.Contains(f.nbrs[p], q) || len(f.nbrs[q]) >= 2*f.Degree {
		return false
	}
	f.nbrs[p] = append(f.nbrs[p], q)
	f.nbrs[q] = append(f.nbrs[q], p)
	return true
}

func (f *flood) unlink(p, q int) {
	f.nbrs[p] = slices.DeleteFunc(f.nbrs[p], func(x int) bool { return x == q })
	f.nbrs[q] = slices.DeleteFunc(f.nbrs[q], func(x int) bool { return x == p })
}

// up: the peer connects to Degree random online peers (a ping each way).
func (f *flood) up(p int) {
	e := f.e
	e.net.revive(f.nodes[p])
	f.fill(p)
}

// fill tops a peer's neighbours up to Degree, from online peers chosen at
// random (in Gnutella, from the host cache the pongs filled).
func (f *flood) fill(p int) {
	e := f.e
	for tries := 0; len(f.nbrs[p]) < f.Degree && tries < 4*f.Degree; tries++ {
		q := e.net.random().IntN(len(f.nodes))
		if e.online[q] && f.link(p, q) {
			e.net.send(f.nodes[p], f.nodes[q], tagUpkeep, &protocol.Ping{Seq: 1})
			e.net.send(f.nodes[q], f.nodes[p], tagUpkeep, &protocol.Pong{Seq: 1})
		}
	}
}

// down: the peer's neighbours lose it and each replaces it.
func (f *flood) down(p int) {
	f.e.net.kill(f.nodes[p])
	old := slices.Clone(f.nbrs[p])
	for _, q := range old {
		f.unlink(p, q)
	}
	for _, q := range old {
		f.fill(q)
	}
	clear(f.seen[p])
}

func (f *flood) ask(qi int, q *protocol.Query, from int) {
	m := *q
	m.Hops = uint8(f.TTL - 1)
	f.seen[from][m.ID] = -1
	f.forget(from, m.ID)
	for _, n := range f.nbrs[from] {
		f.e.net.send(f.nodes[from], f.nodes[n], qi, &m)
	}
}

// seenFor is how long a servent remembers a query it forwarded. Past the
// asker's timeout no hit needs the reverse path, but a copy still on its way
// (a loaded host, a slow link) must not be flooded again as new: each
// such copy would start the flood over, and the extra load delays more
// copies past the next forgetting.
const seenFor = 30 * time.Second

// forget drops a query's reverse path once no hit can still need it and no
// copy can still be on its way.
func (f *flood) forget(p int, id protocol.QueryID) {
	f.e.net.after(max(f.e.wd.w.QueryTimeout+time.Second, seenFor), func() { delete(f.seen[p], id) })
}

func (f *flood) fail(x failure) {
	if x == supernodesDie {
		f.e.killShare(f)
	}
}

func (*flood) has(f failure) bool { return f == supernodesDie }

func (f *flood) state() []int {
	out := make([]int, len(f.nbrs))
	for p := range f.nbrs {
		out[p] = len(f.nbrs[p])
	}
	return out
}

type floodPeer struct {
	f *flood
	p int
}

func (fp floodPeer) receive(from NodeID, tag int, m protocol.Message) {
	f, p, e := fp.f, fp.p, fp.f.e
	prev := int(from - f.nodes[0])
	switch m := m.(type) {
	case *protocol.Query:
		if _, dup := f.seen[p][m.ID]; dup {
			return
		}
		f.seen[p][m.ID] = prev
		f.forget(p, m.ID)
		if hits := f.match(p, m.Text); len(hits) > 0 {
			e.net.send(f.nodes[p], from, tag, &protocol.Hits{ID: m.ID, Hits: hits})
		}
		if m.Hops > 0 {
			next := *m
			next.Hops--
			for _, n := range f.nbrs[p] {
				if n != prev {
					e.net.send(f.nodes[p], f.nodes[n], tag, &next)
				}
			}
		}
	case *protocol.Hits:
		back, ok := f.seen[p][m.ID]
		switch {
		case !ok: // the path is gone
		case back < 0:
			e.takeHits(tag, p, m)
		default:
			e.net.send(f.nodes[p], f.nodes[back], tag, m)
		}
	}
}

// match answers a query from the peer's own files: every term in the name.
func (f *flood) match(p int, text string) []protocol.Hit {
	terms := f.e.wd.termsOf(text)
	var out []protocol.Hit
	for _, file := range f.e.wd.holds[p] {
		if f.e.wd.matches(file, terms) {
			out = append(out, protocol.Hit{FileRecord: f.e.record(file), Sources: []protocol.Source{source(p)}})
		}
	}
	return out[:min(len(out), protocol.MaxHitsPerFrame)]
}
