package compare

import (
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

// central is a Napster-style directory: one server indexes every online
// peer's files and answers every query; peers talk only to it.
type central struct {
	e      *env
	server NodeID
	peers  []NodeID
	ix     *index.Index
}

func (*central) Name() string { return "central" }

const (
	peerUplink   = 1 << 20  // bytes/s: a home connection
	serverUplink = 12 << 20 // a hosted machine
)

func (c *central) build(e *env) {
	c.e = e
	c.ix = index.New()
	c.server = e.net.add(serverNode{c}, serverUplink)
	for p := range e.wd.holds {
		c.peers = append(c.peers, e.net.add(centralPeer{c, p}, peerUplink))
		if e.online[p] {
			c.index(p)
		} else {
			e.net.kill(c.peers[p])
		}
	}
}

func (c *central) index(p int) {
	for _, f := range c.e.wd.holds[p] {
		c.ix.Add(index.SourceID(p), index.Entry{ContentID: c.e.wd.cids[f], Name: c.e.wd.titles[f], Size: 4 << 20})
	}
}

// up: the peer connects and publishes its files.
func (c *central) up(p int) {
	e := c.e
	e.net.revive(c.peers[p])
	for _, m := range e.publishes(p) {
		e.net.send(c.peers[p], c.server, tagUpkeep, m)
	}
}

// down: the server sees the connection close and drops the peer's files.
func (c *central) down(p int) {
	c.e.net.kill(c.peers[p])
	c.ix.RemoveSource(index.SourceID(p))
}

func (c *central) ask(qi int, q *protocol.Query, from int) {
	c.e.net.send(c.peers[from], c.server, qi, q)
}

// centralFailover is how long a standby server takes to take over the
// address of one that died, and centralReconnect the spread of the peers'
// reconnections to it.
const (
	centralFailover  = 30 * time.Second
	centralReconnect = 5 * time.Second
)

// fail kills the server; a standby with an empty index takes over after
// centralFailover, and every online peer reconnects and publishes again.
func (c *central) fail(f failure) {
	if f != centralDies {
		return
	}
	e := c.e
	e.net.kill(c.server)
	e.net.after(centralFailover, func() {
		c.ix = index.New()
		e.net.revive(c.server)
		for p := range c.peers {
			e.net.after(time.Duration(e.net.random().Int64N(int64(centralReconnect))), func() {
				if e.online[p] {
					for _, m := range e.publishes(p) {
						e.net.send(c.peers[p], c.server, tagUpkeep, m)
					}
				}
			})
		}
	})
}

func (*central) servingNodes() int { return 1 }

func (*central) has(f failure) bool { return f == centralDies }

func (c *central) state() []int {
	out := make([]int, 0, len(c.peers)+1)
	out = append(out, c.ix.KeyCount())
	for range c.peers {
		out = append(out, 1) // the server's address
	}
	return out
}

type serverNode struct{ c *central }

func (s serverNode) receive(from NodeID, tag int, m protocol.Message) {
	c := s.c
	switch m := m.(type) {
	case *protocol.Publish:
		p := int(from - c.peers[0])
		for _, f := range m.Files {
			c.ix.Add(index.SourceID(p), index.Entry{ContentID: f.ID, Name: f.Name, Size: f.Size})
		}
	case *protocol.Query:
		hits := hitsFrom(c.ix.Search(m.Text, int(m.Limit)), func(src index.SourceID) int { return int(src) })
		sendHits(c.e, c.server, from, tag, m.ID, hits)
	}
}

// hitsFrom turns index results into wire hits with up to MaxSourcesPerHit
// sources each.
func hitsFrom(res []index.Result, peer func(index.SourceID) int) []protocol.Hit {
	var out []protocol.Hit
	for _, r := range res {
		h := protocol.Hit{FileRecord: protocol.FileRecord{ID: r.ContentID, Name: r.Name, Size: r.Size}}
		for _, s := range r.Sources[:min(len(r.Sources), protocol.MaxSourcesPerHit)] {
			h.Sources = append(h.Sources, source(peer(s)))
		}
		out = append(out, h)
	}
	return out
}

// sendHits sends hits in frames of at most MaxHitsPerFrame.
func sendHits(e *env, from, to NodeID, tag int, id protocol.QueryID, hits []protocol.Hit) {
	for len(hits) > 0 {
		n := min(len(hits), protocol.MaxHitsPerFrame)
		e.net.send(from, to, tag, &protocol.Hits{ID: id, Hits: hits[:n]})
		hits = hits[n:]
	}
}

type centralPeer struct {
	c *central
	p int
}

func (cp centralPeer) receive(from NodeID, tag int, m protocol.Message) {
	if h, ok := m.(*protocol.Hits); ok {
		cp.c.e.takeHits(tag, cp.p, h)
	}
}
