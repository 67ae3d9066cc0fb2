//go:build linux

package integration

// The real binaries across the NAT lab: supernodes and a relay on the public
// segment, peers on public hosts and behind endpoint-independent and
// symmetric NATs, every ordered pair of kinds connecting through the
// supernodes and moving a file.

import (
	"bytes"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// gridRate is every peer's line speed in the lab, Mbit/s each way; the
// supernodes and the relay sit in a data centre and are not shaped.
// $NATLAB_RATE_MBIT changes it, and 0 leaves the lines unshaped, which shows
// what the relay costs in processing rather than what a home line allows.
var gridRate = labRate()

func labRate() int {
	if v := os.Getenv("NATLAB_RATE_MBIT"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return n
		}
	}
	return 50
}

// gridFileSize is the file each pair moves: a few seconds on a gridRate line.
const gridFileSize = 12 << 20

// natLab is a NAT lab with the overlay's processes in it.
type natLab struct {
	*Lab
	t                        *testing.T
	snBin, peerBin, relayBin string
	secret                   string            // path of the secret shared by supernodes and relays
	snExtra, relayExtra      []string          // flags every supernode and relay started from now gets
	supernodes               map[string]string // name: "peerid@ip:port"
	supernodeProcs           map[string]*Proc
	turn                     string // a stock TURN server supernodes are told of, if any
	op                       *operator
}

