package integration

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/supernode"
)

// durableCluster is dirCluster with a data directory for each supernode, so
// that each keeps its records in its file; ids[i] and dirs[i] are sns[i]'s,
// to restart it.
func durableCluster(t *testing.T, n int) (sns []*supernode.Server, stops []func(), ids []*protocol.Identity, dirs []string) {
	t.Helper()
	for i := range n {
		var join []*supernode.Server
		if i > 0 {
			join = append(join, sns[i-1])
		}
		id, dir := newID(t), t.TempDir()
		s, stop := restartAs(t, id, dir, join...)
		sns, stops, ids, dirs = append(sns, s), append(stops, stop), append(ids, id), append(dirs, dir)
	}
	waitRing(t, sns, raceSlowdown*(time.Duration(n)*time.Second+10*time.Second))
	return sns, stops, ids, dirs
}

// restartAs starts a supernode with id and data directory dir, joining join.
func restartAs(t *testing.T, id *protocol.Identity, dir string, join ...*supernode.Server) (*supernode.Server, func()) {
	t.Helper()
	return runSupernode(t, func(c *supernode.Config) {
		c.Identity, c.Chain = id, testAdmit(id)
		c.AltListen, c.ListenTCP, c.DataDir = "-", "-", dir
		c.GossipInterval, c.MemberTimeout, c.Neighbours = raceSlowdown*100*time.Millisecond, raceSlowdown*600*time.Millisecond, 4
	}, join...)
}

// claimUntilAnswered puts rec through c until the answer is not
// "unavailable" (the ring not known yet, or the other replicas not asked
// yet), and fails the test if any answer stored it.
func claimUntilAnswered(t *testing.T, c *rawLeaf, rec *protocol.UserRecord, within time.Duration) *protocol.UserReply {
	t.Helper()
	var r *protocol.UserReply
	unavailable := 0
	eventually(t, within, "an answer to the claim other than unavailable", func() bool {
		r = c.put(t, rec)
		if r.Code == protocol.StatusOK {
			t.Fatalf("a second key claimed %q", rec.Name)
		}
		if r.Code == protocol.StatusUnavailable {
			unavailable++
			return false
		}
		return true
	})
	t.Logf("claim answered %d (%s) after %d unavailable", r.Code, r.Message, unavailable)
	return r
}

// ownerKeeps checks that every supernode resolves name to owner's key, and
// that its holders hold owner's record.
func ownerKeeps(t *testing.T, sns []*supernode.Server, name string, owner *protocol.Identity) {
	t.Helper()
	for _, s := range sns {
		c := dialRawLeaf(t, s)
		eventually(t, raceSlowdown*10*time.Second, "a lookup through "+s.ID().Short()+" to resolve to the owner", func() bool {
			r := c.get(t, name)
			return r.Code == protocol.StatusOK && r.Rec != nil && r.Rec.Peer() == owner.ID
		})
		if rec, ok := s.UserRecord(name); ok && rec.Peer() != owner.ID {
			t.Fatalf("%s holds %q for %s, not its owner %s", s.ID().Short(), name, rec.Peer().Short(), owner.ID.Short())
		}
	}
}

func ownerOf(sns []*supernode.Server, name string) int {
	ids := make([]ring.ID, len(sns))
	for i, s := range sns {
		ids[i] = ring.ID(s.ID())
	}
	owner := protocol.PeerID(ring.New(ids).Successor(ring.KeyOf(name)))
	for i, s := range sns {
		if s.ID() == owner {
			return i
		}
	}
	return -1
}

