package supernode

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// gossipLoop issues our member entry every GossipInterval, sends the live
// list to the supernode neighbours, and links to more supernodes while we
// have fewer neighbours than Config.Neighbours.
func (s *Server) gossipLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.GossipInterval)
	defer t.Stop()
	for {
		s.gossip(time.Now())
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}

// leafMembersEvery is how many gossip rounds pass between member lists to leaves.
const leafMembersEvery = 10

func (s *Server) gossip(now time.Time) {
	// The clock in milliseconds keeps beats rising across restarts.
	s.beat = max(s.beat+1, uint64(now.UnixMilli()))
	self := &protocol.MemberRecord{Addrs: s.advertised(), Beat: s.beat,
		Leaves: uint32(s.router.Leaves()), Cap: uint32(s.cfg.MaxLeaves)}
	self.Sign(s.node.Identity())
	s.members.Merge([]*protocol.MemberRecord{self}, now)
	for _, id := range s.members.Expire(now) {
		s.log.Info().Str("peer_id", id.Short()).Msg("supernode taken as dead: its member entry stopped")
	}
	live := s.members.Live()
	msg := membersMessage(live)
	s.rounds++
	s.mu.Lock()
	var links []*transport.Link
	for _, id := range s.byPeer {
		if l := s.links[id]; l != nil && l.Version >= protocol.VersionMembers {
			links = append(links, l)
		}
	}
	// Leaves get the list less often: they need it only to find a
	// supernode when theirs are gone, and keep it on disk for that.
	if s.rounds%leafMembersEvery == 0 {
		for _, id := range s.leafOf {
			if l := s.links[id]; l != nil && l.Version >= protocol.VersionMembers {
				links = append(links, l)
			}
		}
	}
	neighbours := len(s.byPeer)
	s.mu.Unlock()
	for _, l := range links {
		l.Send(msg)
	}
	if neighbours < s.cfg.Neighbours {
		s.linkMore(live)
	}
}

// advertised are the addresses for our member entry.
func (s *Server) advertised() []string {
	if len(s.cfg.Advertise) > 0 {
		return s.cfg.Advertise[:min(len(s.cfg.Advertise), protocol.MaxAddrs)]
	}
	return []string{s.Addr().String()}
}

// takeMembers merges a member list from a link. Only supernodes send one, and
// only entries they checked, so a bad entry means a bad sender.
func (s *Server) takeMembers(l *transport.Link, m *protocol.Members) error {
	if l.Role != protocol.RoleSupernode {
		return fmt.Errorf("%w: members from a %s", protocol.ErrForbidden, l.Role)
	}
	recs := make([]*protocol.MemberRecord, len(m.Members))
	for i := range m.Members {
		recs[i] = &m.Members[i]
	}
	if _, bad := s.members.Merge(recs, time.Now()); bad > 0 {
		return fmt.Errorf("%w: %d member entries with bad signatures", protocol.ErrForbidden, bad)
	}
	return nil
}

// linkMore dials one live supernode we have no link to, at random, unless a
// dial is under way. The link then runs like a configured one, without redials.
func (s *Server) linkMore(live []*protocol.MemberRecord) {
	s.mu.Lock()
	var cands []*protocol.MemberRecord
	for _, m := range live {
		id := m.Peer()
		if _, linked := s.byPeer[id]; !linked && id != s.ID() && transport.Dialable(m.Addrs[0]) {
			cands = append(cands, m)
		}
	}
	s.mu.Unlock()
	if len(cands) == 0 || !s.dialling.CompareAndSwap(false, true) {
		return
	}
	m := cands[rand.IntN(len(cands))]
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.dialling.Store(false)
		// A listed supernode may have died since its last beat: do not let it
		// hold up the next try for long.
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.MemberTimeout)
		defer cancel()
		l, _, err := s.node.Dial(ctx, m.Addrs[0], m.Peer(), &protocol.Hello{Role: protocol.RoleSupernode})
		if err != nil {
			s.log.Debug().Err(err).Str("peer_id", m.Peer().Short()).Msg("cannot link to a listed supernode")
			return
		}
		if _, ok := s.neighbourUp(l); ok {
			l.Log().Info().Msg("linked to a supernode from the member list")
		}
	}()
}

// Members returns the live supernodes this one knows of, its own entry included.
func (s *Server) Members() []*protocol.MemberRecord { return s.members.Live() }

func membersMessage(live []*protocol.MemberRecord) *protocol.Members {
	msg := &protocol.Members{Members: make([]protocol.MemberRecord, 0, min(len(live), protocol.MaxMembers))}
	for _, m := range live[:min(len(live), protocol.MaxMembers)] {
		msg.Members = append(msg.Members, *m)
	}
	return msg
}
