package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base32"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// An overlay is defined by its network key. Leaves may be anyone; the supernode
// and relay roles are held only by keys with a certificate chain that starts at
// the network key (see Admission in doc.go).

// NetworkID is an overlay's network public key (ed25519, 32 bytes).
type NetworkID [32]byte

// networkPrefix marks a printed network ID, so it is never taken for a peer ID.
const networkPrefix = "net-"

// String is "net-" and the key in lowercase unpadded base32.
func (n NetworkID) String() string {
	return networkPrefix + strings.ToLower(peerIDEncoding.EncodeToString(n[:]))
}

// Short is the first characters of String, for logs.
func (n NetworkID) Short() string { return n.String()[:14] }

// IsZero reports whether n is unset.
func (n NetworkID) IsZero() bool { return n == NetworkID{} }

// ErrBadNetworkID is a string that is not a network ID.
var ErrBadNetworkID = errors.New(`network ID must be "net-" and 52 base32 characters`)

// ParseNetworkID parses the form String prints.
func ParseNetworkID(s string) (NetworkID, error) {
	var n NetworkID
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, networkPrefix)
	if !ok || len(rest) != 52 {
		return n, ErrBadNetworkID
	}
	b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(rest))
	if err != nil || len(b) != 32 {
		return n, ErrBadNetworkID
	}
	copy(n[:], b)
	if n.String() != strings.ToLower(s) {
		return NetworkID{}, fmt.Errorf("%w: not in canonical form", ErrBadNetworkID)
	}
	return n, nil
}

// NetworkIDOf is the network ID of a network private key.
func NetworkIDOf(key ed25519.PrivateKey) NetworkID {
	return NetworkID(key.Public().(ed25519.PublicKey))
}

// CertRole is what a certificate admits its key to, as bits.
type CertRole uint8

const (
	CertSupernode CertRole = 1 << 0 // link to supernodes, hold members and ring positions, take leaves
	CertRelay     CertRole = 1 << 1 // report a relay's load to supernodes
	CertAdmit     CertRole = 1 << 2 // sign certificates for other keys (a supernode promoting a leaf)
	certRolesAll           = CertSupernode | CertRelay | CertAdmit
)

