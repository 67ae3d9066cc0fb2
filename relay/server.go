package relay

import (
	"container/list"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/supernet-p2p/supernet/internal/defaults"

	"github.com/pion/turn/v4"
	"github.com/rs/zerolog"
)

// Defaults of Config.
const (
	DefaultListen         = ":3478"
	DefaultMaxBytes       = 4 << 30
	DefaultMaxDuration    = time.Hour
	DefaultMaxAllocations = 1000
	DefaultMaxPerPeer     = 8
	DefaultCredTTL        = time.Hour
	DefaultClockSkew      = 5 * time.Minute
	DefaultMaxPermissions = 256
	DefaultMaxChannels    = 512
	DefaultMaxPendingTCP  = 256
	DefaultMaxTCPPerIP    = 16
)

const (
	// tcpIdle is how long a TURN-over-TCP connection may go without an
	// allocation before it is dropped, so idle sockets cannot pile up.
	tcpIdle = 30 * time.Second
	// rateWindow is how many one-second samples Load's rate spans.
	rateWindow = 5
	// identsPerSlot sizes the table of identities' quota windows: that many
	// per allocation slot, so identities that come and go keep their windows
	// while a flood of fresh ones cannot grow it without bound.
	identsPerSlot = 16
	// admitTTL is how long an admitted Allocate may take to become an
	// allocation before its reservation is dropped. pion creates it at once
	// in the goroutine that admitted it, so this only bounds failures.
	admitTTL = 5 * time.Second
	// permissionLife is how long pion keeps a permission nobody refreshes (its
	// permissionTimeout), plus a margin so the count here never falls short of
	// pion's.
	permissionLife = 5*time.Minute + 5*time.Second
)

// ErrServerClosed is returned for allocations asked of a closed relay.
var ErrServerClosed = errors.New("relay: server closed")

// Config configures a Server.
type Config struct {
	// Secret is shared with the supernodes that mint credentials. Required.
	Secret []byte
	// Realm defaults to DefaultRealm.
	Realm string
	// ListenUDP is the TURN UDP address; "" (with PacketConn nil) means
	// DefaultListen.
	ListenUDP string
	// ListenTCP is the TURN-over-TCP address. "" means the host and port the
	// UDP socket got; "-" disables TCP.
	ListenTCP string
	// PacketConn, when set, is the UDP socket to serve on instead of
	// ListenUDP. The Server closes it.
	PacketConn net.PacketConn
	// Listener, when set, is the TCP listener to serve on instead of
	// ListenTCP. The Server closes it.
	Listener net.Listener
	// RelayIP is the IPv4 address written in relayed addresses. Required when
	// the UDP socket listens on all interfaces; otherwise it defaults to the
	// socket's IP.
	RelayIP net.IP
	// RelayBind is the IP relay sockets bind to. By default the UDP socket's
	// IP when it has one, else RelayIP when it is on a local interface, else
	// 0.0.0.0 (a host behind 1:1 NAT).
	RelayBind string
	// RelayIP6 is the IPv6 address of relayed addresses, for clients that
	// ask for one (REQUESTED-ADDRESS-FAMILY, RFC 6156) over UDP: a peer
	// that reaches the relay over IPv4 relays for a peer on IPv6 alone.
	// Without it the relay offers IPv4 only. Relay sockets bind to it when
	// it is on a local interface, else to [::].
	RelayIP6 net.IP
	// MinPort and MaxPort bound the relay ports (both or neither); zero means
	// any port the kernel gives.
	MinPort, MaxPort uint16
	// MaxBytes is what one identity (peer ID) may relay in one session, both
	// directions and all its allocations and credentials counted together.
	// Default DefaultMaxBytes.
	MaxBytes int64
	// MaxDuration is the length of an identity's session: it opens with the
	// identity's first allocation, and every allocation of the identity ends
	// when it does, so no allocation lives longer than this and opening more
	// cannot stretch it. The next allocation opens a new session. Default
	// DefaultMaxDuration.
	MaxDuration time.Duration
	// MaxAllocations refuses new allocations beyond this many. Default
	// DefaultMaxAllocations.
	MaxAllocations int
	// MaxPerPeer is how many allocations one peer ID may hold at once.
	// Default DefaultMaxPerPeer.
	MaxPerPeer int
	// CredTTL is the longest credential lifetime the supernodes mint (their
	// RelayCredTTL): credentials expiring later than CredTTL+ClockSkew from now
	// are refused, so a forged far-future expiry cannot make one live for
	// ever. Default DefaultCredTTL.
	CredTTL time.Duration
	// ClockSkew is how far the minting supernode's clock may run ahead of the
	// relay's. Default DefaultClockSkew.
	ClockSkew time.Duration
	// MaxPermissions is how many peer IPs one allocation may hold
	// permissions for at once; more are refused. Default
	// DefaultMaxPermissions.
	MaxPermissions int
	// MaxChannels is how many channels one allocation may bind at once; an
	// allocation that binds more is stopped. Default DefaultMaxChannels.
	MaxChannels int
	// MaxPendingTCP is how many TURN-over-TCP connections without an
	// allocation are kept at once, and MaxTCPPerIP how many of them one
	// source IP may hold; more are closed at accept. Defaults
	// DefaultMaxPendingTCP and DefaultMaxTCPPerIP.
	MaxPendingTCP, MaxTCPPerIP int
	// AllowPeers are ranges clients may relay to although they are private or
	// reserved (see reservedPeers): a relay serving a LAN, or a test lab.
	AllowPeers []netip.Prefix
	// AllowLoopbackPeers adds 127.0.0.0/8 and ::1 to AllowPeers (tests).
	AllowLoopbackPeers bool
	Log                zerolog.Logger
}

