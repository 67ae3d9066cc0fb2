// Package transport carries the overlay's messages over QUIC on one UDP socket.
//
// A Node owns the socket: QUIC connections (dialled and accepted), a STUN Binding
// responder, and a STUN client, all on the same port, so the address a supernode
// reports to a peer is the one its QUIC packets come from. A Link is a QUIC
// connection whose first stream carries framed protocol messages after a
// Hello/Welcome exchange; further streams on it are for bulk transfers.
//
// Whoever connects runs into limits before it runs into the heap. A connection
// attempt over the handshake caps (in all, and per source address: an IPv4
// address or an IPv6 /64) or over the per-source connection cap is refused
// before any TLS work, and under load an attempt must first prove its address
// with a QUIC Retry. Before the hello, nothing but a hello header is read, and
// then at most MaxHelloSize bytes of body. Every frame, once begun, must arrive
// within its deadline (FrameTimeouts). QUIC windows and stream grants are sized
// by what a connection carries (Profile), and the bytes queued for one source's
// links are capped together. STUN answers are rate-limited per source before
// the node-wide limit. Stats counts what the limits did.
//
// The package knows nothing of supernodes or search: it moves messages.
package transport

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/supernet-p2p/supernet/internal/waiters"
	"github.com/supernet-p2p/supernet/protocol"
)

// Errors callers can match.
var (
	ErrClosed    = errors.New("transport closed")
	ErrQueueFull = errors.New("send queue full: peer is not reading")
)

// Config configures a Node.
type Config struct {
	Identity *protocol.Identity
	// Conn is the node's one UDP socket. The Node takes it over and closes it.
	Conn net.PacketConn
	Log  zerolog.Logger
	// Listen makes the node accept QUIC connections.
	Listen bool
	// Transfers marks a node that accepts transfer connections (a peer): its
	// listener takes the transfer profile's windows and streams (see QUICConfig),
	// and MaxConnsPerIP defaults lower. Dialled connections take the profile of
	// their hello's role whatever this says.
	Transfers bool
	// IdleTimeout drops a connection that has been silent this long (default 15 s);
	// keep-alives every third of it keep healthy idle links up.
	IdleTimeout time.Duration
	// KeepAlive is how often an idle connection sends a keep-alive (default IdleTimeout/3).
	KeepAlive time.Duration
	// HandshakeTimeout bounds the QUIC handshake and the Hello exchange (default 5 s).
	HandshakeTimeout time.Duration
	// Frames bounds how long a frame may take once it has begun, and how long a
	// new stream may wait for its first (see FrameTimeouts; zero fields take
	// DefaultFrameTimeouts).
	Frames FrameTimeouts

	// MaxHandshakes caps incoming connections between their first packet and
	// the application taking their hello (default 256). Over it, an attempt is
	// refused before any TLS work.
	MaxHandshakes int
	// MaxHandshakesPerIP caps those from one source (see Source; default 8).
	MaxHandshakesPerIP int
	// RetryAbove: once this many handshakes are in flight, or half
	// MaxHandshakesPerIP from one source, new attempts must prove their
	// address with a QUIC Retry first (default MaxHandshakes/4).
	RetryAbove int
	// MaxConnsPerIP caps the incoming connections open from one source,
	// handshakes included (default 32; 8 on a Transfers node).
	MaxConnsPerIP int
	// MaxQueuedPerIP caps the bytes waiting to be sent over all the incoming
	// links of one source (default 16 MiB); each link also has its own cap.
	MaxQueuedPerIP int
	// LimitLoopback applies the per-source limits to loopback sources as well.
	// By default they are exempt: every process on the host shares that
	// address, and nothing remote can send from it.
	LimitLoopback bool

	// STUNRate caps STUN responses per second (default 2000).
	STUNRate float64
	// STUNRatePerIP caps STUN responses per second to one source (default 20,
	// with bursts of STUNBurstPerIP, default 40), ahead of STUNRate.
	STUNRatePerIP  float64
	STUNBurstPerIP int
	// Agent names the software in hellos.
	Agent string
	// AnySender lets either side of every link send any message type its
	// version has, whatever the roles: for harnesses that carry other
	// designs' traffic in the overlay's frames (compare's QUIC mode). The
	// overlay's own nodes never set it.
	AnySender bool
	// AddrProofs makes the STUN responder hand out address proof tokens
	// (see ProveAddr): a supernode's.
	AddrProofs bool
}

