package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
	"github.com/rs/zerolog"
)

// rawTURN is a hostile TURN client: it authenticates like any other, then
// sends what pion's client never would (thousands of permissions, channel
// binds, odd Allocates), one request at a time.
type rawTURN struct {
	t       *testing.T
	conn    net.Conn
	tcp     bool
	creds   Credentials
	realm   string
	nonce   string
	timeout time.Duration
}

// dialRaw connects to the relay from local (nil: any loopback port).
func dialRaw(t *testing.T, s *Server, tcp bool, local net.IP, creds Credentials) *rawTURN {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	network, addr := "udp4", s.UDPAddr().String()
	if tcp {
		network, addr = "tcp4", s.TCPAddr().String()
		if local != nil {
			d.LocalAddr = &net.TCPAddr{IP: local}
		}
	} else if local != nil {
		d.LocalAddr = &net.UDPAddr{IP: local}
	}
	c, err := d.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawTURN{t: t, conn: c, tcp: tcp, creds: creds, realm: DefaultRealm, timeout: 2 * time.Second}
}

type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

var udpTransport = rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}

func lifetimeAttr(sec uint32) rawAttr {
	return rawAttr{stun.AttrLifetime, binary.BigEndian.AppendUint32(nil, sec)}
}

func channelAttr(n uint16) rawAttr {
	return rawAttr{stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0}}
}

type peerAttr netip.AddrPort

func (p peerAttr) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	return stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}

// mappedPeerAttr writes an IPv4 address as IPv4-mapped IPv6, which pion's
// client never does but a hostile one may.
type mappedPeerAttr netip.AddrPort

