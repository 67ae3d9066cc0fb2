package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

// These tests attack a listening node the way a hostile peer with fresh keys
// would, from one loopback address (127.0.0.1, with the per-source limits
// applied to loopback), while an honest client on another (127.0.0.2) must
// keep being served. Each prints what it measured and fails only on a bound.

const (
	attackIP = "127.0.0.1"
	honestIP = "127.0.0.2"
)

// target is a listening node that serves every hello as a leaf and answers
// pings, with mod applied to its defaults.
func target(t *testing.T, mod func(*Config)) *Node { return targetWith(t, mod, nil) }

// targetWith is target that also hands each accepted link to onLink.
func targetWith(t *testing.T, mod func(*Config), onLink func(*Link)) *Node {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Identity: id, Conn: udpOn(t, attackIP), Listen: true, LimitLoopback: true,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			in, err := n.Accept(ctx)
			if err != nil {
				return
			}
			l, err := in.Accept(&protocol.Welcome{Role: protocol.RoleSupernode})
			if err != nil {
				continue
			}
			if onLink != nil {
				onLink(l)
			}
			wg.Go(func() {
				for {
					m, err := l.Recv()
					if err != nil {
						l.Close(err)
						return
					}
					if p, ok := m.(*protocol.Ping); ok {
						l.Send(&protocol.Pong{Seq: p.Seq})
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		n.Close()
		wg.Wait()
	})
	return n
}

func udpOn(t testing.TB, ip string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// honestPing dials srv from ip with a fresh identity, exchanges a ping and
// returns how long dial and ping took.
func honestPing(t *testing.T, srv *Node, ip string) time.Duration {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := New(Config{Identity: id, Conn: udpOn(t, ip), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	l, _, err := cli.Dial(ctx, srv.Addr().String(), srv.Identity().ID, &protocol.Hello{Role: protocol.RoleLeaf})
	if err != nil {
		t.Fatalf("honest dial from %s: %v", ip, err)
	}
	defer l.Close(nil)
	if err := l.Send(&protocol.Ping{Seq: 7}); err != nil {
		t.Fatal(err)
	}
	m, err := l.Recv()
	if p, ok := m.(*protocol.Pong); err != nil || !ok || p.Seq != 7 {
		t.Fatalf("honest ping from %s: %#v, %v", ip, m, err)
	}
	return time.Since(t0)
}

// attacker is a bare quic-go transport on one socket.
type attacker struct {
	tr *quic.Transport
}

func newAttacker(t *testing.T, ip string) *attacker {
	t.Helper()
	tr := &quic.Transport{Conn: udpOn(t, ip)}
	t.Cleanup(func() {
		tr.Close()
		tr.Conn.Close()
	})
	return &attacker{tr: tr}
}

// dial completes a QUIC handshake with srv under a fresh identity.
func (a *attacker) dial(ctx context.Context, srv *Node, p Profile) (*quic.Conn, error) {
	id, err := protocol.GenerateIdentity()
	if err != nil {
		return nil, err
	}
	qc := profileConfig(p, false, Config{IdleTimeout: time.Minute, KeepAlive: 10 * time.Second, HandshakeTimeout: 5 * time.Second})
	return a.tr.Dial(ctx, srv.Addr(), id.ClientTLS(srv.Identity().ID), qc)
}

// hello opens the message stream on c and exchanges hello and welcome.
func hello(ctx context.Context, c *quic.Conn, role protocol.Role) (*quic.Stream, error) {
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if err := protocol.WriteMessage(s, &protocol.Hello{Role: role, MinVersion: protocol.MinVersion, MaxVersion: protocol.MaxVersion}); err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	m, err := readFirst(s, dl, protocol.MaxWelcomeSize, protocol.TypeWelcome, protocol.TypeError)
	if err != nil {
		return nil, err
	}
	if e, ok := m.(*protocol.Error); ok {
		return nil, e.AsError()
	}
	return s, nil
}

// header is a frame header claiming n body bytes.
func header(t protocol.MsgType, n int) []byte { return protocol.AppendHeader(nil, t, uint32(n)) }

// heap is the live heap after a collection.
func heap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mib formats a byte count.
func mib(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }

// refusal is why the listener refused what was sent on s: the Error frame, or
// the reason of the CONNECTION_CLOSE that may overtake it.
func refusal(s *quic.Stream) string {
	m, err := protocol.ReadMessage(s, nil)
	if e, ok := m.(*protocol.Error); ok {
		return e.Message
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return ae.ErrorMessage
	}
	return fmt.Sprintf("no refusal: %v, %v", m, err)
}

// A first frame that is not a hello is refused from its header: a 1 MiB
// user_store is neither read nor decoded, so it costs what a hello costs.
func TestFirstFrameOnlyHello(t *testing.T) {
	srv := target(t, nil)
	a := newAttacker(t, attackIP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The header alone gets the refusal: no body byte is waited for.
	c, err := a.dial(ctx, srv, Control)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write(header(protocol.TypeUserStore, protocol.MaxFrameSize))
	if why := refusal(s); !strings.Contains(why, "first message is user_store, not hello") {
		t.Fatalf("answer to a user_store header: %q", why)
	}
	select {
	case <-c.Context().Done():
	case <-ctx.Done():
		t.Fatal("connection not closed after the refusal")
	}

	// A hello header claiming more than MaxHelloSize is refused the same way.
	c, err = a.dial(ctx, srv, Control)
	if err != nil {
		t.Fatal(err)
	}
	s, err = c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write(header(protocol.TypeHello, protocol.MaxHelloSize+1))
	if why := refusal(s); !strings.Contains(why, "hello of 4097 bytes") {
		t.Fatalf("answer to an oversized hello: %q", why)
	}

	// Whole 1 MiB frames of nils (the worst msgpack expansion) cost no more
	// than hellos do.
	body := make([]byte, protocol.MaxFrameSize)
	copy(body, []byte{0x81, 0xa1, 'r', 0xdd, 0x00, 0x0f, 0xff, 0xf8})
	for i := 8; i < len(body); i++ {
		body[i] = 0xc0
	}
	const rounds, parallel = 12, 3 // under MaxHandshakesPerIP/2: no refusal, no Retry
	attempt := func(frame []byte) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, parallel)
		for range rounds {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				c, err := a.dial(ctx, srv, Control)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.CloseWithError(0, "")
				s, err := c.OpenStreamSync(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				go s.Write(frame) // quic-go may block it once the stream is refused
				protocol.ReadMessage(s, nil)
			})
		}
		wg.Wait()
	}
	hb, _ := protocol.AppendFrame(nil, &protocol.Hello{Role: protocol.RoleProbe, MinVersion: 99, MaxVersion: 99})
	a0 := totalAlloc()
	attempt(hb)
	a1 := totalAlloc()
	attempt(append(header(protocol.TypeUserStore, len(body)), body...))
	a2 := totalAlloc()
	perHello, perStore := int64(a1-a0)/rounds, int64(a2-a1)/rounds
	t.Logf("allocated per attempt (both ends, QUIC and TLS included): refused hello %s, 1 MiB user_store %s", mib(perHello), mib(perStore))
	// What arrived before the refusal sits in quic-go's buffers (up to the
	// control stream window, 256 KiB) and the sender's; reading the body would
	// add the 1 MiB itself.
	if perStore-perHello > 512<<10 {
		t.Errorf("a 1 MiB non-hello first frame cost %s more than a hello: it was read", mib(perStore-perHello))
	}
	if d := honestPing(t, srv, honestIP); d > 5*time.Second {
		t.Errorf("honest ping took %v", d)
	}
}

// Connections that finish the QUIC handshake and never send a hello hold at
// most MaxHandshakesPerIP handshake slots for HandshakeTimeout; the rest are
// refused before any TLS work, and an honest client is served meanwhile.
func TestSilentHandshakesCapped(t *testing.T) {
	srv := target(t, nil)
	a := newAttacker(t, attackIP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h0 := heap()
	const tries = 100
	var ok, refused atomic.Int32
	var held []*quic.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range tries {
		wg.Go(func() {
			c, err := a.dial(ctx, srv, Control)
			var idle *quic.IdleTimeoutError
			if errors.Is(refusedErr(err), ErrRefused) || errors.As(err, &idle) {
				refused.Add(1) // or its refusal was dropped: it got nothing
				return
			}
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			ok.Add(1)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	st := srv.Stats()
	t.Logf("%d silent handshakes tried: %d completed, %d refused; in flight %d; stats %+v", tries, ok.Load(), refused.Load(), st.Handshakes, st)
	if max := int32(srv.cfg.MaxHandshakesPerIP); ok.Load() > max {
		t.Errorf("%d silent handshakes completed from one address, cap %d", ok.Load(), max)
	}
	if ok.Load()+refused.Load() != tries {
		t.Errorf("%d attempts failed otherwise", tries-ok.Load()-refused.Load())
	}
	grown := int64(heap()) - int64(h0)
	t.Logf("heap grew %s holding %d silent handshakes (both ends)", mib(grown), ok.Load())
	if grown > 16<<20 {
		t.Errorf("heap grew %s", mib(grown))
	}
	if d := honestPing(t, srv, honestIP); d > 5*time.Second {
		t.Errorf("honest ping took %v during the attack", d)
	}
	// Their slots come back when the handshake timeout closes them.
	waitFor(t, 3*srv.cfg.HandshakeTimeout, "silent handshakes still counted", func() bool { return srv.Stats().Handshakes == 0 })
	for _, c := range held {
		c.CloseWithError(0, "")
	}
}

// Past RetryAbove handshakes in flight, a new attempt must prove its address
// (QUIC Retry) and is then admitted; the global cap holds against several
// sources.
func TestHandshakesRetryAndGlobalCap(t *testing.T) {
	srv := target(t, func(c *Config) { c.MaxHandshakes, c.MaxHandshakesPerIP, c.RetryAbove = 12, 8, 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ok atomic.Int32
	var wg sync.WaitGroup
	for _, ip := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		a := newAttacker(t, ip)
		for range 10 {
			wg.Go(func() {
				if c, err := a.dial(ctx, srv, Control); err == nil {
					ok.Add(1)
					t.Cleanup(func() { c.CloseWithError(0, "") })
				}
			})
		}
	}
	wg.Wait()
	st := srv.Stats()
	t.Logf("30 silent handshakes from 3 addresses: %d completed; stats %+v", ok.Load(), st)
	if ok.Load() > 12 || st.Handshakes > 12 {
		t.Errorf("%d handshakes completed, %d in flight; global cap 12", ok.Load(), st.Handshakes)
	}
	if st.RetriesAsked == 0 || st.Verified == 0 {
		t.Errorf("no Retry asked or no verified address admitted: %+v", st)
	}
	// Once the silent ones time out, an honest client gets in (through a Retry
	// if others are still in flight).
	waitFor(t, 3*srv.cfg.HandshakeTimeout, "silent handshakes still counted", func() bool { return srv.Stats().Handshakes == 0 })
	honestPing(t, srv, honestIP)
}

// A thousand connections from one address: at most MaxConnsPerIP are open at
// once, the rest are refused before TLS, memory stays bounded and an honest
// client on another address is served.
func TestThousandConnectionsFromOneAddress(t *testing.T) {
	srv := target(t, nil)
	a := newAttacker(t, attackIP)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h0 := heap()
	const tries, workers = 1000, 16
	var open, refused, unanswered atomic.Int32
	var next atomic.Int32
	var mu sync.Mutex
	var held []*quic.Conn
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= tries {
				c, err := a.dial(ctx, srv, Control)
				var idle *quic.IdleTimeoutError
				switch {
				case errors.Is(refusedErr(err), ErrRefused):
					refused.Add(1)
					continue
				case errors.As(err, &idle):
					// quic-go sends refusals (and Retries) best effort and
					// drops them when its queue is full; the attempt got nothing.
					unanswered.Add(1)
					continue
				case err != nil:
					t.Errorf("dial: %v", err)
					continue
				}
				if _, err := hello(ctx, c, protocol.RoleLeaf); err != nil {
					t.Errorf("hello: %v", err)
					c.CloseWithError(0, "")
					continue
				}
				open.Add(1)
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	st := srv.Stats()
	grown := int64(heap()) - int64(h0)
	t.Logf("%d connections tried from one address: %d open, %d refused, %d unanswered; heap grew %s (both ends); stats %+v",
		tries, open.Load(), refused.Load(), unanswered.Load(), mib(grown), st)
	if capc := int32(srv.cfg.MaxConnsPerIP); open.Load() > capc || st.Conns > int(capc) {
		t.Errorf("%d connections open from one address, cap %d", open.Load(), capc)
	}
	if open.Load()+refused.Load()+unanswered.Load() != tries {
		t.Errorf("%d attempts failed otherwise", tries-open.Load()-refused.Load()-unanswered.Load())
	}
	if grown > 32<<20 {
		t.Errorf("heap grew %s", mib(grown))
	}
	if d := honestPing(t, srv, honestIP); d > 5*time.Second {
		t.Errorf("honest ping took %v during the attack", d)
	}
	// Closing them gives the address its slots back.
	for _, c := range held {
		c.CloseWithError(0, "")
	}
	waitFor(t, 10*time.Second, "closed connections still counted", func() bool { return srv.Stats().Conns == 0 })
	honestPing(t, srv, attackIP)
}

// Frame headers that claim 1 MiB and stall cost the bytes that came, not the
// bytes claimed, and each such link is closed when its frame's deadline passes;
// the deadlines here are short (test-only) so the test does not wait 138 s.
func TestStalledFramesOnLinks(t *testing.T) {
	ft := FrameTimeouts{Fixed: 2 * time.Second, MinRate: 1 << 20}
	srv := target(t, func(c *Config) { c.Frames = ft })
	a := newAttacker(t, attackIP)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const conns = 30
	streams := make([]*quic.Stream, conns)
	for i := range streams {
		c, err := a.dial(ctx, srv, Control)
		if err != nil {
			t.Fatal(err)
		}
		s, err := hello(ctx, c, protocol.RoleLeaf)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	h0 := heap()
	for _, s := range streams {
		s.Write(append(header(protocol.TypePublish, protocol.MaxFrameSize), 0x81, 0xa1, 'f', 0xdd, 0, 0, 1, 0))
	}
	// The bytes are in when the heap has stopped moving; a fixed short wait
	// would race the reads, so poll until two samples agree.
	var grown int64
	prev := int64(-1)
	waitFor(t, 5*time.Second, "heap did not settle", func() bool {
		g := int64(heap()) - int64(h0)
		settled := g == prev
		prev, grown = g, g
		return settled && srv.Stats().SlowFrames == 0
	})
	t.Logf("%d links each holding a header that claims 1 MiB: heap grew %s (%s a link)", conns, mib(grown), mib(grown/conns))
	if grown > conns*(128<<10) {
		t.Errorf("stalled frames cost %s a link: the claimed length was allocated", mib(grown/conns))
	}
	if d := honestPing(t, srv, honestIP); d > 5*time.Second {
		t.Errorf("honest ping took %v during the attack", d)
	}
	waitFor(t, ft.For(protocol.MaxFrameSize)+10*time.Second, "stalled links not closed", func() bool {
		return srv.Stats().SlowFrames == conns
	})
	waitFor(t, 10*time.Second, "stalled connections still counted", func() bool { return srv.Stats().Conns == 0 })
}

// A slow but honest frame passes: it arrives at four times MinRate, in
// pieces, well past Fixed.
func TestSlowHonestFramePasses(t *testing.T) {
	ft := FrameTimeouts{Fixed: time.Second, MinRate: 128 << 10}
	srv := target(t, func(c *Config) { c.Frames = ft })
	a := newAttacker(t, honestIP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := a.dial(ctx, srv, Control)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	s, err := hello(ctx, c, protocol.RoleLeaf)
	if err != nil {
		t.Fatal(err)
	}
	// A ping padded to 1 MiB: an unknown key, which receivers ignore.
	pad := make([]byte, protocol.MaxFrameSize-64)
	body := []byte{0x82, 0xa1, 's', 0x05, 0xa1, 'x', 0xc6}
	body = binary.BigEndian.AppendUint32(body, uint32(len(pad)))
	body = append(body, pad...)
	frame := append(header(protocol.TypePing, len(body)), body...)
	chunk := 4 * ft.MinRate / 10 // every 100 ms: four times MinRate
	t0 := time.Now()
	for off := 0; off < len(frame); off += chunk {
		if _, err := s.Write(frame[off:min(off+chunk, len(frame))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the pace of a slow uplink
	}
	m, err := protocol.ReadMessage(s, nil)
	if p, ok := m.(*protocol.Pong); err != nil || !ok || p.Seq != 5 {
		t.Fatalf("answer to a slow 1 MiB ping: %#v, %v", m, err)
	}
	t.Logf("a 1 MiB frame sent over %v (deadline %v) was taken", time.Since(t0).Round(time.Millisecond), ft.For(len(body)))
}

// A control connection carries the message stream and nothing else: the
// listener grants no further stream, so 255 streams opened at once get none.
func TestControlConnGrantsNoStreams(t *testing.T) {
	srv := target(t, nil)
	a := newAttacker(t, attackIP)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.dial(ctx, srv, Control)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	if _, err := hello(ctx, c, protocol.RoleLeaf); err != nil {
		t.Fatal(err)
	}
	opened := 0
	for range 255 {
		if _, err := c.OpenStream(); err == nil {
			opened++
		}
	}
	uni := 0
	for range 16 {
		if _, err := c.OpenUniStream(); err == nil {
			uni++
		}
	}
	if opened > 0 || uni > 0 {
		t.Errorf("a control connection let the dialler open %d more streams and %d unidirectional ones", opened, uni)
	}
	honestPing(t, srv, honestIP)
}

// One socket floods Binding requests as fast as it can: it gets no more than
// its own source's share of answers, and a client on another address still
// gets its bindings answered. Dropped requests are not even decoded. The
// flooder is another process, as it would be on another host: in this one it
// would take the node's goroutines' CPU, which no limit in the node can give back.
func TestSTUNFloodFromOneSource(t *testing.T) {
	srv := target(t, nil)
	to := srv.Addr().AddrPort()
	honest := udpOn(t, honestIP)
	defer honest.Close()

	h0, a0 := heap(), totalAlloc()
	st0 := srv.Stats()
	flooder := exec.Command(os.Args[0], "-test.run=^TestSTUNFlooder$", "-test.v")
	flooder.Env = append(os.Environ(), "STUN_FLOOD_TO="+to.String(), "STUN_FLOOD_FROM="+attackIP, fmt.Sprint("STUN_FLOOD_RATE=", floodRate))
	out, err := flooder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := flooder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := flooder.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() string {
		if stopped {
			return ""
		}
		stopped = true
		stdin.Close()
		b, _ := io.ReadAll(out)
		flooder.Wait()
		return string(b)
	}
	defer stop()
	// Wait until the flood is under way: requests are being dropped.
	waitFor(t, 10*time.Second, "flood did not start", func() bool { return srv.Stats().STUNDropped > st0.STUNDropped+1000 })

	// For 3 s, the honest client asks for a binding every 250 ms, retransmitting
	// every 200 ms as a client under loss would, and must be answered each
	// time within 3 s.
	t0 := time.Now()
	buf := make([]byte, 1500)
	var worst time.Duration
	tries, bindings := 0, 0
	for time.Since(t0) < 3*time.Second {
		bindings++
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		asked := time.Now()
		got := false
		for try := 0; try < 15 && !got; try++ {
			tries++
			honest.WriteToUDPAddrPort(req.Raw, to)
			honest.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			for !got {
				n, _, err := honest.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				m := &stun.Message{Raw: buf[:n]}
				got = m.Decode() == nil && m.TransactionID == req.TransactionID
			}
		}
		if !got {
			t.Fatalf("binding %d of the honest client not answered within 3 s of flood; stats %+v", bindings, srv.Stats())
		}
		worst = max(worst, time.Since(asked))
		time.Sleep(max(0, 250*time.Millisecond-time.Since(asked))) // the client's own pace
	}
	st := srv.Stats()
	report := stop()
	var sent, answered int
	var secs float64
	if _, err := fmt.Sscanf(report[strings.Index(report, "flood:"):], "flood: sent %d answered %d seconds %g", &sent, &answered, &secs); err != nil {
		t.Fatalf("flooder's report %q: %v", report, err)
	}
	alloc := totalAlloc() - a0
	grown := int64(heap()) - int64(h0)
	t.Logf("flood of %d requests in %.1fs (%.0f/s) from one socket: %d answered (%.0f/s), %d dropped by the limits; honest client: %d requests for %d bindings, answered within %v at worst; node heap grew %s, allocated %d bytes per flood request",
		sent, secs, float64(sent)/secs, answered, float64(answered)/secs, st.STUNDropped-st0.STUNDropped, tries, bindings, worst.Round(time.Millisecond), mib(grown), alloc/uint64(max(1, sent)))
	// The flooder's source has two buckets: 2 bursts plus 2 rates' worth.
	if limit := 2*float64(srv.cfg.STUNBurstPerIP) + 2*srv.cfg.STUNRatePerIP*secs + 10; float64(answered) > limit {
		t.Errorf("flooder answered %d times, its share is %.0f", answered, limit)
	}
	if grown > 1<<20 {
		t.Errorf("heap grew %s", mib(grown))
	}
}

// TestSTUNFlooder is the flooder of TestSTUNFloodFromOneSource, run in a child
// process: it sends Binding requests from STUN_FLOOD_FROM to STUN_FLOOD_TO as
// fast as it can (or at STUN_FLOOD_RATE a second) until its stdin closes (or
// 60 s pass), then reports.
func TestSTUNFlooder(t *testing.T) {
	to, from := os.Getenv("STUN_FLOOD_TO"), os.Getenv("STUN_FLOOD_FROM")
	if to == "" {
		t.Skip("run by TestSTUNFloodFromOneSource")
	}
	dst, err := netip.ParseAddrPort(to)
	if err != nil {
		t.Fatal(err)
	}
	c := udpOn(t, from)
	defer c.Close()
	var stop atomic.Bool
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop.Store(true)
	}()
	var answered atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			answered.Add(1)
		}
	}()
	rate, _ := strconv.Atoi(os.Getenv("STUN_FLOOD_RATE"))
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	t0 := time.Now()
	sent := 0
	for i := 0; !stop.Load() && i < 100_000_000; i++ {
		if i%4096 == 0 && time.Since(t0) > time.Minute {
			break
		}
		if rate > 0 && i%100 == 0 {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		}
		if _, err := c.WriteToUDPAddrPort(req, dst); err == nil {
			sent++
		}
	}
	secs := time.Since(t0).Seconds()
	time.Sleep(100 * time.Millisecond) // the last answers in flight
	fmt.Printf("flood: sent %d answered %d seconds %g\n", sent, answered.Load(), secs)
}

// Links from one address that stop reading hold at most MaxQueuedPerIP of
// queued frames between them (each link alone could hold 8 MiB); a link from
// another address is not held back.
func TestSendQueueBoundedPerSource(t *testing.T) {
	const budget = 2 << 20
	links := make(chan *Link, 16)
	srv := targetWith(t, func(c *Config) { c.MaxQueuedPerIP = budget }, func(l *Link) { links <- l })
	a := newAttacker(t, attackIP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const conns = 4
	var silent []*Link
	for range conns {
		c, err := a.dial(ctx, srv, Control)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseWithError(0, "")
		if _, err := hello(ctx, c, protocol.RoleLeaf); err != nil {
			t.Fatal(err)
		}
		silent = append(silent, <-links)
	}
	h0 := heap()
	summary := &protocol.Summary{Depth: 1, Filter: make([]byte, 64<<10)}
	size, _ := protocol.AppendFrame(nil, summary)
	taken := 0
	for round := 0; round < 1000; round++ {
		full := 0
		for _, l := range silent {
			if err := l.Send(summary); errors.Is(err, ErrQueueFull) {
				full++
			} else if err != nil {
				t.Fatal(err)
			} else {
				taken += len(size)
			}
		}
		if full == len(silent) {
			break
		}
	}
	grown := int64(heap()) - int64(h0)
	// What the attacker's flow-control windows took left the queues.
	bound := budget + conns*len(size) + conns*(controlConnWindow+64<<10)
	t.Logf("%d silent links from one address took %s of frames before their queues were full (budget %s, bound with windows %s); heap grew %s",
		conns, mib(int64(taken)), mib(budget), mib(int64(bound)), mib(grown))
	if taken > bound {
		t.Errorf("queued %s for one address", mib(int64(taken)))
	}
	if grown > int64(bound)+8<<20 {
		t.Errorf("heap grew %s", mib(grown))
	}
	honestPing(t, srv, honestIP)
	// Closing a link gives its queued bytes back to the address.
	for _, l := range silent {
		l.Close(nil)
	}
	waitFor(t, 5*time.Second, "bytes still counted against the address after its links closed", func() bool {
		return silent[0].src.queued.Load() == 0
	})
}

// vmHWM is the process's peak resident set so far, from /proc.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb << 10
		}
	}
	return -1
}

// One address runs every connection attack at once against a node with the
// default limits: a thousand connection attempts whose admitted links each
// stall a 1 MiB frame and try 255 more streams, and silent handshakes. The
// node's live heap stays bounded, the process (attacker included) stays far
// under 256 MiB, and an honest client is answered throughout.
func TestOneAddressAllAttacksAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("a thousand handshakes")
	}
	srv := target(t, nil)
	a := newAttacker(t, attackIP)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h0 := heap()
	var peak atomic.Int64
	sample := func() {
		if g := int64(heap()) - int64(h0); g > peak.Load() {
			peak.Store(g)
		}
	}
	var wg sync.WaitGroup
	var next, admitted atomic.Int32
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= 1000 {
				c, err := a.dial(ctx, srv, Control)
				if err != nil {
					continue
				}
				if next.Load()%3 == 0 {
					continue // silent: holds a handshake slot until it times out
				}
				s, err := hello(ctx, c, protocol.RoleLeaf)
				if err != nil {
					c.CloseWithError(0, "")
					continue
				}
				admitted.Add(1)
				s.Write(append(header(protocol.TypePublish, protocol.MaxFrameSize), make([]byte, 40<<10)...))
				for range 255 {
					c.OpenStream()
				}
			}
		})
	}
	var pings []time.Duration
	for done := false; !done; {
		pings = append(pings, honestPing(t, srv, honestIP))
		sample()
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
			done = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	sample()
	slices.Sort(pings)
	st := srv.Stats()
	t.Logf("one address, all at once: %d links admitted, stats %+v; live heap grew %s at most (both ends); process peak RSS %s; honest ping+dial p50 %v max %v over %d tries",
		admitted.Load(), st, mib(peak.Load()), mib(vmHWM()), pings[len(pings)/2].Round(time.Millisecond), pings[len(pings)-1].Round(time.Millisecond), len(pings))
	if peak.Load() > 64<<20 {
		t.Errorf("live heap grew %s", mib(peak.Load()))
	}
	if rss := vmHWM(); rss > 256<<20 && !raceOn {
		t.Errorf("process peak RSS %s", mib(rss))
	}
	// The race detector slows the node several times over, and on a busy
	// machine one of the 25 can wait that much longer for a core.
	bound := 2 * time.Second
	if raceOn {
		bound *= 4
	}
	if p := pings[len(pings)-1]; p > bound {
		t.Errorf("an honest dial and ping took %v (bound %v)", p, bound)
	}
}