// Node is one UDP socket speaking QUIC and STUN.
type Node struct {
	cfg Config
	log zerolog.Logger
	tr  *quic.Transport
	ln  *quic.Listener
	lqc *quic.Config // the listener's

	adm      *admission
	incoming chan *Incoming
	slow     atomic.Uint64

	stunWait    *waiters.Set[[12]byte, stunAnswer] // our STUN requests, by transaction ID
	stunLim     *rate.Limiter
	stunSrc     *sourceLimiter
	stunDropped atomic.Uint64
	proofKey    []byte // nil unless cfg.AddrProofs

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	linkMu sync.Mutex
	links  map[*Link]struct{} // made and not yet closed
	idle   []chan struct{}    // Idle's, closed when links is empty
}

// New starts a node on cfg.Conn.
func New(cfg Config) (*Node, error) {
	if cfg.Identity == nil || cfg.Conn == nil {
		return nil, errors.New("transport: Identity and Conn are required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = cfg.IdleTimeout / 3
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	cfg.Frames = cfg.Frames.withDefaults()
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 256
	}
	if cfg.MaxHandshakesPerIP <= 0 {
		cfg.MaxHandshakesPerIP = 8
	}
	if cfg.RetryAbove <= 0 {
		cfg.RetryAbove = max(1, cfg.MaxHandshakes/4)
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = 32
		if cfg.Transfers {
			cfg.MaxConnsPerIP = 8
		}
	}
	if cfg.MaxQueuedPerIP <= 0 {
		cfg.MaxQueuedPerIP = 16 << 20
	}
	if cfg.STUNRate <= 0 {
		cfg.STUNRate = 2000
	}
	if cfg.STUNRatePerIP <= 0 {
		cfg.STUNRatePerIP = 20
	}
	if cfg.STUNBurstPerIP <= 0 {
		cfg.STUNBurstPerIP = 40
	}
	ctx, cancel := context.WithCancel(context.Background())
	lp := Control
	if cfg.Transfers {
		lp = Transfer
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Log,
		lqc:      profileConfig(lp, true, cfg),
		adm:      newAdmission(cfg),
		incoming: make(chan *Incoming),
		stunWait: waiters.New[[12]byte, stunAnswer](maxSTUNWaits),
		stunLim:  rate.NewLimiter(rate.Limit(cfg.STUNRate), int(cfg.STUNRate/10)+1),
		stunSrc:  newSourceLimiter(cfg.STUNRatePerIP, cfg.STUNBurstPerIP),
		links:    make(map[*Link]struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
	if cfg.AddrProofs {
		n.proofKey = make([]byte, 32)
		rand.Read(n.proofKey)
	}
	n.tr = n.quicTransport(cfg.Conn)
	if cfg.Listen {
		ln, err := n.tr.Listen(cfg.Identity.ServerTLS(), n.lqc)
		if err != nil {
			cancel()
			n.tr.Close()
			return nil, fmt.Errorf("listen quic: %w", err)
		}
		n.ln = ln
		n.wg.Add(1)
		go n.acceptLoop(ln, false)
	}
	n.wg.Add(1)
	go n.nonQUICLoop()
	return n, nil
}

// quicTransport runs QUIC on pc with the node's admission in front of its listener.
func (n *Node) quicTransport(pc net.PacketConn) *quic.Transport {
	return &quic.Transport{
		Conn:                pc,
		ConnContext:         n.adm.connContext,
		VerifySourceAddress: n.adm.needRetry,
		StatelessResetKey:   resetKey(n.cfg.Identity),
	}
}

// resetKey is the node's stateless reset key, derived from its identity so
// that it is the same after a restart. A node that crashed and came back
// then answers a packet of a connection it lost with a stateless reset, and
// the other side learns at once, not after its idle timeout: thousands of
// leaves find a restarted supernode within one ping each.
func resetKey(id *protocol.Identity) *quic.StatelessResetKey {
	b, err := hkdf.Key(sha256.New, id.Key.Seed(), nil, "supernet quic stateless reset key", 32)
	if err != nil {
		panic(err) // only for a length sha256 cannot give
	}
	var k quic.StatelessResetKey
	copy(k[:], b)
	return &k
}

// DefaultIdleTimeout is Config.IdleTimeout's default.
const DefaultIdleTimeout = 15 * time.Second

// LeafIdleFactor times IdleTimeout is the idle timeout of a leaf's link to
// its supernode (60 s at the default): thousands of idle leaves each send a
// packet as seldom as the supernode asks (at most every IdleTimeout), and a
// lost ping or two must not drop the link.
const LeafIdleFactor = 4

// Profile is what a connection carries, which sizes its QUIC buffers.
type Profile int

const (
	// Control connections carry one message stream: hellos, searches, gossip.
	Control Profile = iota
	// Transfer connections also carry swarm, download and delivery streams.
	Transfer
)

// Flow-control windows and stream counts per profile. quic-go grows a window
// from its initial size up to its maximum while the application keeps up, so
// the maximum is what one connection can make us hold of data we have not
// read yet: 2 MiB on a control connection, 8 MiB on a transfer one. 8 MiB
// fills a 330 Mbit/s path at 200 ms round trip.
const (
	controlStreamWindow, controlStreamWindowMax   = 256 << 10, 2 << 20
	controlConnWindow, controlConnWindowMax       = 512 << 10, 2 << 20
	transferStreamWindow, transferStreamWindowMax = 512 << 10, 4 << 20
	transferConnWindow, transferConnWindowMax     = 1 << 20, 8 << 20
	// TransferStreams caps the streams the other side of a transfer connection
	// may have open at once, the message stream included.
	TransferStreams = 64
)

// QUICConfig is the QUIC configuration of a transfer connection, for tools and
// tests that speak raw QUIC to a node.
func QUICConfig(idle, keepAlive, handshake time.Duration) *quic.Config {
	return profileConfig(Transfer, false, Config{IdleTimeout: idle, KeepAlive: keepAlive, HandshakeTimeout: handshake})
}

// profileConfig is the QUIC configuration of profile p, for a listener or a dialler.
// No side ever opens a unidirectional stream. On a control connection the
// dialler opens the message stream and nothing else is opened.
func profileConfig(p Profile, listener bool, cfg Config) *quic.Config {
	qc := &quic.Config{
		HandshakeIdleTimeout:  cfg.HandshakeTimeout,
		MaxIdleTimeout:        cfg.IdleTimeout,
		KeepAlivePeriod:       cfg.KeepAlive,
		MaxIncomingUniStreams: -1,
	}
	if listener {
		// The dialler keeps the connection alive (its keep-alives, or its
		// pings, also hold its NAT open); a listener that pinged too would
		// double what thousands of idle leaves cost a supernode. It allows
		// the longer idle timeout a leaf asks for.
		qc.KeepAlivePeriod = 0
		qc.MaxIdleTimeout = LeafIdleFactor * cfg.IdleTimeout
	}
	switch p {
	case Transfer:
		qc.InitialStreamReceiveWindow, qc.MaxStreamReceiveWindow = transferStreamWindow, transferStreamWindowMax
		qc.InitialConnectionReceiveWindow, qc.MaxConnectionReceiveWindow = transferConnWindow, transferConnWindowMax
		qc.MaxIncomingStreams = TransferStreams
	default:
		qc.InitialStreamReceiveWindow, qc.MaxStreamReceiveWindow = controlStreamWindow, controlStreamWindowMax
		qc.InitialConnectionReceiveWindow, qc.MaxConnectionReceiveWindow = controlConnWindow, controlConnWindowMax
		qc.MaxIncomingStreams = -1
		if listener {
			qc.MaxIncomingStreams = 1
		}
	}
	return qc
}

// FrameTimeouts are the node's frame deadlines, for streams read outside the
// package (transfer streams).
func (n *Node) FrameTimeouts() FrameTimeouts { return n.cfg.Frames }

// Stats reports what the node's limits did so far.
func (n *Node) Stats() Stats {
	var s Stats
	n.adm.stats(&s)
	s.SlowFrames = n.slow.Load()
	s.STUNDropped = n.stunDropped.Load()
	return s
}

// Addr is the local address of the node's socket.
func (n *Node) Addr() *net.UDPAddr {
	a, _ := n.cfg.Conn.LocalAddr().(*net.UDPAddr)
	return a
}

// HandshakeTimeout is how long a dial may take.
func (n *Node) HandshakeTimeout() time.Duration { return n.cfg.HandshakeTimeout }

// Identity is the node's identity.
func (n *Node) Identity() *protocol.Identity { return n.cfg.Identity }

// Retire closes each open link with err, so that the other sides learn at
// once rather than at their idle timeout, and closes the node linger
// later: the closes must leave the socket first, which on a TCP relay
// allocation closed at once could be reset with them still queued.
func (n *Node) Retire(err error, linger time.Duration) {
	n.linkMu.Lock()
	links := make([]*Link, 0, len(n.links))
	for l := range n.links {
		links = append(links, l)
	}
	n.linkMu.Unlock()
	for _, l := range links {
		l.Close(err)
	}
	if len(links) > 0 {
		t := time.NewTimer(linger)
		select {
		case <-t.C:
		case <-n.ctx.Done():
			t.Stop()
		}
	}
	n.Close()
}

// Close stops accepting, closes every connection and the socket, and waits for
// the node's goroutines. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		if n.ln != nil {
			n.ln.Close()
		}
		n.tr.Close()
		n.cfg.Conn.Close()
	})
	n.wg.Wait()
	return nil
}

