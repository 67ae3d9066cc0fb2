package supernode

import (
	"errors"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// inbound is one message as a handler of the dispatch table gets it.
type inbound struct {
	id LinkID
	l  *transport.Link
}

// route is how the server takes one message type off a leaf or supernode
// link: which part handles it, and what an error means. Who may send it is
// the link's business: it closes a link whose peer sends what its role may
// not (protocol's message table).
type route struct {
	// handle takes the message. Its error is answered on the link, or with
	// fatal closes it: the sender is bad.
	handle func(in inbound, m protocol.Message) error
	fatal  bool
}

// routes builds the server's one table of message types.
func (s *Server) routes() map[protocol.MsgType]route {
	router := route{handle: func(in inbound, m protocol.Message) error { return s.router.Handle(in.id, m) }}
	dir := route{fatal: true, handle: func(in inbound, m protocol.Message) error { return s.dir.Handle(in.l.Peer, in.l.Role, m) }}
	t := map[protocol.MsgType]route{
		protocol.TypeNATReport: {handle: func(in inbound, m protocol.Message) error {
			s.queueNATReport(in.id, in.l, m.(*protocol.NATReport))
			return nil
		}},
		protocol.TypeMembers: {fatal: true, handle: func(in inbound, m protocol.Message) error {
			return s.memb.Handle(in.l.Peer, m.(*protocol.Members))
		}},
		protocol.TypeMemberTree: {fatal: true, handle: func(in inbound, m protocol.Message) error {
			return s.memb.HandleTree(in.l.Peer, m.(*protocol.MemberTree))
		}},
		protocol.TypeMemberDigest: {handle: func(in inbound, m protocol.Message) error {
			s.memb.HandleDigest(in.l.Peer, m.(*protocol.MemberDigest))
			return nil
		}},
		protocol.TypeMemberWant: {handle: func(in inbound, m protocol.Message) error {
			s.memb.HandleWant(in.l.Peer, m.(*protocol.MemberWant))
			return nil
		}},
		protocol.TypeUserPut:   dir,
		protocol.TypeUserGet:   dir,
		protocol.TypeUserReply: dir,
		protocol.TypeUserStore: dir,
		protocol.TypeCandidacy: {handle: func(in inbound, m protocol.Message) error {
			s.elect.Candidacy(in.l.Peer, m.(*protocol.Candidacy))
			return nil
		}},
		protocol.TypePromoted: {handle: func(in inbound, m protocol.Message) error {
			s.elect.Promoted(in.l.Peer, m.(*protocol.Promoted))
			return nil
		}},
		protocol.TypeRelayAsk: {handle: func(in inbound, _ protocol.Message) error {
			if c := s.mintRelay(in.l.Peer, false, false); c != nil {
				in.l.Send(&protocol.RelayOK{Relay: *c, Observed: in.l.RemoteAddr().String()})
			} else {
				in.l.Send(&protocol.Error{Code: protocol.StatusUnavailable, Message: "no relay is known"})
			}
			return nil
		}},
	}
	for _, mt := range []protocol.MsgType{protocol.TypePublish, protocol.TypeUnpublish, protocol.TypeQuery, protocol.TypeHits,
		protocol.TypeQueryDone, protocol.TypeSummary, protocol.TypeSummaries, protocol.TypeSummaryWant, protocol.TypeSignal, protocol.TypePing, protocol.TypePong, protocol.TypeError} {
		t[mt] = router
	}
	return t
}

// dispatch hands one message to its handler; false when the link is to close.
func (s *Server) dispatch(in inbound, m protocol.Message) bool {
	r, ok := s.table[m.Type()]
	if !ok {
		// The router answers what no part takes as unexpected.
		r = route{handle: func(in inbound, m protocol.Message) error { return s.router.Handle(in.id, m) }}
	}
	err := r.handle(in, m)
	switch {
	case err == nil:
	case r.fatal:
		in.l.Log().Warn().Err(err).Str("msg", m.Type().String()).Msg("bad message; closing link")
		in.l.Close(err)
		return false
	default:
		in.l.Log().Debug().Err(err).Str("msg", m.Type().String()).Msg("message refused")
		in.l.Send(protocol.ErrorMessage(err))
	}
	return true
}

func (s *Server) readLoop(id LinkID, l *transport.Link, onDown func()) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.links, id)
		delete(s.pinging, id)
		s.mu.Unlock()
		onDown()
	}()
	for {
		m, err := l.Recv()
		if _, ok := m.(*protocol.Ping); ok && l.Role == protocol.RoleLeaf {
			s.mu.Lock()
			s.pinging[id] = true
			s.mu.Unlock()
		}
		if err != nil {
			if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrUnknownType) || errors.Is(err, protocol.ErrFrameTooLarge) {
				l.Log().Warn().Err(err).Msg("bad message; closing link")
			}
			l.Close(err)
			return
		}
		if !s.dispatch(inbound{id, l}, m) {
			return
		}
	}
}

// peers is the server as the cores see it: their messages go out on the
// link to a peer ID, and they ask which peers are linked. With strict, a
// link that cannot take a message (closed, or its queue full) is closed, as
// for the router's messages; without, the message is dropped.
type peers struct {
	s      *Server
	strict bool
}

func (p peers) Send(to protocol.PeerID, m protocol.Message) {
	s := p.s
	s.mu.Lock()
	id, ok := s.byPeer[to]
	if !ok {
		id, ok = s.leafOf[to]
	}
	l := s.links[id]
	s.mu.Unlock()
	switch {
	case !ok || l == nil:
	case p.strict:
		s.Send(id, m)
	default:
		l.Send(m)
	}
}

func (p peers) Neighbours(t protocol.MsgType) []protocol.PeerID { return p.linked(p.s.byPeer, t) }
func (p peers) Leaves(t protocol.MsgType) []protocol.PeerID     { return p.linked(p.s.leafOf, t) }

func (p peers) linked(m map[protocol.PeerID]LinkID, t protocol.MsgType) []protocol.PeerID {
	s := p.s
	s.mu.Lock()
	out := make([]protocol.PeerID, 0, len(m))
	for peer, id := range m {
		if l := s.links[id]; l != nil && speaks(l.Version, t) {
			out = append(out, peer)
		}
	}
	s.mu.Unlock()
	return sortPeers(out)
}
