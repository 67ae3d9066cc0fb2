package peer

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/attach"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
	"github.com/supernet-p2p/supernet/transport"
)

// faultConn is a peer's UDP socket with a hand on it: it drops the packets to
// and from chosen addresses, as a crash or a cut cable does (nothing is said),
// delays what the peer sends, as a full home uplink queue does, and counts
// what passes.
type faultConn struct {
	net.PacketConn

	mu    sync.Mutex
	cut   map[string]bool // addresses whose packets vanish, both ways
	stall map[string]bool // addresses whose QUIC packets vanish, both ways; STUN passes
	all   bool            // every packet vanishes
	delay time.Duration   // added to every packet sent

	queue chan delayed
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	sentPkts, sentBytes, rcvdPkts, rcvdBytes atomic.Int64
}

type delayed struct {
	due  time.Time
	p    []byte
	addr net.Addr
}

func newFaultConn(t testing.TB) *faultConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &faultConn{PacketConn: c, cut: make(map[string]bool), stall: make(map[string]bool), queue: make(chan delayed, 4096), stop: make(chan struct{})}
	f.wg.Add(1)
	go f.sendLoop()
	return f
}

// sendLoop writes delayed packets in order, each when it is due.
func (f *faultConn) sendLoop() {
	defer f.wg.Done()
	for {
		select {
		case d := <-f.queue:
			select {
			case <-time.After(time.Until(d.due)):
			case <-f.stop:
				return
			}
			f.PacketConn.WriteTo(d.p, d.addr)
		case <-f.stop:
			return
		}
	}
}

func (f *faultConn) dropped(p []byte, addr net.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	// QUIC sets the second bit of every packet; a STUN message starts with two zero bits.
	quic := len(p) > 0 && p[0]&0x40 != 0
	return f.all || f.cut[addr.String()] || quic && f.stall[addr.String()]
}

func (f *faultConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if f.dropped(p, addr) {
		return len(p), nil
	}
	f.sentPkts.Add(1)
	f.sentBytes.Add(int64(len(p)))
	f.mu.Lock()
	delay := f.delay
	f.mu.Unlock()
	if delay <= 0 {
		return f.PacketConn.WriteTo(p, addr)
	}
	select {
	case f.queue <- delayed{time.Now().Add(delay), append([]byte(nil), p...), addr}:
	default: // the queue is full: the packet is lost, as on a router
	}
	return len(p), nil
}

func (f *faultConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := f.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if f.dropped(p[:n], addr) {
			continue
		}
		f.rcvdPkts.Add(1)
		f.rcvdBytes.Add(int64(n))
		return n, addr, nil
	}
}

func (f *faultConn) Close() error {
	f.once.Do(func() { close(f.stop) })
	err := f.PacketConn.Close()
	f.wg.Wait()
	return err
}

func (f *faultConn) cutOff(addr net.Addr) {
	f.mu.Lock()
	f.cut[addr.String()] = true
	f.mu.Unlock()
}

func (f *faultConn) setStall(addr net.Addr, on bool) {
	f.mu.Lock()
	f.stall[addr.String()] = on
	f.mu.Unlock()
}

func (f *faultConn) setAll(on bool) {
	f.mu.Lock()
	f.all = on
	f.mu.Unlock()
}

func (f *faultConn) setDelay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// overlay is n admitted supernodes on loopback, each joined to the first.
func overlay(t *testing.T, n int) ([]*supernode.Server, protocol.NetworkID) {
	t.Helper()
	return overlayWith(t, n, nil)
}