func (r CertRole) String() string {
	var out []string
	for _, x := range []struct {
		r CertRole
		n string
	}{{CertSupernode, "supernode"}, {CertRelay, "relay"}, {CertAdmit, "admit"}} {
		if r&x.r != 0 {
			out = append(out, x.n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// ParseCertRoles parses a comma-separated list of supernode, relay and admit.
func ParseCertRoles(s string) (CertRole, error) {
	var r CertRole
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "supernode":
			r |= CertSupernode
		case "relay":
			r |= CertRelay
		case "admit":
			r |= CertAdmit
		case "":
		default:
			return 0, fmt.Errorf("role %q: want supernode, relay or admit", f)
		}
	}
	if r == 0 {
		return 0, errors.New("no role given")
	}
	return r, nil
}

// Bounds of admission certificates.
const (
	// MaxChain is the longest chain: the network's certificate and three
	// promotions below it.
	MaxChain = 4
	// CertSkew is how far past its expiry a certificate is still taken, for
	// clocks that disagree.
	CertSkew = 2 * time.Minute
)

// ErrNotAdmitted is a supernode or relay role claimed without a valid chain.
// ErrCertExpired, which matches it too, is a chain that was valid and ran out:
// news that has not reached the sender yet rather than a forgery.
var (
	ErrNotAdmitted = errors.New("not admitted to this overlay")
	ErrCertExpired = fmt.Errorf("%w: certificate expired", ErrNotAdmitted)
)

// Cert admits Key to Roles until Expires, signed by its issuer: the network key
// for the first certificate of a chain, the key of the certificate before it
// for the others.
type Cert struct {
	Key     []byte   `msgpack:"k"` // the subject's ed25519 public key; its peer ID is the hash
	Roles   CertRole `msgpack:"r"`
	Expires int64    `msgpack:"e"` // Unix seconds
	Sig     []byte   `msgpack:"s"` // ed25519 by the issuer over signedBytes
}

// Peer is the subject's peer ID.
func (c *Cert) Peer() PeerID { return PeerIDFromPublicKey(c.Key) }

// Check bounds the fields, without checking the signature.
func (c *Cert) Check() error {
	if len(c.Key) != ed25519.PublicKeySize {
		return invalid("certificate key of %d bytes (want %d)", len(c.Key), ed25519.PublicKeySize)
	}
	if len(c.Sig) != ed25519.SignatureSize {
		return invalid("certificate signature of %d bytes (want %d)", len(c.Sig), ed25519.SignatureSize)
	}
	if c.Roles == 0 || c.Roles&^certRolesAll != 0 {
		return invalid("certificate roles %#x", uint8(c.Roles))
	}
	return nil
}

const certDomain = "supernet admission v1\x00"

// signedBytes binds a certificate to its network, so one admitted to two
// overlays cannot carry the one's rights into the other.
func (c *Cert) signedBytes(network NetworkID) []byte {
	b := append([]byte(certDomain), network[:]...)
	b = appendBytes(b, c.Key)
	b = append(b, byte(c.Roles))
	return binary.BigEndian.AppendUint64(b, uint64(c.Expires))
}

// Chain is a certificate chain from the network key to a supernode or relay.
type Chain []Cert

// Leaf is the last certificate: the one naming the holder.
func (ch Chain) Leaf() *Cert {
	if len(ch) == 0 {
		return nil
	}
	return &ch[len(ch)-1]
}

// Expires is when the chain stops being valid: its earliest expiry.
func (ch Chain) Expires() time.Time {
	if len(ch) == 0 {
		return time.Time{}
	}
	e := ch[0].Expires
	for _, c := range ch[1:] {
		e = min(e, c.Expires)
	}
	return time.Unix(e, 0)
}

// Check bounds the chain, without checking signatures.
func (ch Chain) Check() error {
	if len(ch) > MaxChain {
		return invalid("certificate chain of %d (max %d)", len(ch), MaxChain)
	}
	for i := range ch {
		if err := ch[i].Check(); err != nil {
			return err
		}
	}
	return nil
}

// Verify checks that the chain admits peer to every role in want in network
// at now: the first certificate is signed by the network key, each next one by
// the key before it, which must hold CertAdmit and every role it passes on,
// no certificate has expired (beyond CertSkew), and the last names peer.
func (ch Chain) Verify(network NetworkID, peer PeerID, want CertRole, now time.Time) error {
	if network.IsZero() {
		return fmt.Errorf("%w: no network key to check against", ErrNotAdmitted)
	}
	if len(ch) == 0 {
		return fmt.Errorf("%w: no certificate", ErrNotAdmitted)
	}
	if err := ch.Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotAdmitted, err)
	}
	issuer := ed25519.PublicKey(network[:])
	var parent *Cert
	for i := range ch {
		c := &ch[i]
		if parent != nil {
			if parent.Roles&CertAdmit == 0 {
				return fmt.Errorf("%w: certificate %d signed by %s, which may not admit", ErrNotAdmitted, i, parent.Peer().Short())
			}
			if c.Roles&^parent.Roles != 0 {
				return fmt.Errorf("%w: certificate %d grants %s beyond its issuer's %s", ErrNotAdmitted, i, c.Roles, parent.Roles)
			}
			if c.Expires > parent.Expires {
				return fmt.Errorf("%w: certificate %d outlives its issuer's", ErrNotAdmitted, i)
			}
		}
		if !ed25519.Verify(issuer, c.signedBytes(network), c.Sig) {
			return fmt.Errorf("%w: certificate %d of %s: %v", ErrNotAdmitted, i, c.Peer().Short(), ErrBadSignature)
		}
		if now.Add(-CertSkew).Unix() >= c.Expires {
			return fmt.Errorf("%w: certificate %d of %s at %s", ErrCertExpired, i, c.Peer().Short(),
				time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
		}
		issuer, parent = ed25519.PublicKey(c.Key), c
	}
	if got := parent.Peer(); got != peer {
		return fmt.Errorf("%w: the chain names %s, not %s", ErrNotAdmitted, got.Short(), peer.Short())
	}
	if parent.Roles&want != want {
		return fmt.Errorf("%w: %s holds %s, not %s", ErrNotAdmitted, peer.Short(), parent.Roles, want)
	}
	return nil
}

// Equal reports whether two chains are the same, byte for byte.
func (ch Chain) Equal(o Chain) bool {
	return slices.EqualFunc(ch, o, func(a, b Cert) bool {
		return a.Roles == b.Roles && a.Expires == b.Expires && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Sig, b.Sig)
	})
}

