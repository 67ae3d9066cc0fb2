package supernode

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/supernet-p2p/supernet/protocol"
)

// The directory, membership and election are cores like Router: they take
// messages and the clock's readings in, and send messages out, addressed to
// the peer ID of a supernode or leaf linked to this one. Server keeps the
// sockets; the same cores run on an in-memory network in the tests.

// peerOutbox delivers a core's messages to the link of peer to, a supernode
// link first. Send must not block and must not call back into the core; a
// message to a peer that is not linked is dropped.
type peerOutbox interface {
	Send(to protocol.PeerID, m protocol.Message)
}

// linkView is what the cores know of the supernode's links: the peers linked
// as supernodes and as leaves whose links carry message type t (any link for
// 0), in ID order.
type linkView interface {
	Neighbours(t protocol.MsgType) []protocol.PeerID
	Leaves(t protocol.MsgType) []protocol.PeerID
}

// speaks reports whether a link that negotiated version carries type t; any
// link carries 0.
func speaks(version uint16, t protocol.MsgType) bool {
	return t == 0 || protocol.Supports(version, t)
}

// randSource draws request IDs and shuffles from one reader, one caller at a
// time: a seeded reader makes a run repeatable.
type randSource struct {
	mu sync.Mutex
	r  io.Reader
}

func (s *randSource) Uint64() uint64 {
	var b [8]byte
	s.read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

func (s *randSource) read(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := io.ReadFull(s.r, b); err != nil {
		// crypto/rand does not fail; a seeded reader that ran dry is a bug.
		panic("supernode: random source: " + err.Error())
	}
}

// queryID is a fresh request ID.
func (s *randSource) queryID() protocol.QueryID {
	var q protocol.QueryID
	s.read(q[:])
	return q
}

// shuffle puts xs in a random order.
func shuffle[T any](src *randSource, xs []T) {
	rand.New(src).Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
}

// sortPeers puts peer IDs in byte order, for a repeatable order of sends.
func sortPeers(ps []protocol.PeerID) []protocol.PeerID {
	slices.SortFunc(ps, func(a, b protocol.PeerID) int { return bytes.Compare(a[:], b[:]) })
	return ps
}

func cmpQueryID(a, b protocol.QueryID) int { return bytes.Compare(a[:], b[:]) }
