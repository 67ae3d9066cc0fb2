package peer

import (
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
)

// kicked reports whether the user directory was asked to put the record
// again, and clears the request.
func kicked(u *userDir) bool {
	select {
	case <-u.kick:
		u.mu.Lock()
		force := u.force
		u.force = false
		u.mu.Unlock()
		return force
	default:
		return false
	}
}

// TestUserRePutOnRestartOrRingChange: the owner of a name puts its record
// again when a supernode that holds it restarts (its incarnation rose in the
// member list) and when the supernodes that hold it change; not when a
// supernode that does not hold it restarts, nor when nothing changed.
func TestUserRePutOnRestartOrRingChange(t *testing.T) {
	u := newUserDir(&Daemon{cfg: Config{Username: "bob"}, log: zerolog.New(zerolog.NewTestWriter(t))})
	var ids []ring.ID
	incs := make(map[ring.ID]uint64)
	for i := 0; i < 6; i++ {
		id, err := protocol.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ring.ID(id.ID))
		incs[ring.ID(id.ID)] = 100
	}
	reps := ring.New(ids).Replicas(ring.KeyOf("bob"), ring.Copies)
	var other ring.ID
	for _, id := range ids {
		if !slices.Contains(reps, id) {
			other = id
		}
	}
	with := func(id ring.ID, inc uint64) map[ring.ID]uint64 {
		m := make(map[ring.ID]uint64, len(incs))
		for k, v := range incs {
			m[k] = v
		}
		m[id] = inc
		return m
	}

	u.membersChanged(ids, incs)
	if kicked(u) {
		t.Fatal("the first member list asked for a put again")
	}
	u.membersChanged(ids, incs)
	if kicked(u) {
		t.Fatal("the same member list asked for a put again")
	}
	u.membersChanged(ids, with(other, 200))
	if kicked(u) {
		t.Fatal("a restart of a supernode that does not hold the record asked for a put again")
	}
	for i, r := range reps {
		incs = with(r, uint64(300+i))
		u.membersChanged(ids, incs)
		if !kicked(u) {
			t.Fatalf("replica %d restarted (incarnation rose) and the record was not put again", i)
		}
		u.membersChanged(ids, incs)
		if kicked(u) {
			t.Fatalf("replica %d's new incarnation, seen again, asked for a put again", i)
		}
	}
	// The owner dies: the replicas change.
	var rest []ring.ID
	for _, id := range ids {
		if id != reps[0] {
			rest = append(rest, id)
		}
	}
	u.membersChanged(rest, incs)
	if !kicked(u) {
		t.Fatal("the replicas changed and the record was not put again")
	}
	// It comes back with a higher incarnation: the replicas change again.
	u.membersChanged(ids, with(reps[0], 999))
	if !kicked(u) {
		t.Fatal("the owner came back and the record was not put again")
	}
}
