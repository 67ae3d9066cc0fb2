package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

func newNode(t *testing.T, listen bool) *Node { return newNodeWith(t, Config{Listen: listen}) }

// newNodeWith is a node on loopback made from cfg, with a fresh identity.
func newNodeWith(t *testing.T, cfg Config) *Node {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identity, cfg.Conn, cfg.Log = id, pc, zerolog.New(zerolog.NewTestWriter(t))
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestDialHelloSend(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan *Link, 1)
	go func() {
		in, err := srv.Accept(ctx)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		if in.Peer != cli.Identity().ID || in.Hello.Name != "alice" {
			t.Errorf("incoming peer %s name %q", in.Peer.Short(), in.Hello.Name)
		}
		l, err := in.Accept(&protocol.Welcome{Role: protocol.RoleSupernode})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	l, w, err := cli.Dial(ctx, srv.Addr().String(), srv.Identity().ID, &protocol.Hello{Role: protocol.RoleLeaf, Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(nil)
	if w.Observed != cli.Addr().String() {
		t.Errorf("observed %s, want %s", w.Observed, cli.Addr())
	}
	sl := <-got
	if sl == nil {
		t.FailNow()
	}
	defer sl.Close(nil)
	for i := 0; i < 100; i++ {
		if err := l.Send(&protocol.Ping{Seq: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		m, err := sl.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := m.(*protocol.Ping); !ok || p.Seq != uint64(i) {
			t.Fatalf("message %d: %#v", i, m)
		}
	}
	l.Close(nil)
	select {
	case <-sl.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server side did not see the close")
	}
}

func TestDialWrongPeerID(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	other, _ := protocol.GenerateIdentity()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := cli.Dial(ctx, srv.Addr().String(), other.ID, &protocol.Hello{Role: protocol.RoleLeaf})
	if err == nil {
		t.Fatal("dial to the wrong key succeeded")
	}
	if !errors.Is(err, protocol.ErrPeerIDMismatch) {
		t.Logf("error does not wrap ErrPeerIDMismatch (TLS alert only): %v", err)
	}
}

func TestDialUnsupportedVersion(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		in, err := srv.Accept(ctx)
		if err == nil {
			in.Accept(&protocol.Welcome{})
		}
	}()
	_, _, err := cli.Dial(ctx, srv.Addr().String(), protocol.PeerID{}, &protocol.Hello{Role: protocol.RoleLeaf, MinVersion: protocol.MaxVersion + 1, MaxVersion: protocol.MaxVersion + 3})
	if err == nil {
		t.Fatal("dial with no common version succeeded")
	}
}

// A dial whose context is cancelled while it waits for the welcome returns at
// once with the cancellation, though the listener never answers.
func TestDialCancelledAwaitingWelcome(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dctx, stop := context.WithCancel(ctx)
	go func() {
		// The hello has arrived: the dial now waits for a welcome.
		if _, err := srv.Accept(ctx); err == nil {
			stop()
		}
	}()
	start := time.Now()
	_, _, err := cli.Dial(dctx, srv.Addr().String(), srv.Identity().ID, &protocol.Hello{Role: protocol.RoleLeaf})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("dial: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took >= srv.cfg.HandshakeTimeout {
		t.Fatalf("the cancelled dial took %v, the handshake timeout", took)
	}
}

// A stock STUN client (pion's) gets our socket's reflexive address from a node.
func TestSTUNResponderStockClient(t *testing.T) {
	srv := newNode(t, true)
	var got stun.XORMappedAddress
	var cbErr error
	conn, err := net.DialUDP("udp", nil, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := stun.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Do(stun.MustBuild(stun.TransactionID, stun.BindingRequest), func(ev stun.Event) {
		if ev.Error != nil {
			cbErr = ev.Error
			return
		}
		cbErr = got.GetFrom(ev.Message)
	}); err != nil {
		t.Fatal(err)
	}
	if cbErr != nil {
		t.Fatal(cbErr)
	}
	want := conn.LocalAddr().(*net.UDPAddr)
	if !got.IP.Equal(want.IP) || got.Port != want.Port {
		t.Fatalf("XOR-MAPPED-ADDRESS %s:%d, want %s", got.IP, got.Port, want)
	}
}

// Reflexive runs over the node's own QUIC socket.
func TestReflexiveSameSocket(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := cli.Reflexive(ctx, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != cli.Addr().String() {
		t.Fatalf("reflexive %s, want %s", a, cli.Addr())
	}
}

// TestReflexiveRTTTimesOneExchange: a STUN server that drops the first
// request and answers the retransmission at once is 0.5 s away by the
// clock of the first request, but a round trip of a moment by the exchange
// that was answered, which is what ReflexiveRTT reports.
func TestReflexiveRTTTimesOneExchange(t *testing.T) {
	cli := newNode(t, false)
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 1500)
		for i := 0; ; i++ {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if i == 0 {
				continue // lost
			}
			var req stun.Message
			req.Raw = append([]byte(nil), buf[:n]...)
			if req.Decode() != nil {
				continue
			}
			resp, _ := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: from.IP, Port: from.Port}, stun.Fingerprint)
			srv.WriteToUDP(resp.Raw, from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	mapped, rtt, err := cli.ReflexiveRTT(ctx, srv.LocalAddr().(*net.UDPAddr))
	took := time.Since(start)
	if err != nil || mapped.String() != cli.Addr().String() {
		t.Fatalf("reflexive: %v, %v", mapped, err)
	}
	if took < 500*time.Millisecond || rtt >= 250*time.Millisecond {
		t.Errorf("answered after %v with a round trip of %v; want the retransmission's own round trip, well under 0.5 s", took, rtt)
	}
}

// TestPunch: two nodes punching at each other each learn the other's address;
// a candidate that never answers does not stop the one that does.
func TestPunch(t *testing.T) {
	a, b := newNode(t, true), newNode(t, true)
	dead, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := a.Punch(ctx, []*net.UDPAddr{dead.LocalAddr().(*net.UDPAddr), b.Addr()}, 20*time.Millisecond)
	if err != nil || got.String() != b.Addr().String() {
		t.Fatalf("punch: %v, %v; want %v", got, err, b.Addr())
	}
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := a.Punch(short, []*net.UDPAddr{dead.LocalAddr().(*net.UDPAddr)}, 20*time.Millisecond); !errors.Is(err, ErrPunchFailed) {
		t.Fatalf("punch to a silent socket: %v", err)
	}
}

// TestListenOn: a connection that arrives on a second socket comes out of
// Accept marked relayed.
func TestListenOn(t *testing.T) {
	a, b := newNode(t, true), newNode(t, false)
	extra, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	stop, err := a.ListenOn(extra)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	relayed := make(chan bool, 1)
	go func() {
		in, err := a.Accept(ctx)
		if err != nil {
			relayed <- false
			return
		}
		l, err := in.Accept(&protocol.Welcome{Role: protocol.RoleTransfer})
		relayed <- err == nil && l.Relayed
	}()
	l, _, err := b.DialAddr(ctx, extra.LocalAddr().(*net.UDPAddr), a.Identity().ID, &protocol.Hello{Role: protocol.RoleTransfer})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(nil)
	if !<-relayed {
		t.Error("link accepted on the second socket is not marked relayed")
	}
}

// TestSTUNWaitsBounded: answers to requests we never sent leave nothing
// behind, a finished request leaves nothing behind, and requests past the
// bound are refused at once rather than kept.
func TestSTUNWaitsBounded(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	raw, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for range 200 {
		m, err := stun.Build(stun.TransactionID, stun.BindingSuccess,
			&stun.XORMappedAddress{IP: net.IPv4(127, 0, 0, 1), Port: 1}, stun.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		raw.WriteTo(m.Raw, cli.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Reflexive(ctx, srv.Addr()); err != nil {
		t.Fatal(err)
	}
	if n := cli.stunWait.Len(); n != 0 {
		t.Fatalf("%d STUN waits left after the request ended, want 0", n)
	}

	keys := make([][12]byte, maxSTUNWaits)
	for i := range keys {
		binary.BigEndian.PutUint32(keys[i][:], uint32(i))
	}
	_, release, ok := cli.stunWait.AddAll(keys, 1)
	if !ok {
		t.Fatal("could not fill the STUN table")
	}
	if _, err := cli.Reflexive(ctx, srv.Addr()); !errors.Is(err, protocol.ErrOverloaded) {
		t.Fatalf("Reflexive with the table full: %v, want ErrOverloaded", err)
	}
	if _, err := cli.Punch(ctx, []*net.UDPAddr{srv.Addr()}, 20*time.Millisecond); !errors.Is(err, ErrPunchFailed) || !errors.Is(err, protocol.ErrOverloaded) {
		t.Fatalf("Punch with the table full: %v, want ErrPunchFailed and ErrOverloaded", err)
	}
	if n := cli.stunWait.Len(); n != maxSTUNWaits {
		t.Fatalf("%d STUN waits, want the bound %d", n, maxSTUNWaits)
	}
	release()
	if _, err := cli.Reflexive(ctx, srv.Addr()); err != nil {
		t.Fatalf("Reflexive once the table has room: %v", err)
	}
}

// A node that crashed and came back on the same address with the same
// identity answers the first packet of a connection it lost with a stateless
// reset: the other side's link ends at once, not at its idle timeout.
func TestRestartedNodeResetsLostConnections(t *testing.T) {
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	start := func(addr *net.UDPAddr) *Node {
		pc, err := net.ListenUDP("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(Config{Identity: id, Conn: pc, Listen: true, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	srv := start(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	cli := newNode(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		if in, err := srv.Accept(ctx); err == nil {
			in.Accept(&protocol.Welcome{Role: protocol.RoleSupernode})
		}
	}()
	l, _, err := cli.Dial(ctx, srv.Addr().String(), id.ID, &protocol.Hello{Role: protocol.RoleSupernode})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(nil)
	// Closing the node drops its connections without a CONNECTION_CLOSE, as
	// a crash does.
	addr := srv.Addr()
	srv.Close()
	start(addr)
	if err := l.Send(protocol.NewPing(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("the link to the restarted node is still open (idle timeout %v)", cli.cfg.IdleTimeout)
	}
	var reset *quic.StatelessResetError
	if !errors.As(l.Err(), &reset) {
		t.Fatalf("link ended with %v, want a stateless reset", l.Err())
	}
}

// A direct link sends no keep-alives: left idle, it closes after what the
// listener allows, while a supernode link kept alive stays open.
func TestDirectLinkClosesWhenIdle(t *testing.T) {
	srv := newNodeWith(t, Config{Listen: true, IdleTimeout: 100 * time.Millisecond})
	cli := newNodeWith(t, Config{IdleTimeout: 100 * time.Millisecond})
	kept := linkPair(t, cli, srv, &protocol.Hello{Role: protocol.RoleSupernode})
	direct := linkPair(t, cli, srv, &protocol.Hello{Role: protocol.RoleSupernode, Direct: true})
	select {
	case <-direct.dialler.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("an idle direct link stayed open 10 s")
	}
	select {
	case <-kept.dialler.Done():
		t.Fatal("a supernode link closed while its keep-alives ran")
	default:
	}
}

// Messages given to DialEarly reach the listener's link behind the hello,
// in order, before anything sent on the returned link.
func TestDialEarlySendsBehindHello(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	hello := &protocol.Hello{Role: protocol.RoleSupernode}
	early := []protocol.Message{&protocol.Ping{Seq: 1}, &protocol.Ping{Seq: 2}}
	p := linkPairWith(t, srv, hello, func(ctx context.Context) (*Link, *protocol.Welcome, error) {
		return cli.DialEarly(ctx, srv.Addr(), srv.Identity().ID, hello, early)
	})
	if err := p.dialler.Send(&protocol.Ping{Seq: 3}); err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 3; want++ {
		m, err := recvOne(t, p.listener)
		if err != nil {
			t.Fatal(err)
		}
		if ping, ok := m.(*protocol.Ping); !ok || ping.Seq != want {
			t.Fatalf("got %T %+v, want ping %d", m, m, want)
		}
	}
}

// TestListenDualStack: the default peer socket, "[::]:0", takes IPv4 and
// IPv6 at once: a node on it answers STUN from both.
func TestListenDualStack(t *testing.T) {
	pc, err := ListenUDP("[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Identity: id, Conn: pc, Listen: true, Log: zerolog.Nop()})
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	defer srv.Close()
	cli := newNode(t, false)
	port := srv.Addr().Port
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Reflexive(ctx, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Errorf("over IPv4: %v", err)
	}
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	c6.Close()
	id6, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pc6, err := ListenUDP("[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	cli6, err := New(Config{Identity: id6, Conn: pc6, Log: zerolog.Nop()})
	if err != nil {
		pc6.Close()
		t.Fatal(err)
	}
	defer cli6.Close()
	if _, err := cli6.Reflexive(ctx, &net.UDPAddr{IP: net.IPv6loopback, Port: port}); err != nil {
		t.Errorf("over IPv6: %v", err)
	}
}

// TestNodeIdle: Idle is closed at once on a node without links, and on one
// with links only when the last has closed, from either side.
func TestNodeIdle(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	select {
	case <-cli.Idle():
	default:
		t.Fatal("a node without links is not idle")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *Link, 1)
	go func() {
		in, err := srv.Accept(ctx)
		if err == nil {
			l, _ := in.Accept(&protocol.Welcome{Role: protocol.RoleTransfer})
			accepted <- l
		}
	}()
	l, _, err := cli.Dial(ctx, srv.Addr().String(), srv.Identity().ID, &protocol.Hello{Role: protocol.RoleTransfer})
	if err != nil {
		t.Fatal(err)
	}
	remote := <-accepted
	idle, srvIdle := cli.Idle(), srv.Idle()
	select {
	case <-idle:
		t.Fatal("idle with a link open")
	default:
	}
	remote.Close(nil) // the far side ends it
	select {
	case <-idle:
	case <-ctx.Done():
		t.Fatal("not idle after the only link closed")
	}
	select {
	case <-srvIdle:
	case <-ctx.Done():
		t.Fatal("the listener is not idle after its link closed")
	}
	_ = l
}