// overlayWith is overlay with each supernode's configuration changed by set.
func overlayWith(t *testing.T, n int, set func(*supernode.Config)) ([]*supernode.Server, protocol.NetworkID) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	network := protocol.NetworkIDOf(key)
	var sns []*supernode.Server
	for i := range n {
		id, err := protocol.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		var join []string
		if i > 0 {
			join = []string{sns[0].ID().String() + "@" + sns[0].Addr().String()}
		}
		cfg := supernode.Config{
			Conn: c, Identity: id, Join: join, Network: network,
			Chain:     protocol.Admit(key, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, time.Now().Add(time.Hour)),
			AltListen: "-", ListenTCP: "-", TickInterval: 50 * time.Millisecond,
			Log: testLogger(t),
		}
		if set != nil {
			set(&cfg)
		}
		s, err := supernode.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(context.Background()) }()
		t.Cleanup(func() {
			s.Close()
			<-done
		})
		sns = append(sns, s)
	}
	// Every supernode lists every other, so a leaf's first member list is whole.
	waitFor(t, 20*time.Second, "every supernode listing all", func() bool {
		for _, s := range sns {
			if len(s.Members()) != n {
				return false
			}
		}
		return true
	})
	return sns, network
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// leafOn runs a peer daemon on conn, attached to up to attach of sns (it
// knows the first and learns the others from the member list).
func leafOn(t *testing.T, conn net.PacketConn, network protocol.NetworkID, sns []*supernode.Server, slots int, opts ...func(*Config)) *Daemon {
	t.Helper()
	cfg := Config{
		DataDir: t.TempDir(), Conn: conn, ControlSocket: "-", Network: network, Attach: slots,
		Supernodes: []string{sns[0].ID().String() + "@" + sns[0].Addr().String()},
		Log:        testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := New(cfg)
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

// attachedLinks are the daemon's supernode links, by supernode.
func attachedLinks(d *Daemon) map[protocol.PeerID]*transport.Link {
	out := make(map[protocol.PeerID]*transport.Link)
	for _, l := range d.attach.Links() {
		out[l.Peer] = l
	}
	return out
}

// quicIdle is the idle timeout a peer's QUIC connections have by default.
const quicIdle = 15 * time.Second

// waitLeftAsSilent waits for the leaf to leave the supernode on l, what, as
// silent: before QUIC's idle timeout would have closed the link, and with
// ErrSilent.
func waitLeftAsSilent(t *testing.T, l *transport.Link, what string) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(quicIdle + 5*time.Second):
		t.Fatalf("%s was never left", what)
	}
	if !errors.Is(l.Err(), attach.ErrSilent) {
		t.Fatalf("the link to %s closed with %v, want the leaf to leave it as silent", what, l.Err())
	}
}

// A supernode whose packets stop, with no goodbye, is left because it is
// silent while the others answer: not at QUIC's idle timeout, and without a
// word from the supernode. The time it took is reported.
func TestSilentSupernodeIsLeft(t *testing.T) {
	sns, network := overlay(t, 4)
	fc := newFaultConn(t)
	d := leafOn(t, fc, network, sns, 3)
	waitFor(t, 20*time.Second, "the leaf on 3 supernodes", func() bool { return len(attachedLinks(d)) == 3 })
	links := attachedLinks(d)
	var victim *supernode.Server
	for _, s := range sns {
		if links[s.ID()] != nil {
			victim = s
			break
		}
	}
	l := links[victim.ID()]
	cut := time.Now()
	fc.cutOff(victim.Addr())
	waitLeftAsSilent(t, l, "the silent supernode")
	took := time.Since(cut)
	t.Logf("a supernode cut off without a word was left %v after its packets stopped (goal: within 2 s; QUIC's idle timeout: %v)",
		took.Round(time.Millisecond), quicIdle)
	// The freed slot goes to the fourth supernode.
	waitFor(t, 20*time.Second, "the leaf on 3 live supernodes again", func() bool {
		ls := attachedLinks(d)
		return len(ls) == 3 && ls[victim.ID()] == nil
	})
	// A supernode that is gone does not answer the check after: the leaf
	// does not grow wary.
	waitFor(t, attach.CheckLeftFor+10*time.Second, "the check of the supernode left to end", func() bool {
		checked, _ := d.attach.LeftChecks()
		return checked >= 1
	})
	if _, stalled := d.attach.LeftChecks(); stalled != 0 {
		t.Fatalf("the supernode cut off answered the check after it was left (%d)", stalled)
	}
	if wary := d.attach.Wary(); wary != 0 {
		t.Fatalf("the leaf grew wary (%d) after leaving a supernode that is gone", wary)
	}
}

