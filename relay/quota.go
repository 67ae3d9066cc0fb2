package relay

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
)

var (
	errFull       = errors.New("relay full")
	errStopped    = errors.New("allocation stopped at its quota")
	errNoTCPRelay = errors.New("TCP relaying (RFC 6062) is not offered")
	errNoEvenPort = errors.New("EVEN-PORT is not offered")
	errNoIPv6     = errors.New("IPv6 relayed addresses are not offered")
)

// familyConn is a relay's UDP socket that notes whether the packet read
// last is an Allocate request for an IPv6 relayed address. pion handles
// each packet of a socket before it reads the next, so the generator it
// calls for that request learns the family asked for (pion itself does not
// read REQUESTED-ADDRESS-FAMILY).
type familyConn struct {
	net.PacketConn
	want6 atomic.Bool
}

func (c *familyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.want6.Store(asksIPv6(b[:n]))
	}
	return n, from, err
}

// asksIPv6 reports whether p is a TURN Allocate request whose
// REQUESTED-ADDRESS-FAMILY is IPv6.
func asksIPv6(p []byte) bool {
	// The type's top two bits are left out, as pion's decoder leaves them.
	if len(p) < 20 || binary.BigEndian.Uint16(p)&0x3fff != allocateRequest.Value() {
		return false
	}
	m := stun.Message{Raw: p}
	if m.Decode() != nil {
		return false
	}
	v, err := m.Get(stun.AttrRequestedAddressFamily)
	return err == nil && len(v) == 4 && v[0] == familyIPv6
}

// familyIPv6 is REQUESTED-ADDRESS-FAMILY's value for IPv6 (RFC 6156, 4.1.1).
const familyIPv6 = 0x02

// allocateRequest is the STUN message type of a TURN Allocate request.
var allocateRequest = stun.NewType(stun.MethodAllocate, stun.ClassRequest)

// relayGen hands pion relay sockets that enforce the allocation quotas:
// IPv6 ones from inner6 when want6 says the request being handled asks
// for IPv6.
type relayGen struct {
	inner, inner6 turn.RelayAddressGenerator
	want6         func() bool
	s             *Server
}

func (g *relayGen) Validate() error {
	if g.inner6 != nil {
		if err := g.inner6.Validate(); err != nil {
			return err
		}
	}
	return g.inner.Validate()
}

func (g *relayGen) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	s := g.s
	if port != 0 {
		return nil, nil, errNoEvenPort
	}
	inner := g.inner
	if g.want6 != nil && g.want6() {
		if g.inner6 == nil {
			return nil, nil, errNoIPv6
		}
		inner, network = g.inner6, "udp6"
	}
	s.mu.Lock()
	err := error(nil)
	switch {
	case s.closing:
		err = ErrServerClosed
	case len(s.relays) >= s.cfg.MaxAllocations:
		// The QuotaHandler has checked the count already; this holds even
		// if allocations race past it.
		err = errFull
	case !s.takeTicket():
		err = errNoEvenPort
	}
	s.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	pc, addr, err := inner.AllocatePacketConn(network, port)
	if err != nil {
		return nil, nil, err
	}
	c := &relayConn{PacketConn: growBuffers(pc), s: s, key: addr.String(), created: time.Now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		pc.Close()
		return nil, nil, ErrServerClosed
	}
	s.relays[c.key] = c
	s.wg.Add(1) // done by the timer's function, or by shut when it stops the timer first
	c.timer = time.AfterFunc(s.cfg.MaxDuration, func() {
		defer s.wg.Done()
		c.stop("max_duration")
	})
	return c, addr, nil
}

func (g *relayGen) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errNoTCPRelay
}

