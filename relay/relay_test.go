package relay

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/internal/freeport"
	"github.com/supernet-p2p/supernet/protocol"
)

var testSecret = []byte("relay test secret, shared with the supernodes")

func testLog(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// startRelay runs a relay on loopback ports chosen by the kernel, letting
// clients relay to loopback.
func startRelay(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.AllowLoopbackPeers = true
	return newRelay(t, cfg, zerolog.DebugLevel)
}

// newRelay runs a relay on loopback with cfg's destination policy, logging at
// level.
func newRelay(t testing.TB, cfg Config, level zerolog.Level) *Server {
	t.Helper()
	cfg.Secret = testSecret
	cfg.ListenUDP = "127.0.0.1:0"
	if cfg.ListenTCP == "" {
		cfg.ListenTCP = "127.0.0.1:0"
	}
	cfg.Log = testLog(t).Level(level)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close relay: %v", err)
		}
	})
	return s
}

func mint(peer string) Credentials {
	return Mint(testSecret, peer, time.Minute, time.Now())
}

// signed is a username with a valid password for it, whatever it says.
func signed(username string) Credentials {
	mac := hmac.New(sha1.New, testSecret)
	mac.Write([]byte(username))
	return Credentials{Username: username, Password: base64.StdEncoding.EncodeToString(mac.Sum(nil))}
}

func tryAllocate(t testing.TB, server string, tcp bool, creds Credentials) (*Allocation, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := Allocate(ctx, ClientConfig{Server: server, TCP: tcp, Creds: creds, Log: testLog(t)})
	if err == nil {
		t.Cleanup(func() { a.Close() })
	}
	return a, err
}

func mustAllocate(t testing.TB, s *Server, tcp bool, peer string) *Allocation {
	t.Helper()
	a, err := tryAllocate(t, serverAddr(s, tcp), tcp, mint(peer))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func serverAddr(s *Server, tcp bool) string {
	if tcp {
		return s.TCPAddr().String()
	}
	return s.UDPAddr().String()
}

func transports(t *testing.T, f func(t *testing.T, tcp bool)) {
	for _, tcp := range []bool{false, true} {
		name := "udp"
		if tcp {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) { f(t, tcp) })
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func loopbackUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// quicThrough runs QUIC from a plain UDP socket to a listener on alloc, moves
// size random bytes over one stream and checks they arrive intact.
func quicThrough(t testing.TB, alloc *Allocation, size int) {
	t.Helper()
	pc := loopbackUDP(t)
	if err := alloc.Permit(pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	var got bytes.Buffer
	quicMove(t, alloc, pc, alloc.RelayedAddr(), data, &got)
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("relayed %d bytes, want the %d sent", got.Len(), len(data))
	}
}

// quicMove dials from pc to a QUIC listener on lpc, which pc reaches at to,
// sends data over one stream, which the listener copies to sink, and
// returns the time from the first byte written to the listener's answer
// after the last.
func quicMove(t testing.TB, lpc, pc net.PacketConn, to net.Addr, data []byte, sink io.Writer) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srvID, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cliID, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	str := &quic.Transport{Conn: lpc}
	defer str.Close()
	ln, err := str.Listen(srvID.ServerTLS(), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctr := &quic.Transport{Conn: pc}
	defer ctr.Close()

	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			done <- fmt.Errorf("accept: %w", err)
			return
		}
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			done <- fmt.Errorf("accept stream: %w", err)
			return
		}
		_, err = io.Copy(sink, st)
		if err == nil {
			_, err = st.Write([]byte("ok"))
			st.Close()
		}
		done <- err
	}()

	conn, err := ctr.Dial(ctx, to, cliID.ClientTLS(srvID.ID), &quic.Config{})
	if err != nil {
		t.Fatal("dial:", err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := st.Write(data); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ack, err := io.ReadAll(st)
	if err != nil {
		t.Fatal("read ack:", err)
	}
	took := time.Since(start)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if string(ack) != "ok" {
		t.Fatalf("ack %q", ack)
	}
	return took
}

func TestQUICThroughRelay(t *testing.T) {
	transports(t, func(t *testing.T, tcp bool) {
		s := startRelay(t, Config{})
		alloc := mustAllocate(t, s, tcp, "peer-a")
		if ra := alloc.RelayedAddr(); !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) || ra.Port == 0 {
			t.Fatalf("relayed address %v", ra)
		}
		if n := s.Load().Allocations; n != 1 {
			t.Fatalf("Load().Allocations = %d, want 1", n)
		}
		const size = 4 << 20
		quicThrough(t, alloc, size)
		ld := s.Load()
		if ld.BytesRelayed < size || ld.Rate <= 0 || ld.Capacity != DefaultMaxAllocations {
			t.Fatalf("Load() = %+v after relaying %d bytes", ld, size)
		}
		alloc.Close()
		alloc.Close()
		waitFor(t, "the allocation to be released", func() bool { return s.Load().Allocations == 0 })
		if _, _, err := alloc.ReadFrom(make([]byte, 1500)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v, want net.ErrClosed", err)
		}
		s.Close()
		if err := s.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
	})
}