// A supernode that asked for slow pings and dies is noticed late by the
// pings alone (three of its 5 s intervals); a search it does not acknowledge
// has the leaf ping at its own 500 ms for a while, and the leaf leaves it
// within a few of those. The search is answered through another.
func TestSearchSuspectsASlowPacedSupernode(t *testing.T) {
	sns, network := overlayWith(t, 4, func(c *supernode.Config) { c.Router.LeafPings = 0.2 })
	fc := newFaultConn(t)
	d := leafOn(t, fc, network, sns, 3)
	waitFor(t, 20*time.Second, "the leaf on 3 supernodes, pinging at their slow pace", func() bool {
		return len(attachedLinks(d)) == 3 && d.attach.ProbeEvery() >= 4*time.Second
	})
	l, _ := d.attach.Pick(nil, false)
	if l == nil {
		t.Fatal("no supernode to search through")
	}
	fc.cutOff(l.RemoteAddr())
	cut := time.Now()
	// The search picks its supernode again, and a few milliseconds of round
	// trip may make that another one, which acknowledges it: search again
	// until one went through the dead supernode (and so was hedged).
	for range 10 {
		res, err := d.Search(context.Background(), "nothing anywhere", protocol.ContentID{}, 10, nil)
		if err != nil {
			t.Fatalf("the search through a dead supernode failed: %v", err)
		}
		if res.Queries > 1 {
			break
		}
	}
	waitLeftAsSilent(t, l, "the dead supernode")
	took := time.Since(cut)
	// Three of the slow intervals would be 15 s.
	if took > 10*time.Second {
		t.Fatalf("left %v after it died, want about three of our 500 ms intervals after the search", took)
	}
	t.Logf("a dead supernode that asked for pings every %v was left %v after a search it did not acknowledge",
		5*time.Second, took.Round(time.Millisecond))
}

// When every supernode the leaf is attached to goes silent at once, a STUN
// answer from one it is not attached to shows the leaf's own network works:
// all three are left, and the leaf attaches to the one that answered.
func TestAllAttachedSilentIsCheckedElsewhere(t *testing.T) {
	sns, network := overlay(t, 4)
	fc := newFaultConn(t)
	d := leafOn(t, fc, network, sns, 3)
	waitFor(t, 20*time.Second, "the leaf on 3 supernodes, all 4 listed", func() bool {
		return len(attachedLinks(d)) == 3 && d.Status().Supernode.Listed == 4
	})
	links := attachedLinks(d)
	var spare *supernode.Server
	for _, s := range sns {
		if links[s.ID()] == nil {
			spare = s
		}
	}
	cut := time.Now()
	for _, s := range sns {
		if s != spare {
			fc.cutOff(s.Addr())
		}
	}
	for id, l := range links {
		waitLeftAsSilent(t, l, "supernode "+id.Short())
	}
	t.Logf("three attached supernodes cut off at once were left %v after (goal: within 2 s)", time.Since(cut).Round(time.Millisecond))
	waitFor(t, 20*time.Second, "the leaf on the supernode that answered", func() bool {
		return attachedLinks(d)[spare.ID()] != nil
	})
}