// Clone is a deep copy.
func (ch Chain) Clone() Chain {
	if ch == nil {
		return nil
	}
	out := make(Chain, len(ch))
	for i, c := range ch {
		out[i] = Cert{Key: slices.Clone(c.Key), Roles: c.Roles, Expires: c.Expires, Sig: slices.Clone(c.Sig)}
	}
	return out
}

// Admit issues a certificate for subject, signed with the network key: the
// first link of a chain.
func Admit(networkKey ed25519.PrivateKey, subject ed25519.PublicKey, roles CertRole, expires time.Time) Chain {
	c := Cert{Key: slices.Clone([]byte(subject)), Roles: roles, Expires: expires.Unix()}
	c.Sig = ed25519.Sign(networkKey, c.signedBytes(NetworkIDOf(networkKey)))
	return Chain{c}
}

// Extend issues a certificate for subject signed by the holder of ch (id),
// appended to ch: how a supernode admits a leaf it promotes. The new
// certificate gets at most the holder's roles and expiry.
func (ch Chain) Extend(network NetworkID, id *Identity, subject ed25519.PublicKey, roles CertRole, expires time.Time) (Chain, error) {
	if err := ch.Verify(network, id.ID, CertAdmit, time.Now()); err != nil {
		return nil, err
	}
	if len(ch) >= MaxChain {
		return nil, fmt.Errorf("%w: a chain of %d cannot be extended", ErrNotAdmitted, len(ch))
	}
	leaf := ch.Leaf()
	c := Cert{Key: slices.Clone([]byte(subject)), Roles: roles & leaf.Roles, Expires: min(expires.Unix(), leaf.Expires)}
	c.Sig = ed25519.Sign(id.Key, c.signedBytes(network))
	return append(ch.Clone(), c), nil
}

// The files an operator handles: the network key (a PEM private key, like an
// identity) and certificate chains.
const (
	NetworkKeyFile = "network.key"
	CertFile       = "admission.cert"
	chainPEMType   = "SUPERNET ADMISSION"
)

// chainFile is a certificate chain with the network it belongs to.
type chainFile struct {
	Network NetworkID `msgpack:"n"`
	Chain   Chain     `msgpack:"c"`
}

// EncodeChainPEM is the text form of a chain: a PEM block of its msgpack.
func EncodeChainPEM(network NetworkID, ch Chain) ([]byte, error) {
	b, err := msgpack.Marshal(&chainFile{Network: network, Chain: ch})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: chainPEMType, Headers: map[string]string{
		"Network": network.String(), "Holder": ch.Leaf().Peer().String(),
		"Roles": ch.Leaf().Roles.String(), "Expires": ch.Expires().UTC().Format(time.RFC3339),
	}, Bytes: b}), nil
}

// DecodeChainPEM parses EncodeChainPEM's form and checks its bounds.
func DecodeChainPEM(b []byte) (NetworkID, Chain, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != chainPEMType {
		return NetworkID{}, nil, fmt.Errorf("not a %q PEM block", chainPEMType)
	}
	if err := checkBody(blk.Bytes); err != nil {
		return NetworkID{}, nil, err
	}
	var f chainFile
	if err := msgpack.Unmarshal(blk.Bytes, &f); err != nil {
		return NetworkID{}, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(f.Chain) == 0 {
		return NetworkID{}, nil, errors.New("no certificate in the file")
	}
	if err := f.Chain.Check(); err != nil {
		return NetworkID{}, nil, err
	}
	return f.Network, f.Chain, nil
}

// ReadChainFile reads a chain from path.
func ReadChainFile(path string) (NetworkID, Chain, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return NetworkID{}, nil, err
	}
	n, ch, err := DecodeChainPEM(b)
	if err != nil {
		return NetworkID{}, nil, fmt.Errorf("certificate %s: %w", path, err)
	}
	return n, ch, nil
}

