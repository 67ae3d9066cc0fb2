package supernode

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// A supernode keeps a second UDP socket. Leaves send STUN requests to both
// sockets: the same reflexive address from both means their NAT maps
// independently of the destination. Then the supernode dials the leaf back from
// a fresh socket, an address the leaf never sent to: a NAT that filters by
// address and port drops that dial, so it gets through only if the leaf is
// reachable by anyone. (Dialling from either STUN socket would pass through the
// mapping the STUN request opened.)

// dialBackTimeout bounds one reachability check.
const dialBackTimeout = 3 * time.Second

// natStats count the NAT reports and address proofs of leaves.
type natStats struct {
	checks, superseded         atomic.Uint64
	proofsTaken, proofsRefused atomic.Uint64
}

// queueNATReport checks a leaf's report, or keeps it for when the check
// of its last one ends: a leaf that sends reports in a flood gets one check
// at a time, each a dial back, and only its newest report waits.
func (s *Server) queueNATReport(id LinkID, l *transport.Link, m *protocol.NATReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if next, busy := s.natNext[id]; busy {
		if next != nil {
			s.nat.superseded.Add(1)
		}
		s.natNext[id] = m
		return
	}
	s.natNext[id] = nil
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for m != nil {
			s.natReport(id, l, m)
			s.mu.Lock()
			m = s.natNext[id]
			if m == nil {
				delete(s.natNext, id)
			} else {
				s.natNext[id] = nil
			}
			s.mu.Unlock()
		}
	}()
}

// natReport checks a leaf's report and answers with what this supernode
// establishes about it.
func (s *Server) natReport(id LinkID, l *transport.Link, m *protocol.NATReport) {
	s.nat.checks.Add(1)
	nat := m.Mapping
	public := false
	observed, _ := l.RemoteAddr().(*net.UDPAddr)
	switch {
	case nat == protocol.NATUDPBlocked:
		// The leaf lives on a relay allocation; the relay admits only the
		// peers it permits, so there is nothing to dial back.
	case s.alt != nil && observed != nil:
		ctx, cancel := context.WithTimeout(s.ctx, dialBackTimeout)
		err := s.dialBack(ctx, observed, l.Peer)
		cancel()
		if err == nil {
			public = true
			nat = protocol.NATNone
		} else {
			l.Log().Debug().Err(err).Msg("dial back failed: leaf is not publicly reachable")
			if nat == protocol.NATNone || nat == protocol.NATUnknown {
				// It claimed no NAT, or could not tell, yet cannot be reached:
				// something filters. Punching is the best guess.
				nat = protocol.NATEndpointIndependent
			}
		}
	}
	if s.ctx.Err() != nil {
		return
	}
	proven := s.proven(l, m.Proofs)
	s.router.SetLeafNAT(id, nat, m.Reflexive, proven)
	s.elect.SetPublic(l.Peer, public)
	l.Log().Info().Str("nat", nat.String()).Bool("public", public).Strs("proven", proven).Msg("leaf NAT established")
	l.Send(&protocol.NATStatus{NAT: nat, Public: public, Observed: l.RemoteAddr().String(), Proven: proven})
}

// proven are the addresses of a leaf's proofs this supernode lists it
// with: one per IP family it did not attach over, public, and with a token
// this supernode's STUN responder sent there for this leaf.
func (s *Server) proven(l *transport.Link, proofs []protocol.AddrProof) []string {
	observed, err := netip.ParseAddrPort(l.RemoteAddr().String())
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range proofs {
		ap, ok := s.node.CheckProof(l.Peer, p)
		switch {
		case !ok:
			s.nat.proofsRefused.Add(1)
			l.Log().Debug().Str("addr", p.Addr).Msg("address proof refused: wrong or stale token")
		case ap.Addr().Is4() == observed.Addr().Unmap().Is4() || !transport.IsPublicAddr(ap.Addr()):
			s.nat.proofsRefused.Add(1)
			l.Log().Debug().Str("addr", p.Addr).Msg("address proof ignored: not a public address of the other family")
		case len(out) == 0:
			s.nat.proofsTaken.Add(1)
			out = append(out, ap.String())
		}
	}
	return out
}

// dialBack dials a leaf from a new socket on the supernode's host.
func (s *Server) dialBack(ctx context.Context, addr *net.UDPAddr, peer protocol.PeerID) error {
	pc, err := transport.ListenUDP(net.JoinHostPort(hostOf(s.cfg.Listen), "0"))
	if err != nil {
		return fmt.Errorf("dial-back socket: %w", err)
	}
	n, err := transport.New(transport.Config{Identity: s.node.Identity(), Conn: pc, Log: s.log, Agent: "supernet-supernode"})
	if err != nil {
		pc.Close()
		return err
	}
	defer n.Close()
	probe, _, err := n.DialAddr(ctx, addr, peer, &protocol.Hello{Role: protocol.RoleProbe})
	if err != nil {
		return err
	}
	probe.Close(nil)
	return nil
}