// A supernode that only stalled, its QUIC silent while its process still
// answers STUN, is left like a dead one; the check that follows finds it
// there, and the leaf waits twice as long before it leaves the next.
func TestStalledSupernodeMakesLeafWary(t *testing.T) {
	sns, network := overlay(t, 4)
	fc := newFaultConn(t)
	d := leafOn(t, fc, network, sns, 3)
	waitFor(t, 20*time.Second, "the leaf on 3 supernodes", func() bool { return len(attachedLinks(d)) == 3 })
	var victim *supernode.Server
	links := attachedLinks(d)
	for _, s := range sns {
		if links[s.ID()] != nil {
			victim = s
			break
		}
	}
	l := links[victim.ID()]
	fc.setStall(victim.Addr(), true)
	waitLeftAsSilent(t, l, "the stalled supernode")
	wary := d.attach.Wary
	waitFor(t, attach.CheckLeftFor+5*time.Second, "the leaf wary after the stalled supernode answered STUN", func() bool { return wary() == 1 })
	if checked, stalled := d.attach.LeftChecks(); checked != 1 || stalled != 1 {
		t.Fatalf("checks of supernodes left: %d ended, %d still answered; want 1 and 1", checked, stalled)
	}
	fc.setStall(victim.Addr(), false)
	var live attach.Liveness
	probe := d.cfg.ProbeInterval
	if got, want := live.SilentAfter(probe, wary()), 2*attach.SilentProbes*probe; got != want {
		t.Fatalf("a wary leaf waits %v for a silent supernode, want %v", got, want)
	}
}