func (p mappedPeerAttr) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	ip := netip.AddrFrom16(ap.Addr().As16()).As16() // ::ffff:a.b.c.d
	v := make([]byte, 20)
	binary.BigEndian.PutUint16(v[0:], 2) // IPv6
	binary.BigEndian.PutUint16(v[2:], ap.Port()^uint16(stunMagic>>16))
	var xor [16]byte
	binary.BigEndian.PutUint32(xor[0:], stunMagic)
	copy(xor[4:], m.TransactionID[:])
	for i := range 16 {
		v[4+i] = ip[i] ^ xor[i]
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

// stunMagic is STUN's magic cookie (RFC 5389).
const stunMagic = 0x2112A442

var errNoAnswer = errors.New("no answer")

// request sends one request, authenticating as the relay asks, and returns the
// response: errNoAnswer when the relay stays silent.
func (r *rawTURN) request(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for range 3 {
		setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
		if r.nonce != "" {
			setters = append(setters, stun.NewUsername(r.creds.Username), stun.NewRealm(r.realm),
				stun.NewNonce(r.nonce), stun.NewLongTermIntegrity(r.creds.Username, r.realm, r.creds.Password))
		}
		setters = append(setters, stun.Fingerprint)
		req, err := stun.Build(setters...)
		if err != nil {
			return nil, err
		}
		if _, err := r.conn.Write(req.Raw); err != nil {
			return nil, err
		}
		res, err := r.read(req.TransactionID)
		if err != nil {
			return nil, err
		}
		var code stun.ErrorCodeAttribute
		if res.Type.Class == stun.ClassErrorResponse && code.GetFrom(res) == nil &&
			(code.Code == stun.CodeUnauthorized || code.Code == stun.CodeStaleNonce) {
			var nonce stun.Nonce
			var realm stun.Realm
			if nonce.GetFrom(res) == nil && realm.GetFrom(res) == nil {
				r.nonce, r.realm = nonce.String(), realm.String()
				continue
			}
		}
		return res, nil
	}
	return nil, errors.New("the relay keeps asking for credentials")
}

func (r *rawTURN) read(id [stun.TransactionIDSize]byte) (*stun.Message, error) {
	r.conn.SetReadDeadline(time.Now().Add(r.timeout))
	buf := make([]byte, 2048)
	for {
		var n int
		var err error
		if r.tcp {
			if _, err = io.ReadFull(r.conn, buf[:20]); err == nil {
				n = 20 + int(binary.BigEndian.Uint16(buf[2:4]))
				if n > len(buf) {
					return nil, fmt.Errorf("a %d-byte frame", n)
				}
				_, err = io.ReadFull(r.conn, buf[20:n])
			}
		} else {
			n, err = r.conn.Read(buf)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errNoAnswer
		}
		if err != nil {
			return nil, err
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() == nil && m.TransactionID == id {
			return m, nil
		}
	}
}

// errorCode is 0 for a success response, else its error code.
func errorCode(m *stun.Message) int {
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var code stun.ErrorCodeAttribute
	if code.GetFrom(m) != nil {
		return -1
	}
	return int(code.Code)
}

// allocate asks for an allocation; 0 means it got one.
func (r *rawTURN) allocate(extra ...stun.Setter) int {
	r.t.Helper()
	code, err := r.tryAllocate(extra...)
	if err != nil {
		r.t.Fatal("allocate:", err)
	}
	return code
}

func (r *rawTURN) tryAllocate(extra ...stun.Setter) (int, error) {
	res, err := r.request(stun.MethodAllocate, append([]stun.Setter{udpTransport}, extra...)...)
	if err != nil {
		return 0, err
	}
	return errorCode(res), nil
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestPeerPolicy(t *testing.T) {
	var def peerPolicy
	refused := []string{
		"0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.255", "127.0.0.1",
		"127.255.255.254", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.9", "192.0.2.1",
		"192.88.99.1", "192.168.0.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
		"224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "::10.0.0.1", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1",
		"2001:db8::1", "3fff::1", "2001::1", "100::1", "64:ff9b:1::1", "5f00::1",
		"::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.1.1",
		"64:ff9b::10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:0a00:0001::1", "2002:7f00:0001::1",
	}
	for _, s := range refused {
		if err := def.check(netip.MustParseAddr(s)); err == nil {
			t.Errorf("%s allowed by default", s)
		}
	}
	allowed := []string{
		"1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255",
		"128.0.0.0", "169.253.255.255", "172.15.255.255", "172.32.0.0", "192.0.1.255", "192.167.255.255",
		"198.17.255.255", "198.20.0.0", "223.255.255.255", "::ffff:8.8.8.8",
		"2606:4700:4700::1111", "2a00:1450::1", "64:ff9b::8.8.8.8", "2002:0808:0808::1",
	}
	for _, s := range allowed {
		if err := def.check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s refused by default: %v", s, err)
		}
	}
	if err := def.check(netip.Addr{}); err == nil {
		t.Error("the zero address allowed")
	}

	lab := peerPolicy{allow: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("10.1.0.0/16")}}
	for _, s := range []string{"203.0.113.9", "::ffff:203.0.113.9", "10.1.2.3", "64:ff9b::10.1.2.3"} {
		if err := lab.check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s refused with its range allowed: %v", s, err)
		}
	}
	for _, s := range []string{"192.0.2.1", "10.2.0.1", "127.0.0.1", "198.51.100.1"} {
		if err := lab.check(netip.MustParseAddr(s)); err == nil {
			t.Errorf("%s allowed outside the allowed ranges", s)
		}
	}

	for in, want := range map[string]string{
		"10.1.2.3/16": "10.1.0.0/16", "203.0.113.7": "203.0.113.7/32", " fd00::/8 ": "fd00::/8",
		"::ffff:10.0.0.1": "10.0.0.1/32", "fe80::1": "fe80::1/128",
	} {
		p, err := ParsePeerPrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePeerPrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "10.0.0.0/8/8", "::ffff:10.0.0.0/104"} {
		if _, err := ParsePeerPrefix(bad); err == nil {
			t.Errorf("ParsePeerPrefix(%q) accepted", bad)
		}
	}
	if _, err := New(Config{Secret: testSecret, ListenUDP: "127.0.0.1:0", AllowPeers: []netip.Prefix{{}}}); err == nil {
		t.Error("New took an invalid allowed range")
	}
}

