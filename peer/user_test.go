package peer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/transport"
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

// TestUserWaitsBounded: replies to requests we never sent leave nothing
// behind, and a request past the bound is refused before anything is sent.
func TestUserWaitsBounded(t *testing.T) {
	u := newUserDir(&Daemon{cfg: Config{Username: "bob"}, log: zerolog.New(zerolog.NewTestWriter(t))})
	for i := range 10000 {
		var id protocol.QueryID
		binary.BigEndian.PutUint64(id[:], uint64(i))
		u.reply(&protocol.UserReply{ID: id})
	}
	if n := u.waits.Len(); n != 0 {
		t.Fatalf("%d waits kept after replies for nobody, want 0", n)
	}
	var removes []func()
	for i := range maxUserWaits {
		var id protocol.QueryID
		binary.BigEndian.PutUint64(id[8:], uint64(i))
		_, remove, ok := u.waits.Add(id, 1)
		if !ok {
			t.Fatalf("wait %d refused under the bound", i)
		}
		removes = append(removes, remove)
	}
	// The link is never used: a full table refuses before sending.
	l := &transport.Link{Version: protocol.VersionUsers}
	build := func(id protocol.QueryID) protocol.Message { return &protocol.UserGet{ID: id, Name: "alice"} }
	if _, err := u.askOnce(context.Background(), l, build); !errors.Is(err, protocol.ErrOverloaded) {
		t.Fatalf("askOnce with the table full: %v, want ErrOverloaded", err)
	}
	if n := u.waits.Len(); n != maxUserWaits {
		t.Fatalf("%d waits, want the bound %d", n, maxUserWaits)
	}
	for _, r := range removes {
		r()
	}
}

// TestUserForcedPutOwedUntilItLands: a put asked for by a replica's restart
// that fails (the ring has no link to the restarted owner yet) is made again
// on the next try, though the record from before is still live and nothing
// else about it changed; once it lands, nothing more is owed.
func TestUserForcedPutOwedUntilItLands(t *testing.T) {
	u := newUserDir(&Daemon{cfg: Config{Username: "bob"}, log: zerolog.New(zerolog.NewTestWriter(t))})
	now := time.Now()
	rec := func() *protocol.UserRecord {
		return &protocol.UserRecord{Name: "bob", Addrs: []string{"192.0.2.1:4000"}, Expires: now.Add(userTTL).Unix()}
	}
	prev, force, put := u.due(rec(), now)
	if !put {
		t.Fatal("the first record was not due")
	}
	u.done(rec(), prev, force, nil)
	if _, _, put := u.due(rec(), now); put {
		t.Fatal("the same live record was due again")
	}
	u.mu.Lock()
	u.force = true // as membersChanged sets it
	u.mu.Unlock()
	prev, force, put = u.due(rec(), now)
	if !put || !force {
		t.Fatalf("a forced put: due %v, force %v", put, force)
	}
	lost := fmt.Errorf("%w: no link toward the owner of %q", protocol.ErrUnavailable, "bob")
	u.done(rec(), prev, force, lost)
	if st := u.snapshot(); !st.Registered {
		t.Fatal("a failed refresh of a live record dropped the registration")
	}
	prev, force, put = u.due(rec(), now)
	if !put || !force {
		t.Fatalf("after the forced put failed: due %v, force %v; the put is still owed", put, force)
	}
	u.done(rec(), prev, force, nil)
	if _, _, put := u.due(rec(), now); put {
		t.Fatal("a put was still owed after the forced one landed")
	}
}
