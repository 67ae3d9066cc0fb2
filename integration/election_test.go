package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

// TestPromotionAndStepDown runs one supernode with a leaf limit of 20 and 24
// eligible leaves. It must promote one, which then serves as a supernode in
// its own process and takes over some of the leaves; searches must cross
// between the two. Once most of the new supernode's leaves have gone, it
// must hand the rest back and step down, and they stay searchable.
func TestPromotionAndStepDown(t *testing.T) {
	// Mostly waiting on the step-down timer: it shares the machine with
	// another such test.
	t.Parallel()
	const limit, leaves = 20, 24
	parent, _ := runSupernode(t, func(c *supernode.Config) {
		c.LeafLimit, c.PromoteEvery = limit, time.Hour // one promotion
		c.GossipInterval, c.MemberTimeout = raceSlowdown*200*time.Millisecond, raceSlowdown*time.Second
	})
	stepDown := raceSlowdown * 2 * time.Second
	ds := make([]*peer.Daemon, leaves)
	for i := range ds {
		name := fmt.Sprintf("leaf%02d", i)
		ds[i] = startPeer(t, parent, name, map[string][]byte{fmt.Sprintf("tune%02d.mp3", i): randomBytes(uint64(i+1), 4096)},
			func(c *peer.Config) { c.LeadAfter, c.LeadStepDown = time.Millisecond, stepDown })
		if i == 0 {
			// Leaf 0 is up longest by more than the candidacy's 1 s resolution.
			eventually(t, raceSlowdown*10*time.Second, "leaf 0 eligible", func() bool { return ds[0].Status().Lead.Eligible })
			time.Sleep(1500 * time.Millisecond)
		}
	}
	on := func(sn string) (out []*peer.Daemon) {
		for _, d := range ds {
			if st := d.Status().Supernode; st.Connected && st.PeerID == sn {
				out = append(out, d)
			}
		}
		return out
	}

	began := time.Now()
	// The one up longest is promoted; half the others move to it.
	var lead *peer.Daemon
	var leadSN, lagging string
	defer func() {
		if t.Failed() && lagging != "" {
			t.Log("last state seen:", lagging)
		}
	}()
	eventually(t, raceSlowdown*30*time.Second, "a promotion with leaves moved", func() bool {
		el := parent.Election()
		ps := el.Promotions
		if len(ps) == 0 {
			lagging = fmt.Sprintf("no promotion yet: %+v", el)
			return false
		}
		for _, d := range ds {
			if d.ID() == ps[0].Leaf {
				lead = d
			}
		}
		leadSN = ps[0].Supernode.String()
		st := lead.Status().Lead.Leading
		lagging = fmt.Sprintf("promotion %+v; leading %+v; %d leaves attached there", ps[0], st, len(on(leadSN)))
		if st == nil || !st.Active || len(on(leadSN)) != st.Leaves {
			return false
		}
		if st.Leaves == ps[0].Redirected {
			return true
		}
		// A redirected leaf dials the new supernode first and, 200 ms
		// later, the others it knows: on a machine too busy for a
		// handshake in that time the parent may answer first, and the
		// leaf stays there. Under the race detector it is enough that
		// every leaf is attached again and the new supernode serves two.
		if raceSlowdown == 1 || st.Leaves < 2 {
			return false
		}
		for _, d := range ds {
			if !d.Status().Supernode.Connected {
				return false
			}
		}
		return true
	})
	lagging = ""
	p := parent.Election().Promotions[0]
	st := lead.Status().Lead
	t.Logf("promoted %s (leaf %d of %d, up longest): supernode %s at %s, %d leaves redirected, %d attached there %v after the last leaf started; parent keeps %d",
		lead.ID().Short(), indexOf(ds, lead), leaves, p.Supernode.Short(), p.Addr, p.Redirected, st.Leading.Leaves,
		time.Since(began).Round(time.Millisecond), parent.Router().Leaves())
	if lead != ds[0] {
		t.Errorf("promoted leaf %d, want the one up longest (0)", indexOf(ds, lead))
	}
	if st.Eligible || st.Leading.PromotedBy != parent.ID().String() || st.Leading.LeafLimit != limit {
		t.Errorf("promoted peer's status: %+v, leading %+v", st, st.Leading)
	}
	if p.Redirected < (leaves-1)/2-2 || parent.Router().Leaves() > limit {
		t.Errorf("%d leaves redirected, parent keeps %d (limit %d)", p.Redirected, parent.Router().Leaves(), limit)
	}

	// Searches cross between the supernodes both ways.
	onNew, onParent := on(leadSN), on(parent.ID().String())
	if len(onNew) < 2 || len(onParent) < 2 {
		t.Fatalf("%d leaves on the new supernode (%d redirected), %d on the parent", len(onNew), p.Redirected, len(onParent))
	}
	for _, pair := range [][2]*peer.Daemon{{onParent[0], onNew[0]}, {onNew[1], onParent[1]}, {onNew[0], lead}} {
		q := fmt.Sprintf("tune%02d", indexOf(ds, pair[1]))
		h := findOne(t, pair[0], q, raceSlowdown*10*time.Second)
		if len(h.Sources) != 1 || h.Sources[0].Peer != pair[1].ID() {
			t.Errorf("search %q from %s: sources %+v, want %s", q, pair[0].ID().Short(), h.Sources, pair[1].ID().Short())
		}
	}

	// All but one of the new supernode's leaves leave: it is underused, and
	// hands the last back to the parent, which has room.
	last := onNew[len(onNew)-1]
	for _, d := range onNew[:len(onNew)-1] {
		d.Close()
	}
	closed := time.Now()
	eventually(t, raceSlowdown*30*time.Second, "the promoted supernode stepped down", func() bool {
		st := lead.Status().Lead.Leading
		return !st.Active && strings.Contains(st.EndedWhy, "stepped down")
	})
	eventually(t, raceSlowdown*10*time.Second, "its last leaf back on the parent", func() bool {
		return last.Status().Supernode.PeerID == parent.ID().String() && last.Status().Supernode.Connected
	})
	t.Logf("stepped down after its leaves fell to 1 (step-down after %v underused); last leaf back on the parent %v after the others left; parent has %d leaves",
		stepDown, time.Since(closed).Round(time.Millisecond), parent.Router().Leaves())
	q := fmt.Sprintf("tune%02d", indexOf(ds, last))
	if h := findOne(t, onParent[0], q, raceSlowdown*10*time.Second); h.Sources[0].Peer != last.ID() {
		t.Errorf("search %q after the step-down: %+v", q, h.Sources)
	}
	if st := lead.Status().Lead; !st.Eligible {
		t.Errorf("after stepping down the peer could lead again, but: %v", st.Why)
	}
	if n := len(parent.Election().Promotions); n != 1 {
		t.Errorf("%d promotions, want 1", n)
	}
}

