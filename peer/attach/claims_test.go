package attach

import (
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestClaimOneTakesTheFirstFreeTarget(t *testing.T) {
	c := NewClaims()
	targets := []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}
	var got []string
	for range 3 {
		cl, ok := c.ClaimOne(t0, targets, nil)
		if !ok {
			t.Fatal("a free target was left unclaimed")
		}
		got = append(got, cl.Addr)
	}
	if got[0] != targets[0] || got[1] != targets[1] || got[2] != targets[2] {
		t.Fatalf("claimed %v, want the targets in order", got)
	}
	if _, ok := c.ClaimOne(t0, targets, nil); ok {
		t.Fatal("claimed a target another slot holds")
	}
	c.Release(targets[1])
	if cl, ok := c.ClaimOne(t0, targets, nil); !ok || cl.Addr != targets[1] {
		t.Fatalf("after a release: %+v %v, want %s", cl, ok, targets[1])
	}
}

// A supernode that failed lately is tried only when no other is free, and
// again as usual once its hold-off ran out.
func TestClaimOneTriesFailedTargetsLast(t *testing.T) {
	c := NewClaims()
	targets := []string{"10.0.0.1:1", "10.0.0.2:1"}
	c.MarkDown(t0, targets[0])
	if cl, _ := c.ClaimOne(t0.Add(time.Second), targets, nil); cl.Addr != targets[1] {
		t.Fatalf("claimed %s, want the one that did not fail", cl.Addr)
	}
	if cl, ok := c.ClaimOne(t0.Add(time.Second), targets, nil); !ok || cl.Addr != targets[0] {
		t.Fatalf("with nothing else free: %+v %v, want the failed one", cl, ok)
	}
	c.Release(targets[0])
	c.Release(targets[1])
	if !c.Down(t0.Add(DownHoldoff-time.Millisecond), targets[0]) || c.Down(t0.Add(DownHoldoff), targets[0]) {
		t.Fatal("the hold-off lasts DownHoldoff")
	}
	if cl, _ := c.ClaimOne(t0.Add(DownHoldoff), targets, nil); cl.Addr != targets[0] {
		t.Fatalf("after the hold-off: %s, want the first target again", cl.Addr)
	}
	// Marking another down forgets the holds that ran out.
	c.MarkDown(t0.Add(2*DownHoldoff), targets[1])
	if _, ok := c.down[targets[0]]; ok || len(c.down) != 1 {
		t.Fatalf("holds %v, want only the fresh one", c.down)
	}
}

// The same supernode under two addresses is held once: by the ID a target
// names, or by where its address led before.
func TestClaimOneSkipsSupernodesAttachedUnderAnotherAddress(t *testing.T) {
	sn, other := protocol.PeerID{7}, protocol.PeerID{8}
	named := sn.String() + "@10.0.0.1:1"
	c := NewClaims()
	c.LedTo("10.0.0.2:1", sn)
	held := map[protocol.PeerID]bool{sn: true}
	cl, ok := c.ClaimOne(t0, []string{named, "10.0.0.2:1", other.String() + "@10.0.0.3:1"}, held)
	if !ok || cl.Addr != "10.0.0.3:1" || cl.Expect != other {
		t.Fatalf("claimed %+v %v, want the third target, expecting %s", cl, ok, other.Short())
	}
	if _, ok := c.ClaimOne(t0, []string{"not an address", named}, held); ok {
		t.Fatal("claimed an unparsable target or a held supernode")
	}
}

// A query goes to the nearest supernode heard from lately, whichever slot
// is the primary, unless the primary is about as near; with none heard
// from lately, to the one heard from last.
func TestPickNearestLive(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cands []pickCand
		want  int
	}{
		{"none", nil, -1},
		{"nearer backup", []pickCand{{true, 80 * time.Millisecond, t0}, {true, 20 * time.Millisecond, t0}, {true, 50 * time.Millisecond, t0}}, 1},
		{"backup nearer by less than the margin", []pickCand{{true, 10 * time.Millisecond, t0}, {true, 6 * time.Millisecond, t0}}, 0},
		{"nearer backup silent", []pickCand{{true, 80 * time.Millisecond, t0}, {false, 20 * time.Millisecond, t0}}, 0},
		{"all silent", []pickCand{{false, time.Millisecond, t0}, {false, time.Second, t0.Add(time.Second)}}, 1},
	} {
		if got := pick(tc.cands); got != tc.want {
			t.Errorf("%s: picked %d, want %d", tc.name, got, tc.want)
		}
	}
}
