package supernode

import (
	"slices"
	"testing"

	"github.com/supernet-p2p/supernet/protocol"
)

func TestChoosePlan(t *testing.T) {
	const (
		pub  = protocol.NATNone
		eim  = protocol.NATEndpointIndependent
		sym  = protocol.NATEndpointDependent
		blk  = protocol.NATUDPBlocked
		unkn = protocol.NATUnknown
	)
	for _, tt := range []struct {
		i, t protocol.NATType
		want protocol.Plan
	}{
		{pub, pub, protocol.PlanDirect}, {eim, pub, protocol.PlanDirect}, {sym, pub, protocol.PlanDirect},
		{pub, eim, protocol.PlanReverse}, {pub, sym, protocol.PlanReverse},
		{eim, eim, protocol.PlanPunch}, {unkn, eim, protocol.PlanPunch},
		{eim, sym, protocol.PlanRelay}, {sym, eim, protocol.PlanRelay}, {sym, sym, protocol.PlanRelay},
		{sym, blk, protocol.PlanDirect}, {blk, sym, protocol.PlanReverse},
	} {
		if got := ChoosePlan(tt.i, tt.t); got != tt.want {
			t.Errorf("%s -> %s: %s, want %s", tt.i, tt.t, got, tt.want)
		}
	}
}

