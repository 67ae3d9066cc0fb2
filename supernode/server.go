// Package supernode is a group leader of the overlay: it accepts leaves (peers),
// indexes what they share, links to other supernodes, and routes keyword queries
// between them using attenuated Bloom-filter summaries.
//
// Router holds the logic and speaks only in messages and LinkIDs; Server runs a
// Router over QUIC (package transport). The same Router can run over an
// in-memory network for simulations.
package supernode

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/internal/defaults"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/transport"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("supernode: server closed")

// Config configures a Server.
type Config struct {
	// Listen is the UDP address (default ":6346", all interfaces).
	Listen string
	// Conn, when set, is used instead of opening Listen (tests inject sockets).
	Conn net.PacketConn
	// Join lists supernodes to link to, as host:port or peerid@host:port.
	Join []string
	// DataDir holds the identity key and the username records this
	// supernode holds (DirectoryFile). Without it, as with an Identity and
	// no DataDir, the records are kept in memory only.
	DataDir string
	// Identity overrides the key in DataDir.
	Identity *protocol.Identity
	// Network is the overlay's network ID, and Chain the certificate chain
	// that admits this supernode to it (see Admission in protocol/doc.go).
	// A supernode that holds the network key itself (NetworkKey) issues its
	// own chain. A promoted supernode starts without one and waits for the
	// certificate its promoter sends.
	Network    protocol.NetworkID
	Chain      protocol.Chain
	NetworkKey ed25519.PrivateKey
	// PromotedCertTTL is how long the certificates this supernode issues to
	// the supernodes it promotes last (default 30 min); it renews them at a
	// third of that while they serve.
	PromotedCertTTL time.Duration
	// Incarnation tells the others of a restart: it must rise each time the
	// supernode starts (default: the start time in milliseconds). With a
	// DataDir it is kept there and raised above the last start's, so it
	// rises even if the clock stepped back.
	Incarnation uint64
	// IdleTimeout drops a supernode link that has been silent this long, and a
	// leaf link four times as long (default 15 s; see transport.LeafIdleFactor).
	IdleTimeout time.Duration
	// TickInterval is how often summaries and query timeouts are processed (default 250 ms).
	TickInterval time.Duration
	// MaxLeaves caps attached leaves (default 4000), MaxLeavesPerAddr those
	// from one IPv4 address or IPv6 /64 (default 32: one host cannot take
	// the slots with fresh keys, while the households behind one carrier-grade
	// NAT address still fit), and MaxNeighbours the supernode links (default
	// 32; beyond them a supernode's hello is answered "overloaded").
	MaxLeaves        int
	MaxLeavesPerAddr int
	MaxNeighbours    int
	// LimitLoopback applies the transport's per-address limits (handshakes,
	// connections, queued bytes, STUN) to loopback sources too. They are
	// exempt by default, so a local overlay and its tools can share one address.
	LimitLoopback bool
	// LeafLimit is how many leaves the supernode keeps before it promotes an
	// eligible one to supernode and hands it some of the others (default
	// 200; below zero, it never promotes). PromoteEvery spaces promotions
	// (default 1 min), so that the leaves moved show in the count first.
	LeafLimit    int
	PromoteEvery time.Duration
	// Promoted marks a supernode a leaf runs because Parent (peerid@host:port)
	// promoted it. With fewer than StepDownBelow leaves (default LeafLimit/10,
	// at least 1) for StepDownAfter (default 10 min), it redirects its leaves
	// to a supernode with room, Parent first, and stops.
	Promoted      bool
	Parent        string
	StepDownBelow int
	StepDownAfter time.Duration
	// AltListen is the second UDP socket, for STUN mapping tests (default: the
	// Listen port + 1 on the same host, or a free port on Conn's host when
	// Conn is given; "-" for none, which also turns off the
	// dial-back that confirms a leaf is public).
	AltListen string
	// AltConn, when set, is used instead of opening AltListen.
	AltConn net.PacketConn
	// Dual are this supernode's addresses in both IP families, on the main
	// socket, where a leaf attached over one proves its address in the
	// other (see Address proofs in protocol/doc.go). Default: the host's
	// global addresses when Listen is on all interfaces, else none.
	Dual []string
	// ListenTCP is where peers whose network drops UDP ask for relay
	// credentials over TLS (default: the Listen address; "-" for none).
	ListenTCP string
	// RelaySecret is shared with the relays; without it no relays are handed out.
	RelaySecret []byte
	// Relay is a relay running in this process, if any.
	Relay *relay.Server
	// RelayHost is the host advertised for Relay when it listens on all interfaces.
	RelayHost string
	// RelayCredTTL is how long minted relay credentials last (default 1 h).
	RelayCredTTL time.Duration
	// TURNServers are stock TURN servers ("host:port", TURN over UDP and TCP
	// on that port) that accept credentials minted with RelaySecret, as coturn
	// does with use-auth-secret. They report no load, so the supernode checks
	// each with a STUN Binding every TURNCheckInterval and hands out only
	// those that answer, ordered by round-trip time.
	TURNServers []string
	// TURNCheckInterval is how often TURNServers are checked (default 10 s).
	TURNCheckInterval time.Duration
	// Advertise are the addresses other supernodes reach this one at, for the
	// member list (default: the socket's address when it names a host; a
	// supernode on all interfaces that advertises nothing is listed but never
	// dialled by the supernodes that learn of it second-hand).
	Advertise []string
	// GossipInterval is how often changes to the member list go to the
	// neighbours, and at least a word to each (default 1 s); a neighbour
	// silent or unlinked for MemberTimeout is reported gone (default 4 s).
	// MemberRefresh is how often a supernode issues its entry unchanged
	// (default 30 min); an entry not issued again for twice that is dropped.
	GossipInterval, MemberTimeout, MemberRefresh time.Duration
	// Neighbours is how many supernode links this one keeps: with fewer, it
	// links to live supernodes from the member list, its ring fingers first
	// (default 8, enough fingers for lookups in about log2 N hops up to a few
	// hundred supernodes; below zero, only the Join links and those others open).
	Neighbours int
	// LeafDirRate and LeafDirBurst bound the username directory requests one
	// leaf may send (defaults 10/s, burst 20).
	LeafDirRate  float64
	LeafDirBurst int
	Router       RouterConfig
	Log          zerolog.Logger
	// Memory reports the runtime's memory in use and its soft limit (0:
	// none); past MemoryFull of the limit, new leaves are refused as
	// overloaded. Default: the Go runtime's own figures.
	Memory func() (used, limit uint64)
}

