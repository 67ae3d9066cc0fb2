package peer

import (
	"testing"

	"github.com/supernet-p2p/supernet/protocol"
)

func TestGroupHits(t *testing.T) {
	a, b := protocol.ContentID{1}, protocol.ContentID{2}
	p1, p2, p3 := protocol.PeerID{1}, protocol.PeerID{2}, protocol.PeerID{3}
	hit := func(id protocol.ContentID, score float32, peers ...protocol.PeerID) protocol.Hit {
		h := protocol.Hit{FileRecord: protocol.FileRecord{ID: id, Name: "x"}, Score: score}
		for _, p := range peers {
			h.Sources = append(h.Sources, protocol.Source{Peer: p, Addrs: []string{"127.0.0.1:1"}})
		}
		return h
	}
	got := GroupHits([]protocol.Hit{hit(a, 1, p1), hit(b, 0.5, p2), hit(a, 1.2, p2, p1), hit(a, 0.7, p3)})
	if len(got) != 2 || got[0].ID != a || got[1].ID != b {
		t.Fatalf("grouped %+v", got)
	}
	if len(got[0].Sources) != 3 || got[0].Score != 1.2 {
		t.Fatalf("a: %d sources, score %v; want 3 and 1.2", len(got[0].Sources), got[0].Score)
	}
	c := newSourceCache(2)
	c.add([]protocol.Hit{hit(a, 1, p1)})
	c.add([]protocol.Hit{hit(a, 1, p2), hit(b, 1, p3)})
	if h, ok := c.get(a); !ok || len(h.Sources) != 2 {
		t.Fatalf("cache a: %+v %v", h, ok)
	}
	c.add([]protocol.Hit{hit(protocol.ContentID{3}, 1, p1)})
	if _, ok := c.get(a); ok {
		t.Fatal("cache kept more entries than its bound")
	}
}