// relayConn is one allocation's relay socket. It counts the payload bytes pion
// forwards each way against its identity's session and, past MaxBytes or at
// the session's end, closes the socket: pion then sees its read fail and
// deletes the allocation.
type relayConn struct {
	net.PacketConn
	s        *Server
	key      string // relayed address
	created  time.Time
	used     atomic.Int64 // this allocation's bytes, for the log
	dead     atomic.Bool  // no packet may pass
	ident    atomic.Pointer[ident]
	channels atomic.Int64 // channels bound

	mu       sync.Mutex
	closed   bool
	timer    *time.Timer
	peer     string
	client   net.Addr  // the TURN client's address, for logs and dropTCP
	deadline time.Time // when the session stops it

	// Set when the allocation is attached to its identity; Server.mu.
	clientKey string // in Server.byClient
	tcpKey    string // in Server.tcpConns, "" over UDP

	pmu        sync.Mutex
	perms      map[netip.Addr]time.Time // peer IPs permitted, by when last granted
	permOldest time.Time                // no grant in perms is older
}

// own records whose allocation this is, once pion reports it, and moves its
// stop to the end of its identity's session.
func (c *relayConn) own(peer string, client net.Addr, deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peer, c.client, c.deadline = peer, client, deadline
	if !c.closed && c.timer.Stop() {
		c.timer.Reset(time.Until(deadline))
	}
}

// grant records a permission for ip, or refuses a new one past
// MaxPermissions. pion drops a permission nobody refreshes after five
// minutes; expired ones are pruned here when the map is full and the oldest
// grant may have expired, so a flood of refused IPs costs no scans.
func (c *relayConn) grant(ip netip.Addr, now time.Time) bool {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.perms == nil {
		c.perms = make(map[netip.Addr]time.Time)
	}
	if _, ok := c.perms[ip]; !ok && len(c.perms) >= c.s.cfg.MaxPermissions {
		if now.Sub(c.permOldest) <= permissionLife {
			return false
		}
		oldest := now
		for p, t := range c.perms {
			switch {
			case now.Sub(t) > permissionLife:
				delete(c.perms, p)
			case t.Before(oldest):
				oldest = t
			}
		}
		c.permOldest = oldest
		if len(c.perms) >= c.s.cfg.MaxPermissions {
			return false
		}
	}
	if len(c.perms) == 0 {
		c.permOldest = now
	}
	c.perms[ip] = now
	return true
}

// ReadFrom is pion reading what peers send to the relayed address.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err != nil {
		return n, addr, err
	}
	if !c.spend(n) {
		return 0, nil, net.ErrClosed
	}
	return n, addr, nil
}

// WriteTo is pion forwarding what the client sends to a peer.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.spend(len(p)) {
		return 0, errStopped
	}
	return c.PacketConn.WriteTo(p, addr)
}

// spend counts n bytes against the identity's session and reports whether
// they may pass. The packet that would cross the quota is dropped, so
// MaxBytes is never exceeded, and every allocation of the identity stops.
func (c *relayConn) spend(n int) bool {
	if c.dead.Load() {
		return false
	}
	id := c.ident.Load()
	if id == nil {
		return false // pion relays nothing before it reports the allocation
	}
	if id.used.Add(int64(n)) > c.s.cfg.MaxBytes {
		id.used.Add(-int64(n))
		if id.spent.CompareAndSwap(false, true) {
			c.s.stopIdent(id)
		}
		c.stop("max_bytes")
		return false
	}
	c.used.Add(int64(n))
	c.s.bytes.Add(uint64(n))
	return true
}

// stop ends an allocation at a limit.
func (c *relayConn) stop(reason string) {
	if !c.shut(reason) {
		return
	}
	c.mu.Lock()
	client := c.client
	c.mu.Unlock()
	if client != nil {
		c.s.dropTCP(client)
	}
}

// Close is pion deleting the allocation, or the Server closing. pion closes a
// socket again after stop has, so only the first call reports an error.
func (c *relayConn) Close() error {
	c.shut("closed")
	return nil
}

