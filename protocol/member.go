package protocol

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// MemberRecord is one supernode's entry in the list the supernodes gossip:
// who it is, where it listens and how loaded it is. The supernode signs its
// own entry and raises Beat each time it issues one, so a copy passed on by
// others can be neither forged nor replayed over a newer one.
type MemberRecord struct {
	Key    []byte   `msgpack:"k"`           // ed25519 public key; the peer ID is its hash
	Addrs  AddrList `msgpack:"a"`           // where it listens, QUIC and STUN on one port
	Beat   uint64   `msgpack:"b"`           // raised by the supernode with every entry it issues
	Leaves uint32   `msgpack:"l,omitempty"` // leaves attached now
	Cap    uint32   `msgpack:"c,omitempty"` // leaves it accepts at most
	Sig    []byte   `msgpack:"s"`
	// Incarnation rises each time the supernode starts (v7), so others see a
	// restart: a restarted supernode may have lost what it held in memory.
	Incarnation uint64 `msgpack:"in,omitempty"`
	// Chain admits the supernode to the overlay (v7). It is not signed with
	// the entry: it carries its own signatures.
	Chain Chain `msgpack:"ch,omitempty"`
}

// Check bounds every field, without checking the signature.
func (m *MemberRecord) Check() error {
	if len(m.Key) != ed25519.PublicKeySize {
		return invalid("member key of %d bytes (want %d)", len(m.Key), ed25519.PublicKeySize)
	}
	if len(m.Sig) != ed25519.SignatureSize {
		return invalid("member signature of %d bytes (want %d)", len(m.Sig), ed25519.SignatureSize)
	}
	if len(m.Addrs) == 0 {
		return invalid("member without an address")
	}
	if err := m.Chain.Check(); err != nil {
		return err
	}
	return checkAddrs(m.Addrs)
}

// Verify checks the entry's bounds and its signature.
func (m *MemberRecord) Verify() error {
	if err := m.Check(); err != nil {
		return err
	}
	if !ed25519.Verify(ed25519.PublicKey(m.Key), m.signedBytes(), m.Sig) {
		return fmt.Errorf("%w: member record of %s", ErrBadSignature, m.Peer().Short())
	}
	return nil
}

// VerifyIn checks the entry and that its chain admits it as a supernode of
// network at now.
func (m *MemberRecord) VerifyIn(network NetworkID, now time.Time) error {
	if err := m.Verify(); err != nil {
		return err
	}
	return m.Chain.Verify(network, m.Peer(), CertSupernode, now)
}

// Sign sets the entry's key to id's and signs it.
func (m *MemberRecord) Sign(id *Identity) {
	m.Key = slices.Clone([]byte(id.Key.Public().(ed25519.PublicKey)))
	m.Sig = ed25519.Sign(id.Key, m.signedBytes())
}

// Peer is the supernode's peer ID.
func (m *MemberRecord) Peer() PeerID { return PeerIDFromPublicKey(m.Key) }

// Clone is a deep copy of m.
func (m *MemberRecord) Clone() *MemberRecord {
	c := *m
	c.Key, c.Sig, c.Addrs = slices.Clone(m.Key), slices.Clone(m.Sig), slices.Clone(m.Addrs)
	c.Chain = m.Chain.Clone()
	return &c
}

// The v2 layout adds the incarnation; an entry without one is signed as in v1.
const (
	memberRecordDomain   = "supernet member record v1\x00"
	memberRecordDomainV2 = "supernet member record v2\x00"
)

func (m *MemberRecord) signedBytes() []byte {
	b := []byte(memberRecordDomain)
	if m.Incarnation != 0 {
		b = []byte(memberRecordDomainV2)
	}
	b = appendBytes(b, m.Key)
	b = append(b, byte(len(m.Addrs)))
	for _, a := range m.Addrs {
		b = appendBytes(b, []byte(a))
	}
	b = binary.BigEndian.AppendUint64(b, m.Beat)
	b = binary.BigEndian.AppendUint32(b, m.Leaves)
	b = binary.BigEndian.AppendUint32(b, m.Cap)
	if m.Incarnation != 0 {
		b = binary.BigEndian.AppendUint64(b, m.Incarnation)
	}
	return b
}