func (n *Node) acceptLoop(ln *quic.Listener, relayed bool) {
	defer n.wg.Done()
	for {
		c, err := ln.Accept(n.ctx)
		if err != nil {
			if n.ctx.Err() == nil {
				n.log.Debug().Err(err).Msg("accept loop ended")
			}
			return
		}
		n.wg.Add(1)
		go n.handshake(c, relayed)
	}
}

// ListenOn accepts QUIC connections on a second socket as well, such as a TURN
// allocation: connections that arrive there come out of Accept like any other,
// marked Relayed, and count against the same limits. The returned stop ends
// that; it does not close pc.
func (n *Node) ListenOn(pc net.PacketConn) (stop func(), err error) {
	tr := n.quicTransport(pc)
	ln, err := tr.Listen(n.cfg.Identity.ServerTLS(), n.lqc)
	if err != nil {
		return nil, fmt.Errorf("listen quic on %s: %w", pc.LocalAddr(), err)
	}
	n.wg.Add(1)
	go n.acceptLoop(ln, true)
	var once sync.Once
	return func() {
		once.Do(func() {
			ln.Close()
			tr.Close()
		})
	}, nil
}

// handshake reads the dialler's Hello on its first stream before handing the
// connection to Accept, so a slow or silent dialler never blocks others. The
// connection counts as a handshake in flight until Accept takes it.
func (n *Node) handshake(c *quic.Conn, relayed bool) {
	defer n.wg.Done()
	tk := ticketOf(c)
	defer tk.handshakeDone()
	log := n.log.With().Str("remote_addr", c.RemoteAddr().String()).Logger()
	peer, err := protocol.RemotePeerID(c.ConnectionState().TLS)
	if err != nil {
		log.Debug().Err(err).Msg("refusing connection")
		c.CloseWithError(CodeProtocol, "bad certificate")
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.HandshakeTimeout)
	defer cancel()
	s, err := c.AcceptStream(ctx)
	if err != nil {
		log.Debug().Err(err).Msg("no hello stream")
		c.CloseWithError(CodeProtocol, "no hello")
		return
	}
	dl, _ := ctx.Deadline()
	m, err := readFirst(s, dl, protocol.MaxHelloSize, protocol.TypeHello)
	if err != nil {
		log.Debug().Err(err).Msg("bad hello")
		refuse(c, s, err)
		return
	}
	l := n.newLink(c, s, peer, log.With().Str("peer_id", peer.Short()).Logger(), tk)
	hello := m.(*protocol.Hello)
	l.Relayed = relayed || hello.Relayed
	in := &Incoming{Hello: hello, Peer: peer, link: l}
	select {
	case n.incoming <- in:
	case <-ctx.Done():
		l.reject(fmt.Errorf("%w: not accepted in time", protocol.ErrOverloaded))
	}
}