// Server is a supernode on a QUIC socket.
type Server struct {
	cfg    Config
	log    zerolog.Logger
	node   *transport.Node
	alt    *transport.Node // second socket: STUN mapping tests
	tcpLn  net.Listener
	router *Router
	relays relayTable

	members *Members
	memb    *membership
	adm     admission
	// admittedUntil is when each linked supernode's admission runs out, as
	// its hello or welcome, or a later member entry, showed.
	admittedUntil map[protocol.PeerID]time.Time
	store         *dirStore
	dir           *directory
	elect         *election
	// table is how each message type from a link is handled (dispatch.go).
	table    map[protocol.MsgType]route
	dialling atomic.Bool // a link to a member is being set up

	mu     sync.Mutex
	links  map[LinkID]*transport.Link
	byPeer map[protocol.PeerID]LinkID // supernode links
	leafOf map[protocol.PeerID]LinkID // leaf links
	// contacts are the direct links (direct.go), and opening the ones
	// being dialled, with the messages waiting for them.
	contacts map[protocol.PeerID]*directLink
	opening  map[protocol.PeerID][]protocol.Message
	// pastRTT is the last round trip measured on a direct link since
	// closed, by supernode: it ranks candidates we are not linked to.
	pastRTT map[protocol.PeerID]time.Duration
	// view is the keyword ring's view of the members (ringView).
	view *RingView
	// perAddr counts the leaves from each address block (see addrKey).
	perAddr map[netip.Prefix]int
	// pinging are the leaf links whose leaf pings us (every half second by
	// default): one gone quiet has died, and is dropped long before the
	// idle timeout.
	pinging map[LinkID]bool
	// natNext holds, for each leaf whose NAT report is being checked, the
	// newest report that came meanwhile (nil for none): one check per leaf
	// runs at a time, however many reports it sends.
	natNext map[LinkID]*protocol.NATReport
	nat     natStats
	nextID  atomic.Uint64

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	serving atomic.Bool
	startMu sync.Mutex // Serve starts its goroutines under it; Close cancels under it
	// steppedDown: a promoted supernode stopped, underused.
	steppedDown atomic.Bool
	// askPeriodAt is when the gossip round last started a period of the
	// router's AskedEvery.
	askPeriodAt time.Time
	memCheck    memCheck
	refused     refusals
	queryTook   prometheus.Histogram
	closeOnce   sync.Once
}

