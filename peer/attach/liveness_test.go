package attach

import (
	"testing"
	"time"
)

const probe = 500 * time.Millisecond

// fleet is a Watch and attached supernodes, on a clock the test moves.
type fleet struct {
	w     *Watch
	now   time.Time
	lives []*Liveness
	rx    []uint64
}

func newFleet(n int) *fleet {
	f := &fleet{w: NewWatch(probe), now: t0}
	for range n {
		v := Attached(t0, 0)
		f.lives = append(f.lives, &v)
		f.rx = append(f.rx, 0)
	}
	return f
}

// round runs one ping round answered after rtt by the supernodes in live;
// the others stay silent. The clock ends a probe interval later.
func (f *fleet) round(rtt time.Duration, live ...int) {
	seq := f.w.Round(f.now)
	for _, i := range live {
		f.rx[i]++
		f.lives[i].Hear(f.now.Add(rtt), f.rx[i])
		f.w.Ponged(f.lives[i], seq, f.now.Add(rtt))
	}
	f.now = f.now.Add(probe)
}

func (f *fleet) check() ([]Silent, bool) { return f.w.Check(f.now, f.lives) }

func TestSilentSupernodeIsLeftWhileOthersAnswer(t *testing.T) {
	f := newFleet(3)
	for range 4 {
		f.round(10*time.Millisecond, 0, 1, 2)
	}
	for n := 0; ; n++ {
		if n > 2*MaxSilentProbes {
			t.Fatal("a silent supernode was never left")
		}
		f.round(10*time.Millisecond, 0, 2)
		dead, _ := f.check()
		if len(dead) == 0 {
			continue
		}
		if len(dead) != 1 || dead[0].Index != 1 {
			t.Fatalf("left %+v, want only the silent one", dead)
		}
		if dead[0].Silent < SilentProbes*probe {
			t.Fatalf("left after %v, before %d probe intervals", dead[0].Silent, SilentProbes)
		}
		return
	}
}

// When every supernode goes silent at once our own network is in doubt:
// none is left, and a STUN answer from elsewhere is asked for, once.
func TestAllSilentAsksElsewhereAndLeavesNone(t *testing.T) {
	f := newFleet(2)
	for range 4 {
		f.round(10*time.Millisecond, 0, 1)
	}
	asked := false
	for range 2 * MaxSilentProbes {
		f.round(0)
		dead, ask := f.check()
		if len(dead) > 0 {
			t.Fatalf("left %+v with every supernode silent", dead)
		}
		if ask {
			asked = true
			f.w.Asking()
			if _, again := f.check(); again {
				t.Fatal("asked again while a request is out")
			}
			break
		}
	}
	if !asked {
		t.Fatal("no STUN answer asked for")
	}
	// A supernode we are not attached to answers: our network works, and the
	// silent ones go once the answer is old enough to judge by.
	f.w.Asked(true, f.now, f.now.Add(20*time.Millisecond))
	f.now = f.now.Add(probe)
	dead, _ := f.check()
	if len(dead) != 2 {
		t.Fatalf("left %+v after the network was shown to work, want both", dead)
	}
}

// An unanswered STUN request proves nothing: nothing is left after it.
func TestUnansweredStunLeavesNone(t *testing.T) {
	f := newFleet(2)
	f.round(10*time.Millisecond, 0, 1)
	f.w.Asking()
	f.w.Asked(false, f.now, f.now)
	for range 2 * MaxSilentProbes {
		f.round(0)
		if dead, _ := f.check(); len(dead) > 0 {
			t.Fatalf("left %+v on an unanswered request", dead)
		}
	}
}

// A slow supernode gets its usual answer time on top of an interval.
func TestSlowSupernodeGetsItsAnswerTime(t *testing.T) {
	var v Liveness
	if got := v.SilentAfter(probe, 0); got != SilentProbes*probe {
		t.Fatalf("with no answers yet: %v, want %d intervals", got, SilentProbes)
	}
	w := NewWatch(probe)
	for range 8 {
		seq := w.Round(t0)
		w.Ponged(&v, seq, t0.Add(3*time.Second))
	}
	if at := v.AnswerTime(); at < 3*time.Second {
		t.Fatalf("answer time %v, want at least the 3 s it takes", at)
	}
	if got := v.SilentAfter(probe, 0); got != probe+v.AnswerTime() {
		t.Fatalf("silent after %v, want an interval and the answer time %v", got, v.AnswerTime())
	}
	if got := v.SilentAfter(probe, MaxWary); got != MaxSilentProbes*probe {
		t.Fatalf("wary: %v, want the cap of %d intervals", got, MaxSilentProbes)
	}
}

// Pongs to rounds not ours or too old to match are ignored.
func TestPongsOnlyToOurRecentRounds(t *testing.T) {
	w := NewWatch(probe)
	var v Liveness
	w.Ponged(&v, 1, t0) // before any round
	seq := w.Round(t0)
	w.Ponged(&v, seq+1, t0) // a round not sent
	w.Ponged(&v, 0, t0)
	if v.AnswerTime() != 0 {
		t.Fatal("a pong to no round of ours counted")
	}
	for range pingRounds {
		w.Round(t0)
	}
	w.Ponged(&v, seq, t0.Add(time.Second))
	if v.AnswerTime() != 0 {
		t.Fatal("a pong to a round too old counted")
	}
	w.Ponged(&v, w.seq, t0.Add(100*time.Millisecond))
	if v.AnswerTime() != 100*time.Millisecond+4*50*time.Millisecond {
		t.Fatalf("answer time %v after one 100 ms answer", v.AnswerTime())
	}
}

