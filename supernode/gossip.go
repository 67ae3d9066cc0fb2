package supernode

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
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

// leafMembersEvery is how many gossip rounds pass between member lists to
// leaves, and dirSweepEvery between sweeps of the directory with the ring
// unchanged.
const leafMembersEvery, dirSweepEvery = 10, 10

func (s *Server) gossip(now time.Time) {
	// The clock in milliseconds keeps beats rising across restarts.
	s.beat = max(s.beat+1, uint64(now.UnixMilli()))
	s.checkAdmission(now)
	if ch := s.Chain(); len(ch) > 0 {
		// Until a promoted supernode has its certificate, others would refuse its entry.
		self := &protocol.MemberRecord{Addrs: s.advertised(), Beat: s.beat,
			Leaves: uint32(s.router.Leaves()), Cap: uint32(s.cfg.MaxLeaves),
			Incarnation: s.cfg.Incarnation, Chain: ch}
		self.Sign(s.node.Identity())
		s.members.Merge([]*protocol.MemberRecord{self}, now)
	}
	died := s.members.Expire(now)
	for _, id := range died {
		s.log.Info().Str("peer_id", id.Short()).Msg("supernode taken as dead: its member entry stopped")
	}
	live := s.members.Live()
	msg := membersMessage(live, s.ID())
	s.rounds++
	s.dropSilentLeaves()
	s.mu.Lock()
	var links []*transport.Link
	for _, id := range s.byPeer {
		if l := s.links[id]; l != nil && l.Version >= protocol.VersionMembers {
			links = append(links, l)
		}
	}
	// Leaves get the list less often: they need it only to find a
	// supernode when theirs are gone, and keep it on disk for that. When a
	// supernode has died they get it at once, since they may be about to
	// look for another.
	if s.rounds%leafMembersEvery == 0 || len(died) > 0 {
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
	// Every few rounds, even with the ring unchanged: copies and handovers
	// that found no link at the change go out then.
	s.dir.Sweep(now, s.rounds%dirSweepEvery == 0)
	s.electRound(now)
	if every := max(1, uint64(statusLogEvery/s.cfg.GossipInterval)); s.rounds%every == 0 {
		s.logStatus(len(live), neighbours)
	}
	if s.cfg.Neighbours >= 0 && len(s.Chain()) > 0 {
		// The ring successor is linked even beyond the count: a lookup on
		// the ring ends through it.
		s.linkMore(live, neighbours < s.cfg.Neighbours)
	}
}

// statusLogEvery is how often the supernode logs its state.
const statusLogEvery = time.Minute

func (s *Server) logStatus(live, neighbours int) {
	el := s.Election()
	ev := s.log.Info().Int("leaves", el.Leaves).Int("leaf_limit", el.LeafLimit).Int("candidates", el.Candidates).
		Int("promoted_leaves", len(el.Promotions)).Int("supernodes_live", live).Int("neighbours", neighbours).
		Int("user_records", s.store.users.Len())
	if el.Promoted {
		ev = ev.Str("promoted_by", el.Parent)
	}
	ev.Msg("supernode status")
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
		return fmt.Errorf("%w: %d member entries with bad signatures or no valid certificate", protocol.ErrForbidden, bad)
	}
	return nil
}

// linkMore dials one live supernode we have no link to, unless a dial is
// under way: our successor on the ring of supernode IDs first, then (if more
// links are wanted) our other fingers from the farthest in, so that the links
// are the shortcuts a lookup on the ring takes, and with all of those linked
// any listed supernode. The link then runs like a configured one, without
// redials.
func (s *Server) linkMore(live []*protocol.MemberRecord, more bool) {
	now := time.Now()
	byID := make(map[ring.ID]*protocol.MemberRecord, len(live))
	ids := make([]ring.ID, 0, len(live))
	for _, m := range live {
		byID[ring.ID(m.Peer())] = m
		ids = append(ids, ring.ID(m.Peer()))
	}
	fingers := ring.New(ids).Fingers(ring.ID(s.ID()))
	order := make([]ring.ID, 0, len(ids))
	if len(fingers) > 0 {
		order = append(order, fingers[0])
		for i := len(fingers) - 1; i > 0; i-- {
			order = append(order, fingers[i])
		}
	}
	if !more {
		order = order[:min(len(order), 1)]
	} else {
		rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		order = append(order, ids...)
	}
	s.mu.Lock()
	var m *protocol.MemberRecord
	for _, id := range order {
		c := byID[id]
		p := protocol.PeerID(id)
		if _, linked := s.byPeer[p]; linked || p == s.ID() || !transport.Dialable(c.Addrs[0]) || now.Before(s.dialFailed[p]) {
			continue
		}
		m = c
		break
	}
	s.mu.Unlock()
	if m == nil || !s.dialling.CompareAndSwap(false, true) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.dialling.Store(false)
		// A listed supernode may have died since its last beat: do not let it
		// hold up the next try for long, but give a loaded one time for
		// its handshake.
		ctx, cancel := context.WithTimeout(s.ctx, max(s.cfg.MemberTimeout, 2*time.Second))
		defer cancel()
		l, w, err := s.node.Dial(ctx, m.Addrs[0], m.Peer(), s.supernodeHello())
		if err == nil {
			if err = s.checkWelcome(l, w); err != nil {
				l.Close(fmt.Errorf("%w: %w", protocol.ErrForbidden, err))
			}
		}
		if err != nil {
			s.log.Debug().Err(err).Str("peer_id", m.Peer().Short()).Msg("cannot link to a listed supernode")
			s.mu.Lock()
			s.dialFailed[m.Peer()] = time.Now().Add(2 * s.cfg.MemberTimeout)
			s.mu.Unlock()
			return
		}
		if _, ok := s.neighbourUp(l, true, w.Chain.Expires()); ok {
			l.Log().Info().Msg("linked to a supernode from the member list")
		}
	}()
}

// Members returns the live supernodes this one knows of, its own entry included.
func (s *Server) Members() []*protocol.MemberRecord { return s.members.Live() }

// membersMessage lists live in one message. With more than fit, it carries
// our own entry and a random sample of the others, so that over the rounds
// every entry travels.
func membersMessage(live []*protocol.MemberRecord, self protocol.PeerID) *protocol.Members {
	if len(live) > protocol.MaxMembers {
		live = slices.Clone(live)
		rand.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
		if i := slices.IndexFunc(live, func(m *protocol.MemberRecord) bool { return m.Peer() == self }); i >= 0 {
			live[0], live[i] = live[i], live[0]
		}
		live = live[:protocol.MaxMembers]
	}
	msg := &protocol.Members{Members: make([]protocol.MemberRecord, 0, len(live))}
	for _, m := range live {
		msg.Members = append(msg.Members, *m)
	}
	return msg
}

// Linked are the supernodes this one has a link to.
func (s *Server) Linked() []protocol.PeerID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]protocol.PeerID, 0, len(s.byPeer))
	for p := range s.byPeer {
		out = append(out, p)
	}
	return out
}