// Incoming is a connection whose Hello has arrived, waiting to be accepted.
type Incoming struct {
	Hello *protocol.Hello
	Peer  protocol.PeerID
	link  *Link
}

// RemoteAddr is the dialler's address as seen from here.
func (in *Incoming) RemoteAddr() net.Addr { return in.link.conn.RemoteAddr() }

// Accept answers with w (its Version is negotiated here) and returns the link.
func (in *Incoming) Accept(w *protocol.Welcome) (*Link, error) {
	v, err := protocol.NegotiateVersion(in.Hello)
	if err != nil {
		in.link.reject(err)
		return nil, err
	}
	w.Version = v
	if w.Observed == "" {
		w.Observed = in.link.conn.RemoteAddr().String()
	}
	l := in.link
	if b, err := protocol.AppendFrame(nil, w); err != nil || len(b)-protocol.HeaderSize > protocol.MaxWelcomeSize {
		if err == nil {
			err = fmt.Errorf("welcome of %d bytes is over %d", len(b)-protocol.HeaderSize, protocol.MaxWelcomeSize)
		}
		l.reject(fmt.Errorf("%w: %w", protocol.ErrInternal, err))
		return nil, err
	}
	l.negotiated(v, in.Hello.Role, false)
	if err := l.Send(w); err != nil {
		l.Close(err)
		return nil, err
	}
	return l, nil
}