// signalsTo returns the signals in a leaf's inbox.
func (l *memLeaf) signals() []*protocol.Signal {
	var out []*protocol.Signal
	for _, m := range l.inbox {
		if s, ok := m.(*protocol.Signal); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestSignalAcrossSupernodes: a request from a leaf on A reaches a leaf on C
// through B; the target gets an offer with the plan, relay credentials and the
// initiator's addresses as A established them, and the initiator an answer.
func TestSignalAcrossSupernodes(t *testing.T) {
	cfg := testRouterConfig()
	minted := 0
	cfg.Relay = func(p protocol.PeerID, _ bool) *protocol.RelayCreds {
		minted++
		return &protocol.RelayCreds{UDP: "203.0.113.1:3478", Username: "1:" + p.String(), Password: "x"}
	}
	net := newMemNet(t, 3, cfg)
	net.line()
	a := net.addLeaf(0, "alice")
	c := net.addLeaf(2, "carol")
	// A symmetric NAT's second mapping is on the host the supernode saw; one
	// elsewhere is a claim nobody checked, and is dropped.
	net.nodes[0].r.SetLeafNAT(a.id, protocol.NATEndpointDependent, []string{"192.0.2.1:7000", "203.0.113.50:7000"}, nil)
	net.nodes[2].r.SetLeafNAT(c.id, protocol.NATEndpointIndependent, nil, nil)

	// What the leaf claims about itself is replaced.
	if err := a.send(&protocol.Signal{ID: 9, Kind: protocol.SignalRequest, From: protocol.PeerID{1}, To: c.peer,
		ToSN: net.nodes[2].peer, NAT: protocol.NATNone, Addrs: []string{"192.0.2.99:1"}}); err != nil {
		t.Fatal(err)
	}
	net.run()
	net.noErrors()
	offers, answers := c.signals(), a.signals()
	if len(offers) != 1 || len(answers) != 1 {
		t.Fatalf("offers %d, answers %d; want 1 and 1", len(offers), len(answers))
	}
	o, an := offers[0], answers[0]
	if o.Kind != protocol.SignalOffer || o.From != a.peer || o.NAT != protocol.NATEndpointDependent ||
		o.Plan != protocol.PlanRelay || o.Relay == nil || o.FromSN != net.nodes[0].peer {
		t.Errorf("offer: %+v", o)
	}
	if len(o.Addrs) != 2 || o.Addrs[1] != "192.0.2.1:7000" {
		t.Errorf("offer addresses %v, want the observed and the reflexive one on its host", o.Addrs)
	}
	if an.Kind != protocol.SignalAnswer || an.From != c.peer || an.Plan != protocol.PlanRelay || an.Relay != nil {
		t.Errorf("answer: %+v", an)
	}
	if minted != 1 {
		t.Errorf("minted %d credentials, want 1 (for the target)", minted)
	}

	// The target's relayed address goes back to the initiator.
	if err := c.send(&protocol.Signal{ID: 9, Kind: protocol.SignalRelayed, To: a.peer, ToSN: o.FromSN,
		Addrs: []string{"203.0.113.1:50000"}}); err != nil {
		t.Fatal(err)
	}
	net.run()
	if got := a.signals(); len(got) != 2 || got[1].Kind != protocol.SignalRelayed || got[1].From != c.peer {
		t.Fatalf("initiator got %+v", got)
	}

	// A duplicate request is suppressed; a request for a peer that is not there fails.
	before := len(c.inbox)
	net.nodes[1].r.Handle(net.nodes[1].links[0], &protocol.Signal{ID: 9, Kind: protocol.SignalRequest, From: a.peer,
		FromSN: net.nodes[0].peer, To: c.peer, ToSN: net.nodes[2].peer, Hops: 3})
	net.run()
	if len(c.inbox) != before {
		t.Errorf("duplicate request delivered")
	}
	if err := a.send(&protocol.Signal{ID: 10, Kind: protocol.SignalRequest, To: protocol.PeerID{7},
		ToSN: net.nodes[2].peer}); err != nil {
		t.Fatal(err)
	}
	net.run()
	got := a.signals()
	if last := got[len(got)-1]; last.Kind != protocol.SignalFail || last.Code != protocol.StatusNotFound || last.ID != 10 {
		t.Errorf("request for an absent peer: %+v", last)
	}
	// A leaf may not forge an offer.
	if err := a.send(&protocol.Signal{ID: 11, Kind: protocol.SignalOffer, To: c.peer}); err == nil {
		t.Error("a leaf's offer was accepted")
	}
}

// TestSignalFlooded: a request that names no supernode is flooded and finds
// the target two hops away; one for a peer nowhere fails nowhere (the edges
// of a flood stay silent) and reaches no leaf.
func TestSignalFlooded(t *testing.T) {
	net := newMemNet(t, 3, testRouterConfig())
	net.line()
	a := net.addLeaf(0, "alice")
	c := net.addLeaf(2, "carol")
	net.nodes[0].r.SetLeafNAT(a.id, protocol.NATNone, nil, nil)
	net.nodes[2].r.SetLeafNAT(c.id, protocol.NATEndpointIndependent, nil, nil)
	if err := a.send(&protocol.Signal{ID: 1, Kind: protocol.SignalRequest, To: c.peer}); err != nil {
		t.Fatal(err)
	}
	net.run()
	net.noErrors()
	if o, an := c.signals(), a.signals(); len(o) != 1 || o[0].Kind != protocol.SignalOffer ||
		len(an) != 1 || an[0].Kind != protocol.SignalAnswer || an[0].Plan != protocol.PlanReverse {
		t.Fatalf("offers %+v, answers %+v", o, an)
	}
	if err := a.send(&protocol.Signal{ID: 2, Kind: protocol.SignalRequest, To: protocol.PeerID{9}}); err != nil {
		t.Fatal(err)
	}
	net.run()
	if got := a.signals(); len(got) != 1 {
		t.Errorf("a flooded request for an absent peer came back as %+v", got[1:])
	}
	if got := c.signals(); len(got) != 1 {
		t.Errorf("carol got %d signals, want only the first offer", len(got))
	}
}

// Two leaves seen at one public address, the target naming LAN addresses,
// are planned a direct dial across their LAN whatever their NATs; anything
// else keeps the plan of their NAT types. A leaf is listed with its LAN
// addresses but no other address it names off the host it was seen at.
func TestBehindOneNAT(t *testing.T) {
	home := []string{"203.0.113.4:40000", "192.168.1.20:40000"}
	cases := []struct {
		a, b []string
		want bool
	}{
		{[]string{"203.0.113.4:51000", "192.168.1.21:40000"}, home, true},
		{[]string{"203.0.113.4:51000"}, home, true},
		{[]string{"198.51.100.9:51000"}, home, false},
		{[]string{"203.0.113.4:51000"}, []string{"203.0.113.4:40000"}, false}, // no LAN address to dial
		{nil, home, false},
	}
	for _, c := range cases {
		if got := behindOneNAT(c.a, c.b); got != c.want {
			t.Errorf("behindOneNAT(%v, %v) = %v", c.a, c.b, got)
		}
	}
	got := leafAddrs("203.0.113.4:40000", []string{"192.168.1.20:40000", "203.0.113.4:40001", "198.51.100.7:40000", "127.0.0.1:40000", "169.254.1.1:40000", "10.1.2.3:0"})
	if want := []string{"203.0.113.4:40000", "192.168.1.20:40000", "203.0.113.4:40001"}; !slices.Equal(got, want) {
		t.Errorf("leafAddrs: %v, want %v", got, want)
	}
}

// TestSignalIPv6Punch: two leaves behind symmetric IPv4 NATs need a relay,
// unless both were seen at public IPv6 addresses: then they punch there,
// with the relay as the fallback. One side's IPv6 alone, or a private one,
// changes nothing.
func TestSignalIPv6Punch(t *testing.T) {
	cfg := testRouterConfig()
	cfg.Relay = func(p protocol.PeerID, _ bool) *protocol.RelayCreds {
		return &protocol.RelayCreds{UDP: "203.0.113.1:3478", Username: "1:" + p.String(), Password: "x"}
	}
	for i, tc := range []struct {
		a, c []string
		want protocol.Plan
	}{
		{[]string{"[2001:db8:1::2]:7000"}, []string{"[2001:db8:2::2]:7000"}, protocol.PlanPunch},
		{[]string{"[2001:db8:1::2]:7000"}, nil, protocol.PlanRelay},
		{[]string{"[fd00::2]:7000"}, []string{"[2001:db8:2::2]:7000"}, protocol.PlanRelay},
		{[]string{"[::ffff:198.51.100.9]:7000"}, []string{"[2001:db8:2::2]:7000"}, protocol.PlanRelay},
	} {
		net := newMemNet(t, 2, cfg)
		net.line()
		a := net.addLeaf(0, "alice")
		c := net.addLeaf(1, "carol")
		net.nodes[0].r.SetLeafNAT(a.id, protocol.NATEndpointDependent, nil, tc.a)
		net.nodes[1].r.SetLeafNAT(c.id, protocol.NATEndpointDependent, nil, tc.c)
		if err := a.send(&protocol.Signal{ID: 1, Kind: protocol.SignalRequest, To: c.peer, ToSN: net.nodes[1].peer}); err != nil {
			t.Fatal(err)
		}
		net.run()
		net.noErrors()
		offers, answers := c.signals(), a.signals()
		if len(offers) != 1 || len(answers) != 1 {
			t.Fatalf("case %d: offers %d, answers %d", i, len(offers), len(answers))
		}
		if offers[0].Plan != tc.want || answers[0].Plan != tc.want || offers[0].Relay == nil {
			t.Errorf("case %d: plan %v/%v relay %v, want %v with a relay", i, offers[0].Plan, answers[0].Plan, offers[0].Relay, tc.want)
		}
		if tc.a != nil && !slices.Contains(offers[0].Addrs, tc.a[0]) {
			t.Errorf("case %d: offer addresses %v lack the proven %s", i, offers[0].Addrs, tc.a[0])
		}
		if offers[0].Relay.IPv6 {
			t.Errorf("case %d: an initiator with IPv4 got an IPv6 relay", i)
		}
	}
}

// TestSignalIPv6OnlyInitiator: an initiator seen at an IPv6 address alone
// sends to the relayed address, so the target is given a relay that offers
// IPv6 and told to ask for it.
func TestSignalIPv6OnlyInitiator(t *testing.T) {
	cfg := testRouterConfig()
	asked := []bool{}
	cfg.Relay = func(p protocol.PeerID, ipv6 bool) *protocol.RelayCreds {
		asked = append(asked, ipv6)
		return &protocol.RelayCreds{UDP: "203.0.113.1:3478", Username: "1:" + p.String(), Password: "x", IPv6: ipv6}
	}
	net := newMemNet(t, 2, cfg)
	net.line()
	a := net.addLeafAt(0, "six", "[2001:db8:1::2]:7000")
	c := net.addLeaf(1, "four")
	net.nodes[0].r.SetLeafNAT(a.id, protocol.NATEndpointIndependent, nil, nil)
	net.nodes[1].r.SetLeafNAT(c.id, protocol.NATEndpointDependent, nil, nil)
	if err := a.send(&protocol.Signal{ID: 1, Kind: protocol.SignalRequest, To: c.peer, ToSN: net.nodes[1].peer}); err != nil {
		t.Fatal(err)
	}
	net.run()
	net.noErrors()
	offers := c.signals()
	if len(offers) != 1 || offers[0].Plan != protocol.PlanRelay || offers[0].Relay == nil || !offers[0].Relay.IPv6 {
		t.Fatalf("offers %+v; want a relay plan with IPv6 credentials", offers)
	}
	if !slices.Equal(asked, []bool{true}) {
		t.Errorf("relays asked for %v, want one with IPv6", asked)
	}

	// The other way round the target, on IPv6 alone, cannot allocate: the
	// initiator does, and is given the IPv6 relay in its answer.
	if err := c.send(&protocol.Signal{ID: 2, Kind: protocol.SignalRequest, To: a.peer, ToSN: net.nodes[0].peer}); err != nil {
		t.Fatal(err)
	}
	net.run()
	net.noErrors()
	back, answers := a.signals(), c.signals()
	o, an := back[len(back)-1], answers[len(answers)-1]
	if o.Kind != protocol.SignalOffer || o.Plan != protocol.PlanRelayReverse || o.Relay != nil {
		t.Errorf("offer to the IPv6-only target: %+v; want relay-reverse without credentials", o)
	}
	if an.Kind != protocol.SignalAnswer || an.Plan != protocol.PlanRelayReverse || an.Relay == nil || !an.Relay.IPv6 {
		t.Errorf("answer to the IPv4 initiator: %+v; want relay-reverse with IPv6 credentials", an)
	}
}
