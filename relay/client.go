package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
	"github.com/rs/zerolog"
)

// ClientConfig says which relay to allocate on and how.
type ClientConfig struct {
	// Server is the relay's TURN address, host:port (IPv4).
	Server string
	// TCP reaches the relay over TCP, for networks that drop UDP.
	TCP bool
	// IPv6 asks for an IPv6 relayed address (REQUESTED-ADDRESS-FAMILY, RFC
	// 6156), for a peer on IPv6 alone; over UDP only.
	IPv6  bool
	Creds Credentials
	// Realm defaults to DefaultRealm; the relay's own realm wins anyway.
	Realm string
	Log   zerolog.Logger
}

// Allocation is a relayed socket: packets written to it leave the relay from
// RelayedAddr, and packets that permitted peers send there arrive on it. It is
// a net.PacketConn that quic-go takes as a Transport's Conn.
//
// The relay refreshes nothing by itself: pion keeps the allocation alive, and
// keeps refreshing the permission of every address written to; permissions
// given with Permit alone last five minutes.
type Allocation struct {
	relayed net.PacketConn // pion's relayed conn
	client  *turn.Client
	conn    net.PacketConn // the socket to the relay (UDP, or TCP framed)
	under   interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	} // nil when the socket has no buffers to size
	server *net.UDPAddr // to drop UDP packets from anyone else
	log    zerolog.Logger

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu     sync.Mutex
	lost   error         // why the connection to the relay ended under the allocation
	lostCh chan struct{} // closed with lost set
}

// Allocate connects to the relay and gets an allocation, all bounded by ctx.
func Allocate(ctx context.Context, cfg ClientConfig) (*Allocation, error) {
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	host, port, err := net.SplitHostPort(cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("relay address %q: %w", cfg.Server, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		return nil, fmt.Errorf("resolve relay %s: %w", host, err)
	}
	server, err := net.ResolveUDPAddr("udp4", net.JoinHostPort(ips[0].String(), port))
	if err != nil {
		return nil, fmt.Errorf("relay address %q: %w", cfg.Server, err)
	}
	a := &Allocation{server: server, log: cfg.Log, closing: make(chan struct{}), lostCh: make(chan struct{})}
	if cfg.TCP {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", server.String())
		if err != nil {
			return nil, fmt.Errorf("dial relay: %w", err)
		}
		a.conn = turn.NewSTUNConn(c)
		if tc, ok := c.(*net.TCPConn); ok {
			a.under = tc
		}
	} else {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, "udp4", ":0")
		if err != nil {
			return nil, fmt.Errorf("relay socket: %w", err)
		}
		growBuffers(pc)
		a.conn = pc
		if uc, ok := pc.(*net.UDPConn); ok {
			a.under = uc
		}
	}
	conn := a.conn
	if cfg.IPv6 {
		if cfg.TCP {
			a.conn.Close()
			return nil, errors.New("relay: an IPv6 relayed address is offered over UDP only")
		}
		conn = &askIPv6{PacketConn: a.conn, password: cfg.Creds.Password}
	}
	a.client, err = turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: server.String(),
		Username:       cfg.Creds.Username,
		Password:       cfg.Creds.Password,
		Realm:          cfg.Realm,
		Conn:           conn,
		LoggerFactory:  pionLogs{cfg.Log},
	})
	if err != nil {
		a.conn.Close()
		return nil, fmt.Errorf("relay client: %w", err)
	}
	a.wg.Add(1)
	go a.readLoop(cfg.TCP)

	// pion's Allocate takes no context; closing the socket ends its wait.
	type result struct {
		pc  net.PacketConn
		err error
	}
	done := make(chan result, 1)
	go func() {
		pc, err := a.client.Allocate()
		done <- result{pc, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		a.Close()
		if r = <-done; r.pc != nil {
			r.pc.Close()
		}
		return nil, fmt.Errorf("relay allocate: %w", ctx.Err())
	}
	if r.err != nil {
		a.Close()
		return nil, fmt.Errorf("relay allocate: %w", classify(r.err))
	}
	a.mu.Lock()
	a.relayed = r.pc
	a.mu.Unlock()
	return a, nil
}

