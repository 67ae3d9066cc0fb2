package supernode

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
)

// dirNet makes n meshed supernodes named A, B, ... that know each other.
func dirNet(t *testing.T, n int) *coreNet {
	t.Helper()
	net := newCoreNet(t, 1)
	for i := range n {
		net.addNode(string(rune('A'+i)), "")
	}
	net.mesh()
	net.meet()
	return net
}

// replicasOf names the live nodes that should hold name, as a sorted list.
func (net *coreNet) replicasOf(name string) []string {
	var ids []ring.ID
	for _, n := range net.nodes {
		if !n.down {
			ids = append(ids, ring.ID(n.peer()))
		}
	}
	var out []string
	for _, id := range ring.New(ids).Replicas(ring.KeyOf(name), ring.Copies) {
		out = append(out, net.node(protocol.PeerID(id)).name)
	}
	slices.Sort(out)
	return out
}

func (net *coreNet) record(id *protocol.Identity, name string, seq uint64) *protocol.UserRecord {
	return storeRecord(net.t, id, name, seq, net.clock.Now().Add(time.Hour))
}

// sweep runs a directory sweep on every live node and delivers what follows.
func (net *coreNet) sweep(force bool) {
	for _, n := range net.nodes {
		if !n.down {
			n.dir.Sweep(net.clock.Now(), force)
		}
	}
	net.run()
}

// A name put through any supernode lands on its three replicas, is found
// from any other, and stays with the first key that claimed it.
func TestDirectoryRegisterAndLookup(t *testing.T) {
	net := dirNet(t, 5)
	alice, mallory := seededIdentity(t, "alice"), seededIdentity(t, "mallory")
	a := net.addLeaf(net.nodes[0], "a")
	if r := a.ask(&protocol.UserPut{Rec: *net.record(alice, "alice", 1)}); r.Code != protocol.StatusOK {
		t.Fatalf("put: %v %s", r.Code, r.Message)
	}
	if got, want := net.holders("alice"), net.replicasOf("alice"); !slices.Equal(got, want) {
		t.Fatalf("alice held by %v, want the replicas %v", got, want)
	}
	for _, n := range net.nodes {
		l := net.addLeaf(n, "reader at "+n.name)
		r := l.ask(&protocol.UserGet{Name: "alice"})
		if r.Code != protocol.StatusOK || r.Rec == nil || !ownedBy(r.Rec, alice) {
			t.Fatalf("lookup through %s: %v %s %+v", n.name, r.Code, r.Message, r.Rec)
		}
	}
	if r := net.addLeaf(net.nodes[3], "b").ask(&protocol.UserGet{Name: "nobody"}); r.Code != protocol.StatusNotFound {
		t.Fatalf("lookup of a free name: %v %s", r.Code, r.Message)
	}

	// Another key is refused, through every supernode; the owner's update is taken.
	for _, n := range net.nodes {
		m := net.addLeaf(n, "mallory at "+n.name)
		if r := m.ask(&protocol.UserPut{Rec: *net.record(mallory, "alice", 9)}); r.Code != protocol.StatusForbidden {
			t.Fatalf("another key's claim through %s: %v %s", n.name, r.Code, r.Message)
		}
	}
	if r := a.ask(&protocol.UserPut{Rec: *net.record(alice, "alice", 2)}); r.Code != protocol.StatusOK {
		t.Fatalf("update: %v %s", r.Code, r.Message)
	}
	for _, n := range net.nodes {
		rec, ok := n.store.get("alice", net.clock.Now())
		if slices.Contains(net.replicasOf("alice"), n.name) != ok || ok && (rec.Seq != 2 || !ownedBy(rec, alice)) {
			t.Fatalf("%s holds %+v (%v)", n.name, rec, ok)
		}
	}
}

