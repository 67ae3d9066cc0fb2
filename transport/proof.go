package transport

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/supernet-p2p/supernet/protocol"
)

// Address proofs (protocol v12): a leaf attached over one IP family shows
// its supernode that it receives at an address of the other. It sends a
// Binding request with its peer ID as USERNAME there; the answer carries a
// token bound to that peer ID, the address the request came from and the
// minute, which the leaf hands back over its link. A host that does not
// receive at the address never sees the token, so a leaf cannot claim a
// stranger's address, however it forges source addresses.

// attrProofToken carries the token in a Binding answer: comprehension
// optional, so other STUN clients ignore it.
const attrProofToken stun.AttrType = 0xC0A1

// proofWindow is how long a token stays good: it names its minute, and the
// one before is accepted as well.
const proofWindow = time.Minute

func proofToken(key []byte, user string, addr netip.AddrPort, at time.Time) [16]byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(addr.String()))
	var b [9]byte
	binary.BigEndian.PutUint64(b[1:], uint64(at.Unix()/int64(proofWindow/time.Second)))
	mac.Write(b[:])
	var t [16]byte
	copy(t[:], mac.Sum(nil))
	return t
}

// proofAddr is the address a token is bound to: IPv4-mapped addresses as
// their IPv4 one, so both spellings name one address.
func proofAddr(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// CheckProof reports whether p shows that peer receives at p.Addr: its
// token came from this node's STUN responder, to that address, within the
// last two minutes. A node without AddrProofs takes none.
func (n *Node) CheckProof(peer protocol.PeerID, p protocol.AddrProof) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(p.Addr)
	if n.proofKey == nil || err != nil {
		return netip.AddrPort{}, false
	}
	ap = proofAddr(ap)
	now := time.Now()
	for _, at := range []time.Time{now, now.Add(-proofWindow)} {
		want := proofToken(n.proofKey, peer.String(), ap, at)
		if hmac.Equal(want[:], p.Token[:]) {
			return ap, true
		}
	}
	return netip.AddrPort{}, false
}

// proofAttr adds the token for user at from to an answer, when this node
// hands them out and the request names a user.
func (n *Node) proofAttr(req *stun.Message, from *net.UDPAddr) stun.Setter {
	if n.proofKey == nil {
		return nil
	}
	var user stun.Username
	if err := user.GetFrom(req); err != nil || len(user) == 0 {
		return nil
	}
	tok := proofToken(n.proofKey, string(user), proofAddr(from.AddrPort()), time.Now())
	return stun.RawAttribute{Type: attrProofToken, Value: tok[:]}
}

// ErrNoProof is returned when a STUN server answered without a token: it
// does not take address proofs.
var ErrNoProof = errors.New("the STUN server gave no address proof")

// ProveAddr asks a supernode's STUN responder at server for a proof of the
// address it sees this node at, from this node's socket, retransmitting as
// Reflexive does.
func (n *Node) ProveAddr(ctx context.Context, server *net.UDPAddr) (protocol.AddrProof, error) {
	a, _, err := n.exchange(ctx, server, stun.NewUsername(n.cfg.Identity.ID.String()))
	if err != nil {
		return protocol.AddrProof{}, err
	}
	if !a.hasToken {
		return protocol.AddrProof{}, fmt.Errorf("stun to %s: %w", server, ErrNoProof)
	}
	return protocol.AddrProof{Addr: a.mapped.String(), Token: a.token}, nil
}