// A home uplink whose queue suddenly holds every packet for more than a
// second silences every supernode at once: the leaf leaves none of them. And
// a leaf cut off from everything leaves none either: there is nowhere better
// to go, and if the cut lasts the supernodes drop the silent leaf (after
// supernode.SilentLeaf), which then attaches afresh.
func TestOwnNetworkTroubleLeavesNone(t *testing.T) {
	sns, network := overlay(t, 4)
	fc := newFaultConn(t)
	d := leafOn(t, fc, network, sns, 3)
	waitFor(t, 20*time.Second, "the leaf on 3 supernodes", func() bool { return len(attachedLinks(d)) == 3 })
	links := attachedLinks(d)
	// steady checks every link stays up for hold, and returns the longest a
	// supernode went unheard meanwhile.
	steady := func(what string, hold time.Duration) time.Duration {
		t.Helper()
		var longest time.Duration
		until := time.Now().Add(hold)
		for time.Now().Before(until) {
			for id, l := range links {
				select {
				case <-l.Done():
					t.Fatalf("%s: the link to %s closed: %v", what, id.Short(), l.Err())
				default:
				}
			}
			for _, s := range d.attach.Silences(time.Now()) {
				longest = max(longest, s)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return longest
	}
	// Several silent probe intervals each; the queue holds 1.5 s of packets.
	silent := attach.SilentProbes * d.cfg.ProbeInterval
	fc.setDelay(1500 * time.Millisecond)
	queued := steady("a 1.5 s uplink queue", 5*time.Second)
	fc.setDelay(0)
	steady("after the queue drained", time.Second)
	// Cut off for longer than the leaf's own patience, but well short of
	// the supernodes' patience with a silent leaf: past that they rightly
	// drop the leaf, which cannot be told from one that crashed.
	cutFor := 5 * silent / 3
	if cutFor > supernode.SilentLeaf/2 {
		t.Fatalf("a %v cut leaves too little room below the supernodes' %v", cutFor, supernode.SilentLeaf)
	}
	fc.setAll(true)
	cut := steady("cut off from everything", cutFor)
	fc.setAll(false)
	steady("back", time.Second)
	t.Logf("supernodes went unheard for up to %v behind the queue and %v cut off (a supernode silent alone is left after %v)",
		queued.Round(time.Millisecond), cut.Round(time.Millisecond), silent)
	if queued < silent || cut < silent {
		t.Fatalf("the supernodes were never silent for %v: the test tested nothing", silent)
	}
}

// The liveness pings' cost on the wire: two leaves attached to the same
// three supernodes, idle, one pinging at the default interval and one not
// pinging at all (QUIC's own keep-alive then keeps its links up). Every
// packet on each leaf's socket is counted, with 28 bytes of IPv4 and UDP
// header each. SUPERNET_PROBE_COST_SECONDS sets the measured time (default 10).
func TestProbeCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measures an idle period")
	}
	secs := 10
	if s := os.Getenv("SUPERNET_PROBE_COST_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 600 {
			t.Fatalf("SUPERNET_PROBE_COST_SECONDS=%q: want 1 to 600", s)
		}
		secs = n
	}
	sns, network := overlay(t, 3)
	pinging, quiet := newFaultConn(t), newFaultConn(t)
	a := leafOn(t, pinging, network, sns, 3)
	b := leafOn(t, quiet, network, sns, 3, func(c *Config) { c.ProbeInterval = -1 })
	waitFor(t, 20*time.Second, "both leaves on 3 supernodes", func() bool {
		return len(attachedLinks(a)) == 3 && len(attachedLinks(b)) == 3
	})
	// Past the attach: publishing, NAT checks and the first member lists.
	time.Sleep(3 * time.Second)
	type count struct{ upPkts, upBytes, downPkts, downBytes int64 }
	snap := func(f *faultConn) count {
		up, down := f.sentPkts.Load(), f.rcvdPkts.Load()
		return count{up, f.sentBytes.Load() + 28*up, down, f.rcvdBytes.Load() + 28*down}
	}
	a0, b0 := snap(pinging), snap(quiet)
	start := time.Now()
	time.Sleep(time.Duration(secs) * time.Second)
	el := time.Since(start).Seconds()
	a1, b1 := snap(pinging), snap(quiet)
	type rates struct{ up, down, upPkts, downPkts float64 }
	rate := func(x, y count) rates {
		return rates{float64(y.upBytes-x.upBytes) / el, float64(y.downBytes-x.downBytes) / el,
			float64(y.upPkts-x.upPkts) / el, float64(y.downPkts-x.downPkts) / el}
	}
	ar, br := rate(a0, a1), rate(b0, b1)
	if len(attachedLinks(a)) != 3 || len(attachedLinks(b)) != 3 {
		t.Fatal("a leaf lost a supernode while idle")
	}
	t.Logf("idle leaf on 3 supernodes over %.0f s, IPv4+UDP headers included; pinging every %v: up %.0f B/s (%.1f packets/s), down %.0f B/s (%.1f packets/s); not pinging: up %.0f B/s (%.1f packets/s), down %.0f B/s (%.1f packets/s)",
		el, a.cfg.ProbeInterval, ar.up, ar.upPkts, ar.down, ar.downPkts, br.up, br.upPkts, br.down, br.downPkts)
	ab, bb := ar.up+ar.down, br.up+br.down
	t.Logf("the pings cost %.0f B/s a leaf (up %.0f, down %.0f), %.0f B/s per supernode; %.1f packets a ping",
		ab-bb, ar.up-br.up, ar.down-br.down, (ab-bb)/3, (ar.upPkts+ar.downPkts-br.upPkts-br.downPkts)/(3/a.cfg.ProbeInterval.Seconds()))
	// Three packets a ping (ping, pong with its acknowledgement, the
	// acknowledgement of the pong), each well under 100 bytes.
	if perSN := (ab - bb) / 3; perSN > 3*100/a.cfg.ProbeInterval.Seconds() {
		t.Errorf("the pings cost %.0f B/s per supernode, more than three 100-byte packets per interval", perSN)
	}
}

