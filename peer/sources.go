package peer

import (
	"sync"

	"github.com/supernet-p2p/supernet/protocol"
)

// sourceCache remembers, for recently seen content, its name, size and sources,
// so `peer get` after `peer search` starts without another query.
type sourceCache struct {
	mu    sync.Mutex
	max   int
	order []protocol.ContentID
	m     map[protocol.ContentID]*protocol.Hit
}

func newSourceCache(max int) *sourceCache {
	return &sourceCache{max: max, m: make(map[protocol.ContentID]*protocol.Hit)}
}

func (c *sourceCache) add(hits []protocol.Hit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hits {
		old := c.m[h.ID]
		if old == nil {
			cp := h
			cp.Sources = append([]protocol.Source(nil), h.Sources...)
			c.m[h.ID] = &cp
			c.order = append(c.order, h.ID)
			continue
		}
		old.Sources = mergeSources(old.Sources, h.Sources)
	}
	for len(c.order) > c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *sourceCache) get(id protocol.ContentID) (protocol.Hit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[id]
	if !ok {
		return protocol.Hit{}, false
	}
	cp := *h
	cp.Sources = append([]protocol.Source(nil), h.Sources...)
	return cp, true
}

// mergeSources adds the sources of b not already in a (by peer ID); a newer
// entry for a known peer replaces its addresses.
func mergeSources(a, b []protocol.Source) []protocol.Source {
	for _, s := range b {
		found := false
		for i := range a {
			if a[i].Peer == s.Peer {
				a[i] = s
				found = true
				break
			}
		}
		if !found {
			a = append(a, s)
		}
	}
	return a
}

// GroupHits merges hits for the same content ID (from several supernodes) into
// one, with the union of their sources, keeping first-seen order.
func GroupHits(hits []protocol.Hit) []protocol.Hit {
	idx := make(map[protocol.ContentID]int)
	var out []protocol.Hit
	for _, h := range hits {
		if i, ok := idx[h.ID]; ok {
			out[i].Sources = mergeSources(out[i].Sources, h.Sources)
			out[i].Score = max(out[i].Score, h.Score)
			continue
		}
		idx[h.ID] = len(out)
		h.Sources = append([]protocol.Source(nil), h.Sources...)
		out = append(out, h)
	}
	return out
}