func TestMintMatchesPion(t *testing.T) {
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(string(testSecret), "peer-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	exp, peer, ok := parseUsername(user)
	if !ok || peer != "peer-a" {
		t.Fatalf("pion's username %q", user)
	}
	c := Mint(testSecret, "peer-a", time.Hour, exp.Add(-time.Hour))
	if c.Username != user || c.Password != pass || !c.Expires.Equal(exp) {
		t.Fatalf("Mint = %+v, pion made %q %q", c, user, pass)
	}
}

func TestRefused(t *testing.T) {
	s := startRelay(t, Config{})
	good := mint("peer-a")
	tests := []struct {
		name  string
		creds Credentials
	}{
		{"no credentials", Credentials{}},
		{"bad password", Credentials{Username: good.Username, Password: "cGFzc3dvcmQ="}},
		{"expired", Mint(testSecret, "peer-a", time.Minute, time.Now().Add(-time.Hour))},
		{"wrong secret", Mint([]byte("another secret"), "peer-a", time.Minute, time.Now())},
		{"no peer id", Credentials{Username: strconv.FormatInt(good.Expires.Unix(), 10), Password: good.Password}},
		{"far-future expiry", Mint(testSecret, "peer-a", 100*365*24*time.Hour, time.Now())},
		{"expiry 99999999999", signed("99999999999:peer-a")},
		{"expiry past CredTTL and the skew", Mint(testSecret, "peer-a", DefaultCredTTL+DefaultClockSkew+time.Minute, time.Now())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Load().AuthFailures
			_, err := tryAllocate(t, s.UDPAddr().String(), false, tt.creds)
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("Allocate: %v, want ErrUnauthorized", err)
			}
			if after := s.Load().AuthFailures; after <= before {
				t.Fatalf("AuthFailures %d -> %d", before, after)
			}
		})
	}
	if n := s.Load().Allocations; n != 0 {
		t.Fatalf("%d allocations after refusals", n)
	}
}

func TestAllocateBoundedByContext(t *testing.T) {
	silent := loopbackUDP(t) // a "relay" that never answers
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Allocate(ctx, ClientConfig{Server: silent.LocalAddr().String(), Creds: mint("peer-a"), Log: testLog(t)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Allocate: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Allocate returned %v after its context ended", took)
	}
}

func TestAllocationLimits(t *testing.T) {
	s := startRelay(t, Config{MaxPerPeer: 2, MaxAllocations: 3})
	a1 := mustAllocate(t, s, false, "peer-a")
	mustAllocate(t, s, true, "peer-a")
	if _, err := tryAllocate(t, s.UDPAddr().String(), false, mint("peer-a")); !errors.Is(err, ErrQuota) {
		t.Fatalf("third allocation of one peer: %v, want ErrQuota", err)
	}
	mustAllocate(t, s, false, "peer-b")
	if _, err := tryAllocate(t, s.UDPAddr().String(), false, mint("peer-c")); !errors.Is(err, ErrQuota) {
		t.Fatalf("allocation on a full relay: %v, want ErrQuota", err)
	}
	a1.Close()
	waitFor(t, "a freed slot", func() bool { return s.Load().Allocations == 2 })
	mustAllocate(t, s, false, "peer-c")
}

func TestPermitRefusesOwnHost(t *testing.T) {
	// A relay on its defaults, but for the documentation range this test
	// may permit: permissions alone send nothing anywhere.
	cfg := Config{Secret: testSecret, ListenUDP: "127.0.0.1:0", ListenTCP: "-", Log: testLog(t),
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.TCPAddr() != nil {
		t.Fatal("TCP is on with ListenTCP \"-\"")
	}
	a := mustAllocate(t, s, false, "peer-a")
	loop := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	if err := a.Permit(loop); err == nil {
		t.Fatal("the relay let a client relay to its own loopback")
	}
	for _, ip := range []string{"10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "198.18.0.1",
		"169.254.169.254", "0.0.0.1", "224.0.0.1", "255.255.255.255", "203.0.113.5"} {
		if err := a.Permit(&net.UDPAddr{IP: net.ParseIP(ip), Port: 9}); err == nil {
			t.Errorf("the relay let a client relay to %s", ip)
		}
	}
	// One refused address among others does not fail the rest.
	if err := a.Permit(loop, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}); err != nil {
		t.Fatal(err)
	}
}

// pump sends packets from one side until stop holds, each one waiting for the
// other side to receive it (or resent when UDP lost it). It returns the payload
// bytes received.
func pump(t *testing.T, send func([]byte) error, recv func([]byte) (int, error), stop func(got int) bool) int {
	t.Helper()
	pkt := make([]byte, 1000)
	buf := make([]byte, 2048)
	got := 0
	deadline := time.Now().Add(30 * time.Second)
	for !stop(got) {
		if time.Now().After(deadline) {
			t.Fatalf("pump: still going after %d bytes", got)
		}
		if err := send(pkt); err != nil {
			t.Fatal("send:", err)
		}
		n, err := recv(buf)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
		case err != nil:
			t.Fatal("receive:", err)
		default:
			got += n
		}
	}
	return got
}

