package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/supernode"
	"github.com/supernet-p2p/supernet/transport"
)

// The overlay the in-process tests run: every supernode they start is
// admitted to it, and every peer trusts it.
var testNetKey = func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

var testNetwork = protocol.NetworkIDOf(testNetKey)

// testAdmit is a chain admitting id to every role for a day.
func testAdmit(id *protocol.Identity) protocol.Chain {
	return protocol.Admit(testNetKey, id.Key.Public().(ed25519.PublicKey),
		protocol.CertSupernode|protocol.CertRelay|protocol.CertAdmit, time.Now().Add(24*time.Hour))
}

// operator admits supernodes run as binaries the way a person does: a
// network key made with `supernode network init`, and for each supernode
// `supernode id --key` on its data directory and `supernode admit`.
type operator struct {
	t       *testing.T
	bin     string
	keyFile string
	network string
}

func newOperator(t *testing.T, supernodeBin, dir string) *operator {
	t.Helper()
	o := &operator{t: t, bin: supernodeBin, keyFile: filepath.Join(dir, "operator", protocol.NetworkKeyFile)}
	r := runBinary(t, 20*time.Second, nil, supernodeBin, "network", "init", "--network-key", o.keyFile)
	if r.code != 0 {
		t.Fatalf("supernode network init: %s", r)
	}
	o.network = strings.TrimSpace(r.stdout)
	if _, err := protocol.ParseNetworkID(o.network); err != nil {
		t.Fatalf("supernode network init printed %q: %v", o.network, err)
	}
	return o
}

// admit puts a certificate for the supernode of dataDir in that directory,
// where the supernode finds it at start.
func (o *operator) admit(dataDir string) {
	t := o.t
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, 20*time.Second, nil, o.bin, "id", "--key", "--data-dir", dataDir)
	if r.code != 0 {
		t.Fatalf("supernode id --key: %s", r)
	}
	key := strings.TrimSpace(r.stdout)
	r = runBinary(t, 20*time.Second, nil, o.bin, "admit", key, "--network-key", o.keyFile,
		"-o", filepath.Join(dataDir, protocol.CertFile))
	if r.code != 0 {
		t.Fatalf("supernode admit: %s", r)
	}
}

