package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/supernode"
	"github.com/supernet-p2p/supernet/transport"
)

// gossipingSupernode runs a supernode that keeps `neighbours` links from the
// member list, with gossip in test time. Six rounds of silence make a
// supernode dead; under the race detector on a busy machine a live one can
// miss that many, so there it takes four times as long.
func gossipingSupernode(t *testing.T, neighbours int, join ...*supernode.Server) (*supernode.Server, func()) {
	t.Helper()
	return gossipingEvery(t, 100*time.Millisecond, raceSlowdown*600*time.Millisecond, neighbours, join...)
}

// gossipingEvery is gossipingSupernode with gossip every round and the given
// member timeout.
func gossipingEvery(t *testing.T, round, timeout time.Duration, neighbours int, join ...*supernode.Server) (*supernode.Server, func()) {
	t.Helper()
	return runSupernode(t, func(c *supernode.Config) {
		c.AltListen, c.ListenTCP = "-", "-"
		c.GossipInterval, c.MemberTimeout, c.Neighbours = round, timeout, neighbours
	}, join...)
}

func memberIDs(s *supernode.Server) map[protocol.PeerID]bool {
	out := make(map[protocol.PeerID]bool)
	for _, m := range s.Members() {
		out[m.Peer()] = true
	}
	return out
}

// Supernodes joined in a chain learn of each other by gossip, link to more of
// each other from the list, and when some die the survivors drop them from
// the list and link to others, so the overlay stays connected. The rounds
// and what happens in them are covered on a fake clock by
// TestMembershipGossipAndRelinkCore; here they run over QUIC, with rounds
// and waits stretched under the race detector, where a loaded machine
// would otherwise hold a live supernode's gossip past the member timeout.
func TestMembershipGossipAndRelink(t *testing.T) {
	const n = 8
	round, wait := raceSlowdown*100*time.Millisecond, raceSlowdown*10*time.Second
	var sns []*supernode.Server
	var stops []func()
	for i := range n {
		var join []*supernode.Server
		if i > 0 {
			join = append(join, sns[i-1])
		}
		s, stop := gossipingEvery(t, round, 6*round, 3, join...)
		sns, stops = append(sns, s), append(stops, stop)
	}
	eventually(t, wait, "every supernode to list all 8", func() bool {
		for _, s := range sns {
			if len(memberIDs(s)) != n {
				return false
			}
		}
		return true
	})
	eventually(t, wait, "every supernode to have 3 neighbours or more", func() bool {
		for _, s := range sns {
			if s.Router().Neighbours() < 3 {
				return false
			}
		}
		return true
	})
	// Kill three, among them the chain's links.
	killed := map[protocol.PeerID]bool{}
	for _, i := range []int{1, 4, 6} {
		killed[sns[i].ID()] = true
		stops[i]()
	}
	var alive []*supernode.Server
	for _, s := range sns {
		if !killed[s.ID()] {
			alive = append(alive, s)
		}
	}
	start := time.Now()
	eventually(t, wait, "the survivors to list exactly the 5 alive", func() bool {
		for _, s := range alive {
			ids := memberIDs(s)
			if len(ids) != len(alive) {
				return false
			}
			for id := range killed {
				if ids[id] {
					return false
				}
			}
		}
		return true
	})
	t.Logf("the dead left every survivor's list after %v", time.Since(start).Round(10*time.Millisecond))
	eventually(t, wait, "every survivor to have 3 live neighbours again", func() bool {
		for _, s := range alive {
			if s.Router().Neighbours() < 3 {
				return false
			}
		}
		return true
	})
	t.Logf("neighbours restored after %v", time.Since(start).Round(10*time.Millisecond))
	// A leaf's view of the list does not include forged entries: a member list
	// signed wrongly from a supernode link closes that link (checked in unit tests).
}

