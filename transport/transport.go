// Package transport carries the overlay's messages over QUIC on one UDP socket.
//
// A Node owns the socket: QUIC connections (dialled and accepted), a STUN Binding
// responder, and a STUN client, all on the same port, so the address a supernode
// reports to a peer is the one its QUIC packets come from. A Link is a QUIC
// connection whose first stream carries framed protocol messages after a
// Hello/Welcome exchange; further streams on it are for bulk transfers.
//
// The package knows nothing of supernodes or search: it moves messages.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

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
	// IdleTimeout drops a connection that has been silent this long (default 15 s);
	// keep-alives every third of it keep healthy idle links up.
	IdleTimeout time.Duration
	// KeepAlive is how often an idle connection sends a keep-alive (default IdleTimeout/3).
	KeepAlive time.Duration
	// HandshakeTimeout bounds the QUIC handshake and the Hello exchange (default 5 s).
	HandshakeTimeout time.Duration
	// STUNRate caps STUN responses per second (default 2000).
	STUNRate float64
	// Agent names the software in hellos.
	Agent string
}

// Node is one UDP socket speaking QUIC and STUN.
type Node struct {
	cfg Config
	log zerolog.Logger
	tr  *quic.Transport
	ln  *quic.Listener
	qc  *quic.Config

	incoming chan *Incoming

	stunMu   sync.Mutex
	stunWait map[[12]byte]chan stunAnswer
	stunLim  *rate.Limiter

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts a node on cfg.Conn.
func New(cfg Config) (*Node, error) {
	if cfg.Identity == nil || cfg.Conn == nil {
		return nil, errors.New("transport: Identity and Conn are required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = cfg.IdleTimeout / 3
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.STUNRate <= 0 {
		cfg.STUNRate = 2000
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:      cfg,
		log:      cfg.Log,
		tr:       &quic.Transport{Conn: cfg.Conn},
		qc:       QUICConfig(cfg.IdleTimeout, cfg.KeepAlive, cfg.HandshakeTimeout),
		incoming: make(chan *Incoming),
		stunWait: make(map[[12]byte]chan stunAnswer),
		stunLim:  rate.NewLimiter(rate.Limit(cfg.STUNRate), int(cfg.STUNRate/10)+1),
		ctx:      ctx,
		cancel:   cancel,
	}
	if cfg.Listen {
		ln, err := n.tr.Listen(cfg.Identity.ServerTLS(), n.qc)
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

// QUICConfig is the QUIC configuration every overlay connection uses. Receive
// windows are large so one stream can fill a fast path.
func QUICConfig(idle, keepAlive, handshake time.Duration) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           handshake,
		MaxIdleTimeout:                 idle,
		KeepAlivePeriod:                keepAlive,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 2 << 20,
		MaxConnectionReceiveWindow:     32 << 20,
		MaxIncomingStreams:             256,
	}
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
// marked Relayed. The returned stop ends that; it does not close pc.
func (n *Node) ListenOn(pc net.PacketConn) (stop func(), err error) {
	tr := &quic.Transport{Conn: pc}
	ln, err := tr.Listen(n.cfg.Identity.ServerTLS(), n.qc)
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
// connection to Accept, so a slow or silent dialler never blocks others.
func (n *Node) handshake(c *quic.Conn, relayed bool) {
	defer n.wg.Done()
	log := n.log.With().Str("remote_addr", c.RemoteAddr().String()).Logger()
	peer, err := protocol.RemotePeerID(c.ConnectionState().TLS)
	if err != nil {
		log.Debug().Err(err).Msg("refusing connection")
		c.CloseWithError(1, "bad certificate")
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.HandshakeTimeout)
	defer cancel()
	s, err := c.AcceptStream(ctx)
	if err != nil {
		log.Debug().Err(err).Msg("no hello stream")
		c.CloseWithError(1, "no hello")
		return
	}
	l := newLink(c, s, peer, log.With().Str("peer_id", peer.Short()).Logger())
	l.Relayed = relayed
	s.SetReadDeadline(time.Now().Add(n.cfg.HandshakeTimeout))
	m, err := l.Recv()
	s.SetReadDeadline(time.Time{})
	hello, ok := m.(*protocol.Hello)
	if err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: first message is %s, not hello", protocol.ErrBadRequest, m.Type())
		}
		log.Debug().Err(err).Msg("bad hello")
		l.reject(err)
		return
	}
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
	l.Version, l.Role = v, in.Hello.Role
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

// DialAddr is Dial for a resolved address.
func (n *Node) DialAddr(ctx context.Context, addr *net.UDPAddr, expect protocol.PeerID, hello *protocol.Hello) (*Link, *protocol.Welcome, error) {
	return n.DialHello(ctx, addr, expect, func(tls.ConnectionState) (*protocol.Hello, error) { return hello, nil })
}

// DialHello is DialAddr with the hello made once the TLS handshake is done,
// from its state: a relay binds its proof to the session this way.
func (n *Node) DialHello(ctx context.Context, addr *net.UDPAddr, expect protocol.PeerID, mk func(tls.ConnectionState) (*protocol.Hello, error)) (*Link, *protocol.Welcome, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HandshakeTimeout)
	defer cancel()
	c, err := n.tr.Dial(ctx, addr, n.cfg.Identity.ClientTLS(expect), n.qc)
	if err != nil {
		if n.ctx.Err() != nil {
			return nil, nil, ErrClosed
		}
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	peer, err := protocol.RemotePeerID(c.ConnectionState().TLS)
	if err != nil {
		c.CloseWithError(1, "bad certificate")
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	hello, err := mk(c.ConnectionState().TLS)
	if err != nil {
		c.CloseWithError(1, "")
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if hello.MinVersion == 0 {
		hello.MinVersion, hello.MaxVersion = protocol.MinVersion, protocol.MaxVersion
	}
	if hello.Agent == "" {
		hello.Agent = n.cfg.Agent
	}
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		c.CloseWithError(1, "")
		return nil, nil, fmt.Errorf("dial %s: open stream: %w", addr, err)
	}
	log := n.log.With().Str("remote_addr", addr.String()).Str("peer_id", peer.Short()).Logger()
	l := newLink(c, s, peer, log)
	l.Role = hello.Role
	if err := l.Send(hello); err != nil {
		l.Close(err)
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetReadDeadline(dl)
	}
	m, err := l.Recv()
	s.SetReadDeadline(time.Time{})
	if err != nil {
		l.Close(err)
		return nil, nil, fmt.Errorf("dial %s: waiting for welcome: %w", addr, err)
	}
	switch m := m.(type) {
	case *protocol.Welcome:
		if m.Version < hello.MinVersion || m.Version > hello.MaxVersion {
			err := fmt.Errorf("%w: welcome picked version %d", protocol.ErrUnsupportedVersion, m.Version)
			l.Close(err)
			return nil, nil, err
		}
		l.Version = m.Version
		return l, m, nil
	case *protocol.Error:
		err := m.AsError()
		l.Close(err)
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	default:
		err := fmt.Errorf("%w: got %s instead of welcome", protocol.ErrBadRequest, m.Type())
		l.Close(err)
		return nil, nil, err
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
func ListenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return c, nil
}
