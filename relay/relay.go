// Package relay is the overlay's TURN relay (RFC 8656, built on pion/turn) and
// the client peers use to get an allocation on one.
//
// A relay accepts only short-lived credentials in the TURN REST form, which the
// supernodes mint with a secret they share with the relays: the username is
// "<expiry>:<peer ID>", the password base64(HMAC-SHA1(secret, username)). A
// stock TURN server set up with the same secret (coturn's use-auth-secret) takes
// the same credentials. Every allocation has a byte and a time quota. Peers run
// QUIC end to end through the relayed address, so a relay forwards packets it
// cannot read.
package relay

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v4"
	"github.com/rs/zerolog"
)

// Errors callers can match.
var (
	ErrUnauthorized = errors.New("relay refused the credentials")
	ErrQuota        = errors.New("relay allocation quota reached")
)

// Credentials are what a supernode hands a peer for one relay.
type Credentials struct {
	Username string
	Password string
	Expires  time.Time
}

// Mint makes credentials for peer that expire after ttl.
func Mint(secret []byte, peer string, ttl time.Duration) Credentials {
	u, p, _ := turn.GenerateLongTermTURNRESTCredentials(string(secret), peer, ttl)
	exp := time.Now().Add(ttl).Truncate(time.Second)
	return Credentials{Username: u, Password: p, Expires: exp}
}

// Config configures a Server.
type Config struct {
	// Secret is shared with the supernodes. Required.
	Secret []byte
	// Realm defaults to "supernet".
	Realm string
	// ListenUDP is the TURN address over UDP (default ":3478").
	ListenUDP string
	// ListenTCP is the TURN address over TCP (default: ListenUDP's; "-" for none).
	ListenTCP string
	// PacketConn and Listener, when set, are used instead of opening the addresses.
	PacketConn net.PacketConn
	Listener   net.Listener
	// RelayIP is the IP of relayed addresses. Required when listening on all
	// interfaces; otherwise the listening IP.
	RelayIP net.IP
	// MaxBytes is the most one allocation may relay, both ways (default 4 GiB).
	MaxBytes int64
	// MaxDuration is the longest one allocation may live, refreshes or not (default 1 h).
	MaxDuration time.Duration
	// MaxAllocations caps allocations at once (default 1000); PerPeer caps one
	// peer's (default 8).
	MaxAllocations int
	PerPeer        int
	Log            zerolog.Logger
}

// Load is what a relay reports of itself.
type Load struct {
	Allocations  int
	Capacity     int
	BytesRelayed uint64
	Rate         float64 // bytes per second since the previous Load call (or start)
	QuotaStops   uint64
	AuthFailures uint64
}

// Server is a running relay.
type Server struct {
	cfg  Config
	log  zerolog.Logger
	turn *turn.Server
	pc   net.PacketConn
	ln   net.Listener

	mu       sync.Mutex
	allocs   map[string]*quotaConn // by relayed address
	perPeer  map[string]int
	rateAt   time.Time
	rateFrom uint64

	bytes      atomic.Uint64
	quotaStops atomic.Uint64
	authFails  atomic.Uint64
	closeOnce  sync.Once
}

// New starts a relay.
func New(cfg Config) (*Server, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("relay: a secret is required")
	}
	if cfg.Realm == "" {
		cfg.Realm = "supernet"
	}
	if cfg.ListenUDP == "" {
		cfg.ListenUDP = ":3478"
	}
	if cfg.ListenTCP == "" {
		cfg.ListenTCP = cfg.ListenUDP
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 4 << 30
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = time.Hour
	}
	if cfg.MaxAllocations <= 0 {
		cfg.MaxAllocations = 1000
	}
	if cfg.PerPeer <= 0 {
		cfg.PerPeer = 8
	}
	s := &Server{cfg: cfg, log: cfg.Log, allocs: make(map[string]*quotaConn), perPeer: make(map[string]int), rateAt: time.Now()}
	pc := cfg.PacketConn
	if pc == nil {
		c, err := net.ListenPacket("udp4", cfg.ListenUDP)
		if err != nil {
			return nil, fmt.Errorf("relay: listen udp %s: %w", cfg.ListenUDP, err)
		}
		pc = c
	}
	s.pc = pc
	local := pc.LocalAddr().(*net.UDPAddr)
	relayIP := cfg.RelayIP
	if relayIP == nil {
		if local.IP == nil || local.IP.IsUnspecified() {
			pc.Close()
			return nil, errors.New("relay: RelayIP is required when listening on all interfaces")
		}
		relayIP = local.IP
	}
	ln := cfg.Listener
	if ln == nil && cfg.ListenTCP != "-" {
		addr := cfg.ListenTCP
		if cfg.PacketConn != nil && cfg.ListenTCP == cfg.ListenUDP {
			addr = local.String()
		}
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("relay: listen tcp %s: %w", addr, err)
		}
		ln = l
	}
	s.ln = ln
	bind := relayIP.String()
	if local.IP == nil || local.IP.IsUnspecified() {
		bind = "0.0.0.0"
	}
	gen := &quotaGenerator{s: s, inner: &turn.RelayAddressGeneratorStatic{RelayAddress: relayIP, Address: bind}}
	rest := turn.LongTermTURNRESTAuthHandler(string(cfg.Secret), quietLogs.NewLogger("turn"))
	sc := turn.ServerConfig{
		Realm:         cfg.Realm,
		LoggerFactory: quietLogs,
		AuthHandler: func(username, realm string, src net.Addr) ([]byte, bool) {
			return rest(username, realm, src)
		},
		QuotaHandler: func(username, _ string, _ net.Addr) bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.allocs) < cfg.MaxAllocations && s.perPeer[peerOf(username)] < cfg.PerPeer
		},
		EventHandler: turn.EventHandler{
			OnAuth: func(src, _ net.Addr, _, username, _ string, method string, ok bool) {
				if !ok {
					s.authFails.Add(1)
					s.log.Debug().Str("remote_addr", src.String()).Str("username", username).Str("method", method).
						Msg("relay credentials refused")
				}
			},
			OnAllocationCreated: func(_, _ net.Addr, _, username, _ string, relayAddr net.Addr, _ int) {
				s.mu.Lock()
				if q := s.allocs[relayAddr.String()]; q != nil {
					q.peer = peerOf(username)
					s.perPeer[q.peer]++
				}
				s.mu.Unlock()
				s.log.Info().Str("peer_id", short(peerOf(username))).Str("relayed_addr", relayAddr.String()).Msg("relay allocation")
			},
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: gen}},
	}
	if ln != nil {
		sc.ListenerConfigs = []turn.ListenerConfig{{Listener: ln, RelayAddressGenerator: gen}}
	}
	ts, err := turn.NewServer(sc)
	if err != nil {
		pc.Close()
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("relay: %w", err)
	}
	s.turn = ts
	return s, nil
}