// TestPermitDestinationsRaw: what pion's client never sends is refused too:
// IPv4-mapped and IPv6 forms of reserved addresses, and channel binds to them.
func TestPermitDestinationsRaw(t *testing.T) {
	s := newRelay(t, Config{AllowPeers: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, zerolog.DebugLevel)
	r := dialRaw(t, s, false, nil, mint("peer-a"))
	if code := r.allocate(); code != 0 {
		t.Fatalf("allocate: error %d", code)
	}
	port := func(a string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(a), 9) }
	refused := []stun.Setter{
		peerAttr(port("127.0.0.1")), peerAttr(port("10.0.0.1")), peerAttr(port("::1")), peerAttr(port("fe80::1")),
		peerAttr(port("fd00::1")), peerAttr(port("ff02::1")), peerAttr(port("::")), peerAttr(port("64:ff9b::a00:1")),
		mappedPeerAttr(port("10.0.0.1")), mappedPeerAttr(port("127.0.0.1")), mappedPeerAttr(port("169.254.169.254")),
	}
	for i, p := range refused {
		res, err := r.request(stun.MethodCreatePermission, p)
		if err != nil {
			t.Fatal(err)
		}
		if errorCode(res) == 0 {
			t.Errorf("permission %d granted", i)
		}
		res, err = r.request(stun.MethodChannelBind, channelAttr(0x4000+uint16(i)), p)
		if err != nil {
			t.Fatal(err)
		}
		if errorCode(res) == 0 {
			t.Errorf("channel bind %d granted", i)
		}
	}
	for _, p := range []stun.Setter{peerAttr(port("192.0.2.7")), mappedPeerAttr(port("192.0.2.8"))} {
		res, err := r.request(stun.MethodCreatePermission, p)
		if err != nil || errorCode(res) != 0 {
			t.Fatalf("permission in an allowed range: %v, error %d", err, errorCode(res))
		}
	}
	res, err := r.request(stun.MethodChannelBind, channelAttr(0x7000), peerAttr(port("192.0.2.7")))
	if err != nil || errorCode(res) != 0 {
		t.Fatalf("channel bind in an allowed range: %v, error %d", err, errorCode(res))
	}
	s.mu.Lock()
	c := s.byClient[clientKey(r.conn.LocalAddr())]
	s.mu.Unlock()
	c.pmu.Lock()
	n := len(c.perms)
	c.pmu.Unlock()
	if n != 2 {
		t.Errorf("%d permissions counted, want the 2 granted", n)
	}
}

// TestExpiryHorizon: credentials may expire at most CredTTL plus the clock
// skew ahead of the relay's clock.
func TestExpiryHorizon(t *testing.T) {
	s := startRelay(t, Config{CredTTL: 10 * time.Minute, ClockSkew: time.Minute})
	now := time.Now()
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		ok   bool
	}{
		{"the TTL", 10 * time.Minute, true},
		{"within the skew", 10*time.Minute + 50*time.Second, true},
		{"past the skew", 11*time.Minute + 30*time.Second, false},
		{"a day", 24 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tryAllocate(t, s.UDPAddr().String(), false, Mint(testSecret, "peer-"+tc.name, tc.ttl, now))
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("Allocate: %v, want ErrUnauthorized", err)
			}
			if a != nil {
				a.Close()
			}
		})
	}
}

