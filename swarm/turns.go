package swarm

import (
	"slices"
	"sync"
	"time"
)

// uploadTurns orders a capped upload a piece at a time. Shared block by block,
// an upload to k peers finishes all their pieces together, after k
// piece-times; a piece at a time, the first peer has its piece after one
// piece-time and can pass it on. A swarm that is starting up, when most peers
// have nothing to trade yet, needs exactly that.
//
// One session at a time waits on the limiter for its next batch: the ready
// session whose piece run began first. A session whose write blocks (its peer
// reads slowly) is not ready, so the bandwidth goes to the next one meanwhile.
// nil (an unlimited upload, where the CPU is the limit) orders nothing.
type uploadTurns struct {
	mu    sync.Mutex
	busy  bool       // a session is waiting on the limiter
	ready []*session // sessions with a batch to send, waiting for their turn
	runs  uint64     // piece runs begun, to rank sessions by
	back  *session   // went to write the middle of its piece run and will be back
	timer *time.Timer
}

// backWait is how long a session writing the middle of its piece run keeps
// the limiter before the next ready session is woken. Waking the next at once
// would cost a futile wake-up per batch, since the writer is nearly always
// back first and goes ahead.
const backWait = 5 * time.Millisecond

func newUploadTurns(bytesPerSec int64) *uploadTurns {
	if bytesPerSec <= 0 {
		return nil
	}
	return &uploadTurns{}
}

// take reports whether s, which has a batch to send, may wait on the limiter
// now. If not, s is woken when it may; until then its writer sends control
// frames only.
func (t *uploadTurns) take(s *session) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.upRun == 0 {
		t.runs++
		s.upRun = t.runs
	}
	i := slices.Index(t.ready, s)
	if t.busy || slices.ContainsFunc(t.ready, func(o *session) bool { return o.upRun < s.upRun }) {
		if i < 0 {
			t.ready = append(t.ready, s)
		}
		return false
	}
	if i >= 0 {
		t.ready = slices.Delete(t.ready, i, i+1)
	}
	t.busy = true
	if t.back != nil {
		t.back = nil
		t.timer.Stop()
	}
	return true
}

// waited ends s's wait on the limiter: the next ready session may wait. If
// ended, the batch just taken finished s's piece run and s goes to the back.
func (t *uploadTurns) waited(s *session, ended bool) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.busy = false
	if ended {
		s.upRun = 0
		t.wakeLocked()
		return
	}
	t.back = s
	if t.timer == nil {
		t.timer = time.AfterFunc(backWait, t.lapse)
	} else {
		t.timer.Reset(backWait)
	}
}

// lapse wakes the next ready session when the writer has not come back.
func (t *uploadTurns) lapse() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.back != nil && !t.busy {
		t.back = nil
		t.wakeLocked()
	}
}

// done takes s, which has nothing to send or is closing, out of line.
func (t *uploadTurns) done(s *session) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.upRun = 0
	if t.back == s {
		t.back = nil
		t.timer.Stop()
		if !t.busy {
			t.wakeLocked()
		}
	}
	if i := slices.Index(t.ready, s); i >= 0 {
		t.ready = slices.Delete(t.ready, i, i+1)
		if !t.busy {
			t.wakeLocked()
		}
	}
}

// wakeLocked wakes the ready session with the oldest piece run.
func (t *uploadTurns) wakeLocked() {
	var next *session
	for _, o := range t.ready {
		if next == nil || o.upRun < next.upRun {
			next = o
		}
	}
	if next != nil {
		next.wake()
	}
}
