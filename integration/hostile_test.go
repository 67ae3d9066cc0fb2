package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// The hostile-peer suite: one test per attack class, each against real
// supernode and peer processes at their shipped defaults, on loopback. The
// attacker runs in the test, on loopback addresses of its own (127.66.x.y);
// honest peers have theirs. Each test asserts that the attacked process
// stays under the memory budget and that an honest peer keeps being served,
// and logs the peak memory and the latency of honest searches during the
// attack: the figures the issue asks to show.

// memoryBudget is what an attacked supernode or peer daemon may reach, in
// resident memory, while any single hostile node attacks it.
const memoryBudget = 256 << 20

// arena is an overlay of two supernodes (sn1 - sn2) and three peers: a
// holder of "hostile test one" on sn1, a holder of "hostile test two" on
// sn2, and an asker on sn1, all real processes at default settings.
type arena struct {
	t                       *testing.T
	l                       *lab
	sn1, sn2                *process
	sn1Target, sn2Target    string
	sn1Addr                 string
	holder1, holder2, asker daemon
	sn1ID                   protocol.PeerID
	searches                searchStats // the last attack's
	attackerIPs             atomic.Uint32
}

var peerIPs atomic.Uint32

// peerListen is a loopback address of a peer's own, so per-address limits
// treat each peer as the separate host it would be.
func peerListen() string {
	n := peerIPs.Add(1)
	return fmt.Sprintf("127.2.%d.%d:0", byte(n>>8), byte(n))
}

