package relay

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v4"
)

var (
	errFull       = errors.New("relay full")
	errStopped    = errors.New("allocation stopped at its quota")
	errNoTCPRelay = errors.New("TCP relaying (RFC 6062) is not offered")
)

// relayGen hands pion relay sockets that enforce the allocation quotas.
type relayGen struct {
	inner turn.RelayAddressGenerator
	s     *Server
}

func (g *relayGen) Validate() error { return g.inner.Validate() }

func (g *relayGen) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	s := g.s
	pc, addr, err := g.inner.AllocatePacketConn(network, port)
	if err != nil {
		return nil, nil, err
	}
	c := &relayConn{PacketConn: pc, s: s, key: addr.String(), created: time.Now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	// The QuotaHandler has checked the count already; this check holds even
	// when allocations over several TCP connections race past that one.
	switch {
	case s.closing:
		pc.Close()
		return nil, nil, ErrServerClosed
	case len(s.relays) >= s.cfg.MaxAllocations:
		pc.Close()
		return nil, nil, errFull
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
// forwards each way and, past MaxBytes or MaxDuration, closes the socket: pion
// then sees its read fail and deletes the allocation.
type relayConn struct {
	net.PacketConn
	s       *Server
	key     string // relayed address
	created time.Time
	used    atomic.Int64
	dead    atomic.Bool // no packet may pass

	mu     sync.Mutex
	closed bool
	timer  *time.Timer
	peer   string
	client net.Addr // the TURN client's address, for logs and dropTCP
}

// own records whose allocation this is, once pion reports it.
func (c *relayConn) own(peer string, client net.Addr) {
	c.mu.Lock()
	c.peer, c.client = peer, client
	c.mu.Unlock()
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

// spend counts n bytes and reports whether they may pass. The packet that
// would cross the quota is dropped, so MaxBytes is never exceeded.
func (c *relayConn) spend(n int) bool {
	if c.dead.Load() {
		return false
	}
	if c.used.Add(int64(n)) > c.s.cfg.MaxBytes {
		c.used.Add(-int64(n))
		c.stop("max_bytes")
		return false
	}
	c.s.bytes.Add(uint64(n))
	return true
}

// stop ends an allocation at its quota.
func (c *relayConn) stop(reason string) {
	if !c.shut(reason) {
		return
	}
	c.s.quotaStops.Add(1)
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
	s.forget(c)
	return true
}

// tcpListener tracks TURN-over-TCP connections so an allocation stopped at its
// quota can drop its connection, and so connections without an allocation time
// out. pion stops accepting for good on any Accept error, so transient ones
// are retried here.
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
		s.mu.Lock()
		full := s.closing || len(s.tcpConns) >= 2*s.cfg.MaxAllocations
		if !full {
			s.tcpConns[tc.key] = tc
		}
		s.mu.Unlock()
		if full {
			c.Close()
			s.log.Debug().Str("remote_addr", tc.key).Msg("relay tcp connection refused: too many")
			continue
		}
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		return tc, nil
	}
}

type trackedConn struct {
	net.Conn
	s    *Server
	key  string
	once sync.Once
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		c.s.mu.Lock()
		if c.s.tcpConns[c.key] == c {
			delete(c.s.tcpConns, c.key)
		}
		c.s.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}
