package supernode

import (
	"slices"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

func memberRec(t *testing.T, id *protocol.Identity, beat uint64, leaves uint32) *protocol.MemberRecord {
	t.Helper()
	r := &protocol.MemberRecord{Addrs: []string{"192.0.2.1:4000"}, Beat: beat, Leaves: leaves, Cap: 200,
		Chain: testAdmit(id, time.Unix(1_900_000_000, 0))}
	r.Sign(id)
	return r
}

func newIdentity(t *testing.T) *protocol.Identity {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestMembersHeartbeats(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ms := NewMembers(testNetwork, 3*time.Second, 3*time.Second, 10)
	a, b := newIdentity(t), newIdentity(t)
	if fresh, bad := ms.Merge([]*protocol.MemberRecord{memberRec(t, a, 1, 5), memberRec(t, b, 7, 9)}, now); fresh != 2 || bad != 0 {
		t.Fatalf("first gossip: %d fresh, %d bad", fresh, bad)
	}
	// An older or equal beat changes nothing; a higher one replaces the entry.
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{memberRec(t, b, 7, 100), memberRec(t, b, 3, 100)}, now); fresh != 0 {
		t.Fatalf("stale beats were taken: %d fresh", fresh)
	}
	now = now.Add(2 * time.Second)
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{memberRec(t, a, 2, 6)}, now); fresh != 1 {
		t.Fatal("a higher beat was not taken")
	}
	// A forged entry (b's key, altered load) and a malformed one are refused.
	forged := memberRec(t, b, 8, 9)
	forged.Leaves = 0
	short := memberRec(t, a, 9, 1)
	short.Sig = short.Sig[:10]
	if fresh, bad := ms.Merge([]*protocol.MemberRecord{forged, short}, now); fresh != 0 || bad != 2 {
		t.Fatalf("forged and malformed entries: %d fresh, %d bad; want 0 and 2", fresh, bad)
	}
	// b's beat stopped 3 s ago: it is dead; a's rose 1 s ago.
	now = now.Add(time.Second)
	if died := ms.Expire(now); len(died) != 1 || died[0] != b.ID {
		t.Fatalf("died: %v, want b", died)
	}
	if live := ms.Live(); len(live) != 1 || live[0].Peer() != a.ID || live[0].Leaves != 6 {
		t.Fatalf("live: %v, want a with 6 leaves", live)
	}
	// An old copy of b going round does not revive it; a new beat does.
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{memberRec(t, b, 7, 9)}, now); fresh != 0 || ms.Alive(b.ID) {
		t.Fatal("an old entry revived a dead supernode")
	}
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{memberRec(t, b, 8, 0)}, now); fresh != 1 || !ms.Alive(b.ID) {
		t.Fatal("a supernode that beat again stayed dead")
	}
	// Dead for several timeouts, an entry is still remembered: a copy from a
	// supernode that learnt of the death late does not revive it.
	ms.Expire(now.Add(4 * time.Second))
	if died := ms.Expire(now.Add(7 * time.Second)); len(died) != 0 {
		t.Fatalf("died twice: %v", died)
	}
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{memberRec(t, b, 8, 0)}, now.Add(7*time.Second)); fresh != 0 || ms.Alive(b.ID) {
		t.Fatal("a late copy revived a supernode dead for several timeouts")
	}
	// After forgetAfter it is forgotten.
	ms.Expire(now.Add(ms.forgetAfter()))
	if live := ms.Live(); len(live) != 0 {
		t.Fatalf("live after all stopped: %v", live)
	}
	if ms.Alive(a.ID) || ms.Alive(b.ID) {
		t.Fatal("forgotten supernodes are alive")
	}
}

func TestMembersBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ms := NewMembers(testNetwork, time.Second, time.Second, 2)
	ids := []*protocol.Identity{newIdentity(t), newIdentity(t), newIdentity(t)}
	var recs []*protocol.MemberRecord
	for _, id := range ids {
		recs = append(recs, memberRec(t, id, 1, 0))
	}
	if fresh, _ := ms.Merge(recs, now); fresh != 2 || len(ms.Live()) != 2 || ms.Alive(ids[2].ID) {
		t.Fatalf("a view of 2 took %d of 3", fresh)
	}
	// Those held still get their updates when the view is full; others stay out.
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{memberRec(t, ids[0], 2, 7), memberRec(t, ids[2], 2, 0)}, now); fresh != 1 || ms.Alive(ids[2].ID) {
		t.Fatalf("full view: %d fresh, want only the held supernode's update", fresh)
	}
}