func indexOf(ds []*peer.Daemon, d *peer.Daemon) int {
	for i, x := range ds {
		if x == d {
			return i
		}
	}
	return -1
}

// TestPromotionNeedsDialBack: leaves that claim they could lead but that the
// supernode's dial-back never reached, and leaves that opted out, are not
// promoted; an answer to a promotion nobody asked for is refused; the one
// leaf the dial-back confirmed is promoted.
func TestPromotionNeedsDialBack(t *testing.T) {
	parent, _ := runSupernode(t, func(c *supernode.Config) {
		c.LeafLimit = 2
		c.GossipInterval, c.MemberTimeout = 100*time.Millisecond, raceSlowdown*time.Second
	})
	var claims []*rawLeaf
	for i := 0; i < 3; i++ {
		c := dialRawLeaf(t, parent)
		if err := c.link.Send(&protocol.Candidacy{Eligible: true, Uptime: 86400}); err != nil {
			t.Fatal(err)
		}
		claims = append(claims, c)
	}
	if err := claims[0].link.Send(&protocol.Promoted{Peer: claims[0].id.ID, Addrs: []string{"127.0.0.1:9"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-claims[0].errs:
		if e.Code != protocol.StatusForbidden {
			t.Errorf("unasked promoted: %+v, want forbidden", e)
		}
	case <-time.After(raceSlowdown * 5 * time.Second):
		t.Error("unasked promoted got no answer")
	}
	optOut := startPeer(t, parent, "optout", nil, func(c *peer.Config) { c.LeadAfter, c.NoLead = time.Millisecond, true })
	eventually(t, raceSlowdown*10*time.Second, "the opted-out peer confirmed public", func() bool { return optOut.Status().Supernode.Public })
	gossipRounds(t, parent, 10) // ten election rounds over the limit
	if el := parent.Election(); len(el.Promotions) > 0 || el.Promoting != "" || el.Candidates != 0 {
		t.Fatalf("with no confirmed eligible leaf: %+v", el)
	}
	ok := startPeer(t, parent, "ok", nil, func(c *peer.Config) { c.LeadAfter = time.Millisecond })
	eventually(t, raceSlowdown*20*time.Second, "the confirmed leaf promoted", func() bool {
		ps := parent.Election().Promotions
		return len(ps) == 1 && ps[0].Leaf == ok.ID()
	})
	if st := optOut.Status().Lead; st.Leading != nil {
		t.Errorf("opted-out peer leads: %+v", st.Leading)
	}
}

// gossipRounds waits until s has run at least n more whole gossip rounds,
// each of which runs the election.
func gossipRounds(t *testing.T, s *supernode.Server, n int) {
	t.Helper()
	// The round under way when we start may be past its election.
	until := s.GossipRounds() + uint64(n) + 1
	eventually(t, raceSlowdown*time.Duration(n)*time.Second, fmt.Sprintf("%d gossip rounds", n), func() bool {
		return s.GossipRounds() >= until
	})
}