// New opens the socket and loads the identity; Serve starts the work.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	id := cfg.Identity
	if id == nil {
		if cfg.DataDir == "" {
			return nil, errors.New("supernode: DataDir or Identity is required")
		}
		var err error
		if id, err = protocol.LoadOrCreateIdentity(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	log := cfg.Log.With().Str("node", id.ID.Short()).Logger()
	node, alt, tcpLn, err := openSockets(cfg, id, log)
	if err != nil {
		return nil, err
	}
	if cfg.Dual == nil && node.Addr().IP.IsUnspecified() {
		cfg.Dual = transport.GlobalAddrs(node.Addr().Port)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: log, node: node, alt: alt, tcpLn: tcpLn,
		links: make(map[LinkID]*transport.Link), byPeer: make(map[protocol.PeerID]LinkID),
		leafOf:        make(map[protocol.PeerID]LinkID),
		contacts:      make(map[protocol.PeerID]*directLink),
		pastRTT:       make(map[protocol.PeerID]time.Duration),
		opening:       make(map[protocol.PeerID][]protocol.Message),
		admittedUntil: make(map[protocol.PeerID]time.Time),
		perAddr:       make(map[netip.Prefix]int),
		pinging:       make(map[LinkID]bool),
		natNext:       make(map[LinkID]*protocol.NATReport),
		ctx:           ctx, cancel: cancel,
		queryTook: newQueryHistogram(),
	}
	store, err := openDirStore(cfg.DataDir, cfg.Incarnation, log)
	if err == nil {
		s.cfg.Incarnation = store.incarnation
		if err = s.initAdmission(); err != nil {
			store.close()
		}
	}
	if err != nil {
		cancel()
		node.Close()
		if alt != nil {
			alt.Close()
		}
		if tcpLn != nil {
			tcpLn.Close()
		}
		return nil, err
	}
	cfg.Router.Log = log
	cfg.Router.ID = id.ID
	cfg.Router.RTT = s.linkRTT
	cfg.Router.RelayAddr = s.isRelayAddr
	cfg.Router.Incarnation = s.cfg.Incarnation
	cfg.Router.Sign = func(b []byte) []byte { return ed25519.Sign(id.Key, b) }
	cfg.Router.MemberKey = s.memberKey
	cfg.Router.PeerRTT = s.peerRTT
	cfg.Router.Ring = s.ringView
	cfg.Router.LeafQueryEnded = s.observeLeafQuery
	if len(cfg.RelaySecret) > 0 {
		cfg.Router.Relay = func(p protocol.PeerID, ipv6 bool) *protocol.RelayCreds { return s.mintRelay(p, false, ipv6) }
	}
	if cfg.IdleTimeout > 0 {
		// Pings are what keep an idle leaf's link open: a quarter of its
		// idle timeout (transport.LeafIdleFactor) leaves room for lost ones.
		cfg.Router.MaxPingEvery = min(cmp.Or(cfg.Router.MaxPingEvery, DefaultRouterConfig().MaxPingEvery), cfg.IdleTimeout)
	}
	s.router = NewRouter(cfg.Router, s)
	s.members = NewMembers(s.cfg.Network, memberExpiry(cfg.MemberRefresh, cfg.MemberTimeout), SuspectFor(cfg.MemberTimeout), maxMembersHeld)
	s.store = store
	s.memb = newMembership(membershipConfig{Identity: id, Chain: s.Chain, Advertise: s.advertised(), Leaves: s.router.Leaves,
		Cap: uint32(cfg.MaxLeaves), Incarnation: s.cfg.Incarnation, GossipInterval: cfg.GossipInterval, MemberTimeout: cfg.MemberTimeout,
		RefreshInterval: cfg.MemberRefresh, Gone: s.router.SupernodeGone, Silent: s.neighbourSilent, Links: max(cfg.Neighbours, 1),
		Rand: crand.Reader, Log: log}, s.members, peers{s: s}, peers{s: s})
	s.dir = newDirectory(directoryConfig{ID: id.ID, Joins: len(cfg.Join) > 0, LeafRate: cfg.LeafDirRate, LeafBurst: cfg.LeafDirBurst,
		Rand: crand.Reader, Log: log}, store, s.members, peers{s: s}, peers{s: s, strict: true})
	s.elect = newElection(electionConfig{Identity: id, Network: s.cfg.Network, Chain: s.Chain,
		LeafLimit: cfg.LeafLimit, PromoteEvery: cfg.PromoteEvery, Promoted: cfg.Promoted, Parent: cfg.Parent,
		StepDownBelow: cfg.StepDownBelow, StepDownAfter: cfg.StepDownAfter, GossipInterval: cfg.GossipInterval,
		MemberTimeout: cfg.MemberTimeout, PromotedCertTTL: cfg.PromotedCertTTL, Leaves: s.router.Leaves,
		Probe: s.probe, Stop: s.stop, Rand: crand.Reader, Log: log}, s.members, peers{s: s}, peers{s: s})
	s.table = s.routes()
	return s, nil
}

// openSockets opens the main UDP socket and then the extras. The TCP
// listener takes the UDP socket's port number; when the system picked that
// port (port 0), the same number may already be taken for TCP, so a few
// other ports are tried before giving up.
func openSockets(cfg Config, id *protocol.Identity, log zerolog.Logger) (*transport.Node, *transport.Node, net.Listener, error) {
	const tries = 8
	for try := 1; ; try++ {
		pc := cfg.Conn
		if pc == nil {
			c, err := transport.ListenUDP(cfg.Listen)
			if err != nil {
				return nil, nil, nil, err
			}
			pc = c
		}
		node, err := transport.New(transport.Config{
			Identity: id, Conn: pc, Log: log, Listen: true, AddrProofs: true,
			IdleTimeout: cfg.IdleTimeout, Agent: "supernet-supernode", LimitLoopback: cfg.LimitLoopback,
		})
		if err != nil {
			pc.Close()
			return nil, nil, nil, err
		}
		alt, tcpLn, err := openExtras(cfg, id, node.Addr(), log)
		if err == nil {
			return node, alt, tcpLn, nil
		}
		node.Close()
		picked := cfg.Conn == nil && portOf(cfg.Listen) == "0"
		if !picked || !errors.Is(err, syscall.EADDRINUSE) || try == tries {
			return nil, nil, nil, err
		}
	}
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return p
}

// openExtras opens the second UDP socket and the TCP listener.
func openExtras(cfg Config, id *protocol.Identity, main *net.UDPAddr, log zerolog.Logger) (*transport.Node, net.Listener, error) {
	var alt *transport.Node
	pc := cfg.AltConn
	if pc == nil && cfg.AltListen != "-" {
		addr := cfg.AltListen
		switch {
		case addr != "":
		case cfg.Conn != nil:
			// The caller chose the main socket; port+1 may belong to anyone
			// there, and leaves learn the second port from the welcome.
			addr = net.JoinHostPort(main.IP.String(), "0")
		case main.Port == 0:
			addr = net.JoinHostPort(hostOf(cfg.Listen), "0")
		default:
			addr = net.JoinHostPort(hostOf(cfg.Listen), fmt.Sprint(main.Port+1))
		}
		c, err := transport.ListenUDP(addr)
		if err != nil {
			return nil, nil, fmt.Errorf("second STUN socket: %w", err)
		}
		pc = c
	}
	if pc != nil {
		n, err := transport.New(transport.Config{Identity: id, Conn: pc, Log: log, Agent: "supernet-supernode"})
		if err != nil {
			pc.Close()
			return nil, nil, err
		}
		alt = n
	}
	var ln net.Listener
	if cfg.ListenTCP != "-" && len(cfg.RelaySecret) > 0 {
		addr := cfg.ListenTCP
		if addr == "" {
			addr = net.JoinHostPort(hostOf(cfg.Listen), fmt.Sprint(main.Port))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if alt != nil {
				alt.Close()
			}
			return nil, nil, fmt.Errorf("tcp listen: %w", err)
		}
		ln = l
	}
	return alt, ln, nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}

// AltAddr is the second UDP socket's address, or nil.
func (s *Server) AltAddr() *net.UDPAddr {
	if s.alt == nil {
		return nil
	}
	return s.alt.Addr()
}

// TCPAddr is where relay credentials are served over TCP, or nil.
func (s *Server) TCPAddr() net.Addr {
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

func (s *Server) linkRTT(id LinkID) time.Duration {
	s.mu.Lock()
	l := s.links[id]
	s.mu.Unlock()
	if l == nil {
		return 0
	}
	rtt, _ := l.RTT()
	return rtt
}

// Addr is the UDP address the supernode serves on.
func (s *Server) Addr() *net.UDPAddr { return s.node.Addr() }

// ID is the supernode's peer ID.
func (s *Server) ID() protocol.PeerID { return s.node.Identity().ID }

// Router exposes the routing state (counters, sizes).
func (s *Server) Router() *Router { return s.router }

// Send implements Outbox over the QUIC links.
func (s *Server) Send(to LinkID, m protocol.Message) {
	s.mu.Lock()
	l := s.links[to]
	s.mu.Unlock()
	if l == nil {
		return
	}
	if err := l.Send(m); err != nil {
		l.Log().Debug().Err(err).Str("msg", m.Type().String()).Msg("send failed; closing link")
		l.Close(err)
	}
}

// Serve accepts leaves and supernodes and links to the Join list until ctx ends or
// Close is called. It returns ErrServerClosed after Close.
func (s *Server) Serve(ctx context.Context) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("supernode: Serve called twice")
	}
	s.log.Info().Str("listen", s.Addr().String()).Str("peer_id", s.ID().String()).Msg("supernode serving")
	// Close may be waiting for the goroutines already: they start under
	// startMu, which Close takes before it waits.
	s.startMu.Lock()
	if s.ctx.Err() != nil {
		s.startMu.Unlock()
		return ErrServerClosed
	}
	for _, j := range s.cfg.Join {
		s.wg.Add(1)
		go s.joinLoop(j)
	}
	s.wg.Add(1)
	go s.tickLoop()
	s.wg.Add(1)
	go s.gossipLoop()
	if len(s.cfg.TURNServers) > 0 && len(s.cfg.RelaySecret) > 0 {
		s.wg.Add(1)
		go s.checkTURNServers()
	}
	if s.tcpLn != nil {
		s.wg.Add(1)
		go s.serveTCP(s.tcpLn)
	}
	// The accept loop below counts too: the link goroutines it starts join
	// s.wg while it does, never after Close's wait has begun at zero.
	s.wg.Add(1)
	defer s.wg.Done()
	s.startMu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.ctx.Done():
		}
	}()
	for {
		in, err := s.node.Accept(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			return err
		}
		s.accept(in)
	}
}