// A search started just after the leaf's primary supernode went silent is
// hedged to another of its supernodes and finds the file there, long before
// the silent one is left. The time it took is reported.
func TestSearchHedgedPastSilentSupernode(t *testing.T) {
	sns, network := overlay(t, 3)
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "hedgehog.mp3"), []byte("a song about a hedgehog"), 0o644); err != nil {
		t.Fatal(err)
	}
	holder := leafOn(t, newFaultConn(t), network, sns, 3, func(c *Config) { c.ShareDir = share })
	fc := newFaultConn(t)
	d := leafOn(t, fc, network, sns, 3)
	waitFor(t, 20*time.Second, "both leaves on 3 supernodes", func() bool {
		return len(attachedLinks(d)) == 3 && len(attachedLinks(holder)) == 3
	})
	find := func() (apitype.SearchResult, time.Duration, bool) {
		t.Helper()
		found := false
		start := time.Now()
		res, err := d.Search(context.Background(), "hedgehog", protocol.ContentID{}, 0, func(hs []protocol.Hit) {
			for _, h := range hs {
				for _, s := range h.Sources {
					found = found || s.Peer == holder.ID()
				}
			}
		})
		if err != nil {
			t.Fatalf("search: %v", err)
		}
		return res, time.Since(start), found
	}
	waitFor(t, 20*time.Second, "the file found", func() bool { _, _, ok := find(); return ok })
	quiet, _, _ := find()
	// The supernode a search goes to first: the nearest live one.
	primary, _ := d.attach.Pick(nil, false)
	fc.cutOff(primary.RemoteAddr())
	res, took, found := find()
	if !found || res.Partial {
		t.Fatalf("the search past the silent primary: %+v, found %v", res, found)
	}
	if res.Queries < 2 {
		t.Fatalf("the search went to %d supernodes, want it hedged past the silent primary", res.Queries)
	}
	select {
	case <-primary.Done():
		t.Fatal("the primary was left before the search ended: the search was not hedged, it was moved")
	default:
	}
	t.Logf("with the primary silent, the search was answered in %v through %d supernodes (with none silent it went to %d)",
		took.Round(time.Millisecond), res.Queries, quiet.Queries)
}

// When the query hedged past is alive after all, its acknowledgement only
// late, the search waits for its answer too: a hedge on a loaded machine
// costs a query, and changes no answer. When it is not, the first complete
// answer is final.
func TestHedgedSearchWaitsForLiveFirstQuery(t *testing.T) {
	ok := func(n uint32) *protocol.QueryDone {
		return &protocol.QueryDone{Status: protocol.StatusOK, Supernodes: n}
	}
	newSearch := func() *search {
		q := &search{note: make(chan struct{}, 4)}
		for i := range 2 {
			q.sent = append(q.sent, &sentQuery{id: protocol.QueryID{byte(i + 1)}})
		}
		return q
	}
	// The first query was overdue, then acknowledged; the hedge answers first.
	q := newSearch()
	q.sent[0].late, q.sent[0].alive = true, true
	q.legOver(q.sent[1].id, ok(1), nil)
	if _, final, _ := q.take().result(); final {
		t.Fatal("the hedge's answer was final while the first query was alive")
	}
	q.legOver(q.sent[0].id, ok(2), nil)
	res, final, err := q.take().result()
	if !final || err != nil || res.Supernodes != 2 || res.Partial || res.Queries != 2 {
		t.Fatalf("after both answered: %+v, final %v, %v; want the 2 supernodes the first searched", res, final, err)
	}
	// The first query never was acknowledged: the hedge's answer is final.
	q = newSearch()
	q.sent[0].late = true
	q.legOver(q.sent[1].id, ok(1), nil)
	if res, final, err := q.take().result(); !final || err != nil || res.Supernodes != 1 {
		t.Fatalf("with the first query dead: %+v, final %v, %v; want the hedge's answer", res, final, err)
	}
	// A partial answer waits for a query still on time.
	q = newSearch()
	q.legOver(q.sent[0].id, &protocol.QueryDone{Status: protocol.StatusTimeout, Supernodes: 3}, nil)
	if _, final, _ := q.take().result(); final {
		t.Fatal("a partial answer was final while another query was on time")
	}
	q.legOver(q.sent[1].id, nil, errors.New("refused"))
	if res, final, err := q.take().result(); !final || err != nil || !res.Partial || res.Supernodes != 3 {
		t.Fatalf("partial, the other refused: %+v, final %v, %v; want the partial answer", res, final, err)
	}
}
