package protocol

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func signedRecord(t *testing.T, id *Identity) *UserRecord {
	t.Helper()
	r := &UserRecord{Name: "alice", Seq: 1, Expires: time.Now().Add(time.Hour).Unix(),
		Supernodes: []PeerID{{1}, {2}}, Addrs: []string{"192.0.2.1:4000"}, NAT: NATEndpointIndependent}
	r.Sign(id)
	return r
}

func TestUserRecordSignAndVerify(t *testing.T) {
	id := testIdentity(t)
	r := signedRecord(t, id)
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	if r.Peer() != id.ID {
		t.Fatalf("record's peer %s, want the signer's %s", r.Peer().Short(), id.ID.Short())
	}
	// It survives the wire.
	b, err := msgpack.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back UserRecord
	if err := msgpack.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(); err != nil {
		t.Fatal("after a round trip:", err)
	}
	// Any change to a signed field breaks the signature.
	changes := map[string]func(*UserRecord){
		"name":       func(r *UserRecord) { r.Name = "alicf" },
		"seq":        func(r *UserRecord) { r.Seq++ },
		"expiry":     func(r *UserRecord) { r.Expires++ },
		"supernodes": func(r *UserRecord) { r.Supernodes = r.Supernodes[:1] },
		"addresses":  func(r *UserRecord) { r.Addrs = []string{"192.0.2.2:4000"} },
		"NAT":        func(r *UserRecord) { r.NAT = NATEndpointDependent },
		"key":        func(r *UserRecord) { r.Key = []byte(testIdentity(t).Key.Public().(ed25519.PublicKey)) },
	}
	for name, change := range changes {
		c := *signedRecord(t, id)
		change(&c)
		if err := c.Verify(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s changed: Verify = %v, want a bad signature", name, err)
		}
	}
}

func TestUserRecordBounds(t *testing.T) {
	id := testIdentity(t)
	cases := map[string]func(*UserRecord){
		"empty name":      func(r *UserRecord) { r.Name = "" },
		"long name":       func(r *UserRecord) { r.Name = strings.Repeat("a", MaxUsernameLen+1) },
		"upper case":      func(r *UserRecord) { r.Name = "Alice" },
		"leading dot":     func(r *UserRecord) { r.Name = ".alice" },
		"space":           func(r *UserRecord) { r.Name = "al ice" },
		"non-ASCII":       func(r *UserRecord) { r.Name = "alicé" },
		"short key":       func(r *UserRecord) { r.Key = r.Key[:31] },
		"short signature": func(r *UserRecord) { r.Sig = r.Sig[:63] },
		"4 supernodes":    func(r *UserRecord) { r.Supernodes = make([]PeerID, MaxUserSNs+1) },
		"9 addresses":     func(r *UserRecord) { r.Addrs = make([]string, MaxAddrs+1) },
		"long address":    func(r *UserRecord) { r.Addrs = []string{strings.Repeat("1", MaxAddrLen+1)} },
		"NAT type 5":      func(r *UserRecord) { r.NAT = 5 },
	}
	for name, change := range cases {
		r := signedRecord(t, id)
		change(r)
		if err := r.Verify(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify = %v, want malformed", name, err)
		}
	}
	for _, ok := range []string{"a", "bob", "alice.b", "x_1-2", strings.Repeat("z", MaxUsernameLen)} {
		if err := CheckUsername(ok); err != nil {
			t.Errorf("CheckUsername(%q) = %v", ok, err)
		}
	}
}

func testIdentity(t *testing.T) *Identity {
	t.Helper()
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