// Close stops the server and waits for its goroutines. Safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.startMu.Lock()
		s.cancel()
		s.startMu.Unlock()
		s.mu.Lock()
		for _, l := range s.links {
			l.Close(nil)
		}
		s.mu.Unlock()
		s.node.Close()
		if s.alt != nil {
			s.alt.Close()
		}
		if s.tcpLn != nil {
			s.tcpLn.Close()
		}
	})
	s.wg.Wait()
	// After every goroutine that hands it records: what they queued is written.
	return s.store.close()
}

func (s *Server) tickLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.router.Tick()
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Server) knownSupernodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	// byPeer holds the supernode links only: the leaves, thousands of them,
	// are not walked on every attach.
	for _, id := range s.byPeer {
		if l := s.links[id]; l != nil && len(out) < 16 {
			out = append(out, l.Peer.String()+"@"+l.RemoteAddr().String())
		}
	}
	return out
}

func (s *Server) accept(in *transport.Incoming) {
	switch in.Hello.Role {
	case protocol.RoleLeaf:
		if s.router.Leaves() >= s.cfg.MaxLeaves {
			s.refused.add(refLeavesFull)
			in.Reject(fmt.Errorf("%w: supernode has %d leaves", protocol.ErrOverloaded, s.cfg.MaxLeaves))
			return
		}
		if s.memoryFull() {
			s.refused.add(refMemory)
			in.Reject(fmt.Errorf("%w: supernode is short of memory", protocol.ErrOverloaded))
			return
		}
		block, ok := s.takeAddrSlot(in.RemoteAddr())
		if !ok {
			s.refused.add(refLeavesPerAddr)
			in.Reject(fmt.Errorf("%w: %d leaves from your address already", protocol.ErrOverloaded, s.cfg.MaxLeavesPerAddr))
			return
		}
		attached := false
		defer func() {
			if !attached {
				s.releaseAddrSlot(block)
			}
		}()
		w := s.welcome(protocol.RoleSupernode)
		w.Addrs = s.knownSupernodes()
		if s.alt != nil {
			w.STUNAlt = s.alt.Addr().String() // the leaf puts in the host it dialled if this one is unspecified
		}
		w.Dual = s.cfg.Dual
		l, err := in.Accept(w)
		if err != nil {
			return
		}
		addrs := leafAddrs(in.RemoteAddr().String(), in.Hello.Addrs)
		id := s.register(l)
		if id == 0 {
			return
		}
		attached = true
		// A leaf that reconnects before its old link timed out replaces it.
		s.mu.Lock()
		old := s.links[s.leafOf[in.Peer]]
		s.leafOf[in.Peer] = id
		s.mu.Unlock()
		if old != nil {
			old.Close(fmt.Errorf("%w: replaced by a new connection", protocol.ErrForbidden))
		}
		s.router.LeafUp(id, LeafInfo{Peer: in.Peer, Name: in.Hello.Name, Addrs: addrs})
		if protocol.Supports(l.Version, protocol.TypeMembers) {
			s.memb.Greet(in.Peer, protocol.Supports(l.Version, bareSince))
		}
		l.Log().Info().Str("name", in.Hello.Name).Msg("leaf attached")
		s.wg.Add(1)
		go s.readLoop(id, l, func() {
			gone := s.forget(s.leafOf, in.Peer, id)
			s.releaseAddrSlot(block)
			s.router.LeafDown(id)
			if gone {
				// Not when a new link of the same leaf replaced this one.
				s.dir.LeafDown(in.Peer)
				s.elect.LeafDown(in.Peer)
			}
			l.Log().Info().Err(l.Err()).Msg("leaf detached")
		})
	case protocol.RoleSupernode:
		if n := len(s.Linked()); n >= s.cfg.MaxNeighbours && !in.Hello.Direct {
			s.refused.add(refNeighboursFull)
			in.Reject(fmt.Errorf("%w: supernode has %d neighbours", protocol.ErrOverloaded, n))
			return
		}
		if err := s.checkHello(in); err != nil {
			s.log.Info().Err(err).Str("peer_id", in.Peer.Short()).Str("remote_addr", in.RemoteAddr().String()).Msg("supernode link refused")
			s.refused.add(refNotAdmitted)
			in.Reject(fmt.Errorf("%w: %w", protocol.ErrForbidden, err))
			return
		}
		l, err := in.Accept(s.welcome(protocol.RoleSupernode))
		if err != nil {
			return
		}
		if in.Hello.Direct {
			s.directUp(l)
			return
		}
		s.neighbourUp(l, false, in.Hello.Chain.Expires())
	case protocol.RoleProbe:
		// A supernode checking that we are reachable here (a promotion).
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			in.AnswerProbe(s.welcome(protocol.RoleProbe), s.ctx.Done())
		}()
	case protocol.RoleRelay:
		if len(s.cfg.RelaySecret) == 0 {
			// Its credentials could never be minted: accepting it would
			// list a relay this supernode silently never hands out.
			s.refused.add(refNoRelaySecret)
			s.log.Warn().Str("peer_id", in.Peer.Short()).Str("remote_addr", in.RemoteAddr().String()).
				Msg("relay refused: this supernode has no relay secret, so it could never hand the relay out; give it the relay's secret")
			in.Reject(fmt.Errorf("%w: this supernode has no relay secret to mint credentials on your relay with", protocol.ErrForbidden))
			return
		}
		if err := s.checkHello(in); err != nil {
			s.log.Info().Err(err).Str("peer_id", in.Peer.Short()).Str("remote_addr", in.RemoteAddr().String()).Msg("relay refused")
			s.refused.add(refNotAdmitted)
			in.Reject(fmt.Errorf("%w: %w", protocol.ErrForbidden, err))
			return
		}
		l, err := in.Accept(s.welcome(protocol.RoleSupernode))
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.relayLink(l)
	default:
		s.refused.add(refWrongRole)
		in.Reject(fmt.Errorf("%w: a supernode does not take %s connections", protocol.ErrForbidden, in.Hello.Role))
	}
}