// AnswerProbe answers a reachability probe: the welcome is the answer. It
// holds the link until the prober closes it, 5 s pass or stop is closed.
func (in *Incoming) AnswerProbe(w *protocol.Welcome, stop <-chan struct{}) {
	l, err := in.Accept(w)
	if err != nil {
		return
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
	case <-stop:
	}
	l.Close(nil)
}

// ExportKeyingMaterial exports n bytes bound to this connection's TLS session
// under label (RFC 8446, section 7.5), for proofs that must not be replayed
// on another connection.
func (in *Incoming) ExportKeyingMaterial(label string, n int) ([]byte, error) {
	cs := in.link.conn.ConnectionState().TLS
	return cs.ExportKeyingMaterial(label, nil, n)
}

// Reject answers with an Error for err and closes the connection.
func (in *Incoming) Reject(err error) { in.link.reject(err) }

// Accept returns the next connection whose Hello has arrived.
func (n *Node) Accept(ctx context.Context) (*Incoming, error) {
	select {
	case in := <-n.incoming:
		return in, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.ctx.Done():
		return nil, ErrClosed
	}
}

// Dial connects to addr, checks that the other side is expect (unless zero), sends
// hello and waits for the Welcome.
func (n *Node) Dial(ctx context.Context, addr string, expect protocol.PeerID, hello *protocol.Hello) (*Link, *protocol.Welcome, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %s: %w", addr, err)
	}
	return n.DialAddr(ctx, ua, expect, hello)
}