func TestQuotaBytes(t *testing.T) {
	transports(t, func(t *testing.T, tcp bool) {
		const quota = 256 << 10
		s := startRelay(t, Config{MaxBytes: quota})
		alloc := mustAllocate(t, s, tcp, "peer-a")
		peer := loopbackUDP(t)
		if err := alloc.Permit(peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		toPeer := func(p []byte) error { _, err := alloc.WriteTo(p, peer.LocalAddr()); return err }
		atPeer := func(p []byte) (int, error) {
			peer.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, _, err := peer.ReadFrom(p)
			return n, err
		}
		toClient := func(p []byte) error { _, err := peer.WriteTo(p, alloc.RelayedAddr()); return err }
		atClient := func(p []byte) (int, error) {
			alloc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, _, err := alloc.ReadFrom(p)
			return n, err
		}

		// Out first, then in: both directions count against one quota.
		stopped := func() bool { return s.Load().QuotaStops > 0 }
		out := pump(t, toPeer, atPeer, func(got int) bool { return got >= 100<<10 || stopped() })
		var in int
		if tcp {
			// The relay drops the TCP connection: reads fail once it has.
			in = pumpUntilLost(t, alloc, toClient)
		} else {
			in = pump(t, toClient, atClient, func(int) bool { return stopped() })
		}
		waitFor(t, "the quota stop", stopped)
		t.Logf("relayed %d bytes out, %d in", out, in)
		if out < 100<<10 || out+in > quota || in > quota-100<<10 {
			t.Fatalf("relayed %d out + %d in with a quota of %d", out, in, quota)
		}
		if out+in < quota-8<<10 {
			t.Fatalf("stopped at %d bytes, quota %d", out+in, quota)
		}
		waitFor(t, "the allocation to be deleted", func() bool { return s.Load().Allocations == 0 })
		if ld := s.Load(); ld.QuotaStops != 1 || ld.BytesRelayed > quota {
			t.Fatalf("Load() = %+v", ld)
		}
		if !tcp {
			assertNothingRelayed(t, alloc, peer)
		}
	})
}

// pumpUntilLost sends to the client until its reads fail with ErrRelayLost.
func pumpUntilLost(t *testing.T, alloc *Allocation, send func([]byte) error) int {
	t.Helper()
	pkt := make([]byte, 1000)
	buf := make([]byte, 2048)
	got := 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("reads still work after %d bytes", got)
		}
		if err := send(pkt); err != nil {
			t.Fatal(err)
		}
		alloc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := alloc.ReadFrom(buf)
		var ne net.Error
		switch {
		case err == nil:
			got += n
		case errors.As(err, &ne) && ne.Timeout():
		case errors.Is(err, ErrRelayLost):
			select {
			case <-alloc.Lost():
			default:
				t.Fatal("reads say the relay is lost, but Lost is not closed")
			}
			if alloc.Err() == nil {
				t.Fatal("the allocation is lost, but Err is nil")
			}
			return got
		default:
			t.Fatal("read:", err)
		}
	}
}