// Load is a relay's state for supernodes to choose among relays.
type Load struct {
	Allocations  int     // live allocations
	Capacity     int     // MaxAllocations
	BytesRelayed uint64  // payload bytes forwarded, both directions, since start
	Rate         float64 // bytes/s over the last few seconds
	QuotaStops   uint64  // allocations stopped at a limit: bytes, session time, channels
	AuthFailures uint64  // requests refused for their credentials
	// Refused allocations (over a cap), permissions (a forbidden
	// destination or too many) and TCP connections (too many idle).
	AllocationsRefused, PermissionsRefused, TCPRefused uint64
}

// Server is a running TURN relay.
type Server struct {
	cfg   Config
	log   zerolog.Logger
	turn  *turn.Server
	udp   net.PacketConn
	tcp   net.Listener // nil when TCP is off
	realm string
	peers peerPolicy

	bytes        atomic.Uint64
	quotaStops   atomic.Uint64
	authFailures atomic.Uint64
	allocRefused atomic.Uint64
	permRefused  atomic.Uint64
	tcpRefused   atomic.Uint64

	mu        sync.Mutex
	closing   bool
	allocs    int                     // live allocations
	idents    map[string]*ident       // sessions by peer ID
	identAge  *list.List              // of *ident, oldest session first
	maxIdents int                     // cap of idents
	admitted  map[string]*admission   // admitted Allocates not yet created, by client
	byClient  map[string]*relayConn   // live allocations by client
	relays    map[string]*relayConn   // relay sockets by relayed address
	tcpConns  map[string]*trackedConn // TURN-over-TCP connections by remote address
	tcpIdle   int                     // of them without an allocation
	tcpIdleBy map[netip.Addr]int      // the same by source IP
	samples   []sample                // BytesRelayed once a second, oldest first

	closed    chan struct{}
	drained   chan struct{} // closed once closing and no relay socket is left
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

type sample struct {
	t time.Time
	n uint64
}

// New starts a relay serving on cfg's sockets.
func New(cfg Config) (*Server, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("relay: no secret")
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	defaults.Set(&cfg.MaxBytes, DefaultMaxBytes)
	defaults.Set(&cfg.MaxDuration, DefaultMaxDuration)
	defaults.Set(&cfg.MaxAllocations, DefaultMaxAllocations)
	defaults.Set(&cfg.MaxPerPeer, DefaultMaxPerPeer)
	defaults.Set(&cfg.CredTTL, DefaultCredTTL)
	defaults.Set(&cfg.ClockSkew, DefaultClockSkew)
	defaults.Set(&cfg.MaxPermissions, DefaultMaxPermissions)
	defaults.Set(&cfg.MaxChannels, DefaultMaxChannels)
	defaults.Set(&cfg.MaxPendingTCP, DefaultMaxPendingTCP)
	defaults.Set(&cfg.MaxTCPPerIP, DefaultMaxTCPPerIP)
	if (cfg.MinPort == 0) != (cfg.MaxPort == 0) || cfg.MinPort > cfg.MaxPort {
		return nil, fmt.Errorf("relay: port range %d-%d: give both ends, low first", cfg.MinPort, cfg.MaxPort)
	}
	allow := slices.Clone(cfg.AllowPeers)
	if cfg.AllowLoopbackPeers {
		allow = append(allow, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
	}
	for i, p := range allow {
		if !p.IsValid() {
			return nil, fmt.Errorf("relay: allowed peer range %d is not a valid prefix", i)
		}
		allow[i] = p.Masked()
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Log,
		realm:     cfg.Realm,
		peers:     peerPolicy{allow: allow},
		idents:    make(map[string]*ident),
		identAge:  list.New(),
		maxIdents: identsPerSlot * cfg.MaxAllocations,
		admitted:  make(map[string]*admission),
		byClient:  make(map[string]*relayConn),
		relays:    make(map[string]*relayConn),
		tcpConns:  make(map[string]*trackedConn),
		tcpIdleBy: make(map[netip.Addr]int),
		samples:   []sample{{t: time.Now()}},
		closed:    make(chan struct{}),
		drained:   make(chan struct{}),
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	gen, err := s.generator()
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	// Over UDP a client may ask for IPv6; pion reads the family to the
	// generator of the socket the request came on.
	udp := &familyConn{PacketConn: growBuffers(s.udp)}
	udpGen := &relayGen{inner: gen.inner, inner6: gen.inner6, want6: udp.want6.Load, s: s}
	restAuth := turn.LongTermTURNRESTAuthHandler(string(cfg.Secret), pionLogs{s.log}.NewLogger("auth"))
	sc := turn.ServerConfig{
		Realm:         cfg.Realm,
		LoggerFactory: pionLogs{s.log},
		AuthHandler: func(username, realm string, src net.Addr) ([]byte, bool) {
			if !s.checkUsername(username, realm, src) {
				return nil, false
			}
			return restAuth(username, realm, src)
		},
		QuotaHandler: s.admit,
		EventHandler: turn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
			OnChannelCreated:    s.onChannelCreated,
			OnChannelDeleted:    s.onChannelDeleted,
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: udp, RelayAddressGenerator: udpGen, PermissionHandler: s.permit,
		}},
	}
	if s.tcp != nil {
		sc.ListenerConfigs = []turn.ListenerConfig{{
			Listener: s.tcp, RelayAddressGenerator: gen, PermissionHandler: s.permit,
		}}
	}
	s.turn, err = turn.NewServer(sc)
	if err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("relay: %w", err)
	}
	s.wg.Add(1)
	go s.sampleLoop()
	return s, nil
}

