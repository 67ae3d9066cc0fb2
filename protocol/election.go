package protocol

import (
	"crypto/ed25519"
	"net"
	"strings"
	"time"
)

// Bounds of the election messages.
const (
	MaxWhyLen       = 256     // a refusal's or a redirect's reason
	MaxLeadLeaves   = 1 << 20 // leaf limit a promote may hand on
	MinLeadGossip   = 10 * time.Millisecond
	MaxLeadGossip   = time.Minute
	MaxLeadTimeout  = 10 * time.Minute
	maxTargetLength = 52 + 1 + MaxAddrLen // peerid@host:port
)

// Candidacy tells a leaf's supernode whether the leaf could serve as a
// supernode. The supernode promotes only leaves its own dial-back found
// public; the claim is the leaf's consent and its view of its uptime and
// upload cap.
type Candidacy struct {
	Eligible bool   `msgpack:"e,omitempty"`
	Uptime   uint32 `msgpack:"t,omitempty"` // seconds the peer has been up
	Upload   uint64 `msgpack:"r,omitempty"` // upload cap, bytes/s; 0 for none
	Why      string `msgpack:"w,omitempty"` // why not, when not eligible
}

// Promote asks a leaf to start serving as a supernode, with the settings of
// the overlay it joins.
type Promote struct {
	LeafLimit uint32 `msgpack:"l"` // leaves it may keep before it promotes in turn
	GossipMS  uint32 `msgpack:"g"` // member-list interval
	TimeoutMS uint32 `msgpack:"t"` // silence after which a supernode is taken as dead
}

// Gossip and Timeout are the intervals as durations.
func (m *Promote) Gossip() time.Duration  { return time.Duration(m.GossipMS) * time.Millisecond }
func (m *Promote) Timeout() time.Duration { return time.Duration(m.TimeoutMS) * time.Millisecond }

// Promoted answers Promote: the new supernode's ID and where it listens, or
// why the leaf will not lead.
type Promoted struct {
	Peer    PeerID   `msgpack:"p,omitempty"`
	Addrs   AddrList `msgpack:"a,omitempty"`
	Refused string   `msgpack:"w,omitempty"`
	// Key is the new supernode's public key, for the certificate the
	// promoting supernode issues it (v7).
	Key []byte `msgpack:"k,omitempty"`
}

// Redirect asks a leaf to attach to another supernode in place of the sender:
// a new supernode taking over some leaves, or one stepping down.
type Redirect struct {
	Target string `msgpack:"t"` // peerid@host:port
	Why    string `msgpack:"w,omitempty"`
}

func (*Candidacy) Type() MsgType { return TypeCandidacy }
func (*Promote) Type() MsgType   { return TypePromote }
func (*Promoted) Type() MsgType  { return TypePromoted }
func (*Redirect) Type() MsgType  { return TypeRedirect }

func (m *Candidacy) validate() error {
	if m.Eligible && m.Why != "" {
		return invalid("an eligible candidacy with a reason against")
	}
	return checkStr("reason", m.Why, MaxWhyLen)
}

func (m *Promote) validate() error {
	if m.LeafLimit == 0 || m.LeafLimit > MaxLeadLeaves {
		return invalid("leaf limit %d (1 to %d)", m.LeafLimit, MaxLeadLeaves)
	}
	g, t := m.Gossip(), m.Timeout()
	if g < MinLeadGossip || g > MaxLeadGossip {
		return invalid("gossip interval %v (%v to %v)", g, MinLeadGossip, MaxLeadGossip)
	}
	if t <= g || t > MaxLeadTimeout {
		return invalid("member timeout %v (above the gossip interval, at most %v)", t, MaxLeadTimeout)
	}
	return nil
}

func (m *Promoted) validate() error {
	if m.Refused != "" {
		if !m.Peer.IsZero() || len(m.Addrs) > 0 {
			return invalid("a refused promotion with a supernode")
		}
		return checkStr("reason", m.Refused, MaxWhyLen)
	}
	if m.Peer.IsZero() || len(m.Addrs) == 0 {
		return invalid("a promotion without the supernode's ID and address")
	}
	if len(m.Key) != 0 && (len(m.Key) != ed25519.PublicKeySize || PeerIDFromPublicKey(m.Key) != m.Peer) {
		return invalid("a promotion whose key is not the supernode's")
	}
	for _, a := range m.Addrs {
		if err := checkHostPort(a); err != nil {
			return err
		}
	}
	return checkAddrs(m.Addrs)
}

func (m *Redirect) validate() error {
	if _, _, err := parseTarget(m.Target); err != nil {
		return err
	}
	return checkStr("reason", m.Why, MaxWhyLen)
}

// parseTarget splits peerid@host:port.
func parseTarget(s string) (PeerID, string, error) {
	if len(s) > maxTargetLength {
		return PeerID{}, "", invalid("target of %d bytes (max %d)", len(s), maxTargetLength)
	}
	id, addr, ok := strings.Cut(s, "@")
	if !ok {
		return PeerID{}, "", invalid("target %q: want peerid@host:port", s)
	}
	p, err := ParsePeerID(id)
	if err != nil {
		return PeerID{}, "", invalid("target %q: %v", s, err)
	}
	if err := checkHostPort(addr); err != nil {
		return PeerID{}, "", err
	}
	return p, addr, nil
}

func checkHostPort(a string) error {
	h, port, err := net.SplitHostPort(a)
	if err != nil || h == "" || port == "" || port == "0" {
		return invalid("address %q: want host:port", a)
	}
	return checkStr("address", a, MaxAddrLen)
}