// Supernodes link to their fingers on the ring of supernode IDs first: with
// enough links each one ends linked to its successor, which a lookup on the
// ring needs to end.
func TestSupernodesLinkTheirRingSuccessor(t *testing.T) {
	const n = 12
	var sns []*supernode.Server
	for i := range n {
		var join []*supernode.Server
		if i > 0 {
			join = append(join, sns[i-1])
		}
		s, _ := gossipingSupernode(t, 5, join...)
		sns = append(sns, s)
	}
	ids := make([]ring.ID, n)
	for i, s := range sns {
		ids[i] = ring.ID(s.ID())
	}
	r := ring.New(ids)
	eventually(t, raceSlowdown*15*time.Second, "every supernode to be linked to its successor on the ring", func() bool {
		for _, s := range sns {
			succ := r.Fingers(ring.ID(s.ID()))[0]
			if !slices.Contains(s.Linked(), protocol.PeerID(succ)) {
				return false
			}
		}
		return true
	})
}

// A supernode link that passes on a forged member entry is closed, and the
// forged entry is not listed.
func TestForgedMemberEntryClosesLink(t *testing.T) {
	sn, _ := gossipingSupernode(t, -1)
	id, _ := protocol.GenerateIdentity()
	n, err := transport.New(transport.Config{Identity: id, Conn: loopbackConn(t), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	l, _, err := n.Dial(context.Background(), sn.Addr().String(), sn.ID(), &protocol.Hello{Role: protocol.RoleSupernode, Chain: testAdmit(id)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(nil)
	victim, _ := protocol.GenerateIdentity()
	forged := protocol.MemberRecord{Addrs: []string{"127.0.0.1:9"}, Beat: 1}
	forged.Sign(victim)
	forged.Leaves = 999 // altered after signing
	l.Send(&protocol.Members{Members: []protocol.MemberRecord{forged}})
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the link that sent a forged member entry stayed open")
	}
	if memberIDs(sn)[victim.ID] {
		t.Fatal("the forged entry was listed")
	}
}

// A leaf keeps the member list its supernode hands it, on disk: when its only
// configured supernode dies it attaches to another from the list, and so does
// a daemon started later with that dead supernode alone configured.
func TestLeafUsesMemberListWhenItsSupernodeDies(t *testing.T) {
	a, stopA := gossipingSupernode(t, -1)
	b, _ := gossipingSupernode(t, -1, a)
	eventually(t, raceSlowdown*10*time.Second, "both supernodes to list each other", func() bool {
		return len(memberIDs(a)) == 2 && len(memberIDs(b)) == 2
	})
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startPeer(t, a, "p", nil, func(c *peer.Config) { c.DataDir = dataDir })
	cache := filepath.Join(dataDir, "supernodes.cache")
	eventually(t, raceSlowdown*10*time.Second, "the leaf to cache the member list", func() bool {
		got, err := os.ReadFile(cache)
		return err == nil && strings.Contains(string(got), b.ID().String()+"@"+b.Addr().String())
	})
	if n := p.Status().Supernode.Listed; n != 2 {
		t.Fatalf("status lists %d supernodes, want 2", n)
	}
	stopA()
	start := time.Now()
	eventually(t, raceSlowdown*15*time.Second, "the leaf to attach to the other supernode", func() bool {
		st := p.Status().Supernode
		return st.Connected && st.PeerID == b.ID().String()
	})
	t.Logf("attached to the listed supernode %v after its own died", time.Since(start).Round(10*time.Millisecond))
	// A new daemon that knows only the dead supernode finds the live one in the cache.
	q := startPeer(t, a, "q", nil, func(c *peer.Config) {
		c.DataDir = t.TempDir()
		if err := os.WriteFile(filepath.Join(c.DataDir, "supernodes.cache"), []byte("garbage line\n"+b.ID().String()+"@"+b.Addr().String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, raceSlowdown*15*time.Second, "a new daemon to attach through the cached list", func() bool {
		st := q.Status().Supernode
		return st.Connected && st.PeerID == b.ID().String()
	})
}