// listen opens (or adopts) the UDP socket and the TCP listener.
func (s *Server) listen() error {
	cfg := s.cfg
	s.udp = cfg.PacketConn
	if s.udp == nil {
		addr := cfg.ListenUDP
		if addr == "" {
			addr = DefaultListen
		}
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("relay: listen udp: %w", err)
		}
		s.udp = pc
	}
	ua, ok := s.udp.LocalAddr().(*net.UDPAddr)
	if !ok {
		s.udp.Close()
		return fmt.Errorf("relay: PacketConn is on %s, not UDP", s.udp.LocalAddr().Network())
	}
	if cfg.Listener != nil {
		s.tcp = &tcpListener{Listener: cfg.Listener, s: s}
		return nil
	}
	if cfg.ListenTCP == "-" {
		return nil
	}
	addr := cfg.ListenTCP
	if addr == "" {
		addr = ua.String()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.udp.Close()
		return fmt.Errorf("relay: listen tcp: %w", err)
	}
	s.tcp = &tcpListener{Listener: ln, s: s}
	return nil
}

// generator picks the relayed IP and bind address and wraps pion's generator
// so every relay socket counts its bytes.
func (s *Server) generator() (*relayGen, error) {
	listenIP := s.UDPAddr().IP
	ip := s.cfg.RelayIP
	if ip == nil {
		if listenIP == nil || listenIP.IsUnspecified() {
			return nil, errors.New("relay: RelayIP is required when listening on all interfaces")
		}
		ip = listenIP
	}
	ip4 := ip.To4()
	if ip4 == nil || ip4.IsUnspecified() {
		return nil, fmt.Errorf("relay: RelayIP %s: want a specific IPv4 address (relay sockets are udp4)", ip)
	}
	bind := s.cfg.RelayBind
	switch {
	case bind != "":
	case listenIP != nil && !listenIP.IsUnspecified() && listenIP.To4() != nil:
		bind = listenIP.String()
	case isLocalIP(ip4):
		bind = ip4.String()
	default:
		bind = "0.0.0.0"
	}
	g := &relayGen{inner: s.addrGenerator(ip4, bind), s: s}
	if ip6 := s.cfg.RelayIP6; ip6 != nil {
		if ip6.To4() != nil || ip6.IsUnspecified() {
			return nil, fmt.Errorf("relay: RelayIP6 %s: want a specific IPv6 address", ip6)
		}
		bind6 := "::"
		if isLocalIP(ip6) {
			bind6 = ip6.String()
		}
		g.inner6 = s.addrGenerator(ip6, "["+bind6+"]") // pion appends ":port"
	}
	return g, nil
}

