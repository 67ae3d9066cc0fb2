package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/internal/peerlead"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

func testLog(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(testLogLevel).With().Timestamp().Logger()
}

func loopbackConn(t testing.TB) net.PacketConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nextPeerIP numbers the loopback addresses peers get.
var nextPeerIP atomic.Uint32

// peerConn is a socket on a loopback address of the peer's own (127.1.x.y):
// peers are on hosts of their own, as a supernode's per-address limits
// expect, and the whole of 127/8 is the loopback interface.
func peerConn(t testing.TB) net.PacketConn {
	t.Helper()
	n := nextPeerIP.Add(1) % (1 << 16)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 1, byte(n>>8), byte(n))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startSupernode runs a supernode on loopback that joins the given ones.
func startSupernode(t testing.TB, join ...*supernode.Server) *supernode.Server {
	t.Helper()
	s, _ := runSupernode(t, nil, join...)
	return s
}

// runSupernode runs a supernode on loopback that joins the given ones, with
// tune applied to its configuration; stop ends it (also safe after the test).
func runSupernode(t testing.TB, tune func(*supernode.Config), join ...*supernode.Server) (*supernode.Server, func()) {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, j := range join {
		targets = append(targets, j.ID().String()+"@"+j.Addr().String())
	}
	cfg := supernode.Config{
		Conn: loopbackConn(t), Identity: id, Join: targets, TickInterval: 50 * time.Millisecond,
		Network: testNetwork, Chain: testAdmit(id),
		Neighbours: -1, // the tests build their topologies link by link
		// Tests and benchmarks poll and measure faster than any person searches.
		Router:      supernode.RouterConfig{LeafQueryRate: 1e6, LeafQueryBurst: 1e6},
		LeafDirRate: 1e6, LeafDirBurst: 1e6,
		Log: testLog(t),
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := supernode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.Close()
			if err := <-done; !errors.Is(err, supernode.ErrServerClosed) {
				t.Errorf("supernode Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

type peerOpt func(*peer.Config)

// startPeer runs a peer daemon sharing files (name -> content) attached to sn.
func startPeer(t testing.TB, sn *supernode.Server, name string, files map[string][]byte, opts ...peerOpt) *peer.Daemon {
	t.Helper()
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	if err := os.MkdirAll(share, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(share, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := peer.Config{
		DataDir: filepath.Join(dir, "data"), ShareDir: share, Name: name,
		Supernodes: []string{sn.ID().String() + "@" + sn.Addr().String()},
		Conn:       peerConn(t), ControlSocket: "-", Log: testLog(t), Network: testNetwork,
		// One attachment, so a test's topology is the one it built; the
		// failover tests ask for more.
		Attach:    1,
		StartLead: peerlead.Start,
	}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := peer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Serve(context.Background()) }()
	t.Cleanup(func() {
		d.Close()
		<-done
	})
	return d
}

// eventually polls cond every 20 ms until it holds or the time is up.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// findOne waits until a query from d finds exactly one file and returns it.
// It searches every 100 ms, within a leaf's query rate (20 a second).
func findOne(t testing.TB, d *peer.Daemon, q string, within time.Duration) protocol.Hit {
	t.Helper()
	var hits []protocol.Hit
	eventually(t, within, fmt.Sprintf("one result for %q", q), func() bool {
		hits, _ = search(t, d, q)
		if len(hits) != 1 {
			time.Sleep(80 * time.Millisecond)
		}
		return len(hits) == 1
	})
	return hits[0]
}

// lastSearch is when each daemon last searched, for search's pacing.
var lastSearch sync.Map // *peer.Daemon -> time.Time

// search runs a query from d and returns the hits grouped by content ID. A
// daemon searches at most every 60 ms, within a leaf's query rate (20 a
// second): tests that poll a search would otherwise get most of theirs
// refused.
func search(t testing.TB, d *peer.Daemon, q string) ([]protocol.Hit, apitype.SearchResult) {
	t.Helper()
	if at, ok := lastSearch.Load(d); ok {
		time.Sleep(time.Until(at.(time.Time).Add(60 * time.Millisecond)))
	}
	defer lastSearch.Store(d, time.Now())
	var hits []protocol.Hit
	res, err := d.Search(context.Background(), q, protocol.ContentID{}, 0, func(h []protocol.Hit) { hits = append(hits, h...) })
	if err != nil {
		t.Fatalf("search %q: %v", q, err)
	}
	return peer.GroupHits(hits), res
}

// settled waits until no supernode has sent a summary or a keyword ring
// batch for a second and a half, longer than the second batches wait to be
// passed on each hop: routing is stable.
func settled(t testing.TB, sns ...*supernode.Server) {
	t.Helper()
	sent := func() uint64 {
		var n uint64
		for _, s := range sns {
			n += s.Router().Stats.SummariesSent.Load() + s.Router().Stats.TermBatches.Load()
		}
		return n
	}
	last, since := sent(), time.Now()
	deadline := time.Now().Add(raceSlowdown * 15 * time.Second)
	for time.Since(since) < 1500*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("summaries still changing after 15 s")
		}
		time.Sleep(25 * time.Millisecond)
		if n := sent(); n != last {
			last, since = n, time.Now()
		}
	}
}

var testLogLevel = zerolog.WarnLevel