func newArena(t *testing.T) *arena {
	t.Helper()
	a := &arena{t: t, l: newLab(t)}
	var p *process
	// Loopback sources are exempt from the per-address limits unless
	// --limit-loopback: here every source is on loopback, as on the Internet
	// none would be, so the limits are turned on for them.
	a.sn1Target, a.sn1Addr, p = a.l.supernodeWith("sn1", []string{"--limit-loopback"})
	a.sn1 = p
	a.sn2Target, _, a.sn2 = a.l.supernodeWith("sn2", []string{"--limit-loopback"}, a.sn1Target)
	id, _, err := transport.ParseTarget(a.sn1Target)
	if err != nil {
		t.Fatal(err)
	}
	a.sn1ID = id
	share := func(name, file string) string {
		dir := filepath.Join(a.l.root, name+"-share")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), randomBytes(uint64(len(file)), 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	a.holder1 = a.l.daemon("holder1", share("holder1", "hostile test one.mp3"), a.sn1Target, "--listen", peerListen(), "--attach", "1")
	a.holder2 = a.l.daemon("holder2", share("holder2", "hostile test two.mp3"), a.sn2Target, "--listen", peerListen(), "--attach", "1")
	a.asker = a.l.daemon("asker", "", a.sn1Target, "--listen", peerListen(), "--attach", "1", "--user", "asker", "--limit-loopback")
	for _, d := range []daemon{a.holder1, a.holder2, a.asker} {
		a.l.waitAttached(d)
	}
	// Ready when the asker finds both files: one through sn1's index, one
	// through sn2, whose summary has reached sn1.
	pollUntil(t, 30*time.Second, "the asker to find both files", func() (bool, string) {
		hits, _, err := a.search()
		return foundBoth(hits), fmt.Sprint(hits, err)
	})
	return a
}

// search runs an honest search from the asker and returns the files found
// and how long it took.
func (a *arena) search() ([]apitype.HitJSON, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	var hits []apitype.HitJSON
	_, err := localapi.NewClient(a.asker.dataDir).Search(ctx, apitype.SearchRequest{Query: "hostile test"}, func(h []apitype.HitJSON) { hits = append(hits, h...) })
	return hits, time.Since(start), err
}

// foundBoth reports whether hits hold the two honest files.
func foundBoth(hits []apitype.HitJSON) bool {
	one, two := false, false
	for _, h := range hits {
		one = one || h.Name == "hostile test one.mp3"
		two = two || h.Name == "hostile test two.mp3"
	}
	return one && two
}

// attackerAddr is a loopback address of the attacker's own.
func (a *arena) attackerAddr() string {
	n := a.attackerIPs.Add(1)
	return fmt.Sprintf("127.66.%d.%d", byte(n>>8), byte(n))
}

// searchStats are the honest searches made during an attack.
type searchStats struct {
	took  []time.Duration
	found []bool
	hits  [][]apitype.HitJSON
	errs  []error
}

// during runs attack until it returns or d passes (it gets a context that
// ends then), while the asker searches every 250 ms and the victims' memory
// is sampled. It then checks the budget and that every search found both
// files, and logs the figures.
func (a *arena) during(d time.Duration, victims []*process, attack func(ctx context.Context)) {
	t := a.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	attacked := make(chan struct{})
	go func() {
		defer close(attacked)
		attack(ctx)
	}()
	var st searchStats
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	peak := make([]int64, len(victims))
	sample := func() {
		for i, v := range victims {
			if r := rss(v); r > peak[i] {
				peak[i] = r
			}
		}
	}
	for searching := true; searching; {
		hits, took, err := a.search()
		st.took, st.found, st.errs = append(st.took, took), append(st.found, err == nil && foundBoth(hits)), append(st.errs, err)
		st.hits = append(st.hits, hits)
		sample()
		select {
		case <-attacked:
			searching = false
		case <-tick.C:
		}
	}
	<-attacked
	sample()
	for i, v := range victims {
		hwm := peakRSS(v)
		t.Logf("%s: resident memory peak %.1f MiB (sampled %.1f MiB); budget %d MiB", v.name, mib(hwm), mib(peak[i]), memoryBudget>>20)
		if hwm > memoryBudget {
			t.Errorf("%s reached %.1f MiB of resident memory, over the %d MiB budget", v.name, mib(hwm), memoryBudget>>20)
		}
		if v.exited() {
			t.Errorf("%s died during the attack: %s", v.name, v.stderr.String())
		}
	}
	sorted := slices.Clone(st.took)
	slices.Sort(sorted)
	ok := 0
	for _, f := range st.found {
		if f {
			ok++
		}
	}
	t.Logf("honest searches during the attack: %d, %d found both files; latency p50 %v, max %v",
		len(sorted), ok, sorted[len(sorted)/2].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
	if ok != len(sorted) {
		for i := range st.found {
			if !st.found[i] {
				t.Errorf("search %d during the attack: %d hits, %v", i, len(st.hits[i]), st.errs[i])
			}
		}
	}
	a.searches = st
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// rss and peakRSS read a process's resident memory now and at its peak
// (VmRSS and VmHWM in /proc/PID/status), in bytes; 0 if unreadable.
func rss(p *process) int64     { return procStatus(p, "VmRSS:") }
func peakRSS(p *process) int64 { return procStatus(p, "VmHWM:") }

func procStatus(p *process, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// attackerNode is a transport node on a loopback address of the attacker's,
// with a fresh key, closed when the test ends.
func (a *arena) attackerNode(ip string) (*transport.Node, *protocol.Identity) {
	a.t.Helper()
	n, id := newAttackerNode(a.t, ip)
	a.t.Cleanup(func() { n.Close() })
	return n, id
}

// newAttackerNode is attackerNode for many short-lived keys: the caller
// closes it.
func newAttackerNode(t *testing.T, ip string) (*transport.Node, *protocol.Identity) {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return nodeWith(t, ip, id), id
}

// nodeWith is a transport node on ip with key id.
func nodeWith(t *testing.T, ip string, id *protocol.Identity) *transport.Node {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := transport.New(transport.Config{Identity: id, Conn: c, Log: testLog(t)})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return n
}

// rogueSupernode is a key the operator admitted that then turned hostile:
// what a compromised supernode can do.
func (a *arena) rogueSupernode(name string) (*protocol.Identity, protocol.Chain) {
	t := a.t
	t.Helper()
	dir := filepath.Join(a.l.root, name)
	a.l.op.admit(dir)
	id, err := protocol.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, ch, err := protocol.ReadChainFile(filepath.Join(dir, protocol.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	return id, ch
}

// attackerNodeWith is attackerNode for a given key.
func (a *arena) attackerNodeWith(ip string, id *protocol.Identity) (*transport.Node, *protocol.Identity) {
	a.t.Helper()
	n := nodeWith(a.t, ip, id)
	a.t.Cleanup(func() { n.Close() })
	return n, id
}

// status is a daemon's status, from its control socket.
func (a *arena) status(d daemon) apitype.Status {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := localapi.NewClient(d.dataDir).Status(ctx)
	if err != nil {
		a.t.Fatal(err)
	}
	return st
}

// peerID is a daemon's peer ID.
func (a *arena) peerID(d daemon) string { return a.status(d).PeerID }

func mkdirWrite(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
