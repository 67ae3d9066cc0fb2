package relay

import (
	"container/list"
	"net"
	"sync/atomic"
	"time"
)

// Quotas are kept per identity (the peer ID in the username), not per
// credential: supernodes mint a fresh username for the same peer on every
// ask, so a per-username quota would be renewed by asking again. An identity
// has a session that opens with its first allocation and lasts MaxDuration;
// all its allocations, under whatever credentials, share the session's
// MaxBytes and end with it.

// ident is one peer ID's session. Fields without a note are guarded by
// Server.mu.
type ident struct {
	peer       string
	start, end time.Time
	used       atomic.Int64 // bytes relayed in the session
	spent      atomic.Bool  // used reached MaxBytes: allocations stopped until end
	live       map[*relayConn]struct{}
	admitted   int // Allocates admitted and not yet created
	elem       *list.Element
}

func (id *ident) idle() bool { return len(id.live) == 0 && id.admitted == 0 }

// admission reserves a slot for an Allocate between the QuotaHandler and the
// allocation's creation, so concurrent requests over UDP and TCP cannot all
// pass the check before any of them is counted.
type admission struct {
	id    *ident
	at    time.Time
	bound bool // a relay socket was made on it
}

// clientKey names a TURN client by transport and address: an allocation is
// bound to it, and UDP and TCP clients may share an address.
func clientKey(a net.Addr) string { return a.Network() + "/" + a.String() }

// admit is pion's QuotaHandler, asked for each authenticated Allocate just
// before pion creates the allocation in the same goroutine.
func (s *Server) admit(username, _ string, src net.Addr) bool {
	peer := peerOf(username)
	s.mu.Lock()
	reason := s.reserve(peer, clientKey(src), time.Now())
	s.mu.Unlock()
	if reason == "" {
		return true
	}
	s.allocRefused.Add(1)
	s.log.Debug().Str("peer_id", peer).Str("remote_addr", src.String()).Str("reason", reason).
		Msg("relay allocation refused")
	return false
}

// reserve admits an allocation for peer from client, or says why not.
func (s *Server) reserve(peer, client string, now time.Time) string {
	if s.closing {
		return "relay closing"
	}
	// pion handles one client's requests in order, so an earlier admission of
	// this client belongs to a request that ended without an allocation.
	if old := s.admitted[client]; old != nil {
		s.unreserve(client, old)
	}
	id := s.idents[peer]
	if id != nil && !now.Before(id.end) {
		s.renew(id, now) // the session is over; what is still live stops now
	}
	switch {
	case s.allocs+len(s.admitted) >= s.cfg.MaxAllocations:
		return "relay full"
	case id != nil && len(id.live)+id.admitted >= s.cfg.MaxPerPeer:
		return "peer at its allocation limit"
	case id != nil && id.spent.Load():
		return "peer at its byte quota"
	}
	if id == nil {
		if len(s.idents) >= s.maxIdents && !s.evictIdle() {
			return "too many identities"
		}
		id = &ident{peer: peer, live: make(map[*relayConn]struct{})}
		id.start, id.end = now, now.Add(s.cfg.MaxDuration)
		id.elem = s.identAge.PushBack(id)
		s.idents[peer] = id
	}
	id.admitted++
	s.admitted[client] = &admission{id: id, at: now}
	return ""
}

// renew starts a new session for an identity whose session ended.
func (s *Server) renew(id *ident, now time.Time) {
	id.start, id.end = now, now.Add(s.cfg.MaxDuration)
	id.used.Store(0)
	id.spent.Store(false)
	s.identAge.MoveToBack(id.elem)
}

// unreserve drops an admission that did not become an allocation.
func (s *Server) unreserve(client string, a *admission) {
	delete(s.admitted, client)
	a.id.admitted--
}

// takeTicket is asked by the relay address generator for every socket pion
// wants, and marks one admission as having had its socket. A socket asked for
// when every admission has had one is one of the up to 128 that pion binds to
// find an even port (EVEN-PORT, which it does before asking the
// QuotaHandler): refused, so a client cannot make the relay bind sockets at
// will. The oldest admission is marked, as the one most likely asking.
func (s *Server) takeTicket() bool {
	var oldest *admission
	for _, a := range s.admitted {
		if !a.bound && (oldest == nil || a.at.Before(oldest.at)) {
			oldest = a
		}
	}
	if oldest == nil {
		return false
	}
	oldest.bound = true
	return true
}

// evictIdle forgets the oldest identity with nothing live to make room. It
// loses only that identity's byte count: it starts afresh if it comes back.
func (s *Server) evictIdle() bool {
	for e := s.identAge.Front(); e != nil; e = e.Next() {
		if id := e.Value.(*ident); id.idle() {
			s.dropIdent(id)
			return true
		}
	}
	return false
}

