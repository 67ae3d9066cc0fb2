package dial

import (
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
)

func TestSignalled(t *testing.T) {
	for _, tc := range []struct {
		name                            string
		attached, speaks, knowsSN, want bool
		addrs                           int
	}{
		{"detached", false, false, true, false, 0},
		{"supernode predates signalling", true, false, true, false, 0},
		{"source names its supernode", true, true, true, true, 2},
		{"no supernode, no address: flooded", true, true, false, true, 0},
		{"addresses but no supernode: an old supernode's source", true, true, false, false, 1},
	} {
		if got := signalled(tc.attached, tc.speaks, tc.knowsSN, tc.addrs); got != tc.want {
			t.Errorf("%s: signalled = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestInitiatorRoute(t *testing.T) {
	for _, tc := range []struct {
		plan    protocol.Plan
		upgrade bool
		want    []step
	}{
		{protocol.PlanDirect, false, []step{stepDial}},
		{protocol.PlanReverse, false, []step{stepAwait}},
		{protocol.PlanPunch, false, []step{stepPunch, stepRelayed}},
		// An upgrade already has a relay: a failed punch just ends it.
		{protocol.PlanPunch, true, []step{stepPunch}},
		{protocol.PlanRelay, false, []step{stepRelayed}},
		// A target on IPv6 alone cannot allocate: the initiator does.
		{protocol.PlanRelayReverse, false, []step{stepAllocate}},
	} {
		r, err := initiatorRoute(tc.plan, 0, tc.upgrade, false)
		if err != nil || !slices.Equal(r.steps, tc.want) || r.wait != 0 {
			t.Errorf("%v upgrade=%v: got %v %v wait %v, want %v", tc.plan, tc.upgrade, r.steps, err, r.wait, tc.want)
		}
	}
	// A target on a relay is dialled once it says its relay lets us in.
	if r, _ := initiatorRoute(protocol.PlanDirect, 0, false, true); !slices.Equal(r.steps, []step{stepDialPermitted}) {
		t.Errorf("direct to a target on a relay: %v", r.steps)
	}
	if _, err := initiatorRoute(protocol.Plan(99), 0, false, false); !errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("unknown plan: %v", err)
	}
	if r, _ := initiatorRoute(protocol.PlanPunch, 120, false, false); r.wait != 120*time.Millisecond {
		t.Fatalf("wait %v, want the supernode's 120 ms", r.wait)
	}
}

func TestTargetRoute(t *testing.T) {
	for _, tc := range []struct {
		plan              protocol.Plan
		upgrade, hasRelay bool
		want              []step
	}{
		{protocol.PlanDirect, false, true, []step{stepPermit}},
		{protocol.PlanReverse, false, false, []step{stepDial}},
		{protocol.PlanPunch, false, true, []step{stepPunchAwait, stepAllocate}},
		{protocol.PlanPunch, false, false, []step{stepPunchAwait}},
		{protocol.PlanPunch, true, true, []step{stepPunchAwait}},
		// Without a relay the allocation fails with its own error.
		{protocol.PlanRelay, false, false, []step{stepAllocate}},
		{protocol.PlanRelayReverse, false, false, []step{stepRelayed}},
	} {
		r, err := targetRoute(tc.plan, 0, tc.upgrade, tc.hasRelay)
		if err != nil || !slices.Equal(r.steps, tc.want) {
			t.Errorf("%v upgrade=%v relay=%v: got %v %v, want %v", tc.plan, tc.upgrade, tc.hasRelay, r.steps, err, tc.want)
		}
	}
	if _, err := targetRoute(protocol.Plan(0), 0, false, false); !errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("zero plan: %v", err)
	}
}

// Every step either side may take has a name, and the initiator's steps
// that give a link say which path it runs, or leave it to how it came in.
func TestStepPaths(t *testing.T) {
	for s, want := range map[step]string{stepDial: apitype.PathDirect, stepPunch: apitype.PathDirect, stepRelayed: apitype.PathRelayed, stepDialPermitted: apitype.PathRelayed, stepAllocate: apitype.PathRelayed, stepAwait: ""} {
		got, known := stepPath(s)
		if got != want || known != (want != "") {
			t.Errorf("%v: path %q known %v, want %q", s, got, known, want)
		}
	}
	if step(42).String() != "step(42)" || stepAllocate.String() != "allocate" {
		t.Fatal("step names")
	}
}

func TestWantsUpgrade(t *testing.T) {
	if !wantsUpgrade(false, apitype.PathRelayed, protocol.PlanPunch) {
		t.Fatal("a punch that fell back to a relay keeps trying")
	}
	for _, tc := range []struct {
		upgrade bool
		path    string
		plan    protocol.Plan
	}{
		{true, apitype.PathRelayed, protocol.PlanPunch},  // already the retry
		{false, apitype.PathDirect, protocol.PlanPunch},  // the punch worked
		{false, apitype.PathRelayed, protocol.PlanRelay}, // the supernode saw no chance
		{false, apitype.PathRelayed, protocol.PlanReverse},
	} {
		if wantsUpgrade(tc.upgrade, tc.path, tc.plan) {
			t.Errorf("%+v: upgrade wanted", tc)
		}
	}
}

func TestReplaces(t *testing.T) {
	d, r := apitype.PathDirect, apitype.PathRelayed
	for _, tc := range []struct {
		name             string
		old, nw          linkKind
		iDialFirst       bool
		replace, closeIt bool
	}{
		{"direct replaces an idle relayed link; we dialled it so we close", linkKind{r, true, 0}, linkKind{d, true, 0}, false, true, true},
		{"direct replaces a relayed link still in use", linkKind{r, true, 2}, linkKind{d, true, 0}, false, true, false},
		{"direct replaces relayed; the other side dialled, it closes", linkKind{r, false, 0}, linkKind{d, false, 0}, false, true, false},
		{"relayed never replaces direct", linkKind{d, true, 0}, linkKind{r, true, 0}, true, false, false},
		{"two direct links, ours wins; the other side closes its own", linkKind{d, false, 0}, linkKind{d, true, 0}, true, true, false},
		{"two direct links, theirs wins and we close ours", linkKind{d, true, 0}, linkKind{d, false, 0}, false, true, true},
		{"two direct links, theirs wins, ours in use", linkKind{d, true, 1}, linkKind{d, false, 0}, false, true, false},
		{"two direct links, we keep ours", linkKind{d, true, 0}, linkKind{d, false, 0}, true, false, false},
		{"same kind dialled the same way: keep the one in use", linkKind{d, true, 0}, linkKind{d, true, 0}, true, false, false},
	} {
		rep, cl := replaces(tc.old, tc.nw, tc.iDialFirst)
		if rep != tc.replace || cl != tc.closeIt {
			t.Errorf("%s: replace %v close %v, want %v %v", tc.name, rep, cl, tc.replace, tc.closeIt)
		}
	}
	a, b := protocol.PeerID{1}, protocol.PeerID{2}
	if !dialsFirst(a, b) || dialsFirst(b, a) || dialsFirst(a, a) {
		t.Fatal("dialsFirst is the smaller ID")
	}
}

// Both sides of a simultaneous dial agree on the link they keep.
func TestReplacesAgreesAcrossSides(t *testing.T) {
	a, b := protocol.PeerID{1}, protocol.PeerID{9}
	// a holds the link it dialled and receives b's; b the reverse.
	aReplaces, _ := replaces(linkKind{apitype.PathDirect, true, 0}, linkKind{apitype.PathDirect, false, 0}, dialsFirst(a, b))
	bReplaces, _ := replaces(linkKind{apitype.PathDirect, true, 0}, linkKind{apitype.PathDirect, false, 0}, dialsFirst(b, a))
	if aReplaces || !bReplaces {
		t.Fatalf("a replaces %v, b replaces %v: both must keep a's dial", aReplaces, bReplaces)
	}
}

func TestAllDialFailures(t *testing.T) {
	refused := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	if !allDialFailures([]error{refused, refused}) {
		t.Fatal("refused connects are dial failures")
	}
	if allDialFailures([]error{refused, errors.New("tls: bad certificate")}) {
		t.Fatal("a supernode that answered is not a dial failure")
	}
	if allDialFailures([]error{&net.OpError{Op: "read", Err: errors.New("reset")}}) {
		t.Fatal("a read error is not a dial failure")
	}
}

// A peer's LAN addresses come first from behind its NAT, and are dropped
// from anywhere else.
func TestCandidates(t *testing.T) {
	addrs := []string{"203.0.113.4:40000", "192.168.1.20:40000", "10.0.0.5:40000", "[fd00::5]:40000"}
	cases := []struct {
		self string
		want []string
	}{
		{"203.0.113.4:51000", []string{"192.168.1.20:40000", "10.0.0.5:40000", "[fd00::5]:40000", "203.0.113.4:40000"}},
		{"198.51.100.9:51000", []string{"203.0.113.4:40000"}},
		{"", []string{"203.0.113.4:40000"}},
	}
	for _, c := range cases {
		if got := Candidates(addrs, c.self); !slices.Equal(got, c.want) {
			t.Errorf("from %q: %v, want %v", c.self, got, c.want)
		}
	}
	// Public addresses only: as they came.
	pub := []string{"203.0.113.4:40000", "203.0.113.4:40001"}
	if got := Candidates(pub, ""); !slices.Equal(got, pub) {
		t.Errorf("public only: %v", got)
	}
	// Both families: IPv6 first, then by turns. Behind the NAT of the
	// IPv4 address, the LAN ones lead, whatever the first address is.
	dual := []string{"203.0.113.4:40000", "203.0.113.4:40001", "[2001:db8:5::2]:40000", "10.0.0.5:40000"}
	want := []string{"[2001:db8:5::2]:40000", "203.0.113.4:40000", "203.0.113.4:40001"}
	if got := Candidates(dual, "198.51.100.9:1"); !slices.Equal(got, want) {
		t.Errorf("dual stack: %v, want %v", got, want)
	}
	dual = []string{"[2001:db8:5::2]:40000", "203.0.113.4:40000", "10.0.0.5:40000"}
	want = []string{"10.0.0.5:40000", "[2001:db8:5::2]:40000", "203.0.113.4:40000"}
	if got := Candidates(dual, "203.0.113.4:51000"); !slices.Equal(got, want) {
		t.Errorf("dual stack behind one NAT: %v, want %v", got, want)
	}
}
