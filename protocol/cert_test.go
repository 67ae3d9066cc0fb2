package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func newNetworkKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newID(t testing.TB) *Identity {
	t.Helper()
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func pub(id *Identity) ed25519.PublicKey { return id.Key.Public().(ed25519.PublicKey) }

func TestChainVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	netKey := newNetworkKey(t)
	network := NetworkIDOf(netKey)
	otherNet := NetworkIDOf(newNetworkKey(t))
	sn, leaf, third := newID(t), newID(t), newID(t)
	year := now.Add(365 * 24 * time.Hour)

	admitted := Admit(netKey, pub(sn), CertSupernode|CertAdmit, year)
	// Extend checks the holder's chain at the real clock; these chains are
	// built by hand below where a test needs a time other than now.
	extend := func(ch Chain, holder *Identity, subject *Identity, roles CertRole, exp time.Time) Chain {
		c := Cert{Key: bytes.Clone(pub(subject)), Roles: roles, Expires: exp.Unix()}
		c.Sig = ed25519.Sign(holder.Key, c.signedBytes(network))
		return append(ch.Clone(), c)
	}
	promoted := extend(admitted, sn, leaf, CertSupernode, now.Add(30*time.Minute))
	noAdmit := Admit(netKey, pub(sn), CertSupernode, year)
	tampered := admitted.Clone()
	tampered[0].Roles |= CertRelay

	tests := []struct {
		name    string
		chain   Chain
		network NetworkID
		peer    PeerID
		role    CertRole
		at      time.Time
		wantErr string // "" for valid
	}{
		{"admitted by the network", admitted, network, sn.ID, CertSupernode, now, ""},
		{"admitted, admit role", admitted, network, sn.ID, CertAdmit, now, ""},
		{"promoted by an admitted supernode", promoted, network, leaf.ID, CertSupernode, now, ""},
		{"another network", admitted, otherNet, sn.ID, CertSupernode, now, "bad signature"},
		{"no network key", admitted, NetworkID{}, sn.ID, CertSupernode, now, "no network key"},
		{"empty chain", nil, network, sn.ID, CertSupernode, now, "no certificate"},
		{"names someone else", admitted, network, leaf.ID, CertSupernode, now, "names"},
		{"role not granted", admitted, network, sn.ID, CertRelay, now, "not relay"},
		{"tampered roles", tampered, network, sn.ID, CertSupernode, now, "bad signature"},
		{"expired", promoted, network, leaf.ID, CertSupernode, now.Add(time.Hour), "expired"},
		{"within the clock skew", promoted, network, leaf.ID, CertSupernode, now.Add(30*time.Minute + CertSkew - time.Second), ""},
		{"issuer may not admit", extend(noAdmit, sn, leaf, CertSupernode, now.Add(time.Hour)), network, leaf.ID, CertSupernode, now, "may not admit"},
		{"child grants more than its issuer", extend(admitted, sn, leaf, CertSupernode|CertRelay, now.Add(time.Hour)), network, leaf.ID, CertSupernode, now, "beyond"},
		{"child outlives its issuer", extend(admitted, sn, leaf, CertSupernode, year.Add(time.Hour)), network, leaf.ID, CertSupernode, now, "outlives"},
		{"signed by the wrong key", extend(admitted, third, leaf, CertSupernode, now.Add(time.Hour)), network, leaf.ID, CertSupernode, now, "bad signature"},
		{"too long", func() Chain {
			ch := Admit(netKey, pub(sn), CertSupernode|CertAdmit, year)
			holder := sn
			for range MaxChain {
				next := newID(t)
				ch = extend(ch, holder, next, CertSupernode|CertAdmit, year)
				holder = next
			}
			return ch
		}(), network, PeerID{}, CertSupernode, now, "chain of 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.chain.Verify(tc.network, tc.peer, tc.role, tc.at)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrNotAdmitted) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want ErrNotAdmitted with %q, got %v", tc.wantErr, err)
			}
		})
	}
}

