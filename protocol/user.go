package protocol

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Bounds of a username record.
const (
	MaxUsernameLen   = 32
	MaxUserSNs       = 3
	MaxUserRecordTTL = 24 * time.Hour // how far ahead a record may say it expires
)

// ErrBadSignature is a record whose signature does not match its key.
var ErrBadSignature = errors.New("bad signature")

// UserRecord maps a username to its owner's public key and to where the user
// can be reached now. The owner signs it; the directory keeps the first key
// that claimed a name, takes updates only signed by that key with a higher
// Seq, and forgets a record once it expires.
type UserRecord struct {
	Name       string   `msgpack:"u"`
	Key        []byte   `msgpack:"k"`            // ed25519 public key, 32 bytes
	Seq        uint64   `msgpack:"q"`            // higher replaces lower
	Expires    int64    `msgpack:"e"`            // Unix seconds
	Supernodes []PeerID `msgpack:"sn,omitempty"` // the supernodes the user is attached to
	Addrs      AddrList `msgpack:"a,omitempty"`  // its addresses, as in a source
	NAT        NATType  `msgpack:"nt,omitempty"` // its NAT type, as nat_report's m
	Sig        []byte   `msgpack:"s"`            // ed25519 over signedBytes
}

// NormalizeUsername is the spelling of name that CheckUsername takes when the
// user typed capitals: usernames have one spelling, so "Bob" is bob.
func NormalizeUsername(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, strings.TrimSpace(name))
}

// CheckUsername accepts 1 to 32 bytes of lower-case letters, digits, '.', '_'
// and '-', starting with a letter or digit: names a user can type and read
// back, with one spelling each.
func CheckUsername(name string) error {
	if name == "" || len(name) > MaxUsernameLen {
		return invalid("username of %d bytes (1 to %d)", len(name), MaxUsernameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return invalid("username %q: only a-z, 0-9 and, after the first, '.', '_', '-'", name)
		}
	}
	return nil
}

// Check bounds every field, without checking the signature.
func (r *UserRecord) Check() error {
	if err := CheckUsername(r.Name); err != nil {
		return err
	}
	if len(r.Key) != ed25519.PublicKeySize {
		return invalid("user key of %d bytes (want %d)", len(r.Key), ed25519.PublicKeySize)
	}
	if len(r.Sig) != ed25519.SignatureSize {
		return invalid("user record signature of %d bytes (want %d)", len(r.Sig), ed25519.SignatureSize)
	}
	if len(r.Supernodes) > MaxUserSNs {
		return invalid("%d supernodes in a user record (max %d)", len(r.Supernodes), MaxUserSNs)
	}
	for i := range r.Supernodes {
		if err := r.Supernodes[i].wireCheck(); err != nil {
			return err
		}
	}
	if r.NAT > NATUDPBlocked {
		return invalid("NAT type %d", r.NAT)
	}
	return checkAddrs(r.Addrs)
}

// Verify checks the record's bounds and its signature.
func (r *UserRecord) Verify() error {
	if err := r.Check(); err != nil {
		return err
	}
	if !ed25519.Verify(ed25519.PublicKey(r.Key), r.signedBytes(), r.Sig) {
		return fmt.Errorf("%w: user record for %q", ErrBadSignature, r.Name)
	}
	return nil
}

// Sign sets the record's key to id's and signs it.
func (r *UserRecord) Sign(id *Identity) {
	r.Key = append([]byte(nil), id.Key.Public().(ed25519.PublicKey)...)
	r.Sig = ed25519.Sign(id.Key, r.signedBytes())
}

// Peer is the peer ID of the record's key.
func (r *UserRecord) Peer() PeerID { return PeerIDFromPublicKey(r.Key) }

// Expired reports whether the record has expired at now.
func (r *UserRecord) Expired(now time.Time) bool { return now.Unix() >= r.Expires }

// userRecordDomain separates these signatures from any other use of the key.
const userRecordDomain = "supernet user record v1\x00"

// signedBytes is the record without its signature, in a fixed layout: the
// msgpack form is not canonical, and a signature must not depend on how an
// encoder orders or sizes fields.
func (r *UserRecord) signedBytes() []byte {
	b := []byte(userRecordDomain)
	b = appendBytes(b, []byte(r.Name))
	b = appendBytes(b, r.Key)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expires))
	b = append(b, byte(len(r.Supernodes)))
	for _, sn := range r.Supernodes {
		b = append(b, sn[:]...)
	}
	b = append(b, byte(len(r.Addrs)))
	for _, a := range r.Addrs {
		b = appendBytes(b, []byte(a))
	}
	return append(b, byte(r.NAT))
}

func appendBytes(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// Clone is a deep copy of r.
func (r *UserRecord) Clone() *UserRecord {
	c := *r
	c.Key = slices.Clone(r.Key)
	c.Sig = slices.Clone(r.Sig)
	c.Supernodes = slices.Clone(r.Supernodes)
	c.Addrs = slices.Clone(r.Addrs)
	return &c
}
