package supernode

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// Direct links carry one-hop queries to supernodes that are not
// neighbours. They open on the first query for one, stay open while used
// (the transport's idle timeout ends a quiet one) and, past MaxContacts,
// the least recently used closes.

// Bounds of the direct links.
const (
	// maxDirectDials is how many direct links may be opening at once; a
	// query for another supernode meanwhile goes without it.
	maxDirectDials = 32
	// maxDirectQueued bounds the messages waiting for a link to open.
	maxDirectQueued = 64
	// directDialTimeout bounds an opening: the query's round is over by then.
	directDialTimeout = 2 * time.Second
)

type directLink struct {
	id   LinkID
	used time.Time
}

// SendDirect implements DirectOutbox: over a neighbour link, a direct link,
// or one opened now to the supernode's address in its member entry.
func (s *Server) SendDirect(to protocol.PeerID, m protocol.Message) {
	s.mu.Lock()
	if id, ok := s.byPeer[to]; ok {
		s.mu.Unlock()
		s.Send(id, m)
		return
	}
	if c := s.contacts[to]; c != nil {
		c.used = time.Now()
		s.mu.Unlock()
		s.Send(c.id, m)
		return
	}
	if q, ok := s.opening[to]; ok {
		if len(q) < maxDirectQueued {
			s.opening[to] = append(q, m)
		}
		s.mu.Unlock()
		return
	}
	_, addr := s.members.Key(to)
	if addr == "" || len(s.opening) >= maxDirectDials || s.ctx.Err() != nil || !transport.Dialable(addr) {
		s.mu.Unlock()
		s.directFailed(to)
		return
	}
	s.opening[to] = []protocol.Message{m}
	s.wg.Add(1)
	s.mu.Unlock()
	go s.dialDirect(to, addr)
}

// directFailed tells the router, from another goroutine: the router may be
// sending when it calls SendDirect.
func (s *Server) directFailed(to protocol.PeerID) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.router.DirectFailed(to)
	}()
}

func (s *Server) dialDirect(to protocol.PeerID, addr string) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, directDialTimeout)
	defer cancel()
	h := s.supernodeHello()
	h.Direct = true
	// What is queued now goes right behind the hello; what comes while the
	// link opens, once it is up.
	s.mu.Lock()
	early := s.opening[to]
	s.opening[to] = nil
	s.mu.Unlock()
	// Early messages must be of the lowest version the hello offers: a
	// keyword ring message asks for a supernode that speaks it.
	for _, m := range early {
		if i, ok := protocol.Lookup(m.Type()); ok && i.Since > h.MinVersion {
			h.MinVersion, h.MaxVersion = i.Since, protocol.MaxVersion
		}
	}
	var l *transport.Link
	var w *protocol.Welcome
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err == nil {
		l, w, err = s.node.DialEarly(ctx, ua, to, h, early)
	}
	if err == nil {
		if err = s.checkWelcome(l, w); err != nil {
			l.Close(fmt.Errorf("%w: %w", protocol.ErrForbidden, err))
		}
	}
	var id LinkID
	if err == nil {
		if id = s.directUp(l); id == 0 {
			err = fmt.Errorf("closing")
		}
	}
	s.mu.Lock()
	q := s.opening[to]
	delete(s.opening, to)
	s.mu.Unlock()
	if err != nil {
		s.log.Debug().Err(err).Str("peer_id", to.Short()).Msg("cannot open a direct link")
		s.router.DirectFailed(to)
		return
	}
	for _, m := range q {
		s.Send(id, m)
	}
}

// directUp registers a direct link, dialled or accepted, closing the least
// recently used one past MaxContacts, and reads it; 0 when the server is
// closing.
func (s *Server) directUp(l *transport.Link) LinkID {
	id := s.register(l)
	if id == 0 {
		return 0
	}
	s.mu.Lock()
	old := s.contacts[l.Peer]
	s.contacts[l.Peer] = &directLink{id: id, used: time.Now()}
	var lru *transport.Link
	if len(s.contacts) > MaxContacts {
		var oldest protocol.PeerID
		var at time.Time
		for p, c := range s.contacts {
			if p != l.Peer && (at.IsZero() || c.used.Before(at)) {
				oldest, at = p, c.used
			}
		}
		lru = s.links[s.contacts[oldest].id]
		delete(s.contacts, oldest)
	}
	var oldLink *transport.Link
	if old != nil {
		oldLink = s.links[old.id]
	}
	s.mu.Unlock()
	for _, c := range []*transport.Link{oldLink, lru} {
		if c != nil {
			c.Close(nil)
		}
	}
	s.router.ContactUp(id, l.Peer)
	s.wg.Add(1)
	go s.readLoop(id, l, func() {
		rtt, _ := l.RTT()
		s.mu.Lock()
		if c := s.contacts[l.Peer]; c != nil && c.id == id {
			delete(s.contacts, l.Peer)
		}
		if rtt > 0 {
			s.rememberRTTLocked(l.Peer, rtt)
		}
		s.mu.Unlock()
		s.router.ContactDown(id)
	})
	return id
}

// maxPastRTTs bounds the round trips remembered of closed direct links:
// more than an overlay has supernodes.
const maxPastRTTs = 1 << 14

// rememberRTTLocked keeps the round trip last measured to supernode p; when
// full, another entry goes, whichever the map gives first.
func (s *Server) rememberRTTLocked(p protocol.PeerID, rtt time.Duration) {
	if _, ok := s.pastRTT[p]; !ok && len(s.pastRTT) >= maxPastRTTs {
		for q := range s.pastRTT {
			delete(s.pastRTT, q)
			break
		}
	}
	s.pastRTT[p] = rtt
}

// peerRTT is the round trip to supernode p over a link we have, else the
// last one measured on a direct link to it, or 0.
func (s *Server) peerRTT(p protocol.PeerID) time.Duration {
	s.mu.Lock()
	id, ok := s.byPeer[p]
	if !ok {
		if c := s.contacts[p]; c != nil {
			id, ok = c.id, true
		}
	}
	past := s.pastRTT[p]
	s.mu.Unlock()
	if !ok {
		return past
	}
	return s.linkRTT(id)
}

// memberKey is the key of a live member supernode, for its summaries.
func (s *Server) memberKey(p protocol.PeerID) ed25519.PublicKey {
	k, _ := s.members.Key(p)
	return k
}

// ringView is the member list's view of the live supernodes, for the
// keyword ring: made again only when the list's generation moved. Those
// reported gone are on it until taken as dead, so that a liar's reports
// cannot move keys about or hide a supernode's files.
func (s *Server) ringView() *RingView {
	gen := s.members.Gen() // before Live: a change in between makes it again next time
	s.mu.Lock()
	v := s.view
	s.mu.Unlock()
	if v != nil && v.Gen == gen {
		return v
	}
	recs := s.members.Live()
	live := make([]RingMember, 0, len(recs))
	for _, m := range recs {
		live = append(live, RingMember{Peer: m.Peer(), Inc: m.Incarnation, Leaves: m.Leaves})
	}
	v = NewRingView(gen, live)
	s.mu.Lock()
	s.view = v
	s.mu.Unlock()
	return v
}