func newNATLab(t *testing.T) *natLab {
	l := NewLab(t) // skips, saying why, where namespaces cannot be made
	sn, pe := binaries(t)
	nl := &natLab{Lab: l, t: t, snBin: sn, peerBin: pe, relayBin: built.relay,
		supernodes: map[string]string{}, supernodeProcs: map[string]*Proc{}}
	nl.op = newOperator(t, sn, l.Dir)
	nl.secret = filepath.Join(l.Dir, "relay-secret")
	if err := os.WriteFile(nl.secret, []byte(randomHex(t, 24)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return nl
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// supernode starts a supernode on a public host of its own, linked to join,
// and returns its target "peerid@ip:port".
func (nl *natLab) supernode(name string, join ...string) string {
	t := nl.t
	t.Helper()
	h := nl.Public(name)
	nl.op.admit(filepath.Join(nl.Dir, name))
	args := append([]string{"--listen", h.Addr(7000), "--data-dir", filepath.Join(nl.Dir, name),
		"--relay-secret-file", nl.secret, "--log-json"}, nl.snExtra...)
	if nl.turn != "" {
		args = append(args, "--turn-server", nl.turn)
	}
	for _, j := range join {
		args = append(args, "--join", j)
	}
	p := h.Start(t, name, nl.snBin, args...)
	var m []string
	pollUntil(t, 10*time.Second, name+" to listen", func() (bool, string) {
		if p.Exited() {
			t.Fatalf("%s exited at start:\n%s", name, p.Output())
		}
		m = listeningRE.FindStringSubmatch(p.Output())
		return m != nil, p.Output()
	})
	target := m[1] + "@" + h.Addr(7000)
	nl.supernodes[name] = target
	nl.supernodeProcs[name] = p
	return target
}

// relay starts a standalone relay on a public host reporting to the
// supernodes, and waits until each of them has it in its table.
func (nl *natLab) relay(name string, supernodes ...string) *Proc {
	t := nl.t
	t.Helper()
	h := nl.Public(name)
	// The lab's "public Internet" is in documentation ranges, which relays
	// refuse by default.
	args := append([]string{"--listen", h.Addr(3478), "--relay-ip", h.IP.String(), "--relay-ip6", h.IP6.String(),
		"--secret-file", nl.secret, "--data-dir", filepath.Join(nl.Dir, name), "--log-json",
		"--allow-peer", "203.0.113.0/24", "--allow-peer", "2001:db8::/32"}, nl.relayExtra...)
	for _, sn := range supernodes {
		args = append(args, "--supernode", nl.supernodes[sn])
	}
	p := h.Start(t, name, nl.relayBin, args...)
	for _, sn := range supernodes {
		sp := nl.supernodeProcs[sn]
		pollUntil(t, 10*time.Second, name+" to report to "+sn, func() (bool, string) {
			if p.Exited() {
				t.Fatalf("%s exited at start:\n%s", name, p.Output())
			}
			return strings.Contains(sp.Output(), "relay connected"), p.Output()
		})
	}
	return p
}

// labPeer is a `peer up` in the lab, sharing one file of its own.
type labPeer struct {
	name    string
	kind    NATKind
	host    *Host
	dataDir string
	proc    *Proc
	id      string
	file    string // the shared file
	cid     string // its content ID
	nl      *natLab
}

// peer puts a peer daemon on a host of the given kind, shaped to gridRate,
// attached to supernode sn and sharing a fresh random file, and waits until
// the supernode has established its NAT and indexed its file.
func (nl *natLab) peer(name string, kind NATKind, sn string, extra ...string) *labPeer {
	nl.t.Helper()
	return nl.peerSized(name, kind, sn, gridFileSize, extra...)
}

// peerSized is peer with a shared file of size bytes.
func (nl *natLab) peerSized(name string, kind NATKind, sn string, size int, extra ...string) *labPeer {
	t := nl.t
	t.Helper()
	var h *Host
	if kind == NATNone {
		h = nl.Public(name, WithRate(gridRate))
	} else {
		h = nl.Home(name, kind, WithRate(gridRate))
	}
	return nl.peerOn(h, name, kind, sn, size, extra...)
}

// peerOn starts a peer on host h, which is behind a NAT of kind.
func (nl *natLab) peerOn(h *Host, name string, kind NATKind, sn string, size int, extra ...string) *labPeer {
	t := nl.t
	t.Helper()
	p := &labPeer{name: name, kind: kind, host: h, dataDir: filepath.Join(nl.Dir, name), nl: nl}
	share := filepath.Join(nl.Dir, name+"-share")
	if err := os.MkdirAll(share, 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	crand.Read(data)
	p.file = filepath.Join(share, name+".bin")
	if err := os.WriteFile(p.file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--data-dir", p.dataDir, "up", "--name", name, "--supernode", nl.supernodes[sn],
		"--listen", h.Addr(0), "--share", share, "--log-json"}, extra...)
	p.proc = h.Start(t, "peer "+name, nl.peerBin, args...)
	return p
}

// wait blocks until the peer is attached, its NAT is what its kind should
// give, and its file is shared.
func (p *labPeer) wait() {
	t := p.nl.t
	t.Helper()
	pollUntil(t, 20*time.Second, p.name+" to attach and learn its NAT", func() (bool, string) {
		if p.proc.Exited() {
			t.Fatalf("peer %s exited:\n%s", p.name, p.proc.Output())
		}
		st, raw, err := p.status()
		if err != nil {
			return false, err.Error()
		}
		p.id = st.PeerID
		if len(st.Shared) == 1 {
			p.cid = st.Shared[0].ContentID
		}
		want := p.kind.String() // named as the supernode names what it establishes
		got := st.Supernode.NAT
		if st.Supernode.Public {
			got = "public"
		}
		return st.Supernode.Connected && got == want && p.cid != "", raw
	})
}

// cli runs the peer command against this daemon, in its namespace.
func (p *labPeer) cli(timeout time.Duration, args ...string) (string, error) {
	p.nl.t.Helper()
	return p.host.Run(p.nl.t, timeout, p.nl.peerBin, append([]string{"--data-dir", p.dataDir}, args...)...)
}

func (p *labPeer) status() (statusJSON, string, error) {
	var st statusJSON
	out, err := p.cli(10*time.Second, "status", "--json")
	if err != nil {
		return st, out, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		p.nl.t.Fatalf("peer status --json is not JSON: %v\n%s", err, out)
	}
	return st, out, nil
}

// connect runs `peer connect` to q, naming no supernode, and returns the attempt.
func (p *labPeer) connect(q *labPeer) (attemptJSON, error) {
	var a attemptJSON
	out, err := p.cli(30*time.Second, "connect", q.id, "--json")
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		return a, fmt.Errorf("peer connect --json: %v\n%s", err, out)
	}
	return a, nil
}

// get downloads q's file, checks it is byte-identical and returns the
// throughput in bytes per second, from the command's start to its end.
func (p *labPeer) get(q *labPeer) (float64, error) {
	dir := filepath.Join(p.nl.Dir, p.name+"-from-"+q.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	out, err := p.cli(2*time.Minute, "get", q.cid, "--output", dir, "--json")
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%w\nafter %v, stdout:\n%s", err, took, lastLines(out, 5))
	}
	got, err := os.ReadFile(filepath.Join(dir, filepath.Base(q.file)))
	if err != nil {
		return 0, fmt.Errorf("%v (get printed %s)", err, out)
	}
	want, err := os.ReadFile(q.file)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(got, want) {
		return 0, fmt.Errorf("%s's file arrived at %s differing: %d bytes, want %d", q.name, p.name, len(got), len(want))
	}
	return float64(len(want)) / took.Seconds(), nil
}

// transfer connects p to q, checks the plan and path the attempt reports,
// fetches q's file, and returns the attempt, the rate and the address p's
// link to q runs to.
func (p *labPeer) transfer(q *labPeer, plan, path string) (attemptJSON, float64, string) {
	t := p.nl.t
	t.Helper()
	att, err := p.connect(q)
	if err != nil {
		t.Fatal(err)
	}
	if att.Plan != plan || att.Path != path {
		t.Errorf("%s -> %s: plan %s, path %s; want %s, %s", p.name, q.name, att.Plan, att.Path, plan, path)
	}
	rate, err := p.get(q)
	if err != nil {
		t.Fatal(err)
	}
	st, raw, err := p.status()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Links {
		if l.PeerID == q.id {
			if l.Path != path {
				t.Errorf("%s's link to %s is %s, want %s\n%s", p.name, q.name, l.Path, path, raw)
			}
			return att, rate, l.Remote
		}
	}
	t.Fatalf("%s has no link to %s\n%s", p.name, q.name, raw)
	return att, rate, ""
}

// linkRemote is where p's open link to q runs to, as p's status shows it.
func (p *labPeer) linkRemote(q *labPeer) string {
	_, remote := p.link(q)
	return remote
}

// linkTo is the path of p's open link to q, as p's status shows it.
func (p *labPeer) linkTo(q *labPeer) string {
	path, _ := p.link(q)
	return path
}

// link is the path of p's open link to q and the address it runs to, as
// p's status shows them: "none" and "" without one.
func (p *labPeer) link(q *labPeer) (path, remote string) {
	st, out, err := p.status()
	if err != nil {
		p.nl.t.Fatalf("%v\n%s", err, out)
	}
	for _, l := range st.Links {
		if l.PeerID == q.id {
			return l.Path, l.Remote
		}
	}
	return "none", ""
}

// expectedPlan is what the target's supernode should plan for a pair of kinds.
func expectedPlan(from, to NATKind) (plan, path string) {
	switch {
	case to == NATNone:
		return "direct", "direct"
	case from == NATNone:
		return "reverse", "direct"
	case from == NATEndpointIndependent && to == NATEndpointIndependent:
		return "punch", "direct"
	}
	return "relay", "relayed"
}

type gridCell struct {
	plan, path string
	took       time.Duration
	rate       float64 // bytes/s
	err        error
}

// TestNATGrid connects every ordered pair of {public, endpoint-independent,
// symmetric} through two supernodes, initiators on one and targets on the
// other, and moves a file across each pair. Pairs that can punch (or dial)
// must end up direct, the others relayed. It prints the grid.
func TestNATGrid(t *testing.T) {
	nl := newNATLab(t)
	sn1 := nl.supernode("sn1")
	nl.supernode("sn2", sn1)
	nl.relay("relay", "sn1", "sn2")

	kinds := []NATKind{NATNone, NATEndpointIndependent, NATSymmetric}
	short := map[NATKind]string{NATNone: "pub", NATEndpointIndependent: "eim", NATSymmetric: "sym"}
	from, to := map[NATKind]*labPeer{}, map[NATKind]*labPeer{}
	for _, k := range kinds {
		from[k] = nl.peer(short[k]+"a", k, "sn1")
		to[k] = nl.peer(short[k]+"b", k, "sn2")
	}
	for _, k := range kinds {
		from[k].wait()
		to[k].wait()
	}

	grid := map[[2]NATKind]*gridCell{}
	for _, fk := range kinds {
		for _, tk := range kinds {
			a, b := from[fk], to[tk]
			c := &gridCell{}
			grid[[2]NATKind{fk, tk}] = c
			att, err := a.connect(b)
			if err != nil {
				c.err = err
				t.Errorf("%s -> %s: connect: %v", fk, tk, err)
				continue
			}
			c.plan, c.path, c.took = att.Plan, att.Path, att.Took
			wantPlan, wantPath := expectedPlan(fk, tk)
			if c.plan != wantPlan || c.path != wantPath {
				t.Errorf("%s -> %s: plan %s, path %s; want plan %s, path %s", fk, tk, c.plan, c.path, wantPlan, wantPath)
			}
			if c.rate, err = a.get(b); err != nil {
				c.err = err
				t.Errorf("%s -> %s: get: %v", fk, tk, err)
				continue
			}
			// The download must have run on the link connect made.
			if p := a.linkTo(b); p != wantPath {
				t.Errorf("%s -> %s: after the download the link is %s, want %s", fk, tk, p, wantPath)
			}
		}
	}

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "initiator \\ target")
	for _, tk := range kinds {
		fmt.Fprintf(tw, "\t%s", tk)
	}
	fmt.Fprintln(tw)
	var took = map[string][]time.Duration{}
	var rates = map[string][]float64{}
	for _, fk := range kinds {
		fmt.Fprintf(tw, "%s", fk)
		for _, tk := range kinds {
			c := grid[[2]NATKind{fk, tk}]
			if c.err != nil {
				fmt.Fprintf(tw, "\tFAILED")
				continue
			}
			fmt.Fprintf(tw, "\t%s (%s) %v, %.1f Mbit/s", c.path, c.plan, c.took.Round(time.Millisecond), c.rate*8/1e6)
			took[c.plan] = append(took[c.plan], c.took)
			rates[c.path] = append(rates[c.path], c.rate)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	lines := fmt.Sprintf("lines shaped to %d Mbit/s each way", gridRate)
	if gridRate == 0 {
		lines = "lines unshaped"
	}
	fmt.Fprintf(&sb, "\n%s; %d MiB per transfer, timed from `peer get` start to end\n", lines, gridFileSize>>20)
	for _, plan := range []string{"direct", "reverse", "punch", "relay"} {
		if len(took[plan]) > 0 {
			fmt.Fprintf(&sb, "time to connect, plan %-7s: max %v over %d pairs (target: %s)\n", plan,
				slices.Max(took[plan]).Round(time.Millisecond), len(took[plan]), map[bool]string{true: "≤ 1 s", false: "≤ 500 ms"}[plan == "relay"])
		}
	}
	d, r := mean(rates["direct"]), mean(rates["relayed"])
	if d > 0 && r > 0 {
		fmt.Fprintf(&sb, "throughput: direct %.1f Mbit/s, relayed %.1f Mbit/s: relayed is %.0f%% of direct (target ≥ 80%%)\n",
			d*8/1e6, r*8/1e6, 100*r/d)
	}
	t.Logf("NAT grid:\n%s", sb.String())
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// TestNATUDPBlocked: a peer whose network drops all UDP finds that out, gets
// a relay from its supernode over TCP, lives on it over TURN/TCP, and moves
// files both ways: to a peer behind a symmetric NAT (which dials its relayed
// address) and from one behind an endpoint-independent NAT (which it reaches
// by a reversed dial).
func TestNATUDPBlocked(t *testing.T) {
	nl := newNATLab(t)
	nl.supernode("sn1")
	rp := nl.relay("relay", "sn1")
	blk := nl.peer("blk", NATUDPBlocked, "sn1")
	eim := nl.peer("eim", NATEndpointIndependent, "sn1")
	sym := nl.peer("sym", NATSymmetric, "sn1")
	pub := nl.peer("pub", NATNone, "sn1")
	for _, p := range []*labPeer{blk, eim, sym, pub} {
		p.wait()
	}
	st, raw, err := blk.status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Supernode.Relay, "(tcp)") {
		t.Fatalf("the UDP-blocked peer does not say it lives on a relay over TCP:\n%s", raw)
	}

	var sb strings.Builder
	for _, c := range []struct {
		from, to *labPeer
		plan     string
	}{
		{blk, eim, "reverse"}, // the blocked peer counts as reachable: eim dials it
		{sym, blk, "direct"},
		// The blocked peer dials a public one from its relay: the public
		// peer takes the link in unasked, and learns from the hello that
		// it runs through a relay.
		{blk, pub, "direct"},
	} {
		att, err := c.from.connect(c.to)
		if err != nil {
			t.Fatalf("%s -> %s: connect: %v", c.from.name, c.to.name, err)
		}
		if att.Plan != c.plan {
			t.Errorf("%s -> %s: plan %s, want %s", c.from.name, c.to.name, att.Plan, c.plan)
		}
		rate, err := c.from.get(c.to)
		if err != nil {
			t.Fatalf("%s -> %s: get: %v", c.from.name, c.to.name, err)
		}
		other := c.to
		if c.to == blk {
			other = c.from
		}
		if p := blk.linkTo(other); p != "relayed" {
			t.Errorf("%s -> %s: the blocked peer's link is %s, want relayed", c.from.name, c.to.name, p)
		}
		// The other side reaches it at its relay's address: relayed too.
		if p := other.linkTo(blk); p != "relayed" {
			t.Errorf("%s -> %s: %s's link to the blocked peer is %s, want relayed", c.from.name, c.to.name, other.name, p)
		}
		if att.Path != "relayed" {
			t.Errorf("%s -> %s: the attempt says %s, want relayed", c.from.name, c.to.name, att.Path)
		}
		fmt.Fprintf(&sb, "%s -> %s: plan %s, connected in %v, %.1f Mbit/s\n", c.from.name, c.to.name, att.Plan,
			att.Took.Round(time.Millisecond), rate*8/1e6)
	}
	t.Logf("UDP blocked, via TURN/TCP (%s):\n%s", st.Supernode.Relay, sb.String())

	// Without its relay the daemon can do nothing: it stops and says why.
	rp.Stop()
	err = blk.proc.Wait(10 * time.Second)
	if err == nil || errors.Is(err, errStillRunning) {
		t.Fatalf("the UDP-blocked daemon after its relay stopped: %v, want an error exit", err)
	}
	if !strings.Contains(blk.proc.Output(), "the relay this peer lived on is gone") {
		t.Errorf("the daemon's exit does not say why:\n%s", blk.proc.Output())
	}
}

// TestNATRelayToDirect: two peers behind endpoint-independent NATs whose punch
// is blocked get a relay; a download starts on it; the block lifts, the next
// punch works, and the download moves to the direct path and completes
// byte-identical without fetching anything twice.
func TestNATRelayToDirect(t *testing.T) {
	nl := newNATLab(t)
	sn1 := nl.supernode("sn1")
	nl.supernode("sn2", sn1)
	nl.relay("relay", "sn1", "sn2")
	const size = 24 << 20 // about 4 s at gridRate
	a := nl.peerSized("eima", NATEndpointIndependent, "sn1", size, "--upgrade-interval", "500ms")
	b := nl.peerSized("eimb", NATEndpointIndependent, "sn2", size, "--upgrade-interval", "500ms")
	a.wait()
	b.wait()

	if err := nl.Block(a.host, b.host.PublicIP); err != nil {
		t.Fatal(err)
	}
	att, err := a.connect(b)
	if err != nil {
		t.Fatal(err)
	}
	if att.Plan != "punch" || att.Path != "relayed" {
		t.Fatalf("with the punch blocked: plan %s, path %s; want punch, relayed", att.Plan, att.Path)
	}
	t.Logf("punch blocked: relayed after %v", att.Took.Round(time.Millisecond))

	type result struct {
		rate float64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := a.get(b)
		done <- result{r, err}
	}()
	// Lift the block once a quarter of the file has come over the relay.
	pollUntil(t, 30*time.Second, "the download to run on the relay", func() (bool, string) {
		st, raw, err := a.status()
		if err != nil {
			return false, err.Error()
		}
		return len(st.Downloads) == 1 && st.Downloads[0].Verified >= size/4, raw
	})
	if p := a.linkTo(b); p != "relayed" {
		t.Fatalf("the download runs on a %s link, want relayed", p)
	}
	if err := nl.Unblock(a.host, b.host.PublicIP); err != nil {
		t.Fatal(err)
	}
	unblocked := time.Now()
	var res result
	var finished time.Time
	select {
	case res = <-done:
		finished = time.Now()
	case <-time.After(2 * time.Minute):
		t.Fatal("the download did not finish")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	st, raw, err := a.status()
	if err != nil {
		t.Fatal(err)
	}
	var upgrade *attemptJSON
	for i := range st.Attempts {
		if x := &st.Attempts[i]; x.Upgrade && x.Path == "direct" && x.PeerID == b.id {
			upgrade = x
		}
	}
	if upgrade == nil {
		t.Fatalf("no upgrade to a direct path was recorded:\n%s", raw)
	}
	if p := a.linkTo(b); p != "direct" {
		t.Errorf("after the download the link is %s, want direct", p)
	}
	if st.Downloaded != size {
		t.Errorf("downloaded %d bytes for a %d-byte file: something was fetched twice or lost", st.Downloaded, size)
	}
	t.Logf("block lifted; the direct link was up %v later (that upgrade attempt took %v); download done %v after the lift; "+
		"%d MiB byte-identical, %d bytes fetched, %.1f Mbit/s overall",
		upgrade.At.Add(upgrade.Took).Sub(unblocked).Round(time.Millisecond), upgrade.Took.Round(time.Millisecond),
		finished.Sub(unblocked).Round(time.Millisecond), size>>20, st.Downloaded, res.rate*8/1e6)
}

// TestNATStockTURN: a supernode configured with a stock TURN server (coturn,
// sharing the secret) and no relay of its own hands it to two peers behind
// symmetric NATs, which move a file through it.
func TestNATStockTURN(t *testing.T) {
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Skip("coturn's turnserver is not on PATH; install it (apt-get install coturn) to run this test")
	}
	nl := newNATLab(t)
	secret, err := os.ReadFile(nl.secret)
	if err != nil {
		t.Fatal(err)
	}
	th := nl.Public("turn")
	nl.turn = th.Addr(3478)
	tp := th.Start(t, "turnserver", bin, "-n",
		"--use-auth-secret", "--static-auth-secret="+strings.TrimSpace(string(secret)), "--realm=supernet",
		"--listening-ip="+th.IP.String(), "--relay-ip="+th.IP.String(), "--listening-port=3478",
		"--min-port=49152", "--max-port=65535", "--no-tls", "--no-dtls", "--no-cli",
		"--pidfile="+filepath.Join(nl.Dir, "turnserver.pid"), "--userdb="+filepath.Join(nl.Dir, "turndb"),
		"--log-file=stdout", "--simple-log")
	nl.supernode("sn1")
	sp := nl.supernodeProcs["sn1"]
	pollUntil(t, 20*time.Second, "sn1 to find coturn answering", func() (bool, string) {
		if tp.Exited() {
			t.Fatalf("turnserver exited:\n%s", tp.Output())
		}
		return strings.Contains(sp.Output(), "TURN server answers"), sp.Output()
	})
	a := nl.peer("syma", NATSymmetric, "sn1")
	b := nl.peer("symb", NATSymmetric, "sn1")
	a.wait()
	b.wait()
	att, err := a.connect(b)
	if err != nil {
		t.Fatal(err)
	}
	if att.Plan != "relay" || att.Path != "relayed" {
		t.Fatalf("plan %s, path %s; want relay, relayed", att.Plan, att.Path)
	}
	rate, err := a.get(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("through coturn: connected in %v, %d MiB byte-identical at %.1f Mbit/s", att.Took.Round(time.Millisecond), gridFileSize>>20, rate*8/1e6)
}

// lastLines is the end of a command's output, for an error message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestNATSameLAN: two peers behind one home router, whose NAT does not
// hairpin, reach each other across their LAN: the supernode sees them at one
// public address, plans a direct dial to the LAN address the target
// announced (one listens on every interface, so its host candidates are what
// it finds on them), and the file moves across the LAN, not through a relay
// at the home line's speed (the rate is logged, not asserted).
func TestNATSameLAN(t *testing.T) {
	nl := newNATLab(t)
	nl.supernode("sn1")
	nl.relay("relay", "sn1")
	homeHost := nl.Home("lana", NATEndpointIndependent, WithRate(gridRate))
	a := nl.peerOn(homeHost, "lana", NATEndpointIndependent, "sn1", gridFileSize)
	b := nl.peerOn(nl.Neighbour(homeHost, "lanb"), "lanb", NATEndpointIndependent, "sn1", gridFileSize,
		"--listen", "0.0.0.0:40000")
	a.wait()
	b.wait()
	att, rate, _ := a.transfer(b, "direct", "direct")
	mbit := rate * 8 / 1e6
	t.Logf("behind one NAT: plan %s in %v, %.1f Mbit/s (the home line is %d Mbit/s)", att.Plan, att.Took.Round(time.Millisecond), mbit, gridRate)
}

// TestNATUDPBlockedRenews: a peer whose network drops UDP lives on a relay
// allocation whose credentials last 12 s here (a test setting; the default
// is an hour). It renews them over TCP and moves to a new allocation every
// 8 s, while a download from it runs across at least five renewals: the
// supernode links move at once, the download's link stays on the old
// allocation until a second before its credentials end, and then goes on
// over the new one.
func TestNATUDPBlockedRenews(t *testing.T) {
	nl := newNATLab(t)
	nl.snExtra = []string{"--relay-cred-ttl", "12s"}
	nl.relayExtra = []string{"--cred-ttl", "12s"}
	nl.supernode("sn1")
	nl.relay("relay", "sn1")
	// A slow line and a large file: the download takes most of a minute.
	const rate, size = 4, 24 << 20
	blk := nl.peerOn(nl.Home("blk", NATUDPBlocked, WithRate(rate)), "blk", NATUDPBlocked, "sn1", size)
	eim := nl.peer("eim", NATEndpointIndependent, "sn1")
	blk.wait()
	eim.wait()
	renewed := func() int { return strings.Count(blk.proc.Output(), "relay credentials renewed") }
	before := renewed()
	got, err := eim.get(blk)
	if err != nil {
		t.Fatalf("the download from the UDP-blocked peer: %v\n%s", err, blk.proc.Output())
	}
	during := renewed() - before
	if blk.proc.Exited() {
		t.Fatalf("the UDP-blocked daemon exited:\n%s", blk.proc.Output())
	}
	if during < 5 {
		t.Errorf("%d renewals during the download; want at least 5 (make the file larger)", during)
	}
	st, raw, err := blk.status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Supernode.Relay, "renewed") {
		t.Errorf("status does not say the allocation was renewed:\n%s", raw)
	}
	// Each time a retired allocation took the download's link with it, eim
	// heard so and joined blk again on the new one.
	moves := strings.Count(eim.proc.Output(), "swarm peer lost")
	t.Logf("%d renewals during a %d MiB download from blk on a %d Mbit/s line: %.1f Mbit/s, file intact, the link moved %d times (%s)",
		during, size>>20, rate, got*8/1e6, moves, st.Supernode.Relay)
}

// TestNATIPv6Direct: two homes behind symmetric IPv4 NATs, which alone would
// need a relay, both have IPv6 behind a stateful firewall. Attached to the
// supernode over IPv6, each is seen at its own address, with one mapping
// for every destination (no NAT), and a firewall that lets in only answers:
// the supernode plans a punch, the firewalls open as each side sends, and
// the file moves directly over IPv6.
func TestNATIPv6Direct(t *testing.T) {
	nl := newNATLab(t)
	nl.snExtra = []string{"--listen", "[::]:7000"}
	v4 := nl.supernode("sn1")
	id := v4[:strings.IndexByte(v4, '@')]
	nl.supernodes["sn1"] = id + "@" + net.JoinHostPort(nl.hosts["sn1"].IP6.String(), "7000")
	nl.relay("relay", "sn1")
	var peers []*labPeer
	for _, name := range []string{"six1", "six2"} {
		h := nl.Home(name, NATSymmetric, WithRate(gridRate), WithIPv6())
		// Over IPv6 the supernode finds no NAT, just a firewall: an
		// endpoint-independent mapping.
		peers = append(peers, nl.peerOn(h, name, NATEndpointIndependent, "sn1", gridFileSize, "--listen", "[::]:40000"))
	}
	a, b := peers[0], peers[1]
	a.wait()
	b.wait()
	att, rate, remote := a.transfer(b, "punch", "direct")
	if !strings.HasPrefix(remote, "[2001:db8:") {
		t.Errorf("the link to %s runs to %q; want IPv6", b.name, remote)
	}
	t.Logf("IPv6 behind firewalls, IPv4 behind symmetric NATs: plan %s in %v, to %s, %.1f Mbit/s", att.Plan,
		att.Took.Round(time.Millisecond), remote, rate*8/1e6)
}

// TestNATDualStack: two homes behind symmetric IPv4 NATs, with IPv6 behind
// stateful firewalls, attach over IPv4 as their bootstrap names it. Each
// proves its IPv6 address to the supernode, which plans a punch, and they
// end direct over IPv6. A third home like them but without IPv6 is still
// relayed: over IPv4 alone these NATs need a relay.
func TestNATDualStack(t *testing.T) {
	nl := newNATLab(t)
	nl.snExtra = []string{"--listen", "[::]:7000"}
	nl.supernode("sn1")
	nl.relay("relay", "sn1")
	var peers []*labPeer
	for _, name := range []string{"dual1", "dual2", "four"} {
		opts := []HostOption{WithRate(gridRate)}
		if name != "four" {
			opts = append(opts, WithIPv6())
		}
		h := nl.Home(name, NATSymmetric, opts...)
		peers = append(peers, nl.peerOn(h, name, NATSymmetric, "sn1", gridFileSize, "--listen", "[::]:40000"))
	}
	a, b, c := peers[0], peers[1], peers[2]
	for _, p := range peers {
		p.wait()
	}
	for _, p := range []*labPeer{a, b} {
		// A proof whose first packets were lost comes in a second report.
		pollUntil(t, 40*time.Second, p.name+"'s IPv6 address proven", func() (bool, string) {
			st, raw, err := p.status()
			if err != nil {
				return false, err.Error()
			}
			sn := st.Supernode
			if strings.Contains(sn.Observed, "[") {
				t.Fatalf("%s attached at %s; want IPv4", p.name, sn.Observed)
			}
			return len(sn.Proven) == 1 && strings.HasPrefix(sn.Proven[0], "[2001:db8:"), raw
		})
	}
	att, rate, remote := a.transfer(b, "punch", "direct")
	if !strings.HasPrefix(remote, "[2001:db8:") {
		t.Errorf("the link to %s runs to %q; want IPv6", b.name, remote)
	}
	t.Logf("attached over IPv4, IPv6 proven: plan %s in %v, to %s, %.1f Mbit/s", att.Plan,
		att.Took.Round(time.Millisecond), remote, rate*8/1e6)

	ac, err := a.connect(c)
	if err != nil {
		t.Fatal(err)
	}
	if ac.Plan != "relay" || ac.Path != "relayed" {
		t.Errorf("to the home without IPv6: plan %s, path %s; want relay, relayed", ac.Plan, ac.Path)
	}
	t.Logf("IPv4 alone: plan %s, path %s in %v", ac.Plan, ac.Path, ac.Took.Round(time.Millisecond))
}

// TestNATIPv6OnlyRelayed: a peer on an IPv6-only network and peers behind
// symmetric IPv4 NATs with no IPv6 share no address family, so only a relay
// can join them, and its TURN service is on IPv4. When the IPv6 peer
// dials, the supernode gives the target a relay that offers IPv6, the
// target asks it for an IPv6 relayed address, and the IPv6 peer dials
// that. When it is dialled, the initiator allocates instead (plan
// relay-reverse) and the IPv6 peer dials the initiator's relayed address.
func TestNATIPv6OnlyRelayed(t *testing.T) {
	nl := newNATLab(t)
	nl.snExtra = []string{"--listen", "[::]:7000"}
	v4 := nl.supernode("sn1")
	nl.relay("relay", "sn1")
	id := v4[:strings.IndexByte(v4, '@')]
	nl.supernodes["sn1-v6"] = id + "@" + net.JoinHostPort(nl.hosts["sn1"].IP6.String(), "7000")
	six := nl.peerOn(nl.Home("six", NATSymmetric, WithRate(gridRate), WithIPv6Only()), "six", NATEndpointIndependent,
		"sn1-v6", gridFileSize, "--listen", "[::]:40000")
	four := nl.peerOn(nl.Home("four", NATSymmetric, WithRate(gridRate)), "four", NATSymmetric, "sn1", gridFileSize)
	other := nl.peerOn(nl.Home("other", NATSymmetric, WithRate(gridRate)), "other", NATSymmetric, "sn1", gridFileSize)
	for _, p := range []*labPeer{six, four, other} {
		p.wait()
	}
	relay6 := "[" + nl.hosts["relay"].IP6.String() + "]:"
	att, rate, remote := six.transfer(four, "relay", "relayed")
	if !strings.HasPrefix(remote, relay6) {
		t.Errorf("the link to %s runs to %q; want the relay's IPv6 address %s", four.name, remote, nl.hosts["relay"].IP6)
	}
	t.Logf("IPv6-only to IPv4-only through an IPv6 relayed address: connected in %v, to %s, %.1f Mbit/s",
		att.Took.Round(time.Millisecond), remote, rate*8/1e6)

	att, rate, _ = other.transfer(six, "relay-reverse", "relayed")
	if r := six.linkRemote(other); !strings.HasPrefix(r, relay6) {
		t.Errorf("%s's link to %s runs to %q; want the relay's IPv6 address", six.name, other.name, r)
	}
	t.Logf("IPv4-only to IPv6-only, the initiator allocating: connected in %v, %.1f Mbit/s",
		att.Took.Round(time.Millisecond), rate*8/1e6)
}