func (s *Server) dropIdent(id *ident) {
	s.identAge.Remove(id.elem)
	delete(s.idents, id.peer)
}

// sweep drops admissions that never became allocations and identities whose
// session is over and that hold nothing.
func (s *Server) sweep(now time.Time) {
	for client, a := range s.admitted {
		if now.Sub(a.at) > admitTTL {
			s.unreserve(client, a)
		}
	}
	for e := s.identAge.Front(); e != nil; {
		id := e.Value.(*ident)
		e = e.Next()
		if now.Before(id.end) {
			break // sessions are in the order they started, and all last as long
		}
		if id.idle() {
			s.dropIdent(id)
		}
	}
}

func (s *Server) onAllocationCreated(src, _ net.Addr, _, username, _ string, relayAddr net.Addr, _ int) {
	client := clientKey(src)
	peer := peerOf(username)
	now := time.Now()
	s.mu.Lock()
	c := s.relays[relayAddr.String()]
	var id *ident
	if a := s.admitted[client]; a != nil {
		delete(s.admitted, client)
		a.id.admitted--
		id = a.id
		if !a.bound {
			// This socket was marked on another admission: that one has
			// yet to get its own.
			for _, o := range s.admitted {
				if o.bound {
					o.bound = false
					break
				}
			}
		}
	} else if id = s.idents[peer]; id == nil && c != nil {
		// Admitted, then swept as stale before pion created it: still
		// counted, in a session of its own.
		id = &ident{peer: peer, live: make(map[*relayConn]struct{}), start: now, end: now.Add(s.cfg.MaxDuration)}
		id.elem = s.identAge.PushBack(id)
		s.idents[peer] = id
	}
	if c == nil {
		// Its socket closed already (the relay is closing); pion deletes the
		// allocation when it notices.
		s.mu.Unlock()
		return
	}
	c.ident.Store(id)
	id.live[c] = struct{}{}
	s.allocs++
	s.byClient[client] = c
	c.clientKey = client
	if src.Network() == "tcp" {
		c.tcpKey = src.String()
		if tc := s.tcpConns[c.tcpKey]; tc != nil {
			s.tcpAllocated(tc)
		}
	}
	deadline := id.end
	if capped := c.created.Add(s.cfg.MaxDuration); capped.Before(deadline) {
		deadline = capped
	}
	s.mu.Unlock()

	c.own(peer, src, deadline)
	if id.spent.Load() {
		c.stop("max_bytes")
	}
	s.log.Info().Str("peer_id", peer).Str("remote_addr", src.String()).Str("relay_addr", relayAddr.String()).
		Time("session_end", deadline).Msg("relay allocation created")
}

// detach undoes onAllocationCreated when an allocation's socket closes.
// Called with s.mu held.
func (s *Server) detach(c *relayConn) {
	id := c.ident.Load()
	if id == nil {
		return
	}
	if _, ok := id.live[c]; !ok {
		return
	}
	delete(id.live, c)
	s.allocs--
	if s.byClient[c.clientKey] == c {
		delete(s.byClient, c.clientKey)
	}
	if tc := s.tcpConns[c.tcpKey]; c.tcpKey != "" && tc != nil {
		s.tcpReleased(tc)
	}
}

// stopIdent ends every live allocation of an identity at its byte quota.
func (s *Server) stopIdent(id *ident) {
	s.mu.Lock()
	live := make([]*relayConn, 0, len(id.live))
	for c := range id.live {
		live = append(live, c)
	}
	s.mu.Unlock()
	s.log.Info().Str("peer_id", id.peer).Int64("bytes", id.used.Load()).Int("allocations", len(live)).
		Msg("relay identity at its byte quota")
	for _, c := range live {
		c.stop("max_bytes")
	}
}

func (s *Server) onChannelCreated(_, _ net.Addr, _, _, _ string, relayAddr, _ net.Addr, _ uint16) {
	s.mu.Lock()
	c := s.relays[relayAddr.String()]
	s.mu.Unlock()
	if c != nil && c.channels.Add(1) > int64(s.cfg.MaxChannels) {
		// pion asks no handler before it binds a channel to a new port of a
		// permitted IP, so the cap is enforced after the fact.
		c.stop("max_channels")
	}
}

func (s *Server) onChannelDeleted(_, _ net.Addr, _, _, _ string, relayAddr, _ net.Addr, _ uint16) {
	s.mu.Lock()
	c := s.relays[relayAddr.String()]
	s.mu.Unlock()
	if c != nil {
		c.channels.Add(-1)
	}
}