// CheckAdmitted checks that the supernode peer, which sent w, is admitted to
// network at now: how leaves and supernodes alike check where they dialled.
func (w *Welcome) CheckAdmitted(network NetworkID, peer PeerID, now time.Time) error {
	if w.Network != network {
		if w.Network.IsZero() {
			return fmt.Errorf("%w: %s shows no network", ErrNotAdmitted, peer.Short())
		}
		return fmt.Errorf("%w: %s is in network %s, not %s", ErrNotAdmitted, peer.Short(), w.Network.Short(), network.Short())
	}
	return w.Chain.Verify(network, peer, CertSupernode, now)
}

// Certificate hands a promoted leaf the chain for the supernode it runs, and
// renews it while that supernode serves (v7).
type Certificate struct {
	Chain Chain `msgpack:"c"`
}

func (*Certificate) Type() MsgType { return TypeCertificate }

func (m *Certificate) validate() error {
	if len(m.Chain) == 0 {
		return invalid("certificate without a chain")
	}
	return m.Chain.Check()
}

// A relay that holds no certificate proves the secret it shares with the
// supernodes instead: an HMAC of keying material exported from the very TLS
// session (RFC 8446 section 7.5), so the proof cannot be replayed on another
// connection and the secret never travels.
const (
	RelayProofLen   = sha256.Size
	RelayProofLabel = "EXPORTER-supernet-relay-proof"
)

// RelayProof is HMAC-SHA256(secret, domain || exported), where exported is
// RelayProofLen bytes exported under RelayProofLabel from the connection.
func RelayProof(secret, exported []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("supernet relay proof v1\x00"))
	mac.Write(exported)
	return mac.Sum(nil)
}

// CheckRelayProof compares a proof against the one secret gives, in constant time.
func CheckRelayProof(secret, exported, proof []byte) bool {
	return len(secret) > 0 && hmac.Equal(RelayProof(secret, exported), proof)
}

// RelayHello makes the hello of a relay reporting to a supernode, once the
// TLS handshake is done: with the relay's chain when it has one, else with a
// proof of the shared secret bound to the session.
func RelayHello(secret []byte, ch Chain) func(tls.ConnectionState) (*Hello, error) {
	return func(cs tls.ConnectionState) (*Hello, error) {
		h := &Hello{Role: RoleRelay, Chain: ch}
		if len(ch) == 0 {
			exp, err := cs.ExportKeyingMaterial(RelayProofLabel, nil, RelayProofLen)
			if err != nil {
				return nil, fmt.Errorf("relay proof: %w", err)
			}
			h.RelayProof = RelayProof(secret, exp)
		}
		return h, nil
	}
}

// keyPrefix marks a printed public key: what an operator admits.
const keyPrefix = "key-"

// FormatPublicKey prints an ed25519 public key as "key-" and 52 base32
// characters: the form `supernode admit` takes.
func FormatPublicKey(k ed25519.PublicKey) string {
	return keyPrefix + strings.ToLower(peerIDEncoding.EncodeToString(k))
}

// ParsePublicKey parses FormatPublicKey's form.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, keyPrefix)
	if !ok {
		if _, err := ParsePeerID(s); err == nil {
			return nil, errors.New("that is a peer ID, a hash of the key: admission names the key itself; `supernode id --key` prints it")
		}
		return nil, fmt.Errorf(`public key %q: want "key-" and 52 base32 characters`, s)
	}
	b, err := peerIDEncoding.DecodeString(strings.ToUpper(rest))
	if err != nil || len(b) != ed25519.PublicKeySize || FormatPublicKey(b) != strings.ToLower(s) {
		return nil, fmt.Errorf(`public key %q: want "key-" and 52 base32 characters`, s)
	}
	return ed25519.PublicKey(b), nil
}