// rawNode is a bare transport node on loopback with a fresh key: what an
// attacker dials from.
func rawNode(t testing.TB) (*transport.Node, *protocol.Identity) {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	n, err := transport.New(transport.Config{Identity: id, Conn: loopbackConn(t), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, id
}

// A key without a valid chain of the overlay's network cannot link as a
// supernode: no chain, another network's, an expired one, one that does not
// grant the role, someone else's. An admitted key can.
func TestAdmissionRefusesUnadmittedSupernodes(t *testing.T) {
	sn := startSupernode(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name  string
		chain func(id *protocol.Identity) protocol.Chain
		ok    bool
	}{
		{"no chain", func(*protocol.Identity) protocol.Chain { return nil }, false},
		{"another network", func(id *protocol.Identity) protocol.Chain {
			return protocol.Admit(otherKey, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, time.Now().Add(time.Hour))
		}, false},
		{"expired", func(id *protocol.Identity) protocol.Chain {
			return protocol.Admit(testNetKey, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, time.Now().Add(-time.Hour))
		}, false},
		{"relay only", func(id *protocol.Identity) protocol.Chain {
			return protocol.Admit(testNetKey, id.Key.Public().(ed25519.PublicKey), protocol.CertRelay, time.Now().Add(time.Hour))
		}, false},
		{"someone else's", func(*protocol.Identity) protocol.Chain {
			other, _ := protocol.GenerateIdentity()
			return testAdmit(other)
		}, false},
		{"admitted", testAdmit, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, id := rawNode(t)
			l, _, err := n.Dial(context.Background(), sn.Addr().String(), sn.ID(),
				&protocol.Hello{Role: protocol.RoleSupernode, Chain: tc.chain(id)})
			if !tc.ok {
				if err == nil || !errors.Is(err, protocol.ErrForbidden) {
					t.Fatalf("dial: %v, want forbidden", err)
				}
				if slices.Contains(sn.Linked(), id.ID) {
					t.Fatal("linked anyway")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close(nil)
			eventually(t, raceSlowdown*5*time.Second, "the admitted key linked", func() bool { return slices.Contains(sn.Linked(), id.ID) })
		})
	}
}

// An admitted neighbour that gossips entries it made for keys of its own,
// with no chain or a chain of another network, is disconnected; none of those
// keys is listed, so none owns a position on the directory's ring, and a
// name whose key they were placed to own is still stored by admitted
// supernodes and resolves to its owner.
func TestAdmissionKeepsTheRingToAdmittedSupernodes(t *testing.T) {
	sns, _ := dirCluster(t, 3, 2, 200*time.Millisecond)
	n, id := rawNode(t)
	l, _, err := n.Dial(context.Background(), sns[0].Addr().String(), sns[0].ID(),
		&protocol.Hello{Role: protocol.RoleSupernode, Chain: testAdmit(id)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(nil)
	// Keys made to sit just before bob's position, so each would own bob.
	bob := ring.KeyOf("bob")
	var fakes []protocol.MemberRecord
	var fakeIDs []protocol.PeerID
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	for i := 0; len(fakes) < 8 && i < 100000; i++ {
		k, _ := protocol.GenerateIdentity()
		ids := []ring.ID{ring.ID(k.ID)}
		for _, s := range sns {
			ids = append(ids, ring.ID(s.ID()))
		}
		if ring.New(ids).Successor(bob) != ring.ID(k.ID) {
			continue
		}
		m := protocol.MemberRecord{Addrs: []string{"127.0.0.1:9"}, Beat: uint64(time.Now().UnixMilli())}
		if len(fakes)%2 == 1 {
			m.Chain = protocol.Admit(otherKey, k.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, time.Now().Add(time.Hour))
		}
		m.Sign(k)
		fakes, fakeIDs = append(fakes, m), append(fakeIDs, k.ID)
	}
	if len(fakes) < 2 {
		t.Fatalf("made only %d keys that would own bob", len(fakes))
	}
	l.Send(&protocol.Members{Members: fakes})
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the link that gossiped unadmitted entries stayed open")
	}
	for _, s := range sns {
		for _, f := range fakeIDs {
			if memberIDs(s)[f] {
				t.Fatalf("supernode %s lists the unadmitted %s", s.ID().Short(), f.Short())
			}
		}
	}
	// Bob's record goes to the admitted owner and its successors, and stays his.
	owner, _ := protocol.GenerateIdentity()
	c := dialRawLeaf(t, sns[1])
	if r := c.put(t, userRecord(owner, "bob", 1, "192.0.2.1:1")); r.Code != protocol.StatusOK {
		t.Fatalf("put bob: %s %q", r.Code, r.Message)
	}
	want := replicasOf(sns, "bob")
	eventually(t, raceSlowdown*10*time.Second, "bob on his three admitted replicas", func() bool {
		return len(holders(sns, "bob")) == len(want)
	})
	for _, s := range holders(sns, "bob") {
		if !want[s.ID()] {
			t.Errorf("bob held by %s, not a replica", s.ID().Short())
		}
	}
	if r := dialRawLeaf(t, sns[2]).get(t, "bob"); r.Code != protocol.StatusOK || r.Rec.Peer() != owner.ID {
		t.Fatalf("get bob: %s %q", r.Code, r.Message)
	}
}

// A link claiming the relay role is taken only with a proof of the relay
// secret bound to its own session, or a chain granting the relay role. A
// hijacker that reports a real relay full and its own free is refused, and
// the supernode's relay table keeps only the honest relay.
func TestAdmissionRelayRole(t *testing.T) {
	secret := []byte("a secret the relays share, 32 b")
	// No TCP listener: it would need the UDP port's number on TCP, which
	// another test's connection may hold.
	sn, _ := runSupernode(t, func(c *supernode.Config) { c.RelaySecret, c.ListenTCP = secret, "-" })
	report := func(n *transport.Node, mk func(tls.ConnectionState) (*protocol.Hello, error), udp string, allocs uint32) error {
		l, _, err := n.DialHello(context.Background(), sn.Addr(), sn.ID(), protocol.RoleRelay, mk)
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close(nil) })
		return l.Send(&protocol.RelayLoad{UDP: udp, Allocations: allocs, Capacity: 10})
	}
	hasRelay := func(udp string) bool {
		for _, r := range sn.Relays() {
			if r.UDP == udp {
				return true
			}
		}
		return false
	}
	honest, _ := rawNode(t)
	if err := report(honest, protocol.RelayHello(secret, nil), "192.0.2.10:3478", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, raceSlowdown*5*time.Second, "the honest relay listed", func() bool { return hasRelay("192.0.2.10:3478") })

	// A replayed proof: the hijacker exports from its first session and
	// shows that proof on a second.
	var stolen []byte
	first, _ := rawNode(t)
	report(first, func(cs tls.ConnectionState) (*protocol.Hello, error) {
		exp, _ := cs.ExportKeyingMaterial(protocol.RelayProofLabel, nil, protocol.RelayProofLen)
		stolen = protocol.RelayProof(secret, exp)
		return &protocol.Hello{Role: protocol.RoleRelay, RelayProof: bytes.Repeat([]byte{1}, protocol.RelayProofLen)}, nil
	}, "192.0.2.66:3478", 0)
	for _, tc := range []struct {
		name string
		mk   func(id *protocol.Identity) func(tls.ConnectionState) (*protocol.Hello, error)
	}{
		{"no proof", func(*protocol.Identity) func(tls.ConnectionState) (*protocol.Hello, error) {
			return func(tls.ConnectionState) (*protocol.Hello, error) {
				return &protocol.Hello{Role: protocol.RoleRelay}, nil
			}
		}},
		{"another secret", func(*protocol.Identity) func(tls.ConnectionState) (*protocol.Hello, error) {
			return protocol.RelayHello([]byte("not the secret, but as long too"), nil)
		}},
		{"a proof from another session", func(*protocol.Identity) func(tls.ConnectionState) (*protocol.Hello, error) {
			return func(tls.ConnectionState) (*protocol.Hello, error) {
				return &protocol.Hello{Role: protocol.RoleRelay, RelayProof: stolen}, nil
			}
		}},
		{"a supernode chain without the relay role", func(id *protocol.Identity) func(tls.ConnectionState) (*protocol.Hello, error) {
			return protocol.RelayHello(nil, protocol.Admit(testNetKey, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, time.Now().Add(time.Hour)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, id := rawNode(t)
			err := report(n, tc.mk(id), "192.0.2.66:3478", 0)
			if err == nil || !errors.Is(err, protocol.ErrForbidden) {
				t.Fatalf("relay link: %v, want forbidden", err)
			}
			// The hijack: the honest relay reported full, ours free.
			report(n, tc.mk(id), "192.0.2.10:3478", 10)
		})
	}
	if hasRelay("192.0.2.66:3478") || len(sn.Relays()) != 1 || sn.Relays()[0].Allocations != 0 {
		t.Fatalf("relay table after the hijack attempts: %+v", sn.Relays())
	}
	// A relay holding a certificate with the relay role needs no secret.
	certified, id := rawNode(t)
	if err := report(certified, protocol.RelayHello(nil, testAdmit(id)), "192.0.2.11:3478", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, raceSlowdown*5*time.Second, "the certified relay listed", func() bool { return hasRelay("192.0.2.11:3478") })
}

// A peer attaches only to supernodes of its network: given one, it refuses
// a supernode of another; given none, it trusts the first supernode's and
// keeps it for its next start.
func TestLeafChecksItsSupernodesNetwork(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	foreign, _ := runSupernode(t, func(c *supernode.Config) {
		c.Network, c.Chain, c.NetworkKey = protocol.NetworkID{}, nil, otherKey
	})
	d := startPeer(t, foreign, "wary", nil)
	eventually(t, raceSlowdown*10*time.Second, "the peer to refuse the foreign supernode", func() bool {
		st := d.Status().Supernode
		return !st.Connected && strings.Contains(st.LastError, "not admitted")
	})
	home := startSupernode(t)
	dir := t.TempDir()
	first := startPeer(t, home, "trusting", nil, func(c *peer.Config) { c.Network, c.DataDir = protocol.NetworkID{}, dir })
	eventually(t, raceSlowdown*10*time.Second, "a peer without a network to attach", func() bool { return first.Status().Supernode.Connected })
	if first.Network() != testNetwork {
		t.Fatalf("trusted %s, want %s", first.Network(), testNetwork)
	}
	// The list that names home may come after the attach (a supernode that
	// has just started issues its entry at its first round): the restart
	// below needs it kept, in the peer's supernodes.cache.
	eventually(t, raceSlowdown*10*time.Second, "the peer to keep the list that names home", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "supernodes.cache"))
		return strings.Contains(string(b), home.ID().String())
	})
	first.Close()
	// Restarted with only the foreign supernode configured, it refuses that
	// one and attaches to the supernode its list kept.
	again := startPeer(t, foreign, "trusting", nil, func(c *peer.Config) { c.Network, c.DataDir = protocol.NetworkID{}, dir })
	eventually(t, raceSlowdown*10*time.Second, "the restarted peer on its own network's supernode", func() bool {
		return again.Status().Supernode.Connected
	})
	if again.Network() != testNetwork || again.Status().Supernode.PeerID != home.ID().String() {
		t.Fatalf("restarted peer trusts %s and is attached to %s", again.Network(), again.Status().Supernode.PeerID)
	}
	// The refused link counts as a leaf there until the supernode sees it close.
	eventually(t, raceSlowdown*10*time.Second, "the foreign supernode without a leaf", func() bool { return foreign.Router().Leaves() == 0 })
}

// A supernode over its leaf limit promotes a leaf and certifies the
// supernode it starts, under its own chain; it renews the certificate while
// that supernode serves. When the promoter dies the renewals stop, and the
// promoted supernode steps down once its certificate runs out. The
// certificate lasts 3 s here, renewed every second (the default is 30 min).
func TestPromotedSupernodeIsCertified(t *testing.T) {
	const ttl = 3 * time.Second
	parent, stopParent := runSupernode(t, func(c *supernode.Config) {
		c.LeafLimit, c.PromoteEvery = 3, time.Hour
		c.GossipInterval, c.MemberTimeout = raceSlowdown*200*time.Millisecond, raceSlowdown*time.Second
		c.PromotedCertTTL = ttl
	})
	var ds []*peer.Daemon
	for i := range 5 {
		ds = append(ds, startPeer(t, parent, fmt.Sprintf("leaf%d", i), nil,
			func(c *peer.Config) { c.LeadAfter, c.LeadStepDown = time.Millisecond, time.Hour }))
	}
	var sn protocol.PeerID
	eventually(t, raceSlowdown*30*time.Second, "a promotion", func() bool {
		ps := parent.Election().Promotions
		if len(ps) == 0 {
			return false
		}
		sn = ps[0].Supernode
		return true
	})
	entry := func() *protocol.MemberRecord {
		for _, m := range parent.Members() {
			if m.Peer() == sn {
				return m
			}
		}
		return nil
	}
	var first time.Time
	eventually(t, raceSlowdown*10*time.Second, "the promoted supernode listed", func() bool {
		m := entry()
		if m == nil {
			return false
		}
		first = m.Chain.Expires()
		return true
	})
	m := entry()
	if len(m.Chain) != 2 || m.Chain[0].Peer() != parent.ID() || m.Chain.Leaf().Roles != protocol.CertSupernode|protocol.CertAdmit ||
		m.Chain.Expires().After(time.Now().Add(ttl)) {
		t.Fatalf("promoted supernode's chain: %d certificates, first %s, roles %s, expires %v",
			len(m.Chain), m.Chain[0].Peer().Short(), m.Chain.Leaf().Roles, m.Chain.Expires())
	}
	eventually(t, raceSlowdown*10*time.Second, "the certificate renewed", func() bool {
		m := entry()
		return m != nil && m.Chain.Expires().After(first)
	})
	var lead *peer.Daemon
	for _, d := range ds {
		if l := d.Status().Lead.Leading; l != nil && l.PeerID == sn.String() {
			lead = d
		}
	}
	if lead == nil {
		t.Fatal("no peer runs the promoted supernode")
	}
	stopParent()
	stopped := time.Now()
	eventually(t, raceSlowdown*(ttl+10*time.Second), "the promoted supernode to step down", func() bool {
		l := lead.Status().Lead.Leading
		return !l.Active && strings.Contains(l.EndedWhy, "certificate not renewed")
	})
	t.Logf("stepped down %v after its promoter stopped (certificate of %v)", time.Since(stopped).Round(time.Millisecond), ttl)
}