// forget drops peer from m unless a newer link has replaced id there, and
// reports whether it did.
func (s *Server) forget(m map[protocol.PeerID]LinkID, peer protocol.PeerID, id LinkID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m[peer] == id {
		delete(m, peer)
		return true
	}
	return false
}

// register gives a link an ID; it returns 0 when the server is closing.
func (s *Server) register(l *transport.Link) LinkID {
	id := LinkID(s.nextID.Add(1))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		l.Close(nil)
		return 0
	}
	s.links[id] = l
	return id
}

// neighbourUp registers a supernode link. When one to the same supernode
// exists, both sides keep the link dialled by the supernode with the smaller
// ID: two supernodes that dial each other at once would otherwise each close
// the link the other kept, and stay unlinked.
func (s *Server) neighbourUp(l *transport.Link, outgoing bool, admittedUntil time.Time) (LinkID, bool) {
	if l.Peer == s.ID() {
		l.Close(fmt.Errorf("%w: that is me", protocol.ErrForbidden))
		return 0, false
	}
	me := s.ID()
	keepNew := outgoing == (bytes.Compare(me[:], l.Peer[:]) < 0)
	s.mu.Lock()
	cur, linked := s.links[s.byPeer[l.Peer]]
	s.mu.Unlock()
	// A supernode sends members every gossip round: a link to it that has
	// been quiet for longer is to a process that died without a goodbye (it
	// is dialling us again after a restart), not the one to keep.
	if linked && cur.Quiet() > 3*s.cfg.GossipInterval {
		keepNew = true
	}
	if linked && !keepNew {
		l.Close(fmt.Errorf("%w: already linked", protocol.ErrForbidden))
		return 0, false
	}
	id := s.register(l)
	if id == 0 {
		return 0, false
	}
	s.mu.Lock()
	old := s.links[s.byPeer[l.Peer]]
	s.byPeer[l.Peer] = id
	if admittedUntil.After(s.admittedUntil[l.Peer]) {
		s.admittedUntil[l.Peer] = admittedUntil
	}
	s.mu.Unlock()
	if old != nil && old != l {
		old.Close(fmt.Errorf("%w: replaced by the link the smaller ID dialled", protocol.ErrForbidden))
	}
	s.router.NeighbourUp(id, l.Peer)
	if protocol.Supports(l.Version, protocol.TypeMembers) {
		s.memb.NeighbourUp(l.Peer)
	}
	l.Log().Info().Msg("supernode linked")
	s.wg.Add(1)
	go s.readLoop(id, l, func() {
		s.forget(s.byPeer, l.Peer, id)
		s.mu.Lock()
		if _, linked := s.byPeer[l.Peer]; !linked {
			delete(s.admittedUntil, l.Peer)
		}
		s.mu.Unlock()
		s.memb.NeighbourDown(l.Peer)
		s.router.NeighbourDown(id)
		// Requests that went out on this link lose their replies.
		s.dir.NeighbourDown(l.Peer)
		l.Log().Info().Err(l.Err()).Msg("supernode unlinked")
	})
	return id, true
}

