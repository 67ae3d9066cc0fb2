package index

import (
	"errors"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

func userID(t *testing.T) *protocol.Identity {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func userRecord(id *protocol.Identity, name string, seq uint64, expires time.Time, addr string) *protocol.UserRecord {
	r := &protocol.UserRecord{Name: name, Seq: seq, Expires: expires.Unix(), Addrs: []string{addr}}
	r.Sign(id)
	return r
}

func TestUsersFirstKeyOwnsName(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	u := NewUsers(10)
	alice, mallory := userID(t), userID(t)
	if ok, err := u.Put(userRecord(alice, "alice", 1, now.Add(time.Hour), "192.0.2.1:1"), now); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	// Another key can neither claim nor update the name, whatever its number.
	for _, seq := range []uint64{1, 2, 1 << 40} {
		if _, err := u.Put(userRecord(mallory, "alice", seq, now.Add(time.Hour), "198.51.100.1:1"), now); !errors.Is(err, ErrNameTaken) {
			t.Fatalf("second key, seq %d: %v, want the name taken", seq, err)
		}
	}
	// A record signed by alice's key but altered in transit is refused.
	forged := userRecord(alice, "alice", 9, now.Add(time.Hour), "192.0.2.1:1")
	forged.Addrs = []string{"198.51.100.1:1"}
	if _, err := u.Put(forged, now); !errors.Is(err, protocol.ErrBadSignature) {
		t.Fatalf("altered record: %v, want a bad signature", err)
	}
	// The owner updates with a higher number; older or conflicting ones lose.
	if ok, err := u.Put(userRecord(alice, "alice", 2, now.Add(time.Hour), "192.0.2.2:1"), now); !ok || err != nil {
		t.Fatalf("update: %v %v", ok, err)
	}
	if _, err := u.Put(userRecord(alice, "alice", 1, now.Add(2*time.Hour), "192.0.2.3:1"), now); !errors.Is(err, ErrStaleRecord) {
		t.Fatalf("older record: %v, want stale", err)
	}
	if _, err := u.Put(userRecord(alice, "alice", 2, now.Add(2*time.Hour), "192.0.2.3:1"), now); !errors.Is(err, ErrStaleRecord) {
		t.Fatalf("a second record with the same number: %v, want stale", err)
	}
	got, ok := u.Get("alice", now)
	if !ok || got.Addrs[0] != "192.0.2.2:1" || got.Peer() != alice.ID {
		t.Fatalf("Get = %+v, %v; want alice's second record", got, ok)
	}
	// The same record again (a replica passing it on) is no change and no error.
	same := got.Clone()
	if ok, err := u.Put(same, now); ok || err != nil {
		t.Fatalf("the held record again: %v %v, want no change", ok, err)
	}
	// Changing what Get returned does not change the store.
	got.Addrs[0] = "203.0.113.1:1"
	if again, _ := u.Get("alice", now); again.Addrs[0] != "192.0.2.2:1" {
		t.Fatal("a record returned by Get shares its addresses with the store")
	}
}

func TestUsersExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	u := NewUsers(2)
	alice, bob := userID(t), userID(t)
	if _, err := u.Put(userRecord(alice, "alice", 1, now, "192.0.2.1:1"), now); !errors.Is(err, ErrExpired) {
		t.Fatalf("a record expiring now: %v, want expired", err)
	}
	if _, err := u.Put(userRecord(alice, "alice", 1, now.Add(protocol.MaxUserRecordTTL+time.Minute), "192.0.2.1:1"), now); !errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("a record living too long: %v, want a bad request", err)
	}
	if _, err := u.Put(userRecord(alice, "alice", 5, now.Add(time.Minute), "192.0.2.1:1"), now); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Minute)
	if _, ok := u.Get("alice", later); ok {
		t.Fatal("an expired record is still returned")
	}
	// Once alice's record expired, the name is free for another key.
	if ok, err := u.Put(userRecord(bob, "alice", 1, later.Add(time.Hour), "198.51.100.1:1"), later); !ok || err != nil {
		t.Fatalf("claiming an expired name: %v %v", ok, err)
	}
	// A full store makes room by dropping what expired, and only then refuses.
	if _, err := u.Put(userRecord(bob, "bob", 1, later.Add(time.Minute), "198.51.100.1:1"), later); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Put(userRecord(alice, "carol", 1, later.Add(time.Hour), "192.0.2.1:1"), later); !errors.Is(err, ErrUsersFull) {
		t.Fatalf("a third record in a store of 2: %v, want full", err)
	}
	evenLater := later.Add(2 * time.Minute) // bob's record has expired
	if ok, err := u.Put(userRecord(alice, "carol", 1, evenLater.Add(time.Hour), "192.0.2.1:1"), evenLater); !ok || err != nil {
		t.Fatalf("a third record once one expired: %v %v", ok, err)
	}
	if n := u.Len(); n != 2 {
		t.Fatalf("%d records held, want 2", n)
	}
	if recs := u.Records(evenLater, func(name string) bool { return name == "carol" }); len(recs) != 1 || recs[0].Name != "carol" {
		t.Fatalf("Records(carol) = %v", recs)
	}
}