// Each supernode left that still answered doubles the wait, up to MaxWary;
// a WaryDecay without such a mistake takes one doubling back.
func TestWaryGrowsAndDecays(t *testing.T) {
	w := NewWatch(probe)
	for i := 1; i <= MaxWary+2; i++ {
		if got := w.Stalled(t0); got != min(i, MaxWary) {
			t.Fatalf("after %d stalls wary %d", i, got)
		}
	}
	w.Check(t0.Add(WaryDecay-time.Millisecond), nil)
	if w.Wary() != MaxWary {
		t.Fatal("decayed too early")
	}
	now := t0
	for want := MaxWary - 1; want >= 0; want-- {
		now = now.Add(WaryDecay)
		w.Check(now, nil)
		if w.Wary() != want {
			t.Fatalf("wary %d, want %d", w.Wary(), want)
		}
	}
}

// TestPaceFollowsTheBusiestSupernode: the rounds go at our interval unless
// an attached supernode asked for a longer one, and none may ask for more
// than MaxPace; the silence allowed grows with the interval.
func TestPaceFollowsTheBusiestSupernode(t *testing.T) {
	f := newFleet(2)
	if got := f.w.Pace(f.now, probe, f.lives); got != probe {
		t.Fatalf("nothing asked: every %v, want %v", got, probe)
	}
	f.lives[0].Paced(100 * time.Millisecond)
	if got := f.w.Pace(f.now, probe, f.lives); got != probe {
		t.Fatalf("a shorter interval asked: every %v, want ours, %v", got, probe)
	}
	f.lives[1].Paced(2 * time.Second)
	if got := f.w.Pace(f.now, probe, f.lives); got != 2*time.Second {
		t.Fatalf("one asked for 2s: every %v", got)
	}
	// Both answer a round, then supernode 0 goes silent: it is not left
	// before three of the longer intervals.
	seq := f.w.Round(f.now)
	for i, v := range f.lives {
		f.rx[i]++
		v.Hear(f.now, f.rx[i])
		f.w.Ponged(v, seq, f.now)
	}
	for k := 1; k <= 3; k++ {
		f.now = f.now.Add(2 * time.Second)
		seq := f.w.Round(f.now)
		f.rx[1]++
		f.lives[1].Hear(f.now, f.rx[1])
		f.w.Ponged(f.lives[1], seq, f.now)
		dead, _ := f.check()
		if k < 3 && len(dead) > 0 {
			t.Fatalf("left after %v of silence at a 2s pace", f.now.Sub(t0))
		}
		if k == 3 && (len(dead) != 1 || dead[0].Index != 0) {
			t.Fatalf("after three silent 2s intervals: left %v, want supernode 0", dead)
		}
	}
	f.lives[1].Paced(time.Hour)
	if got := f.w.Pace(f.now, probe, f.lives); got != MaxPace {
		t.Fatalf("an hour asked: every %v, want the cap %v", got, MaxPace)
	}
}

// A supernode that asked for slow pings and is suspected (a query it did not
// acknowledge) is left after SilentProbes of our own intervals from the
// suspicion, not of its slow ones; and not sooner, though it has been
// silent longer than that already.
func TestUrgedLeavesASuspectAtOurPace(t *testing.T) {
	f := newFleet(3)
	const slow = 5 * time.Second
	for _, v := range f.lives {
		v.Paced(slow)
	}
	if f.w.Urge(f.now, probe) {
		t.Fatal("urged at our own pace: want no change")
	}
	if got := f.w.Pace(f.now, probe, f.lives); got != slow {
		t.Fatalf("every %v, want the asked %v", got, slow)
	}
	// A round at the slow pace answered by all; then 1 dies.
	seq := f.w.Round(f.now)
	for i, v := range f.lives {
		f.rx[i]++
		v.Hear(f.now.Add(10*time.Millisecond), f.rx[i])
		f.w.Ponged(v, seq, f.now.Add(10*time.Millisecond))
	}
	f.now = f.now.Add(4 * time.Second)
	urgedAt := f.now
	if !f.w.Urge(f.now, probe) || f.w.Urge(f.now, probe) {
		t.Fatal("want the first urge to start a while and the second, during it, not")
	}
	if got := f.w.Pace(f.now, probe, f.lives); got != probe {
		t.Fatalf("urged: every %v, want ours, %v", got, probe)
	}
	var left time.Duration
	for k := 0; k < 2*urgeRounds && left == 0; k++ {
		f.round(10*time.Millisecond, 0, 2)
		if dead, _ := f.check(); len(dead) > 0 {
			if len(dead) != 1 || dead[0].Index != 1 {
				t.Fatalf("left %+v, want only the dead one", dead)
			}
			left = f.now.Sub(urgedAt)
		}
	}
	if left < SilentProbes*probe || left > (SilentProbes+2)*probe {
		t.Fatalf("left %v after the suspicion, want %d to %d of our intervals (%v)", left, SilentProbes, SilentProbes+2, probe)
	}
	// The while ends: the asked pace again.
	f.now = urgedAt.Add(urgeRounds * probe)
	if got := f.w.Pace(f.now, probe, f.lives); got != slow {
		t.Fatalf("after the while: every %v, want %v", got, slow)
	}
}