// TestUsernameClaimWhileOwnerLacksRecord: the owner of "bob" on the ring is
// down while bob registers, so its file lacks his record. It restarts, and a
// second key claims "bob" through it at once, before and after it knows the
// ring again: while it knows no other supernode it refuses (it was on a ring
// before), and then it asks the other replicas, which hold bob's record, and
// refuses the claim as taken. Bob keeps his name on every supernode.
func TestUsernameClaimWhileOwnerLacksRecord(t *testing.T) {
	t.Parallel()
	sns, stops, ids, dirs := durableCluster(t, 5)
	name := "bob"
	o := ownerOf(sns, name)
	stops[o]()
	var rest []*supernode.Server
	for i, s := range sns {
		if i != o {
			rest = append(rest, s)
		}
	}
	waitRing(t, rest, raceSlowdown*10*time.Second)
	bob, mallory := newID(t), newID(t)
	if r := dialRawLeaf(t, rest[0]).put(t, userRecord(bob, name, 1, "192.0.2.1:1")); r.Code != protocol.StatusOK {
		t.Fatalf("bob's put: %d %s", r.Code, r.Message)
	}
	eventually(t, raceSlowdown*10*time.Second, "bob's record on its three replicas", func() bool { return len(holders(rest, name)) == 3 })

	back, _ := restartAs(t, ids[o], dirs[o], rest[0])
	if _, ok := back.UserRecord(name); ok {
		t.Fatal("the restarted owner holds a record it never stored")
	}
	r := claimUntilAnswered(t, dialRawLeaf(t, back), userRecord(mallory, name, 99, "198.51.100.1:1"), raceSlowdown*20*time.Second)
	if r.Code != protocol.StatusForbidden {
		t.Fatalf("mallory's claim through the restarted owner: %d %s, want forbidden (taken)", r.Code, r.Message)
	}
	// It either asked the other replicas first or had the record copied back
	// by them before the claim came (they copy at once to a supernode whose
	// incarnation rose): either way the claim was decided against bob's record.
	t.Logf("the restarted owner asked the other replicas %d times", back.DirectoryStats().Confirms.Load())
	all := append(rest, back)
	waitRing(t, all, raceSlowdown*10*time.Second)
	ownerKeeps(t, all, name, bob)
}

// TestUsernameClaimOnNewOwner: a supernode joins at a ring position that
// makes it the owner of "bob", whose record it has not got yet; a second
// key claims "bob" through it from its first moment, and is refused.
func TestUsernameClaimOnNewOwner(t *testing.T) {
	t.Parallel()
	sns, _, _, _ := durableCluster(t, 4)
	// An identity that will own the name once it joins: its ring ID falls
	// between the name's key and the supernode before it. That arc can be
	// too thin to hit by chance, so the name is the first of a few whose
	// arc a random identity hits within 2,000 tries.
	ids := make([]ring.ID, len(sns))
	for i, s := range sns {
		ids[i] = ring.ID(s.ID())
	}
	var (
		name     string
		newcomer *protocol.Identity
	)
	for i := 0; i < 20 && newcomer == nil; i++ {
		name = "bob" + strings.Repeat("b", i)
		for try := 0; try < 2_000 && newcomer == nil; try++ {
			id := newID(t)
			if ring.New(append(slices.Clone(ids), ring.ID(id.ID))).Successor(ring.KeyOf(name)) == ring.ID(id.ID) {
				newcomer = id
			}
		}
	}
	if newcomer == nil {
		t.Fatal("no identity owning any of 20 names in 2,000 tries each")
	}
	bob, mallory := newID(t), newID(t)
	if r := dialRawLeaf(t, sns[0]).put(t, userRecord(bob, name, 1, "192.0.2.1:1")); r.Code != protocol.StatusOK {
		t.Fatalf("bob's put: %d %s", r.Code, r.Message)
	}
	eventually(t, raceSlowdown*10*time.Second, "bob's record on its three replicas", func() bool { return len(holders(sns, name)) == 3 })
	n, _ := restartAs(t, newcomer, t.TempDir(), sns[0])
	r := claimUntilAnswered(t, dialRawLeaf(t, n), userRecord(mallory, name, 99, "198.51.100.1:1"), raceSlowdown*20*time.Second)
	if r.Code != protocol.StatusForbidden {
		t.Fatalf("mallory's claim through the new owner: %d %s, want forbidden (taken)", r.Code, r.Message)
	}
	all := append(sns, n)
	waitRing(t, all, raceSlowdown*10*time.Second)
	ownerKeeps(t, all, name, bob)
	if _, ok := n.UserRecord(name); !ok {
		t.Fatal("the new owner never got bob's record")
	}
}

func newID(t *testing.T) *protocol.Identity {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