// An owner that lost its record (a restart without a disk) asks the other
// replicas before it lets a key claim the name: the first key still wins.
func TestDirectoryFirstKeyWinsAfterOwnerLoss(t *testing.T) {
	net := dirNet(t, 4)
	alice, mallory := seededIdentity(t, "alice"), seededIdentity(t, "mallory")
	if r := net.addLeaf(net.nodes[1], "a").ask(&protocol.UserPut{Rec: *net.record(alice, "alice", 1)}); r.Code != protocol.StatusOK {
		t.Fatalf("put: %v %s", r.Code, r.Message)
	}
	owner := net.node(protocol.PeerID(ring.New(ringIDs(net)).Successor(ring.KeyOf("alice"))))
	owner.restart() // in memory: it comes back empty
	if _, ok := owner.store.get("alice", net.clock.Now()); ok {
		t.Fatal("the owner kept the record across a restart without a disk")
	}
	confirms := owner.dir.Stats.Confirms.Load()
	r := net.addLeaf(owner, "m").ask(&protocol.UserPut{Rec: *net.record(mallory, "alice", 1)})
	if r.Code != protocol.StatusForbidden {
		t.Fatalf("claim on the owner that lost the record: %v %s", r.Code, r.Message)
	}
	if owner.dir.Stats.Confirms.Load() != confirms+1 {
		t.Fatal("the owner decided the claim without asking the other replicas")
	}
	if rec, ok := owner.store.get("alice", net.clock.Now()); !ok || !ownedBy(rec, alice) {
		t.Fatalf("the owner holds %+v, want alice's record fetched back", rec)
	}
	// A free name is claimed once the other replicas say they lack it.
	if r := net.addLeaf(owner, "b").ask(&protocol.UserPut{Rec: *net.record(mallory, "mallory", 1)}); r.Code != protocol.StatusOK {
		t.Fatalf("claim of a free name: %v %s", r.Code, r.Message)
	}
}

func ringIDs(net *coreNet) []ring.ID {
	var ids []ring.ID
	for _, n := range net.nodes {
		if !n.down {
			ids = append(ids, ring.ID(n.peer()))
		}
	}
	return ids
}

// When supernodes join, the records move to their new replicas and leave
// the supernodes that no longer hold them; when one dies, its records are
// copied to the replicas that take its place.
func TestDirectoryHandover(t *testing.T) {
	net := dirNet(t, 3)
	alice := seededIdentity(t, "alice")
	l := net.addLeaf(net.nodes[0], "a")
	var names []string
	for i := range 24 {
		name := fmt.Sprintf("user%02d", i)
		names = append(names, name)
		if r := l.ask(&protocol.UserPut{Rec: *net.record(alice, name, 1)}); r.Code != protocol.StatusOK {
			t.Fatalf("put %s: %v %s", name, r.Code, r.Message)
		}
	}
	check := func(when string) {
		t.Helper()
		for _, name := range names {
			if got, want := net.holders(name), net.replicasOf(name); !slices.Equal(got, want) {
				t.Fatalf("%s: %s held by %v, want %v", when, name, got, want)
			}
		}
	}
	check("three supernodes")

	for _, name := range []string{"D", "E", "F"} {
		net.addNode(name, "")
	}
	net.mesh2()
	net.meet()
	net.sweep(false)
	moved := uint64(0)
	for _, n := range net.nodes {
		moved += n.dir.Stats.Moved.Load()
	}
	if moved == 0 {
		t.Fatal("no record was handed over to the new supernodes")
	}
	check("three joined")

	// C dies: its neighbours, all the others, hear nothing from it for the
	// member timeout and report it; it does not answer, so they take it as
	// dead, and copy what it held.
	net.gossip()
	dead := net.nodes[2]
	dead.down = true
	for _, n := range net.nodes {
		if n != dead {
			net.disconnect(n, dead)
		}
	}
	for range 4 + SuspectFor(4*time.Second)/time.Second {
		net.clock.Advance(time.Second)
		net.gossip()
	}
	for _, n := range net.nodes {
		if n != dead && !slices.Equal(net.listed(n), []string{"A", "B", "D", "E", "F"}) {
			t.Fatalf("%s lists %v", n.name, net.listed(n))
		}
		if n != dead && n.members.Alive(dead.peer()) {
			t.Fatalf("%s still takes C as live", n.name)
		}
	}
	net.sweep(false)
	check("C died")
}