// addrGenerator is pion's generator of relay sockets bound to bind that
// write ip in relayed addresses, in the configured port range if any.
func (s *Server) addrGenerator(ip net.IP, bind string) turn.RelayAddressGenerator {
	if s.cfg.MinPort != 0 {
		return &turn.RelayAddressGeneratorPortRange{
			RelayAddress: ip, Address: bind, MinPort: s.cfg.MinPort, MaxPort: s.cfg.MaxPort,
		}
	}
	return &turn.RelayAddressGeneratorStatic{RelayAddress: ip, Address: bind}
}

func isLocalIP(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// RelayIP6 is the IPv6 address of the relayed addresses the relay offers,
// or nil.
func (s *Server) RelayIP6() net.IP { return s.cfg.RelayIP6 }

// UDPAddr is the TURN UDP address.
func (s *Server) UDPAddr() *net.UDPAddr {
	a, _ := s.udp.LocalAddr().(*net.UDPAddr)
	return a
}

// TCPAddr is the TURN-over-TCP address, nil when TCP is off.
func (s *Server) TCPAddr() *net.TCPAddr {
	if s.tcp == nil {
		return nil
	}
	a, _ := s.tcp.Addr().(*net.TCPAddr)
	return a
}

// Load reports the relay's allocations and traffic.
func (s *Server) Load() Load {
	now := time.Now()
	n := s.bytes.Load()
	s.mu.Lock()
	oldest := s.samples[0]
	allocs := s.allocs
	s.mu.Unlock()
	var rate float64
	if dt := now.Sub(oldest.t).Seconds(); dt > 0 && n >= oldest.n {
		rate = float64(n-oldest.n) / dt
	}
	return Load{
		Allocations:  allocs,
		Capacity:     s.cfg.MaxAllocations,
		BytesRelayed: n,
		Rate:         rate,
		QuotaStops:   s.quotaStops.Load(),
		AuthFailures: s.authFailures.Load(),

		AllocationsRefused: s.allocRefused.Load(),
		PermissionsRefused: s.permRefused.Load(),
		TCPRefused:         s.tcpRefused.Load(),
	}
}

func (s *Server) sampleLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case now := <-t.C:
			n := s.bytes.Load()
			s.mu.Lock()
			s.samples = append(s.samples, sample{t: now, n: n})
			if len(s.samples) > rateWindow {
				s.samples = append(s.samples[:0], s.samples[len(s.samples)-rateWindow:]...)
			}
			s.sweep(now)
			s.mu.Unlock()
		}
	}
}

