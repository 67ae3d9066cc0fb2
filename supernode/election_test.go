package supernode

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// electNet is supernode A, over a leaf limit of 3 with five leaves, and B, a
// supernode with room, that know each other.
func electNet(t *testing.T) (*coreNet, *coreNode, []*coreLeaf) {
	t.Helper()
	net := newCoreNet(t, 1)
	a := net.addNode("A", "")
	net.addNode("B", "")
	net.mesh()
	net.meet()
	a.setElection(func(c *electionConfig) { c.LeafLimit = 3 })
	var ls []*coreLeaf
	for _, name := range []string{"l0", "l1", "l2", "l3", "l4"} {
		ls = append(ls, net.addLeaf(a, name))
	}
	return net, a, ls
}

// of returns the messages of type T in the leaf's inbox.
func of[T protocol.Message](l *coreLeaf) []T {
	var out []T
	for _, m := range l.inbox {
		if x, ok := m.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// candidates has the leaves claim candidacy with the uptimes given (0: not
// eligible) and marks public those the dial-back reached.
func candidates(a *coreNode, ls []*coreLeaf, uptimes []uint32, public []bool) {
	for i, l := range ls {
		l.send(&protocol.Candidacy{Eligible: uptimes[i] > 0, Uptime: uptimes[i]})
		a.elect.SetPublic(l.id.ID, public[i])
	}
}

// promotedBy answers a promote as a leaf that started supernode sn.
func promotedBy(sn *protocol.Identity) *protocol.Promoted {
	return &protocol.Promoted{Peer: sn.ID, Addrs: []string{"192.0.2.50:6346"}, Key: sn.Key.Public().(ed25519.PublicKey)}
}

// A supernode over its leaf limit promotes the eligible, publicly reachable
// leaf up longest, certifies the supernode it starts, and once that answers
// redirects half of its other leaves to it.
func TestElectionPromotesLongestUpPublicLeaf(t *testing.T) {
	net, a, ls := electNet(t)
	a.setElection(func(c *electionConfig) { c.LeafLimit, c.PromoteEvery = 3, time.Second })
	// l1 is up longest but not reachable; l3 would not lead.
	candidates(a, ls, []uint32{100, 500, 300, 0, 200}, []bool{true, false, true, true, true})
	a.elect.Round(net.clock.Now())
	net.run()
	for i, l := range ls {
		if n := len(of[*protocol.Promote](l)); n != map[bool]int{true: 1}[i == 2] {
			t.Fatalf("leaf l%d got %d promotes; want one for l2 only", i, n)
		}
	}
	if p := of[*protocol.Promote](ls[2])[0]; p.LeafLimit != 3 || p.GossipMS != 1000 || p.TimeoutMS != 4000 {
		t.Fatalf("promote carries %+v, want the overlay's settings", p)
	}
	if st := a.elect.Status(); st.Promoting != ls[2].id.ID.String() || st.Candidates != 3 {
		t.Fatalf("status %+v", st)
	}
	// One promotion at a time, even past PromoteEvery.
	net.clock.Advance(promoteTimeout / 2)
	a.elect.Round(net.clock.Now())
	net.run()
	if n := len(of[*protocol.Promote](ls[4])); n != 0 {
		t.Fatal("a second leaf was promoted while the first had not answered")
	}
	// A leaf that was not asked cannot claim a promotion.
	ls[0].send(promotedBy(seededIdentity(t, "impostor")))
	if errs := of[*protocol.Error](ls[0]); len(errs) != 1 || errs[0].Code != protocol.StatusForbidden {
		t.Fatalf("an unasked promoted got %+v, want forbidden", errs)
	}

	sn := seededIdentity(t, "sn")
	ls[2].send(promotedBy(sn))
	certs := of[*protocol.Certificate](ls[2])
	if len(certs) != 1 {
		t.Fatalf("%d certificates sent to the promoted leaf, want 1", len(certs))
	}
	if err := certs[0].Chain.Verify(testNetwork, sn.ID, protocol.CertSupernode, net.clock.Now()); err != nil {
		t.Fatalf("the new supernode's chain: %v", err)
	}
	if exp := certs[0].Chain.Expires(); !exp.Equal(net.clock.Now().Add(DefaultPromotedCertTTL)) {
		t.Fatalf("certificate expires %v, want %v after now", exp, DefaultPromotedCertTTL)
	}
	redirected := 0
	for i, l := range ls {
		for _, r := range of[*protocol.Redirect](l) {
			if i == 2 || r.Target != sn.ID.String()+"@192.0.2.50:6346" {
				t.Fatalf("leaf l%d redirected to %q", i, r.Target)
			}
			redirected++
		}
	}
	st := a.elect.Status()
	if redirected != 2 || len(st.Promotions) != 1 || st.Promotions[0].Redirected != 2 || st.Promoting != "" {
		t.Fatalf("%d leaves redirected, status %+v; want 2 of the 4 others", redirected, st)
	}
}

// A leaf that refuses, or whose supernode cannot be reached, is held off:
// the next promotion goes to the next best.
func TestElectionRefusalHoldsOff(t *testing.T) {
	net, a, ls := electNet(t)
	candidates(a, ls, []uint32{100, 500, 300, 0, 200}, []bool{true, true, true, true, true})
	promoted := func() int {
		a.elect.Round(net.clock.Now())
		net.run()
		for i, l := range ls {
			if len(of[*protocol.Promote](l)) > 0 {
				l.inbox = nil
				return i
			}
		}
		return -1
	}
	if i := promoted(); i != 1 {
		t.Fatalf("promoted l%d, want l1", i)
	}
	ls[1].send(&protocol.Promoted{Refused: "busy"})
	net.clock.Advance(time.Minute)
	if i := promoted(); i != 2 {
		t.Fatalf("after l1 refused: promoted l%d, want l2", i)
	}
	a.probeErr = errors.New("no answer")
	ls[2].send(promotedBy(seededIdentity(t, "sn")))
	if n := len(of[*protocol.Redirect](ls[0])) + len(of[*protocol.Redirect](ls[4])); n != 0 {
		t.Fatal("leaves were redirected to a supernode that did not answer")
	}
	net.clock.Advance(time.Minute)
	if i := promoted(); i != 4 {
		t.Fatalf("after l2's supernode did not answer: promoted l%d, want l4", i)
	}
	// A leaf that never answers is given up after promoteTimeout.
	net.clock.Advance(promoteTimeout + time.Second)
	a.elect.Round(net.clock.Now())
	if st := a.elect.Status(); st.Promoting != "" {
		t.Fatalf("still promoting %s after the timeout", st.Promoting)
	}
}

// The promoter renews the certificate at a third of its life while the
// promoted supernode is live and its leaf attached; once the supernode is
// reported gone it stops, and the certificate runs out.
func TestElectionRenewsCertificates(t *testing.T) {
	net, a, ls := electNet(t)
	candidates(a, ls, []uint32{100, 0, 0, 0, 0}, []bool{true, false, false, false, false})
	a.elect.Round(net.clock.Now())
	net.run()
	sn := seededIdentity(t, "sn")
	ls[0].send(promotedBy(sn))
	latest := func() protocol.Chain {
		cs := of[*protocol.Certificate](ls[0])
		return cs[len(cs)-1].Chain
	}
	beat := uint64(0)
	alive := true
	round := func() {
		net.clock.Advance(time.Minute)
		now := net.clock.Now()
		if alive {
			// The promoted supernode gossips its entry, with its chain.
			beat++
			r := &protocol.MemberRecord{Addrs: []string{"192.0.2.50:6346"}, Beat: beat, Incarnation: 1, Chain: latest()}
			r.Sign(sn)
			if _, bad := a.members.Merge([]*protocol.MemberRecord{r}, now); bad > 0 {
				t.Fatal("the promoted supernode's entry was refused")
			}
		}
		a.members.Expire(now)
		a.elect.Round(now)
		net.run()
	}
	// An hour: the certificate lasts 30 min and is renewed every 10.
	for m := 1; m <= 60; m++ {
		round()
		if err := latest().Verify(testNetwork, sn.ID, protocol.CertSupernode, net.clock.Now()); err != nil {
			t.Fatalf("after %d min: %v", m, err)
		}
	}
	if n := len(of[*protocol.Certificate](ls[0])); n != 7 {
		t.Fatalf("%d certificates in an hour, want the first and 6 renewals", n)
	}
	alive = false
	// A, linked to it, hears nothing more and reports it gone.
	inc, b, _ := a.members.Held(sn.ID)
	gone := &protocol.MemberGone{Peer: sn.ID, Incarnation: inc, Beat: b}
	gone.Sign(a.id)
	if ok, err := a.members.Gone(gone, net.clock.Now(), nil); !ok || err != nil {
		t.Fatalf("A's report of the promoted supernode gone was not taken: %v", err)
	}
	lapsed := false
	for m := 1; m <= 40 && !lapsed; m++ {
		round()
		lapsed = latest().Verify(testNetwork, sn.ID, protocol.CertSupernode, net.clock.Now()) != nil
	}
	if !lapsed {
		t.Fatal("the dead supernode's certificate was still renewed 40 min later")
	}
}

// A promoted supernode left with fewer than StepDownBelow leaves for
// StepDownAfter hands them to its promoter, if it has room, and stops a
// round later. One whose certificate lapses does the same at once.
func TestElectionStepDown(t *testing.T) {
	for _, lapse := range []bool{false, true} {
		net := newCoreNet(t, 1)
		a := net.addNode("A", "")
		p := net.addNode("P", "")
		net.addNode("C", "")
		net.mesh()
		net.meet()
		parent := a.peer().String() + "@192.0.2.1:6346"
		p.setElection(func(c *electionConfig) {
			c.Promoted, c.Parent, c.LeafLimit, c.StepDownBelow, c.StepDownAfter = true, parent, 10, 2, 10*time.Minute
		})
		l := net.addLeaf(p, "l")
		minutes := 0
		for ; minutes < 60 && !p.stopped; minutes++ {
			net.clock.Advance(time.Minute)
			if lapse && minutes == 5 {
				p.elect.CertLapsed(net.clock.Now())
			}
			p.elect.Round(net.clock.Now())
			net.run()
		}
		rs := of[*protocol.Redirect](l)
		if !p.stopped || len(rs) != 1 || rs[0].Target != parent {
			t.Fatalf("lapse %v: stopped %v, redirects %+v; want one to the parent", lapse, p.stopped, rs)
		}
		st := p.elect.Status()
		why := map[bool]string{false: "underused", true: "certificate not renewed"}[lapse]
		if st.StepDownWhy != why || !strings.Contains(st.SteppingDown, "1 leaves redirected") {
			t.Fatalf("lapse %v: status %+v", lapse, st)
		}
		// Underused: 20 min newly promoted, then 10 under the limit, and a
		// round for the redirects. Lapsed: at once, and a round later.
		if want := map[bool]int{false: 31, true: 7}[lapse]; minutes != want {
			t.Fatalf("lapse %v: stopped after %d min, want %d", lapse, minutes, want)
		}
	}
}

// The stepping down supernode goes to the least loaded supernode with room
// when its promoter has none.
func TestElectionStepDownTarget(t *testing.T) {
	net := newCoreNet(t, 1)
	a, p, c := net.addNode("A", ""), net.addNode("P", ""), net.addNode("C", "")
	p.setElection(func(cfg *electionConfig) {
		cfg.Promoted, cfg.Parent, cfg.LeafLimit = true, a.peer().String()+"@192.0.2.1:6346", 10
	})
	var recs []*protocol.MemberRecord
	for _, x := range []struct {
		n      *coreNode
		leaves uint32
	}{{a, 10}, {c, 3}, {p, 0}} {
		r := &protocol.MemberRecord{Addrs: []string{"192.0.2.1:6346"}, Beat: 1, Incarnation: 1, Leaves: x.leaves, Chain: net.admit(x.n.id)}
		r.Sign(x.n.id)
		recs = append(recs, r)
	}
	p.members.Merge(recs, net.clock.Now())
	if got, want := p.elect.stepDownTarget(2), c.peer().String()+"@192.0.2.1:6346"; got != want {
		t.Fatalf("target %q, want C (the parent is full)", got)
	}
	if got := p.elect.stepDownTarget(8); got != "" {
		t.Fatalf("target %q for 8 leaves, want none: no supernode has room", got)
	}
}