// mesh2 links every pair of nodes not linked yet.
func (net *coreNet) mesh2() {
	for i, a := range net.nodes {
		for _, b := range net.nodes[i+1:] {
			if _, ok := a.nbrs[b.peer()]; !ok {
				net.connect(a, b)
			}
		}
	}
}

// Records are on disk before they are acknowledged: a supernode restarted
// from its data directory answers lookups for them, and keeps refusing
// other keys.
func TestDirectoryRecordsSurviveRestart(t *testing.T) {
	net := newCoreNet(t, 1)
	n := net.addNode("A", t.TempDir())
	alice, mallory := seededIdentity(t, "alice"), seededIdentity(t, "mallory")
	if r := net.addLeaf(n, "a").ask(&protocol.UserPut{Rec: *net.record(alice, "alice", 3)}); r.Code != protocol.StatusOK {
		t.Fatalf("put: %v %s", r.Code, r.Message)
	}
	n.restart()
	if n.store.Stats.Loaded.Load() != 1 {
		t.Fatalf("%d records loaded at the restart, want 1", n.store.Stats.Loaded.Load())
	}
	r := net.addLeaf(n, "b").ask(&protocol.UserGet{Name: "alice"})
	if r.Code != protocol.StatusOK || r.Rec == nil || r.Rec.Seq != 3 || !ownedBy(r.Rec, alice) {
		t.Fatalf("lookup after the restart: %v %s %+v", r.Code, r.Message, r.Rec)
	}
	if r := net.addLeaf(n, "m").ask(&protocol.UserPut{Rec: *net.record(mallory, "alice", 9)}); r.Code != protocol.StatusForbidden {
		t.Fatalf("another key's claim after the restart: %v %s", r.Code, r.Message)
	}
}

// A supernode that passes on a record that does not verify is bad: its link
// is closed, and the record is not kept.
func TestDirectoryBadCopyClosesLink(t *testing.T) {
	net := dirNet(t, 3)
	a, b := net.nodes[0], net.nodes[1]
	rec := net.record(seededIdentity(t, "alice"), "alice", 1)
	rec.Seq++ // after signing: the signature no longer matches
	nodeOut{a}.Send(b.peer(), &protocol.UserStore{Recs: []protocol.UserRecord{*rec}})
	net.run()
	if err := b.closed[a.peer()]; !errors.Is(err, protocol.ErrForbidden) {
		t.Fatalf("B closed A's link with %v, want forbidden", err)
	}
	if _, linked := b.nbrs[a.peer()]; linked {
		t.Fatal("the link is still up")
	}
	if len(net.holders("alice")) != 0 {
		t.Fatalf("the forged record is held by %v", net.holders("alice"))
	}
}

// A request whose link toward the owner closes is answered at once, not
// left to the asker's timeout.
func TestDirectoryLinkLossAnswersRequests(t *testing.T) {
	net := newCoreNet(t, 1)
	a, b, c := net.addNode("A", ""), net.addNode("B", ""), net.addNode("C", "")
	net.connect(a, b)
	net.connect(b, c)
	net.meet()
	// A lacks the record, so it asks on through B, its only link; B is
	// down and drops the request.
	b.down = true
	l := net.addLeaf(a, "a")
	id := protocol.QueryID{1}
	l.send(&protocol.UserGet{ID: id, Name: "alice"})
	if rs := l.replies(id); len(rs) != 0 {
		t.Fatalf("answered while B holds the request: %+v", rs)
	}
	b.down = false
	net.disconnect(a, b)
	net.run()
	if rs := l.replies(id); len(rs) != 1 || rs[0].Code != protocol.StatusUnavailable {
		t.Fatalf("replies after the link closed: %+v", rs)
	}
}

// ownedBy reports whether rec is signed by id's key.
func ownedBy(rec *protocol.UserRecord, id *protocol.Identity) bool {
	return rec != nil && bytes.Equal(rec.Key, id.Key.Public().(ed25519.PublicKey))
}