// DialAddr is Dial for a resolved address. A hello that asks for a direct
// link (Hello.Direct) gets a quiet connection: no keep-alives, and closed
// after LeafIdleFactor times IdleTimeout without traffic (what a listener
// allows), so an idle direct link costs neither side anything.
func (n *Node) DialAddr(ctx context.Context, addr *net.UDPAddr, expect protocol.PeerID, hello *protocol.Hello) (*Link, *protocol.Welcome, error) {
	return n.DialEarly(ctx, addr, expect, hello, nil)
}

// DialEarly is DialAddr that sends early right behind the hello, before the
// welcome is in: a round trip sooner than sending on the link Dial
// returns. Should the listener refuse the hello, they are lost. Each must
// be a message of the lowest version the hello offers.
func (n *Node) DialEarly(ctx context.Context, addr *net.UDPAddr, expect protocol.PeerID, hello *protocol.Hello, early []protocol.Message) (*Link, *protocol.Welcome, error) {
	return n.dialHello(ctx, addr, expect, hello.Role, hello.Direct, early, func(tls.ConnectionState) (*protocol.Hello, error) { return hello, nil })
}

// DialHello is DialAddr with the hello made once the TLS handshake is done,
// from its state: a relay binds its proof to the session this way. role is
// the role the hello will claim, which sizes the connection.
func (n *Node) DialHello(ctx context.Context, addr *net.UDPAddr, expect protocol.PeerID, role protocol.Role,
	mk func(tls.ConnectionState) (*protocol.Hello, error)) (*Link, *protocol.Welcome, error) {
	return n.dialHello(ctx, addr, expect, role, false, nil, mk)
}