// TestUsersBatch: a batch decides each put against the records and what it
// staged before; readers see nothing of it until it commits, and nothing at
// all when it aborts; a put that may not claim leaves a free name free.
func TestUsersBatch(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	u := NewUsers(3)
	alice, bob, mallory := userID(t), userID(t), userID(t)
	if _, err := u.Put(userRecord(alice, "alice", 1, now.Add(time.Hour), "192.0.2.1:1"), now); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Put(userRecord(bob, "old", 1, now.Add(time.Minute), "192.0.2.1:1"), now); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Minute) // "old" has expired
	b := u.Begin(later)
	if ok, err := b.Put(userRecord(bob, "bob", 1, later.Add(time.Hour), "192.0.2.2:1"), true); !ok || err != nil {
		t.Fatalf("claim in a batch: %v %v", ok, err)
	}
	// The second claim of bob in the same batch sees the first.
	if _, err := b.Put(userRecord(mallory, "bob", 5, later.Add(time.Hour), "198.51.100.1:1"), true); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("a second key after a claim staged in the batch: %v, want taken", err)
	}
	if ok, err := b.Put(userRecord(alice, "alice", 2, later.Add(time.Hour), "192.0.2.3:1"), false); !ok || err != nil {
		t.Fatalf("an update that may not claim: %v %v", ok, err)
	}
	if _, err := b.Put(userRecord(mallory, "carol", 1, later.Add(time.Hour), "198.51.100.1:1"), false); !errors.Is(err, ErrNoClaim) {
		t.Fatalf("a claim that may not claim: %v", err)
	}
	// A third record in a share of 3 holding alice, bob and the expired "old":
	// the batch prunes "old" to make room.
	if ok, err := b.Put(userRecord(mallory, "dave", 1, later.Add(time.Hour), "198.51.100.1:1"), true); !ok || err != nil {
		t.Fatalf("a claim that needs the expired record's room: %v %v", ok, err)
	}
	if _, err := b.Put(userRecord(mallory, "eve", 1, later.Add(time.Hour), "198.51.100.1:1"), true); !errors.Is(err, ErrUsersFull) {
		t.Fatalf("a fourth live record in a share of 3: %v, want full", err)
	}
	changes := map[string]bool{}
	b.Changes(func(name string, r *protocol.UserRecord) { changes[name] = r != nil })
	if len(changes) != 4 || !changes["bob"] || !changes["alice"] || !changes["dave"] || changes["old"] {
		t.Fatalf("batch changes %v, want bob, alice and dave put and old dropped", changes)
	}
	// Readers do not wait for the batch, and do not see it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, ok := u.Get("bob", later); ok {
			t.Error("a staged record is visible before the commit")
		}
		if r, _ := u.Get("alice", later); r == nil || r.Seq != 1 {
			t.Error("a staged update is visible before the commit")
		}
	}()
	<-done
	b.Abort()
	if _, ok := u.Get("bob", later); ok || u.Len() != 2 {
		t.Fatalf("an aborted batch changed the share: %d records", u.Len())
	}

	b = u.Begin(later)
	b.Put(userRecord(bob, "bob", 1, later.Add(time.Hour), "192.0.2.2:1"), true)
	b.Drop("alice")
	b.Commit()
	b.Commit() // twice is harmless
	if _, ok := u.Get("bob", later); !ok {
		t.Fatal("a committed claim is not visible")
	}
	if _, ok := u.Get("alice", later); ok {
		t.Fatal("a committed drop is not visible")
	}
}