// assertNothingRelayed checks that packets no longer pass either way. Absence
// takes a wait: a bounded read, not a sleep.
func assertNothingRelayed(t *testing.T, alloc *Allocation, peer *net.UDPConn) {
	t.Helper()
	buf := make([]byte, 2048)
	for range 5 {
		peer.WriteTo([]byte("after the stop"), alloc.RelayedAddr())
		alloc.WriteTo([]byte("after the stop"), peer.LocalAddr())
	}
	alloc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		n, _, err := alloc.ReadFrom(buf)
		if err != nil {
			break
		}
		if string(buf[:n]) == "after the stop" {
			t.Fatal("the client still receives after the stop")
		}
	}
	peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		n, _, err := peer.ReadFrom(buf)
		if err != nil {
			break
		}
		if string(buf[:n]) == "after the stop" {
			t.Fatal("the peer still receives after the stop")
		}
	}
}

func TestQuotaDuration(t *testing.T) {
	transports(t, func(t *testing.T, tcp bool) {
		s := startRelay(t, Config{MaxDuration: 1500 * time.Millisecond})
		alloc := mustAllocate(t, s, tcp, "peer-a")
		peer := loopbackUDP(t)
		if err := alloc.Permit(peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		once := func(got int) bool { return got > 0 || s.Load().QuotaStops > 0 }
		// Both ways once, so pion's client has its permission and channel
		// for the peer when the stop comes.
		out := pump(t, func(p []byte) error {
			_, err := alloc.WriteTo(p, peer.LocalAddr())
			return err
		}, func(p []byte) (int, error) {
			peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := peer.ReadFrom(p)
			return n, err
		}, once)
		in := pump(t, func(p []byte) error {
			_, err := peer.WriteTo(p, alloc.RelayedAddr())
			return err
		}, func(p []byte) (int, error) {
			alloc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := alloc.ReadFrom(p)
			return n, err
		}, once)
		if out == 0 || in == 0 {
			t.Fatal("the allocation ended before anything was relayed")
		}
		waitFor(t, "the time quota", func() bool { return s.Load().QuotaStops == 1 })
		waitFor(t, "the allocation to be deleted", func() bool { return s.Load().Allocations == 0 })
		if tcp {
			alloc.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				if _, _, err := alloc.ReadFrom(buf); err != nil {
					if !errors.Is(err, ErrRelayLost) {
						t.Fatalf("read after the stop: %v, want ErrRelayLost", err)
					}
					break
				}
			}
			return
		}
		assertNothingRelayed(t, alloc, peer)
	})
}

func TestHostilePackets(t *testing.T) {
	s := startRelay(t, Config{})
	c, err := net.Dial("udp4", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stunHeader := func(typ uint16, length uint16) []byte {
		b := make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], typ)
		binary.BigEndian.PutUint16(b[2:], length)
		binary.BigEndian.PutUint32(b[4:], 0x2112A442) // STUN magic cookie
		rand.Read(b[8:])
		return b
	}
	junk := [][]byte{
		{},
		{0x00},
		stunHeader(0x0003, 0),      // Allocate with no attributes
		stunHeader(0x0003, 0xfffc), // length past the end
		append(stunHeader(0x0016, 8), 0, 0x13, 0xff, 0xff, 1, 2, 3, 4), // Send indication, DATA longer than the packet
		append(stunHeader(0x0004, 4), 0x80, 0x28, 0, 0),                // Refresh with an empty FINGERPRINT
		{0x40, 0x00, 0xff, 0xff, 1, 2, 3, 4},                           // ChannelData longer than the packet
		{0x7f, 0xff, 0x00, 0x04, 1, 2, 3, 4},                           // ChannelData on a channel nobody bound
		make([]byte, 1599),
	}
	for range 300 {
		b := make([]byte, 1+int(randByte())*6)
		rand.Read(b)
		junk = append(junk, b)
	}
	for _, b := range junk {
		c.Write(b)
	}
	for range 20 { // junk that looks like STUN throughout
		b := stunHeader(uint16(randByte())<<8|uint16(randByte()), 64)
		tail := make([]byte, 64)
		rand.Read(tail)
		c.Write(append(b, tail...))
	}
	tc, err := net.Dial("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write(stunHeader(0x0001, 0xfffc))
	tc.Write(make([]byte, 4096))
	junkTCP := make([]byte, 4096)
	rand.Read(junkTCP)
	if tc2, err := net.Dial("tcp4", s.TCPAddr().String()); err == nil {
		tc2.Write(junkTCP)
		tc2.Close()
	}

	// Still serving, both ways. The junk may have filled the socket buffer, so
	// the request is resent until answered.
	msg := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	buf := make([]byte, 1500)
	answered := false
	for deadline := time.Now().Add(10 * time.Second); !answered; {
		if time.Now().After(deadline) {
			t.Fatal("no binding response after the junk")
		}
		c.Write(msg.Raw)
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for !answered {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			var res stun.Message
			res.Raw = buf[:n]
			answered = res.Decode() == nil && res.TransactionID == msg.TransactionID
		}
	}
	transports(t, func(t *testing.T, tcp bool) {
		alloc := mustAllocate(t, s, tcp, "peer-a")
		quicThrough(t, alloc, 64<<10)
	})
}