func (n *Node) dialHello(ctx context.Context, addr *net.UDPAddr, expect protocol.PeerID, role protocol.Role, quiet bool,
	early []protocol.Message, mk func(tls.ConnectionState) (*protocol.Hello, error)) (*Link, *protocol.Welcome, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HandshakeTimeout)
	defer cancel()
	p := Control
	if role == protocol.RoleTransfer {
		p = Transfer
	}
	qc := profileConfig(p, false, n.cfg)
	if role == protocol.RoleLeaf {
		// A leaf's pings keep its link and its NAT alive, as seldom as every
		// IdleTimeout when a busy supernode asks; QUIC's own keep-alive
		// then stays quiet, and only steps in for a leaf that does not ping.
		qc.MaxIdleTimeout = LeafIdleFactor * n.cfg.IdleTimeout
		qc.KeepAlivePeriod = LeafIdleFactor / 2 * n.cfg.IdleTimeout
	}
	if quiet {
		qc.MaxIdleTimeout, qc.KeepAlivePeriod = LeafIdleFactor*n.cfg.IdleTimeout, 0
	}
	c, err := n.tr.Dial(ctx, addr, n.cfg.Identity.ClientTLS(expect), qc)
	if err != nil {
		if n.ctx.Err() != nil {
			return nil, nil, ErrClosed
		}
		return nil, nil, fmt.Errorf("dial %s: %w", addr, refusedErr(err))
	}
	peer, err := protocol.RemotePeerID(c.ConnectionState().TLS)
	if err != nil {
		c.CloseWithError(CodeProtocol, "bad certificate")
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	hello, err := mk(c.ConnectionState().TLS)
	if err == nil && hello.Role != role {
		err = fmt.Errorf("hello claims %s, the dial was for %s", hello.Role, role)
	}
	if err != nil {
		c.CloseWithError(CodeProtocol, "")
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if hello.MinVersion == 0 {
		hello.MinVersion, hello.MaxVersion = protocol.MinVersion, protocol.MaxVersion
	}
	if hello.Agent == "" {
		hello.Agent = n.cfg.Agent
	}
	hb, err := protocol.AppendFrame(nil, hello)
	if err == nil && len(hb)-protocol.HeaderSize > protocol.MaxHelloSize {
		err = fmt.Errorf("%w: hello of %d bytes (at most %d)", protocol.ErrFrameTooLarge, len(hb)-protocol.HeaderSize, protocol.MaxHelloSize)
	}
	for _, m := range early {
		if err == nil {
			err = protocol.CheckVersion(m.Type(), hello.MinVersion)
		}
		if err == nil {
			hb, err = protocol.AppendFrame(hb, m)
		}
	}
	if err != nil {
		c.CloseWithError(CodeProtocol, "")
		return nil, nil, err
	}
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		c.CloseWithError(CodeProtocol, "")
		return nil, nil, fmt.Errorf("dial %s: open stream: %w", addr, err)
	}
	// A dial given up ends at once, not at the deadline (which the read
	// and write below keep): a listener that closed mid-handshake sends
	// no welcome and no close.
	giveUp := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			c.CloseWithError(CodeNormal, "")
		}
	})
	dl, _ := ctx.Deadline()
	s.SetWriteDeadline(dl)
	_, err = s.Write(hb)
	s.SetWriteDeadline(time.Time{})
	var m protocol.Message
	if err == nil {
		m, err = readFirst(s, dl, protocol.MaxWelcomeSize, protocol.TypeWelcome, protocol.TypeError)
	}
	if !giveUp() && errors.Is(ctx.Err(), context.Canceled) {
		err = context.Cause(ctx) // the connection is closed under the welcome
	}
	if err != nil {
		closeConn(c, err)
		return nil, nil, fmt.Errorf("dial %s: waiting for welcome: %w", addr, err)
	}
	switch m := m.(type) {
	case *protocol.Welcome:
		if m.Version < hello.MinVersion || m.Version > hello.MaxVersion {
			err := fmt.Errorf("%w: welcome picked version %d", protocol.ErrUnsupportedVersion, m.Version)
			closeConn(c, err)
			return nil, nil, err
		}
		if want := hello.Role.Listener(); m.Role != want {
			// The role decides which messages the link takes from the other
			// side: one that answers as something else is not the node dialled.
			err := fmt.Errorf("dial %s: %w: welcome declares role %s, not %s", addr, protocol.ErrForbidden, m.Role, want)
			closeConn(c, err)
			return nil, nil, err
		}
		log := n.log.With().Str("remote_addr", addr.String()).Str("peer_id", peer.Short()).Logger()
		l := n.newLink(c, s, peer, log, nil)
		l.negotiated(m.Version, hello.Role, true)
		return l, m, nil
	default:
		err := m.(*protocol.Error).AsError()
		closeConn(c, err)
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
}

// Dialable reports whether addr is a host:port one can dial: a listener's
// unspecified address (":6346", "[::]:6346") is not.
func Dialable(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsUnspecified()
}

// ParseTarget splits "peerid@host:port" or "host:port". With a peer ID, a dial
// to the target fails unless the other side proves that ID.
func ParseTarget(s string) (protocol.PeerID, string, error) {
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		id, err := protocol.ParsePeerID(s[:at])
		if err != nil {
			return id, "", fmt.Errorf("address %q: %w", s, err)
		}
		return id, s[at+1:], nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return protocol.PeerID{}, "", fmt.Errorf("address %q: %w", s, err)
	}
	return protocol.PeerID{}, s, nil
}

// AdvertisedAddr is addr as others should dial it: with its host replaced by
// host when addr listens on all interfaces (and host is given).
func AdvertisedAddr(addr net.Addr, host string) string {
	if addr == nil {
		return ""
	}
	h, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(h); host != "" && (ip == nil || ip.IsUnspecified()) {
		h = host
	}
	return net.JoinHostPort(h, p)
}

// ListenUDP opens a node's UDP socket on addr ("host:port"; port 0 picks one).
// "[::]:port" is both IPv6 and IPv4 (dual-stack); on a host without IPv6 it
// falls back to IPv4 alone.
func ListenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil && ua.IP.Equal(net.IPv6unspecified) && errors.Is(err, syscall.EAFNOSUPPORT) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: ua.Port})
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return c, nil
}
