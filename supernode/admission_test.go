package supernode

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// The network the package's tests run in.
var testNetKey = func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

var testNetwork = protocol.NetworkIDOf(testNetKey)

// testAdmit is a chain admitting id to every role until exp.
func testAdmit(id *protocol.Identity, exp time.Time) protocol.Chain {
	return protocol.Admit(testNetKey, id.Key.Public().(ed25519.PublicKey),
		protocol.CertSupernode|protocol.CertRelay|protocol.CertAdmit, exp)
}

// Entries without a chain of this network are refused, and blamed on the
// sender; one whose chain has only expired is skipped without blame, and a
// held entry whose chain runs out dies like a silent one.
func TestMembersAdmission(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ms := NewMembers(testNetwork, 3*time.Second, 3*time.Second, 10)
	a, b, c, d := newIdentity(t), newIdentity(t), newIdentity(t), newIdentity(t)
	sign := func(id *protocol.Identity, beat uint64, ch protocol.Chain) *protocol.MemberRecord {
		r := &protocol.MemberRecord{Addrs: []string{"192.0.2.1:4000"}, Beat: beat, Chain: ch}
		r.Sign(id)
		return r
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other := protocol.Admit(otherKey, b.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, now.Add(time.Hour))
	relayOnly := protocol.Admit(testNetKey, d.Key.Public().(ed25519.PublicKey), protocol.CertRelay, now.Add(time.Hour))
	recs := []*protocol.MemberRecord{
		sign(a, 1, nil),   // no chain
		sign(b, 1, other), // another network
		sign(c, 1, testAdmit(c, now.Add(-time.Hour))), // expired
		sign(d, 1, relayOnly),                         // not a supernode
	}
	if fresh, bad := ms.Merge(recs, now); fresh != 0 || bad != 3 {
		t.Fatalf("fresh %d, bad %d; want 0 and 3 (the expired one is not blamed)", fresh, bad)
	}
	exp := now.Add(time.Minute)
	if fresh, bad := ms.Merge([]*protocol.MemberRecord{sign(a, 2, testAdmit(a, exp))}, now); fresh != 1 || bad != 0 {
		t.Fatalf("admitted entry: fresh %d, bad %d", fresh, bad)
	}
	if got := ms.AdmittedUntil(a.ID); !got.Equal(exp) {
		t.Fatalf("admitted until %v, want %v", got, exp)
	}
	// Beating on, but past its certificate: dead, and its next beat with
	// the same chain does not bring it back; a renewed chain does.
	later := exp.Add(protocol.CertSkew + time.Second)
	ms.Merge([]*protocol.MemberRecord{sign(a, 3, testAdmit(a, exp))}, later.Add(-2*time.Second))
	if died := ms.Expire(later); len(died) != 1 || ms.Alive(a.ID) {
		t.Fatalf("died %v, alive %v: want a dead by its certificate", died, ms.Alive(a.ID))
	}
	if fresh, bad := ms.Merge([]*protocol.MemberRecord{sign(a, 4, testAdmit(a, exp))}, later); fresh != 0 || bad != 0 || ms.Alive(a.ID) {
		t.Fatalf("the lapsed chain again: fresh %d, bad %d, alive %v", fresh, bad, ms.Alive(a.ID))
	}
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{sign(a, 5, testAdmit(a, later.Add(time.Hour)))}, later); fresh != 1 || !ms.Alive(a.ID) {
		t.Fatalf("a renewed chain: fresh %d, alive %v", fresh, ms.Alive(a.ID))
	}
}

// A supernode needs a network and a chain of it, or the network key.
func TestServerNeedsAdmission(t *testing.T) {
	id := newIdentity(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"no network", Config{}, nil},
		{"network without a chain", Config{Network: testNetwork}, protocol.ErrNotAdmitted},
		{"a chain for someone else", Config{Network: testNetwork, Chain: testAdmit(newIdentity(t), time.Now().Add(time.Hour))}, protocol.ErrNotAdmitted},
		{"an expired chain", Config{Network: testNetwork, Chain: testAdmit(id, time.Now().Add(-time.Hour))}, protocol.ErrCertExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Listen, cfg.Identity, cfg.AltListen, cfg.ListenTCP = "127.0.0.1:0", id, "-", "-"
			s, err := New(cfg)
			if err == nil {
				s.Close()
				t.Fatal("started")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}
	for _, cfg := range []Config{
		{Network: testNetwork, Chain: testAdmit(id, time.Now().Add(time.Hour))},
		{NetworkKey: testNetKey},
	} {
		cfg.Listen, cfg.Identity, cfg.AltListen, cfg.ListenTCP = "127.0.0.1:0", id, "-", "-"
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.Network() != testNetwork || s.Chain().Verify(testNetwork, id.ID, protocol.CertSupernode, time.Now()) != nil {
			t.Errorf("network %s, chain %v", s.Network(), s.Chain())
		}
		s.Close()
	}
}