var quietLogs = func() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}()

func peerOf(username string) string {
	if i := strings.IndexByte(username, ':'); i >= 0 {
		return username[i+1:]
	}
	return username
}

func short(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// UDPAddr is the TURN address over UDP.
func (s *Server) UDPAddr() *net.UDPAddr { return s.pc.LocalAddr().(*net.UDPAddr) }

// TCPAddr is the TURN address over TCP, or nil.
func (s *Server) TCPAddr() *net.TCPAddr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr().(*net.TCPAddr)
}

// Load reports the relay's use.
func (s *Server) Load() Load {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	b := s.bytes.Load()
	rate := 0.0
	if dt := now.Sub(s.rateAt).Seconds(); dt > 0 {
		rate = float64(b-s.rateFrom) / dt
	}
	s.rateAt, s.rateFrom = now, b
	return Load{Allocations: len(s.allocs), Capacity: s.cfg.MaxAllocations, BytesRelayed: b, Rate: rate,
		QuotaStops: s.quotaStops.Load(), AuthFailures: s.authFails.Load()}
}

// Close stops the relay and every allocation. Safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.turn.Close() })
	return nil
}

// quotaGenerator hands pion relay sockets that count what they carry.
type quotaGenerator struct {
	s     *Server
	inner *turn.RelayAddressGeneratorStatic
}

func (g *quotaGenerator) Validate() error { return g.inner.Validate() }

func (g *quotaGenerator) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.inner.AllocatePacketConn(network, port)
	if err != nil {
		return nil, nil, err
	}
	q := &quotaConn{PacketConn: pc, s: g.s, addr: addr.String()}
	q.timer = time.AfterFunc(g.s.cfg.MaxDuration, func() { q.stop("time") })
	g.s.mu.Lock()
	g.s.allocs[q.addr] = q
	g.s.mu.Unlock()
	return q, addr, nil
}

func (g *quotaGenerator) AllocateConn(network string, port int) (net.Conn, net.Addr, error) {
	return g.inner.AllocateConn(network, port)
}

// quotaConn is one allocation's relay socket. Past its quota it closes, which
// ends pion's relaying for the allocation.
type quotaConn struct {
	net.PacketConn
	s     *Server
	addr  string
	peer  string
	used  atomic.Int64
	timer *time.Timer
	once  sync.Once
}

func (q *quotaConn) count(n int) bool {
	if n <= 0 {
		return true
	}
	q.s.bytes.Add(uint64(n))
	if q.used.Add(int64(n)) > q.s.cfg.MaxBytes {
		q.stop("bytes")
		return false
	}
	return true
}

func (q *quotaConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := q.PacketConn.ReadFrom(b)
		if err != nil || q.count(n) {
			return n, a, err
		}
	}
}

func (q *quotaConn) WriteTo(b []byte, a net.Addr) (int, error) {
	if !q.count(len(b)) {
		return 0, ErrQuota
	}
	return q.PacketConn.WriteTo(b, a)
}

func (q *quotaConn) stop(reason string) {
	q.once.Do(func() {
		q.s.quotaStops.Add(1)
		q.s.mu.Lock()
		peer := q.peer
		q.s.mu.Unlock()
		q.s.log.Info().Str("peer_id", short(peer)).Str("relayed_addr", q.addr).Int64("bytes", q.used.Load()).
			Str("quota", reason).Msg("relay allocation stopped at its quota")
		q.PacketConn.Close()
	})
}

func (q *quotaConn) Close() error {
	q.timer.Stop()
	q.s.mu.Lock()
	if q.s.allocs[q.addr] == q {
		delete(q.s.allocs, q.addr)
		if q.peer != "" {
			if q.s.perPeer[q.peer]--; q.s.perPeer[q.peer] <= 0 {
				delete(q.s.perPeer, q.peer)
			}
		}
	}
	q.s.mu.Unlock()
	return q.PacketConn.Close()
}
