package attach

import (
	"context"
	"crypto/ed25519"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
)

// threeEntries is a list of three signed entries for supernodes of
// network netKey, with their chains or without.
func threeEntries(t *testing.T, netKey ed25519.PrivateKey, chains bool) protocol.Members {
	t.Helper()
	var list protocol.Members
	for i := range 3 {
		id, err := protocol.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		r := protocol.MemberRecord{Addrs: []string{"192.0.2.1:" + string(rune('1'+i))}, Beat: 1, Incarnation: 1}
		if chains {
			r.Chain = protocol.Admit(netKey, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, time.Now().Add(time.Hour))
		}
		r.Sign(id)
		list.Members = append(list.Members, r)
	}
	return list
}

// listAttachment is an attachment of network netKey that only takes
// member lists, telling changed of each ring they make.
func listAttachment(t *testing.T, changed func([]ring.ID)) (*Attachment, ed25519.PrivateKey) {
	t.Helper()
	_, netKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	a := New(context.Background(), &wg, Config{Log: zerolog.Nop(),
		Network:        func() protocol.NetworkID { return protocol.NetworkIDOf(netKey) },
		IsOurs:         func(protocol.PeerID) bool { return false },
		MembersChanged: func(ids []ring.ID, _ map[ring.ID]uint64) { changed(ids) }})
	return a, netKey
}

// A list of every supernode feeds the username ring; a sample of a larger
// overlay gives attach targets only.
func TestSampledMemberListIsNoRing(t *testing.T) {
	rings := 0
	a, netKey := listAttachment(t, func(ids []ring.ID) {
		if len(ids) != 3 {
			t.Errorf("ring of %d supernodes, want 3", len(ids))
		}
		rings++
	})
	list := threeEntries(t, netKey, true)
	a.takeMembers(&list)
	if rings != 1 || a.Snapshot().Listed != 3 {
		t.Fatalf("whole list: %d rings, %d listed; want 1 and 3", rings, a.Snapshot().Listed)
	}
	sample := list
	sample.Of = 50
	a.takeMembers(&sample)
	if rings != 1 || a.Snapshot().Listed != 3 {
		t.Fatalf("sampled list: %d rings, %d listed; want still 1 and 3", rings, a.Snapshot().Listed)
	}
}

// A sample may come without chains (v11): its entries are attach targets,
// checked in the welcome. A whole list without chains feeds no ring and
// gives no targets: it would let a supernode place anyone on the ring.
func TestBareSampleGivesTargets(t *testing.T) {
	rings := 0
	a, netKey := listAttachment(t, func([]ring.ID) { rings++ })
	list := threeEntries(t, netKey, false)
	a.takeMembers(&list)
	if rings != 0 || a.Snapshot().Listed != 0 {
		t.Fatalf("whole list without chains: %d rings, %d listed; want none", rings, a.Snapshot().Listed)
	}
	sample := list
	sample.Of = 50
	a.takeMembers(&sample)
	if rings != 0 || a.Snapshot().Listed != 3 {
		t.Fatalf("sample without chains: %d rings, %d listed; want 0 and 3", rings, a.Snapshot().Listed)
	}
	// A bad signature still costs the entry.
	bad := protocol.Members{Members: []protocol.MemberRecord{list.Members[0]}, Of: 50}
	bad.Members[0].Beat++
	a.takeMembers(&bad)
	if a.Snapshot().Listed != 3 {
		t.Fatalf("a forged entry changed the targets: %d listed", a.Snapshot().Listed)
	}
}