// MemberGone reports a supernode as gone (v9): By, a live supernode, lost
// its link to it, or heard nothing on it for the member timeout. It names
// the entry of the supernode it held, so a later entry, which the supernode
// issues when it hears of the report while alive, outranks it.
type MemberGone struct {
	Peer        PeerID `msgpack:"p"`
	Incarnation uint64 `msgpack:"in,omitempty"`
	Beat        uint64 `msgpack:"b"`
	By          PeerID `msgpack:"y"`
	Sig         []byte `msgpack:"s"`
}

// Check bounds the report, without checking the signature.
func (g *MemberGone) Check() error {
	if len(g.Sig) != ed25519.SignatureSize {
		return invalid("gone report signature of %d bytes (want %d)", len(g.Sig), ed25519.SignatureSize)
	}
	return nil
}

// Sign makes id the reporter and signs the report.
func (g *MemberGone) Sign(id *Identity) {
	g.By = id.ID
	g.Sig = ed25519.Sign(id.Key, g.signedBytes())
}

// VerifyBy checks the report's bounds and that key, the reporter's, signed it.
func (g *MemberGone) VerifyBy(key ed25519.PublicKey) error {
	if err := g.Check(); err != nil {
		return err
	}
	if PeerIDFromPublicKey(key) != g.By || !ed25519.Verify(key, g.signedBytes(), g.Sig) {
		return fmt.Errorf("%w: report of %s gone by %s", ErrBadSignature, g.Peer.Short(), g.By.Short())
	}
	return nil
}

const memberGoneDomain = "supernet member gone v1\x00"

func (g *MemberGone) signedBytes() []byte {
	b := append([]byte(memberGoneDomain), g.Peer[:]...)
	b = binary.BigEndian.AppendUint64(b, g.Incarnation)
	b = binary.BigEndian.AppendUint64(b, g.Beat)
	return append(b, g.By[:]...)
}

// VersionMemberTree is the first version with member_tree: refreshed member
// entries passed down a spanning tree of the ring of supernode IDs.
const VersionMemberTree uint16 = 11

// MemberTree carries refreshed member entries (v11). Each goes with the arc
// of the ring its receiver is to pass it on over: from the receiver to Upto,
// both left out. The receiver splits the arc among its neighbours on it, so
// an entry reaches each supernode once instead of over every link.
type MemberTree struct {
	Entries []TreeEntry `msgpack:"e"`
}

// TreeEntry is an entry and the end of its arc, an ID prefix (IDPrefix).
type TreeEntry struct {
	Rec  MemberRecord `msgpack:"r"`
	Upto uint64       `msgpack:"u"`
}

func (*MemberTree) Type() MsgType { return TypeMemberTree }

func (m *MemberTree) validate() error {
	if len(m.Entries) > MaxMembers {
		return invalid("%d tree entries (max %d)", len(m.Entries), MaxMembers)
	}
	for i := range m.Entries {
		if err := m.Entries[i].Rec.Check(); err != nil {
			return err
		}
	}
	return nil
}

// MaxDigest bounds the entries of one member_digest and the supernodes of
// one member_want.
const MaxDigest = 4096

// MemberDigest names the live entries its sender holds (v11), which a
// supernode sends a new neighbour instead of the entries themselves: the
// neighbour most often holds them already, and asks (member_want) for
// those it lacks or holds older.
type MemberDigest struct {
	Entries []DigestEntry `msgpack:"e"`
}

// DigestEntry names one entry: its supernode by ID prefix (IDPrefix), its
// incarnation and its beat.
type DigestEntry struct {
	Peer        uint64 `msgpack:"p"`
	Incarnation uint64 `msgpack:"in,omitempty"`
	Beat        uint64 `msgpack:"b"`
}

// MemberWant asks a neighbour for the entries of the supernodes it named in
// a digest, by ID prefix; they come back in members messages (v11).
type MemberWant struct {
	Peers KeyList `msgpack:"p"`
}

func (*MemberDigest) Type() MsgType { return TypeMemberDigest }
func (*MemberWant) Type() MsgType   { return TypeMemberWant }

func (m *MemberDigest) validate() error {
	if len(m.Entries) > MaxDigest {
		return invalid("%d digest entries (max %d)", len(m.Entries), MaxDigest)
	}
	return nil
}

func (m *MemberWant) validate() error {
	if len(m.Peers) > MaxDigest {
		return invalid("%d supernodes wanted (max %d)", len(m.Peers), MaxDigest)
	}
	return nil
}