// memberExpiry is how long an entry lasts without being issued again: two
// refreshes and the time to hear of one.
func memberExpiry(refresh, timeout time.Duration) time.Duration {
	return 2*refresh + timeout
}

// SuspectFor is how long a supernode reported gone stays suspected before
// it is taken as dead: time for the report to reach it across the overlay
// and for its answer to come back, a few gossip rounds each way.
func SuspectFor(memberTimeout time.Duration) time.Duration { return 3 * memberTimeout }

// neighbourSilent closes the link to a neighbour reported gone for silence:
// if it lives, it dials again.
func (s *Server) neighbourSilent(p protocol.PeerID) {
	s.mu.Lock()
	l := s.links[s.byPeer[p]]
	s.mu.Unlock()
	if l != nil {
		l.Close(fmt.Errorf("%w: silent for %v", protocol.ErrTimeout, s.cfg.MemberTimeout))
	}
}

// joinLoop keeps a link to one configured supernode, redialling with capped,
// jittered backoff when it fails or drops.
func (s *Server) joinLoop(target string) {
	defer s.wg.Done()
	expect, addr, err := transport.ParseTarget(target)
	if err != nil {
		s.log.Error().Err(err).Msg("bad join address")
		return
	}
	log := s.log.With().Str("join", addr).Logger()
	retry := defaults.Backoff(200*time.Millisecond, 30*time.Second)
	if !s.waitAdmitted() {
		return
	}
	// seen is the supernode last found at addr when the target names none:
	// a link to it that replaced ours, or that it dialled, serves as well,
	// and redialling would only be refused as already linked.
	seen := expect
	for s.ctx.Err() == nil {
		if l := s.linkTo(seen); l != nil {
			// It dialled us first: that link serves; redial only when it drops.
			select {
			case <-l.Done():
				continue
			case <-s.ctx.Done():
				return
			}
		}
		covered := false
		l, w, err := s.node.Dial(s.ctx, addr, expect, s.supernodeHello())
		if err == nil {
			if err = s.checkWelcome(l, w); err != nil {
				l.Close(fmt.Errorf("%w: %w", protocol.ErrForbidden, err))
			}
		}
		if err == nil {
			if expect.IsZero() {
				seen = l.Peer
			}
			if _, ok := s.neighbourUp(l, true, w.Chain.Expires()); ok {
				retry.Reset()
				select {
				case <-l.Done():
				case <-s.ctx.Done():
					return
				}
				log.Info().Err(l.Err()).Msg("link to joined supernode lost; redialling")
			} else {
				covered = true
			}
		}
		d := retry.NextBackOff()
		switch {
		case covered:
			d = time.Second + rand.N(2*time.Second) // an existing link covers it; check again later
		case err != nil && s.ctx.Err() == nil:
			log.Warn().Err(err).Dur("retry_in", d).Msg("cannot reach supernode")
		}
		select {
		case <-time.After(d):
		case <-s.ctx.Done():
			return
		}
	}
}

// linkTo is our link to supernode p, or nil (also for the zero ID).
func (s *Server) linkTo(p protocol.PeerID) *transport.Link {
	if p.IsZero() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.byPeer[p]; ok {
		return s.links[id]
	}
	return nil
}