// Close stops the relay: its sockets, every allocation, and its goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		if len(s.relays) == 0 {
			close(s.drained)
		}
		s.mu.Unlock()
		close(s.closed)
		s.closeErr = s.turn.Close()
		// pion closes the allocations of a socket from the goroutine that
		// served it; closing them from here first would race with requests it
		// is still handling. Wait for that, then close what is left.
		select {
		case <-s.drained:
		case <-time.After(2 * time.Second):
		}
		s.mu.Lock()
		relays := make([]*relayConn, 0, len(s.relays))
		for _, c := range s.relays {
			relays = append(relays, c)
		}
		conns := make([]*trackedConn, 0, len(s.tcpConns))
		for _, c := range s.tcpConns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range relays {
			c.Close()
		}
		for _, c := range conns {
			c.Close()
		}
		s.wg.Wait()
	})
	return s.closeErr
}

// closeSockets undoes listen when New fails later.
func (s *Server) closeSockets() {
	s.udp.Close()
	if s.tcp != nil {
		s.tcp.Close()
	}
}

// checkUsername refuses malformed, expired and far-future usernames before
// pion derives a key; a bad HMAC is caught by pion and reported to onAuth.
func (s *Server) checkUsername(username, realm string, src net.Addr) bool {
	exp, peer, ok := parseUsername(username)
	now := time.Now()
	reason := ""
	switch {
	case !ok:
		reason = "malformed username"
	case realm != s.realm:
		reason = "wrong realm"
	case exp.Before(now.Truncate(time.Second)):
		reason = "expired"
	case exp.After(now.Add(s.cfg.CredTTL + s.cfg.ClockSkew)):
		// Supernodes mint for at most CredTTL: a later expiry is forged with
		// the secret or minted by a misconfigured supernode.
		reason = "expiry too far ahead"
	}
	if reason == "" {
		return true
	}
	s.authFailures.Add(1)
	s.log.Debug().Str("peer_id", peer).Str("remote_addr", src.String()).Str("reason", reason).
		Msg("relay credentials refused")
	return false
}

func (s *Server) onAuth(src, _ net.Addr, _, username, _, method string, verdict bool) {
	if verdict {
		return
	}
	s.authFailures.Add(1)
	s.log.Debug().Str("peer_id", peerOf(username)).Str("remote_addr", src.String()).Str("method", method).
		Str("reason", "bad password").Msg("relay credentials refused")
}

// permit is pion's PermissionHandler, asked for every CreatePermission
// address and ChannelBind: the destination policy, then the allocation's
// permission cap.
func (s *Server) permit(client net.Addr, ip net.IP) bool {
	addr, _ := netip.AddrFromSlice(ip)
	err := s.peers.check(addr)
	if err == nil {
		s.mu.Lock()
		c := s.byClient[clientKey(client)]
		s.mu.Unlock()
		switch {
		case c == nil:
			err = errors.New("no allocation")
		case !c.grant(addr.Unmap(), time.Now()):
			err = fmt.Errorf("allocation holds %d permissions already", s.cfg.MaxPermissions)
		}
	}
	if err != nil {
		s.permRefused.Add(1)
		s.log.Debug().Str("remote_addr", client.String()).Str("peer_addr", ip.String()).Str("reason", err.Error()).
			Msg("relay permission refused")
		return false
	}
	return true
}

// dropTCP closes the TURN-over-TCP connection from addr, if there is one, so
// its client learns at once that its allocation is gone.
func (s *Server) dropTCP(addr net.Addr) {
	if _, ok := addr.(*net.TCPAddr); !ok {
		return
	}
	s.mu.Lock()
	tc := s.tcpConns[addr.String()]
	s.mu.Unlock()
	if tc != nil {
		tc.Close()
	}
}
