package protocol

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ContentID names a file by its metadata: the SHA-256 of its size, piece size and
// piece hashes (see package content). Two files with the same bytes and piece size
// have the same ID wherever they are shared.
type ContentID [32]byte

// String is the lowercase hex form users type and see.
func (c ContentID) String() string { return hex.EncodeToString(c[:]) }

// Short is the first 12 hex digits, for tables and logs.
func (c ContentID) Short() string { return hex.EncodeToString(c[:6]) }

// IsZero reports whether c is the zero ID.
func (c ContentID) IsZero() bool { return c == ContentID{} }

// ErrBadContentID is returned for a content ID that is not 64 hex digits.
var ErrBadContentID = errors.New("content ID must be 64 hex digits")

// ParseContentID parses the 64-hex-digit form.
func ParseContentID(s string) (ContentID, error) {
	var c ContentID
	s = strings.TrimSpace(s)
	if len(s) != 64 {
		return c, fmt.Errorf("%w: got %d characters", ErrBadContentID, len(s))
	}
	if _, err := hex.Decode(c[:], []byte(s)); err != nil {
		return c, fmt.Errorf("%w: %v", ErrBadContentID, err)
	}
	return c, nil
}

// PeerID is the SHA-256 of a node's ed25519 public key. Supernodes and peers alike
// are named by it, and a QUIC handshake proves it (see identity.go).
type PeerID [32]byte

var peerIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// PeerIDFromPublicKey derives the ID of an ed25519 public key.
func PeerIDFromPublicKey(pub []byte) PeerID { return PeerID(sha256.Sum256(pub)) }

// String is the lowercase unpadded base32 form (52 characters).
func (p PeerID) String() string { return strings.ToLower(peerIDEncoding.EncodeToString(p[:])) }

// Short is the first 10 characters of String, for tables and logs.
func (p PeerID) Short() string { return p.String()[:10] }

// IsZero reports whether p is the zero ID.
func (p PeerID) IsZero() bool { return p == PeerID{} }

// ErrBadPeerID is returned for a string that is not a peer ID.
var ErrBadPeerID = errors.New("peer ID must be 52 base32 characters")

// ParsePeerID parses the form String prints.
func ParsePeerID(s string) (PeerID, error) {
	var p PeerID
	s = strings.TrimSpace(s)
	if len(s) != 52 {
		return p, fmt.Errorf("%w: got %d characters", ErrBadPeerID, len(s))
	}
	b, err := peerIDEncoding.DecodeString(strings.ToUpper(s))
	if err != nil || len(b) != 32 {
		return p, fmt.Errorf("%w: %v", ErrBadPeerID, err)
	}
	copy(p[:], b)
	// 52 characters hold 260 bits; the last character's low 4 bits are not part of
	// the ID. The decoder ignores them, so insist on zeros: one ID, one spelling.
	if p.String() != strings.ToLower(s) {
		return PeerID{}, fmt.Errorf("%w: not in canonical form", ErrBadPeerID)
	}
	return p, nil
}

// Tags are the media tags of a shared file (from ID3, MP4, FLAC or Ogg metadata).
// Empty fields are left out on the wire.
type Tags struct {
	Title  string `msgpack:"t,omitempty"`
	Artist string `msgpack:"a,omitempty"`
	Album  string `msgpack:"l,omitempty"`
	Genre  string `msgpack:"g,omitempty"`
	Year   int    `msgpack:"y,omitempty"`
}

// IsZero reports whether no tag is set.
func (t Tags) IsZero() bool { return t == Tags{} }