// readLoop feeds pion what the relay sends. It replaces pion's Listen so that
// Close can wait for it, a malformed packet does not end it, and a lost
// connection ends the allocation instead of leaving reads hanging.
func (a *Allocation) readLoop(tcp bool) {
	defer a.wg.Done()
	buf := make([]byte, 66<<10) // a TCP frame is up to 64 KiB plus its header
	for {
		n, from, err := a.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-a.closing:
			default:
				a.lose(err)
			}
			return
		}
		if n > len(buf) { // pion's TCP framing reports a frame it could not fit
			continue
		}
		if !tcp {
			if u, ok := from.(*net.UDPAddr); !ok || !u.IP.Equal(a.server.IP) || u.Port != a.server.Port {
				continue
			}
		}
		if _, err := a.client.HandleInbound(buf[:n], from); err != nil {
			a.log.Debug().Err(err).Msg("relay: bad packet from the relay")
		}
	}
}

// lose ends the allocation after the connection to the relay failed.
func (a *Allocation) lose(err error) {
	a.mu.Lock()
	if a.lost == nil {
		close(a.lostCh)
	}
	a.lost = err
	relayed := a.relayed
	a.mu.Unlock()
	a.log.Warn().Err(err).Str("relay", a.server.String()).Msg("relay connection lost")
	if relayed != nil {
		relayed.Close() // wakes readers, which now get ErrRelayLost
	}
}

// Lost is closed when the connection to the relay ends under the allocation
// (not when Close is called); Err then says why.
func (a *Allocation) Lost() <-chan struct{} { return a.lostCh }

// Err is why the allocation was lost, or nil.
func (a *Allocation) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lost
}

// RelayedAddr is the address on the relay that peers send to.
func (a *Allocation) RelayedAddr() *net.UDPAddr {
	u, _ := a.relayed.LocalAddr().(*net.UDPAddr)
	return u
}

// Permit lets the IPs of addrs send to the relayed address (TURN
// CreatePermission; ports do not matter). A relay refuses a whole request for
// one address it will not relay to, so on failure each IP is asked alone; Permit
// fails only when none was permitted.
func (a *Allocation) Permit(addrs ...net.Addr) error {
	var uniq []net.Addr
	seen := make(map[string]bool)
	v4 := a.RelayedAddr().IP.To4() != nil
	for _, ad := range addrs {
		u, ok := ad.(*net.UDPAddr)
		if !ok || (u.IP.To4() != nil) != v4 || seen[u.IP.String()] {
			continue // the relay socket sends in its own family only
		}
		seen[u.IP.String()] = true
		uniq = append(uniq, u)
	}
	if len(uniq) == 0 {
		return fmt.Errorf("relay permission: no UDP address in the family of %s", a.RelayedAddr())
	}
	err := a.permit(uniq...)
	if err == nil || len(uniq) == 1 {
		return err
	}
	var errs []error
	for _, ad := range uniq {
		if err := a.permit(ad); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ad, err))
		}
	}
	if len(errs) == len(uniq) {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		a.log.Debug().Err(err).Msg("relay refused a permission")
	}
	return nil
}

func (a *Allocation) permit(addrs ...net.Addr) error {
	var err error
	for range 3 { // a stale nonce costs one retry
		err = a.client.CreatePermission(addrs...)
		if err == nil || !isTryAgain(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("relay permission: %w", classify(err))
	}
	return nil
}

// isTryAgain matches pion's unexported errTryAgain, returned after the relay
// sent a fresh nonce.
func isTryAgain(err error) bool { return err.Error() == "try again" }

// classify wraps a TURN error response in the sentinel a caller branches on.
func classify(err error) error {
	var te *stun.TurnError
	if !errors.As(err, &te) {
		return err
	}
	switch te.ErrorCodeAttr.Code {
	case stun.CodeUnauthorized, stun.CodeBadRequest: // pion answers bad credentials with 400
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case stun.CodeAllocQuotaReached, stun.CodeInsufficientCapacity:
		return fmt.Errorf("%w: %w", ErrQuota, err)
	}
	return err
}

// ReadFrom reads one packet a peer sent to the relayed address.
func (a *Allocation) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := a.relayed.ReadFrom(p)
		select {
		case <-a.closing:
			// pion may still hold packets that arrived before Close; a closed
			// PacketConn returns ErrClosed, not them.
			return 0, nil, a.opError("read", net.ErrClosed)
		default:
		}
		if err == nil {
			return n, addr, nil
		}
		if errors.Is(err, io.ErrShortBuffer) {
			continue // pion has dropped it; a UDP socket would truncate it
		}
		return 0, nil, a.opError("read", err)
	}
}