func randByte() byte {
	var b [1]byte
	rand.Read(b[:])
	return b[0]
}

// TestStockTURNServer checks that a coturn set up with the same secret takes
// minted credentials, and that the client and QUIC work through it.
func TestStockTURNServer(t *testing.T) {
	server, alloc := startCoturn(t)
	quicThrough(t, alloc, 4<<20)

	for _, tcp := range []bool{false, true} {
		bad := Mint(testSecret, "peer-a", time.Minute, time.Now().Add(-time.Hour))
		if _, err := tryAllocate(t, server, tcp, bad); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("coturn with expired credentials (tcp %v): %v, want ErrUnauthorized", tcp, err)
		}
	}
	tcpAlloc, err := tryAllocate(t, server, true, mint("peer-b"))
	if err != nil {
		t.Fatal("coturn over TCP:", err)
	}
	quicThrough(t, tcpAlloc, 1<<20)
}

// startCoturn runs coturn's turnserver on a loopback port with the relay's
// shared secret and returns its address and an allocation on it; it skips
// the test when turnserver is not installed.
func startCoturn(t testing.TB) (string, *Allocation) {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Skip("coturn's turnserver is not on PATH; install it (apt-get install coturn) to run this test")
	}
	port := freeport.Loopback(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-n",
		"--use-auth-secret", "--static-auth-secret="+string(testSecret), "--realm="+DefaultRealm,
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port="+strconv.Itoa(port),
		"--min-port=49152", "--max-port=65535",
		"--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
		"--pidfile="+filepath.Join(dir, "turnserver.pid"), "--userdb="+filepath.Join(dir, "turndb"),
		"--log-file=stdout", "--simple-log")
	// Read only after Wait, which waits for the copying to end.
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("turnserver output:\n%s", out.String())
		}
	})

	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var alloc *Allocation
	waitFor(t, "turnserver to allocate", func() bool {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		defer acancel()
		a, err := Allocate(actx, ClientConfig{Server: server, Creds: mint("peer-a"), Log: testLog(t).Level(zerolog.WarnLevel)})
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("coturn refused minted credentials:", err)
		}
		alloc = a
		return err == nil
	})
	t.Cleanup(func() { alloc.Close() })
	return server, alloc
}

// TestPortRange: relayed addresses come from the configured range, and a
// range given backwards is refused.
func TestPortRange(t *testing.T) {
	probe := loopbackUDP(t)
	low := uint16(probe.LocalAddr().(*net.UDPAddr).Port)
	probe.Close()
	if low > 65000 {
		low = 40000
	}
	s := startRelay(t, Config{MinPort: low, MaxPort: low + 20})
	for _, tcp := range []bool{false, true} {
		a := mustAllocate(t, s, tcp, "peer-range")
		if p := a.RelayedAddr().Port; p < int(low) || p > int(low)+20 {
			t.Errorf("relayed port %d outside %d-%d", p, low, low+20)
		}
		a.Close()
	}
	if _, err := New(Config{Secret: testSecret, ListenUDP: "127.0.0.1:0", MinPort: 5000, MaxPort: 4000}); err == nil {
		t.Error("a backwards port range was accepted")
	}
}