// shut closes the socket once and logs why; it reports whether this call did.
// A second caller waits for the first to finish, so Server.Close returns only
// after every allocation is logged as ended.
func (c *relayConn) shut(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.closed = true
	c.dead.Store(true)
	if c.timer != nil && c.timer.Stop() {
		c.s.wg.Done()
	}
	err := c.PacketConn.Close()
	s := c.s
	// A socket without a peer is one pion probed for an even port, never an
	// allocation.
	if c.peer != "" || reason != "closed" {
		ev := s.log.Info()
		if reason == "closed" {
			ev = s.log.Debug()
		}
		if c.client != nil {
			ev = ev.Str("remote_addr", c.client.String())
		}
		ev.Str("peer_id", c.peer).Str("relay_addr", c.key).Int64("bytes", c.used.Load()).
			Dur("age", time.Since(c.created)).Str("reason", reason).Err(err).Msg("relay allocation ended")
	}
	if reason != "closed" {
		// Counted before the allocation leaves the count, so that Load
		// never shows it gone without its stop.
		s.quotaStops.Add(1)
	}
	s.forget(c)
	return true
}

// forget drops a closed relay socket and the allocation on it.
func (s *Server) forget(c *relayConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.relays[c.key] != c {
		return
	}
	delete(s.relays, c.key)
	s.detach(c)
	if s.closing && len(s.relays) == 0 {
		close(s.drained)
	}
}

// tcpListener tracks TURN-over-TCP connections so an allocation stopped at its
// quota can drop its connection, and so connections without an allocation are
// capped and time out. pion stops accepting for good on any Accept error, so
// transient ones are retried here.
type tcpListener struct {
	net.Listener
	s *Server
}

func (l *tcpListener) Accept() (net.Conn, error) {
	s := l.s
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("relay tcp accept")
			select {
			case <-s.closed:
				return nil, err
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		tc := &trackedConn{Conn: c, s: s, key: c.RemoteAddr().String()}
		if ap, err := netip.ParseAddrPort(tc.key); err == nil {
			tc.ip = ap.Addr().Unmap()
		}
		s.mu.Lock()
		reason := ""
		switch {
		case s.closing:
			reason = "relay closing"
		case s.tcpIdle >= s.cfg.MaxPendingTCP || len(s.tcpConns) >= s.cfg.MaxAllocations+s.cfg.MaxPendingTCP:
			reason = "too many connections without an allocation"
		case s.tcpIdleBy[tc.ip] >= s.cfg.MaxTCPPerIP:
			reason = "too many connections without an allocation from this IP"
		default:
			s.tcpConns[tc.key] = tc
			tc.idle = true
			s.tcpIdle++
			s.tcpIdleBy[tc.ip]++
		}
		s.mu.Unlock()
		if reason != "" {
			c.Close()
			s.tcpRefused.Add(1)
			s.log.Debug().Str("remote_addr", tc.key).Str("reason", reason).Msg("relay tcp connection refused")
			continue
		}
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		return tc, nil
	}
}

// trackedConn is a TURN-over-TCP connection. Without an allocation it is
// idle: counted against the caps and closed by its read deadline.
type trackedConn struct {
	net.Conn
	s    *Server
	key  string
	ip   netip.Addr
	idle bool // Server.mu
	once sync.Once
}

// tcpAllocated marks tc as holding an allocation. Called with s.mu held.
func (s *Server) tcpAllocated(tc *trackedConn) {
	if !tc.idle {
		return
	}
	tc.idle = false
	s.tcpUnidle(tc.ip)
	tc.SetReadDeadline(time.Time{}) // an allocation keeps it open
}

// tcpReleased marks tc as idle again once its allocation is gone. Called with
// s.mu held.
func (s *Server) tcpReleased(tc *trackedConn) {
	if tc.idle {
		return
	}
	tc.idle = true
	s.tcpIdle++
	s.tcpIdleBy[tc.ip]++
	tc.SetReadDeadline(time.Now().Add(tcpIdle))
}

func (s *Server) tcpUnidle(ip netip.Addr) {
	s.tcpIdle--
	if s.tcpIdleBy[ip]--; s.tcpIdleBy[ip] <= 0 {
		delete(s.tcpIdleBy, ip)
	}
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		s := c.s
		s.mu.Lock()
		if s.tcpConns[c.key] == c {
			delete(s.tcpConns, c.key)
			if c.idle {
				c.idle = false
				s.tcpUnidle(c.ip)
			}
		}
		s.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}