// WriteTo sends p to addr from the relayed address.
func (a *Allocation) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-a.closing:
		return 0, a.opError("write", net.ErrClosed)
	default:
	}
	n, err := a.relayed.WriteTo(p, addr)
	if err != nil {
		return n, a.opError("write", err)
	}
	return n, nil
}

// opError turns pion's error into what a net.PacketConn user expects once the
// allocation is closed or lost; timeouts pass through.
func (a *Allocation) opError(op string, err error) error {
	a.mu.Lock()
	lost := a.lost
	a.mu.Unlock()
	select {
	case <-a.closing:
		err = net.ErrClosed
	default:
		if lost != nil {
			err = fmt.Errorf("%w: %w", ErrRelayLost, lost)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return &net.OpError{Op: op, Net: "udp", Addr: a.relayed.LocalAddr(), Err: err}
}

// LocalAddr is the relayed address.
func (a *Allocation) LocalAddr() net.Addr { return a.relayed.LocalAddr() }

func (a *Allocation) SetDeadline(t time.Time) error      { return a.relayed.SetDeadline(t) }
func (a *Allocation) SetReadDeadline(t time.Time) error  { return a.relayed.SetReadDeadline(t) }
func (a *Allocation) SetWriteDeadline(t time.Time) error { return a.relayed.SetWriteDeadline(t) }

// SetReadBuffer sizes the socket to the relay, which carries every relayed
// packet; quic-go calls it on its Conn.
func (a *Allocation) SetReadBuffer(n int) error {
	if a.under == nil {
		return nil
	}
	return a.under.SetReadBuffer(n)
}

// SetWriteBuffer sizes the socket to the relay.
func (a *Allocation) SetWriteBuffer(n int) error {
	if a.under == nil {
		return nil
	}
	return a.under.SetWriteBuffer(n)
}

// Close releases the allocation (a Refresh with lifetime 0, not waited for)
// and closes the socket to the relay.
func (a *Allocation) Close() error {
	a.closeOnce.Do(func() {
		close(a.closing)
		a.mu.Lock()
		relayed := a.relayed
		a.mu.Unlock()
		if relayed != nil {
			relayed.Close()
		}
		a.client.Close()
		a.conn.Close()
		a.wg.Wait()
	})
	return nil
}

// askIPv6 adds REQUESTED-ADDRESS-FAMILY: IPv6 to the Allocate requests pion
// sends, which its client cannot do itself, and signs them again: the
// attribute goes before MESSAGE-INTEGRITY, which then covers it.
type askIPv6 struct {
	net.PacketConn
	password string
}

func (c *askIPv6) WriteTo(p []byte, to net.Addr) (int, error) {
	if len(p) < 2 || binary.BigEndian.Uint16(p) != allocateRequest.Value() {
		return c.PacketConn.WriteTo(p, to)
	}
	q, err := withFamilyIPv6(p, c.password)
	if err != nil {
		return 0, fmt.Errorf("relay: asking for IPv6: %w", err)
	}
	if _, err := c.PacketConn.WriteTo(q, to); err != nil {
		return 0, err
	}
	return len(p), nil
}

// withFamilyIPv6 is the STUN request p with REQUESTED-ADDRESS-FAMILY: IPv6,
// signed with the long-term credential of its USERNAME and REALM when p
// was signed, and with a new FINGERPRINT.
func withFamilyIPv6(p []byte, password string) ([]byte, error) {
	in := stun.Message{Raw: append([]byte(nil), p...)}
	if err := in.Decode(); err != nil {
		return nil, err
	}
	out := stun.New()
	out.Type, out.TransactionID = in.Type, in.TransactionID
	out.WriteHeader()
	var user, realm string
	signed := false
	for _, at := range in.Attributes {
		switch at.Type {
		case stun.AttrMessageIntegrity:
			signed = true
			continue
		case stun.AttrFingerprint, stun.AttrRequestedAddressFamily:
			continue
		case stun.AttrUsername:
			user = string(at.Value)
		case stun.AttrRealm:
			realm = string(at.Value)
		}
		out.Add(at.Type, at.Value)
	}
	out.Add(stun.AttrRequestedAddressFamily, []byte{familyIPv6, 0, 0, 0})
	if signed {
		if err := stun.NewLongTermIntegrity(user, realm, password).AddTo(out); err != nil {
			return nil, err
		}
	}
	if err := stun.Fingerprint.AddTo(out); err != nil {
		return nil, err
	}
	return out.Raw, nil
}