// TestSessionBytesShared: one identity's allocations, each under a credential
// of its own, over UDP and TCP, share one byte quota; at it they all stop,
// the identity is refused until its session ends, and others are served.
func TestSessionBytesShared(t *testing.T) {
	const quota = 256 << 10
	s := startRelay(t, Config{MaxBytes: quota})
	now := time.Now()
	// Three usernames for one peer, as three asks of a supernode give.
	cred := func(i int) Credentials {
		return Mint(testSecret, "peer-a", time.Minute+time.Duration(i)*time.Second, now)
	}
	udp, err := tryAllocate(t, s.UDPAddr().String(), false, cred(0))
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := tryAllocate(t, s.TCPAddr().String(), true, cred(1))
	if err != nil {
		t.Fatal(err)
	}
	peer := loopbackUDP(t)
	for _, a := range []*Allocation{udp, tcp} {
		if err := a.Permit(peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	send := func(a *Allocation) func([]byte) error {
		return func(p []byte) error { _, err := a.WriteTo(p, peer.LocalAddr()); return err }
	}
	recv := func(p []byte) (int, error) {
		peer.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := peer.ReadFrom(p)
		return n, err
	}
	stopped := func() bool { return s.Load().QuotaStops > 0 }
	first := pump(t, send(udp), recv, func(got int) bool { return got >= quota/2 || stopped() })
	second := pump(t, send(tcp), recv, func(int) bool { return stopped() })
	t.Logf("relayed %d bytes on the UDP allocation, %d on the TCP one, quota %d", first, second, quota)
	if first < quota/2 || second >= quota-first+1 || first+second > quota {
		t.Fatalf("relayed %d + %d with one quota of %d", first, second, quota)
	}
	waitFor(t, "both allocations to stop", func() bool { return s.Load().QuotaStops == 2 && s.Load().Allocations == 0 })
	if _, err := tryAllocate(t, s.UDPAddr().String(), false, cred(2)); !errors.Is(err, ErrQuota) {
		t.Fatalf("a fresh credential of an identity at its quota: %v, want ErrQuota", err)
	}
	other := mustAllocate(t, s, false, "peer-b")
	quicThrough(t, other, 64<<10)
}

// TestSessionLifetimeShared: an identity's allocations all end when its
// session does, however late they were opened, and the next allocation opens
// a new session.
func TestSessionLifetimeShared(t *testing.T) {
	const session = 2 * time.Second
	s := startRelay(t, Config{MaxDuration: session})
	a1 := mustAllocate(t, s, false, "peer-a")
	s.mu.Lock()
	id := s.idents["peer-a"]
	start, end := id.start, id.end
	s.mu.Unlock()
	// Later in the session, over TCP, under another credential.
	waitFor(t, "part of the session to pass", func() bool { return time.Since(start) > session/4 })
	a2, err := tryAllocate(t, s.TCPAddr().String(), true, Mint(testSecret, "peer-a", 2*time.Minute, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	var live []*relayConn
	for c := range id.live {
		live = append(live, c)
	}
	s.mu.Unlock()
	if len(live) != 2 {
		t.Fatalf("%d live allocations in the session, want 2", len(live))
	}
	for _, c := range live {
		c.mu.Lock()
		deadline := c.deadline
		c.mu.Unlock()
		if !deadline.Equal(end) {
			t.Errorf("allocation %s ends at %v, the session at %v", c.key, deadline, end)
		}
		if deadline.Sub(c.created) > session {
			t.Errorf("allocation %s lives %v, longer than MaxDuration", c.key, deadline.Sub(c.created))
		}
	}
	waitFor(t, "the session to end both", func() bool { return s.Load().Allocations == 0 })
	if ld := s.Load(); ld.QuotaStops != 2 {
		t.Fatalf("QuotaStops %d, want 2", ld.QuotaStops)
	}
	select {
	case <-a2.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the TCP client was not told its allocation ended")
	}
	a1.Close()
	a3 := mustAllocate(t, s, false, "peer-a")
	s.mu.Lock()
	renewed := s.idents["peer-a"].start.After(end.Add(-time.Millisecond))
	s.mu.Unlock()
	if !renewed {
		t.Error("the allocation after the session's end did not open a new session")
	}
	quicThrough(t, a3, 64<<10)
}

// TestPerPeerCapConcurrent: Allocates raced over UDP and TCP never give one
// identity more than MaxPerPeer allocations, nor the relay more than
// MaxAllocations.
func TestPerPeerCapConcurrent(t *testing.T) {
	race := func(t *testing.T, s *Server, n int, peer func(i int) string) (ok, quota int) {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				tcp := i%2 == 1
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				a, err := Allocate(ctx, ClientConfig{Server: serverAddr(s, tcp), TCP: tcp, Log: testLog(t),
					Creds: Mint(testSecret, peer(i), time.Minute+time.Duration(i)*time.Second, time.Now())})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
					t.Cleanup(func() { a.Close() })
				case errors.Is(err, ErrQuota):
					quota++
				default:
					t.Errorf("allocation %d: %v", i, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		return ok, quota
	}
	// Every TCP client here comes from 127.0.0.1: the per-IP cap on TCP
	// connections without an allocation is not what is tested.
	t.Run("per peer", func(t *testing.T) {
		s := startRelay(t, Config{MaxTCPPerIP: 100})
		for round := range 3 {
			ok, quota := race(t, s, 3*DefaultMaxPerPeer, func(int) string { return fmt.Sprintf("peer-%d", round) })
			if ok != DefaultMaxPerPeer || quota != 2*DefaultMaxPerPeer {
				t.Fatalf("round %d: %d allocations and %d refusals of one peer, want %d and %d",
					round, ok, quota, DefaultMaxPerPeer, 2*DefaultMaxPerPeer)
			}
			waitFor(t, "the refused TCP clients to be dropped", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.tcpIdle == 0
			})
		}
		if n := s.Load().Allocations; n != 3*DefaultMaxPerPeer {
			t.Fatalf("%d allocations live, want %d", n, 3*DefaultMaxPerPeer)
		}
	})
	t.Run("relay", func(t *testing.T) {
		const capacity = 10
		s := startRelay(t, Config{MaxAllocations: capacity, MaxTCPPerIP: 100})
		ok, quota := race(t, s, 3*capacity, func(i int) string { return fmt.Sprintf("peer-%d", i) })
		if ok != capacity || quota != 2*capacity {
			t.Fatalf("%d allocations and %d refusals, want %d and %d", ok, quota, capacity, 2*capacity)
		}
	})
}

// countingGen is a relay address generator that counts the sockets asked of it.
type countingGen struct {
	turn.RelayAddressGenerator
	n int
}

func (g *countingGen) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	g.n++
	return g.RelayAddressGenerator.AllocatePacketConn(network, port)
}

// TestEvenPortProbesRefused: pion binds up to 128 sockets to find an even
// port before it asks whether the client may allocate; the relay binds none
// for a client it has not admitted.
func TestEvenPortProbesRefused(t *testing.T) {
	s := startRelay(t, Config{})
	inner := &countingGen{RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
		RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"}}
	gen := &relayGen{inner: inner, s: s}
	if _, _, err := gen.AllocatePacketConn("udp4", 0); err == nil || inner.n != 0 {
		t.Fatalf("a socket without an admission: %v after %d binds", err, inner.n)
	}

	r := dialRaw(t, s, false, nil, mint("peer-a"))
	// EVEN-PORT: refused, and the relay stays clean.
	if code := r.allocate(rawAttr{stun.AttrEvenPort, []byte{0x80}}); code == 0 {
		t.Fatal("an EVEN-PORT allocation was granted")
	}
	// LIFETIME 0 is admitted, then fails inside pion before any socket:
	// its admission is the only ticket, and buys one socket at most.
	if code := r.allocate(lifetimeAttr(0)); code == 0 {
		t.Fatal("a zero-lifetime allocation was granted")
	}
	r2 := dialRaw(t, s, false, nil, mint("peer-a"))
	r2.allocate(rawAttr{stun.AttrEvenPort, []byte{0x80}})
	s.mu.Lock()
	relays := len(s.relays)
	s.mu.Unlock()
	if relays != 0 {
		t.Fatalf("%d relay sockets open", relays)
	}
	if code := r.allocate(); code != 0 {
		t.Fatalf("a plain allocation after the refusals: error %d", code)
	}
	quicThrough(t, mustAllocate(t, s, true, "peer-b"), 64<<10)
}

// TestPermissionAndChannelCaps: past MaxPermissions new peer IPs are refused
// (refreshes still pass); past MaxChannels the allocation is stopped.
func TestPermissionAndChannelCaps(t *testing.T) {
	s := startRelay(t, Config{MaxPermissions: 8, MaxChannels: 4})

	r := dialRaw(t, s, false, nil, mint("peer-a"))
	if code := r.allocate(); code != 0 {
		t.Fatalf("allocate: error %d", code)
	}
	ip := func(i int) netip.AddrPort { return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}), 9) }
	for i := range 8 {
		res, err := r.request(stun.MethodCreatePermission, peerAttr(ip(i)))
		if err != nil || errorCode(res) != 0 {
			t.Fatalf("permission %d: %v, error %d", i, err, errorCode(res))
		}
	}
	res, err := r.request(stun.MethodCreatePermission, peerAttr(ip(8)))
	if err != nil || errorCode(res) == 0 {
		t.Fatalf("a ninth peer IP: %v, error %d; want refused", err, errorCode(res))
	}
	res, err = r.request(stun.MethodCreatePermission, peerAttr(ip(3)), peerAttr(ip(5)))
	if err != nil || errorCode(res) != 0 {
		t.Fatalf("refreshing permissions at the cap: %v, error %d", err, errorCode(res))
	}
	// Channels: to one permitted IP, on ports of its own each.
	for i := range 4 {
		p := netip.AddrPortFrom(ip(0).Addr(), uint16(1000+i))
		res, err := r.request(stun.MethodChannelBind, channelAttr(0x4000+uint16(i)), peerAttr(p))
		if err != nil || errorCode(res) != 0 {
			t.Fatalf("channel %d: %v, error %d", i, err, errorCode(res))
		}
	}
	if ld := s.Load(); ld.Allocations != 1 || ld.QuotaStops != 0 {
		t.Fatalf("after 4 channels: %+v", ld)
	}
	r.request(stun.MethodChannelBind, channelAttr(0x4004), peerAttr(netip.AddrPortFrom(ip(0).Addr(), 2000)))
	waitFor(t, "the allocation to stop", func() bool { ld := s.Load(); return ld.Allocations == 0 && ld.QuotaStops == 1 })
	// Its socket is closed at once, so nothing more passes; pion deletes the
	// allocation itself when its read on that socket fails, a moment later,
	// and from then on a refresh is refused.
	r.timeout = 300 * time.Millisecond
	waitFor(t, "the stopped allocation's refresh to be refused", func() bool {
		res, err := r.request(stun.MethodRefresh, lifetimeAttr(600))
		return err != nil || errorCode(res) != 0
	})
}

// TestIdentityTableBounded: identities that come and go (each one a key a
// supernode minted for) cannot grow the relay's table of sessions.
func TestIdentityTableBounded(t *testing.T) {
	const capacity = 4
	s := startRelay(t, Config{MaxAllocations: capacity})
	for i := range 3 * identsPerSlot * capacity {
		r := dialRaw(t, s, false, nil, mint(fmt.Sprintf("peer-%d", i)))
		if code := r.allocate(); code != 0 {
			t.Fatalf("allocation %d: error %d", i, code)
		}
		if res, err := r.request(stun.MethodRefresh, lifetimeAttr(0)); err != nil || errorCode(res) != 0 {
			t.Fatalf("release %d: %v", i, err)
		}
		r.conn.Close()
		s.mu.Lock()
		n, order := len(s.idents), s.identAge.Len()
		s.mu.Unlock()
		if n > identsPerSlot*capacity || n != order {
			t.Fatalf("after %d identities: %d in the table (%d in its order), cap %d", i+1, n, order, identsPerSlot*capacity)
		}
	}
	waitFor(t, "the allocations to be released", func() bool { return s.Load().Allocations == 0 })
	quicThrough(t, mustAllocate(t, s, false, "honest"), 64<<10)
}

// TestHostileClientBounded: a client holding one valid credential tries
// thousands of allocations, permissions and channel binds, and opens
// thousands of TCP connections that never authenticate. The relay's heap and
// every table it keeps stay bounded, and an honest client still gets
// allocations over UDP and TCP and relays data through them.
func TestHostileClientBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the relay")
	}
	// Thousands of refusals are logged at debug: the test logs less.
	s := newRelay(t, Config{AllowLoopbackPeers: true}, zerolog.WarnLevel)
	creds := mint("hostile")
	before := heapInUse()

	// Allocations: thousands of tries, from sockets of their own.
	var live []*rawTURN
	refused := 0
	for i := range 2000 {
		tcp := i%10 == 9 || i < DefaultMaxPerPeer && i%2 == 1
		r := dialRaw(t, s, tcp, nil, creds)
		code, err := r.tryAllocate()
		if err == nil && code == 0 {
			live = append(live, r)
			continue
		}
		if err != nil && !tcp {
			t.Fatal(err)
		}
		refused++ // over TCP, maybe by closing the connection at once
		r.conn.Close()
	}
	if len(live) != DefaultMaxPerPeer {
		t.Fatalf("one credential holds %d allocations, want %d", len(live), DefaultMaxPerPeer)
	}

	// Permissions: 4096 peer IPs on each allocation, 64 to a request.
	permRefused := 0
	for _, r := range live {
		for b := range 64 {
			attrs := make([]stun.Setter, 64)
			for j := range attrs {
				attrs[j] = peerAttr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(b), byte(j)}), 9))
			}
			res, err := r.request(stun.MethodCreatePermission, attrs...)
			if err != nil {
				t.Fatal(err)
			}
			if errorCode(res) != 0 {
				permRefused++
			}
		}
	}
	afterPerms := heapInUse()
	s.mu.Lock()
	var allocs []*relayConn
	for c := range s.idents["hostile"].live {
		allocs = append(allocs, c)
	}
	s.mu.Unlock()
	for _, c := range allocs {
		c.pmu.Lock()
		if n := len(c.perms); n != DefaultMaxPermissions {
			t.Errorf("an allocation holds %d permissions, want the cap, %d", n, DefaultMaxPermissions)
		}
		c.pmu.Unlock()
	}

	// Channel binds: past the cap the allocation is stopped; the relay then
	// answers nothing for it, so a silence ends the flood.
	for _, r := range live {
		r.timeout = 300 * time.Millisecond
		for i := range 2 * DefaultMaxChannels {
			p := netip.AddrPortFrom(netip.MustParseAddr("127.1.0.1"), uint16(1024+i))
			if _, err := r.request(stun.MethodChannelBind, channelAttr(0x4000+uint16(i)), peerAttr(p)); err != nil {
				break
			}
		}
	}
	waitFor(t, "the channel floods to stop every allocation", func() bool { return s.Load().Allocations == 0 })

	// Thousands of TCP connections that never authenticate, each sending a
	// frame header that claims 64 KiB: from one address, then from many.
	var conns []net.Conn
	openTCP := func(from net.IP, n int) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 5 * time.Second}
		hdr := make([]byte, 20)
		binary.BigEndian.PutUint16(hdr[0:], 0x0003)
		binary.BigEndian.PutUint16(hdr[2:], 0xffe0) // pion adds the header in 16 bits: no more
		binary.BigEndian.PutUint32(hdr[4:], stunMagic)
		for range n {
			c, err := d.Dial("tcp4", s.TCPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.Write(hdr)
			c.Write(make([]byte, 0xffe0-1)) // all but the last byte: pion holds it all
			conns = append(conns, c)
		}
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	openTCP(net.IPv4(127, 0, 0, 2), 2000)
	waitFor(t, "the relay to take what it keeps", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tcpIdleBy[netip.AddrFrom4([4]byte{127, 0, 0, 2})] == DefaultMaxTCPPerIP
	})
	oneSource := heapInUse()
	for i := range 40 {
		openTCP(net.IPv4(127, 0, 1, byte(10+i)), 2*DefaultMaxTCPPerIP)
	}
	waitFor(t, "the relay to fill its pending connections", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tcpIdle == DefaultMaxPendingTCP
	})
	peak := heapInUse()

	s.mu.Lock()
	tables := fmt.Sprintf("idents %d, admitted %d, byClient %d, relays %d, tcpConns %d (idle %d, from %d IPs)",
		len(s.idents), len(s.admitted), len(s.byClient), len(s.relays), len(s.tcpConns), s.tcpIdle, len(s.tcpIdleBy))
	bad := len(s.idents) > 1 || len(s.admitted) > DefaultMaxPerPeer || len(s.byClient) > DefaultMaxPerPeer ||
		len(s.tcpConns) > DefaultMaxPendingTCP+DefaultMaxAllocations || s.tcpIdle > DefaultMaxPendingTCP
	for _, n := range s.tcpIdleBy {
		bad = bad || n > DefaultMaxTCPPerIP
	}
	s.mu.Unlock()
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	t.Logf("refused %d of 2000 allocations, %d permission requests; tables: %s", refused, permRefused, tables)
	t.Logf("heap: %.1f MiB before; %.1f MiB with %d allocations holding full permissions; %.1f MiB with %d TCP connections from one IP; %.1f MiB with %d more from 40 IPs (peak)",
		mib(before), mib(afterPerms), len(live), mib(oneSource), 2000, mib(peak), 40*2*DefaultMaxTCPPerIP)
	if bad {
		t.Fatalf("a table grew past its cap: %s", tables)
	}
	// The worst case is the pending TCP connections: 256, each holding a
	// frame of up to 64 KiB in pion, with its goroutine; about 20 MiB.
	const bound = 48 << 20
	if growth := int64(peak) - int64(before); growth > bound {
		t.Fatalf("heap grew %.1f MiB under attack, bound %d MiB", float64(growth)/(1<<20), bound>>20)
	}

	// An honest client: over UDP, and over TCP from an address of its own
	// (the 40-address flood holds every pending TCP slot).
	quicThrough(t, mustAllocate(t, s, false, "honest"), 1<<20)
	for _, c := range conns[2000:] {
		c.Close()
	}
	waitFor(t, "the flood's connections to be dropped", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tcpIdle <= DefaultMaxTCPPerIP
	})
	quicThrough(t, mustAllocate(t, s, true, "honest"), 1<<20)
}

// TestGrantExpiry: permissions pion has dropped (five minutes without a
// refresh) no longer count against the cap; refreshed ones do.
func TestGrantExpiry(t *testing.T) {
	s := &Server{cfg: Config{MaxPermissions: 3}}
	c := &relayConn{s: s}
	ip := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, i}) }
	t0 := time.Unix(1_000_000, 0)
	for i := range byte(3) {
		if !c.grant(ip(i), t0) {
			t.Fatalf("grant %d refused", i)
		}
	}
	if c.grant(ip(3), t0.Add(time.Minute)) {
		t.Fatal("a fourth IP granted at the cap")
	}
	if !c.grant(ip(1), t0.Add(4*time.Minute)) {
		t.Fatal("a refresh refused at the cap")
	}
	later := t0.Add(permissionLife + time.Second)
	if !c.grant(ip(3), later) || !c.grant(ip(4), later) {
		t.Fatal("new IPs refused after two permissions expired")
	}
	if c.grant(ip(5), later) {
		t.Fatal("the refreshed permission was pruned with the expired ones")
	}
	if !c.grant(ip(5), t0.Add(4*time.Minute+permissionLife+time.Second)) {
		t.Fatal("the refreshed permission never expires")
	}
}
