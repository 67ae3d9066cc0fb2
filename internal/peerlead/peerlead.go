// Package peerlead runs a supernode inside a peer daemon that a supernode
// promoted: it is the peer.Config.StartLead of programs that can lead. It
// lives apart from both so that package peer does not import supernode.
package peerlead

import (
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/supernode"
)

// leadMaxLeaves caps the leaves of a supernode a peer runs when promoted.
const leadMaxLeaves = 1000

// Start starts the supernode a promotion asks for.
func Start(c peer.LeadConfig) (peer.LeadServer, error) {
	srv, err := supernode.New(supernode.Config{
		Listen: c.Listen, Conn: c.Conn, AltListen: c.AltListen, ListenTCP: "-",
		Join: c.Join, Identity: c.Identity, Advertise: c.Advertise, Network: c.Network,
		LeafLimit: c.LeafLimit, GossipInterval: c.GossipInterval, MemberTimeout: c.MemberTimeout,
		Promoted: true, Parent: c.Parent, StepDownAfter: c.StepDownAfter,
		IdleTimeout: c.IdleTimeout, Log: c.Log,
		// It runs inside a peer, on a home machine: a quarter of a public
		// supernode's cap, and its leaf limit promotes others long before.
		MaxLeaves: leadMaxLeaves,
	})
	if err != nil {
		return nil, err
	}
	return server{srv}, nil
}

type server struct{ *supernode.Server }

func (s server) Leaves() int { return s.Router().Leaves() }

func (s server) SteppedDown() string {
	if !s.Server.SteppedDown() {
		return ""
	}
	el := s.Election()
	return el.StepDownWhy + ": " + el.SteppingDown
}
