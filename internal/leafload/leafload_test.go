package leafload

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
	"github.com/supernet-p2p/supernet/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs a supernode on conn until the returned stop is called.
func serve(t *testing.T, conn net.PacketConn, dir string, key ed25519.PrivateKey, tune ...func(*supernode.Config)) (*supernode.Server, func()) {
	t.Helper()
	cfg := supernode.Config{Conn: conn, DataDir: dir, NetworkKey: key, AltListen: "-",
		Neighbours: -1, LeafLimit: -1, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	for _, f := range tune {
		f(&cfg)
	}
	s, err := supernode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	return s, func() { s.Close(); <-done }
}

// serveNew runs a supernode of a new overlay on a socket of its own.
func serveNew(t *testing.T, tune ...func(*supernode.Config)) (*supernode.Server, func()) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := transport.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, pc, t.TempDir(), key, tune...)
}

// TestFleetAttachesSearchesAndComesBack: a fleet of leaves attaches to a
// supernode, publishes, searches with answers, finds the supernode gone when
// it stops answering (by its pings, well before QUIC's idle timeout), and
// attaches again to a new one at the same address.
func TestFleetAttachesSearchesAndComesBack(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pc, err := transport.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	s, stop := serve(t, pc, dir, key)
	defer func() { stop() }()

	const n = 40
	f, err := Start(Config{Target: s.ID().String() + "@" + addr, Leaves: n, Files: 10, Seed: 3,
		PingInterval: 100 * time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t))}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.WaitAttached(ctx, n); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := f.Search(ctx, i, Words[i%len(Words)]); err != nil {
			t.Fatalf("search %d: %v", i, err)
		}
	}
	// Each leaf published before it searched; the last publishes may still
	// be on their way.
	for files := s.Router().IndexedFiles(); files != n*10; files = s.Router().IndexedFiles() {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("supernode indexes %d files, want %d", files, n*10)
		}
	}

	// The supernode closes (gracefully: the leaves are told).
	made, _ := f.Attaches()
	stop()
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	if err := f.WaitDetached(dctx, 0); err != nil {
		t.Fatal(err)
	}
	pc, err = transport.ListenUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	s, stop = serve(t, pc, dir, key)
	if err := f.WaitAttached(ctx, n); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.Attaches(); again-made < n {
		t.Fatalf("%d attachments after the restart, want %d", again-made, n)
	}
}

// blackhole forwards UDP between clients and one server until cut, then
// drops every packet both ways, as a crashed host or a cut cable would.
type blackhole struct {
	pc   *net.UDPConn
	to   *net.UDPAddr
	cut  atomic.Bool
	mu   sync.Mutex
	up   map[string]*net.UDPConn // per client, the socket toward the server
	wg   sync.WaitGroup
	done chan struct{}
}

func newBlackhole(t *testing.T, to *net.UDPAddr) *blackhole {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{pc: pc, to: to, up: make(map[string]*net.UDPConn), done: make(chan struct{})}
	b.wg.Add(1)
	go b.run()
	return b
}

func (b *blackhole) run() {
	defer b.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := b.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if b.cut.Load() {
			continue
		}
		b.mu.Lock()
		up := b.up[from.String()]
		if up == nil {
			if up, err = net.DialUDP("udp4", nil, b.to); err != nil {
				b.mu.Unlock()
				continue
			}
			b.up[from.String()] = up
			b.wg.Add(1)
			go b.back(up, from)
		}
		b.mu.Unlock()
		up.Write(buf[:n])
	}
}

func (b *blackhole) back(up *net.UDPConn, client *net.UDPAddr) {
	defer b.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		if !b.cut.Load() {
			b.pc.WriteToUDP(buf[:n], client)
		}
	}
}

func (b *blackhole) close() {
	b.pc.Close()
	b.mu.Lock()
	for _, up := range b.up {
		up.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// TestFleetFindsSilentSupernode: when every packet to and from the
// supernode is lost, the leaves give up on it after three silent ping
// intervals, well before QUIC's 15 s idle timeout, and attach again once
// packets pass.
func TestFleetFindsSilentSupernode(t *testing.T) {
	s, stop := serveNew(t)
	defer stop()
	b := newBlackhole(t, s.Addr())
	defer b.close()
	const n = 10
	f, err := Start(Config{Target: s.ID().String() + "@" + b.pc.LocalAddr().String(), Leaves: n, Files: 1,
		PingInterval: 100 * time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t))}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.WaitAttached(ctx, n); err != nil {
		t.Fatal(err)
	}
	made, _ := f.Attaches()
	b.cut.Store(true)
	cut := time.Now()
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	if err := f.WaitDetached(dctx, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("every leaf gave up on the silent supernode %v after the cut", time.Since(cut).Round(time.Millisecond))
	b.cut.Store(false)
	if err := f.WaitAttached(ctx, n); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.Attaches(); again-made < n {
		t.Fatalf("%d attachments after the cut, want %d", again-made, n)
	}
}

// TestStartRefusesBadConfig: the fleet's bounds and target are checked
// before any socket opens.
func TestStartRefusesBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Target: "x@127.0.0.1:1", Leaves: 0},
		{Target: "x@127.0.0.1:1", Leaves: maxLeaves + 1},
		{Target: "127.0.0.1:1", Leaves: 1},
	} {
		if f, err := Start(c, 0); err == nil {
			f.Close()
			t.Fatalf("Start(%+v) took it", c)
		}
	}
}

// A search the supernode refuses (here: over the leaf's query rate) ends at
// once with the refusal, not at the caller's deadline.
func TestSearchRefusedEndsAtOnce(t *testing.T) {
	s, stop := serveNew(t, func(c *supernode.Config) {
		c.Router.LeafQueryRate, c.Router.LeafQueryBurst = 0.01, 1
	})
	defer stop()
	f, err := Start(Config{Target: s.ID().String() + "@" + s.Addr().String(), Leaves: 1, Seed: 5,
		Log: zerolog.New(zerolog.NewTestWriter(t))}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.WaitAttached(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Search(ctx, 0, Words[0]); err != nil {
		t.Fatalf("the first search, within the burst: %v", err)
	}
	_, err = f.Search(ctx, 0, Words[1])
	if err == nil || ctx.Err() != nil {
		t.Fatalf("a search over the rate: %v (context: %v), want the refusal at once", err, ctx.Err())
	}
}

// Failed dials are counted by kind.
func TestFailuresByKind(t *testing.T) {
	f := &Fleet{}
	f.noteFailure(fmt.Errorf("dial: %w", transport.ErrRefused))
	f.noteFailure(fmt.Errorf("dial: %w", protocol.ErrOverloaded))
	f.noteFailure(fmt.Errorf("dial: %w", transport.ErrSlowFrame))
	f.noteFailure(fmt.Errorf("dial: %w", context.DeadlineExceeded))
	odd := errors.New("something else")
	f.noteFailure(odd)
	f.noteFailure(errors.New("and another"))
	got := f.Failures()
	want := map[string]int64{
		"refused before the handshake (a limit)": 1, "refused as overloaded": 1,
		"timed out waiting for the welcome": 1, "timed out in the QUIC handshake": 1, "other": 2,
	}
	if !maps.Equal(got, want) {
		t.Fatalf("failures %v, want %v", got, want)
	}
	if f.FirstOther() != odd {
		t.Fatalf("first other %v, want %v", f.FirstOther(), odd)
	}
}