// A leaf's list of a larger overlay is a sample: our own entry first, the
// same others every time, and when one of them dies only it is replaced.
func TestLeafListSamples(t *testing.T) {
	var live []*protocol.MemberRecord
	for i := range LeafList + 20 {
		r := &protocol.MemberRecord{Key: make([]byte, 32), Addrs: []string{"192.0.2.1:1"}}
		r.Key[0], r.Key[1] = byte(i), byte(i>>8)
		live = append(live, r)
	}
	self := live[len(live)-1].Peer()
	if msg := leafList(live[len(live)-LeafList:], self); len(msg.Members) != LeafList || msg.Of != 0 {
		t.Fatalf("%d live: %d entries, of %d; want all, of 0", LeafList, len(msg.Members), msg.Of)
	}
	peers := func(m *protocol.Members) []protocol.PeerID {
		var out []protocol.PeerID
		for i := range m.Members {
			out = append(out, m.Members[i].Peer())
		}
		return out
	}
	first := leafList(live, self)
	if len(first.Members) != LeafList || first.Members[0].Peer() != self || first.Of != uint32(len(live)) {
		t.Fatalf("%d entries of %d, first %s; want %d of %d with our own first", len(first.Members), first.Of,
			first.Members[0].Peer().Short(), LeafList, len(live))
	}
	shuffled := slices.Clone(live)
	slices.Reverse(shuffled)
	if got := peers(leafList(shuffled, self)); !slices.Equal(got, peers(first)) {
		t.Fatal("the sample depends on the order of the live list")
	}
	gone := first.Members[3].Peer()
	rest := slices.DeleteFunc(slices.Clone(live), func(m *protocol.MemberRecord) bool { return m.Peer() == gone })
	after := peers(leafList(rest, self))
	kept := 0
	for _, p := range peers(first) {
		if slices.Contains(after, p) {
			kept++
		}
	}
	if kept != LeafList-1 || slices.Contains(after, gone) {
		t.Fatalf("after one sampled supernode died %d of the sample stayed; want all but it", kept)
	}
	// Another supernode's sample differs.
	if other := peers(leafList(live, live[0].Peer())); slices.Equal(other[1:], peers(first)[1:]) {
		t.Fatal("two supernodes sample the same others")
	}
}

// Gen moves with the set of live supernodes, not with their beats.
func TestMembersGen(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ms := NewMembers(testNetwork, 3*time.Second, 3*time.Second, 10)
	a := newIdentity(t)
	g0 := ms.Gen()
	ms.Merge([]*protocol.MemberRecord{memberRec(t, a, 1, 0)}, now)
	g1 := ms.Gen()
	ms.Merge([]*protocol.MemberRecord{memberRec(t, a, 2, 0)}, now.Add(time.Second))
	if g1 == g0 || ms.Gen() != g1 {
		t.Fatalf("gen %d, %d after a join, %d after a beat: want a change, then none", g0, g1, ms.Gen())
	}
	ms.Expire(now.Add(5 * time.Second))
	g2 := ms.Gen()
	ms.Merge([]*protocol.MemberRecord{memberRec(t, a, 3, 0)}, now.Add(5*time.Second))
	if g2 == g1 || ms.Gen() == g2 {
		t.Fatalf("gen %d after a death, %d after the return: want a change each", g2, ms.Gen())
	}
}

// A supernode that restarts with its clock stepped back issues lower beats,
// but a higher incarnation: its entries are taken at once, and those of its
// earlier life no longer are.
func TestMembersIncarnationWins(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ms := NewMembers(testNetwork, 3*time.Second, 3*time.Second, 10)
	a := newIdentity(t)
	entry := func(beat, inc uint64) *protocol.MemberRecord {
		r := &protocol.MemberRecord{Addrs: []string{"192.0.2.1:4000"}, Beat: beat, Incarnation: inc,
			Chain: testAdmit(a, time.Unix(1_900_000_000, 0))}
		r.Sign(a)
		return r
	}
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{entry(5000, 1)}, now); fresh != 1 {
		t.Fatal("first entry not taken")
	}
	g := ms.Gen()
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{entry(10, 2)}, now); fresh != 1 {
		t.Fatal("the restarted supernode's entry, with a lower beat, was not taken")
	}
	if ms.Gen() == g {
		t.Fatal("a restart left the generation as it was: the keyword ring would not refill the restarted keeper")
	}
	if fresh, _ := ms.Merge([]*protocol.MemberRecord{entry(6000, 1)}, now); fresh != 0 {
		t.Fatal("an entry of the earlier life replaced the restarted one's")
	}
	if got := ms.Incarnation(a.ID); got != 2 {
		t.Fatalf("incarnation %d, want 2", got)
	}
}
