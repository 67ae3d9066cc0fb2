package supernode

import (
	"context"
	"net"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// A supernode keeps a second UDP socket. Leaves send STUN requests to both
// sockets: the same reflexive address from both means their NAT maps
// independently of the destination. The second socket also dials leaves back:
// a dial from an address the leaf never sent to gets through only if the leaf is
// reachable by anyone.

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
		probe, _, err := s.alt.DialAddr(ctx, observed, l.Peer, &protocol.Hello{Role: protocol.RoleProbe})
		cancel()
		if err == nil {
			probe.Close(nil)
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
	l.Log().Info().Str("nat", nat.String()).Bool("public", public).Msg("leaf NAT established")
	if l.Version >= protocol.VersionSignal {
		l.Send(&protocol.NATStatus{NAT: nat, Public: public, Observed: l.RemoteAddr().String()})
	}
}