func TestChainExtend(t *testing.T) {
	netKey := newNetworkKey(t)
	network := NetworkIDOf(netKey)
	sn, leaf := newID(t), newID(t)
	exp := time.Now().Add(24 * time.Hour)
	ch := Admit(netKey, pub(sn), CertSupernode|CertAdmit, exp)
	// Asked for more roles and a longer life than the holder has, it gets the holder's.
	got, err := ch.Extend(network, sn, pub(leaf), CertSupernode|CertRelay|CertAdmit, exp.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(network, leaf.ID, CertSupernode|CertAdmit, time.Now()); err != nil {
		t.Fatal(err)
	}
	if l := got.Leaf(); l.Roles != CertSupernode|CertAdmit || l.Expires != exp.Unix() {
		t.Fatalf("extended to %s until %d", l.Roles, l.Expires)
	}
	if len(ch) != 1 {
		t.Fatal("Extend changed the holder's chain")
	}
	// A holder without the admit role cannot extend.
	plain := Admit(netKey, pub(sn), CertSupernode, exp)
	if _, err := plain.Extend(network, sn, pub(leaf), CertSupernode, exp); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("extend without admit: %v", err)
	}
	// Someone else's chain cannot be extended.
	if _, err := ch.Extend(network, leaf, pub(leaf), CertSupernode, exp); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("extend of another's chain: %v", err)
	}
}

func TestChainPEM(t *testing.T) {
	netKey := newNetworkKey(t)
	network := NetworkIDOf(netKey)
	sn := newID(t)
	ch := Admit(netKey, pub(sn), CertSupernode|CertRelay, time.Now().Add(time.Hour))
	b, err := EncodeChainPEM(network, ch)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Network: " + network.String(), "Holder: " + sn.ID.String(), "Roles: supernode,relay"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("PEM lacks %q:\n%s", want, b)
		}
	}
	n2, ch2, err := DecodeChainPEM(b)
	if err != nil || n2 != network || !ch2.Equal(ch) {
		t.Fatalf("round trip: %v %v", n2, err)
	}
	for _, bad := range [][]byte{nil, []byte("junk"), bytes.Replace(b, []byte("ADMISSION"), []byte("OTHER"), 2)} {
		if _, _, err := DecodeChainPEM(bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

func TestNetworkIDString(t *testing.T) {
	n := NetworkIDOf(newNetworkKey(t))
	s := n.String()
	if !strings.HasPrefix(s, "net-") || len(s) != 56 {
		t.Fatalf("%q", s)
	}
	got, err := ParseNetworkID(s)
	if err != nil || got != n {
		t.Fatalf("parse %q: %v %v", s, got, err)
	}
	p := newID(t).ID.String()
	for _, bad := range []string{"", p, "net-" + p[:51], "net-" + p + "a", strings.ToUpper(s[:4]) + s[4:51] + "b"} {
		if _, err := ParseNetworkID(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestRelayProof(t *testing.T) {
	secret := []byte("a secret of more than sixteen bytes")
	exp := bytes.Repeat([]byte{7}, 32)
	p := RelayProof(secret, exp)
	if len(p) != RelayProofLen || !CheckRelayProof(secret, exp, p) {
		t.Fatal("own proof refused")
	}
	if CheckRelayProof([]byte("another secret of sixteen bytes+"), exp, p) || CheckRelayProof(secret, bytes.Repeat([]byte{8}, 32), p) ||
		CheckRelayProof(nil, exp, RelayProof(nil, exp)) {
		t.Fatal("proof taken for another secret, another connection or no secret")
	}
}

func TestMemberIncarnationSigned(t *testing.T) {
	netKey := newNetworkKey(t)
	network := NetworkIDOf(netKey)
	sn := newID(t)
	m := &MemberRecord{Addrs: []string{"192.0.2.1:6346"}, Beat: 9, Incarnation: 42,
		Chain: Admit(netKey, pub(sn), CertSupernode, time.Now().Add(time.Hour))}
	m.Sign(sn)
	if err := m.VerifyIn(network, time.Now()); err != nil {
		t.Fatal(err)
	}
	m2 := m.Clone()
	m2.Incarnation++
	if err := m2.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a changed incarnation verified: %v", err)
	}
	m3 := m.Clone()
	m3.Chain = nil
	if err := m3.VerifyIn(network, time.Now()); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("an entry without a chain was admitted: %v", err)
	}
	if err := m.VerifyIn(NetworkIDOf(newNetworkKey(t)), time.Now()); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("an entry of another network was admitted: %v", err)
	}
}
