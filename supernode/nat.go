package supernode

import (
	"context"
	"fmt"
	"net"
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

// natReport checks a leaf's report and answers with what this supernode
// establishes about it.
func (s *Server) natReport(id LinkID, l *transport.Link, m *protocol.NATReport) {
	defer s.wg.Done()
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
	s.router.SetLeafNAT(id, nat, m.Reflexive)
	s.elect.SetPublic(l.Peer, public)
	l.Log().Info().Str("nat", nat.String()).Bool("public", public).Msg("leaf NAT established")
	l.Send(&protocol.NATStatus{NAT: nat, Public: public, Observed: l.RemoteAddr().String()})
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
