package swarm

import (
	"testing"
	"time"
)

func woken(s *session) bool {
	select {
	case <-s.notify:
		return true
	default:
		return false
	}
}

func TestUploadTurnsPieceAtATime(t *testing.T) {
	ut := newUploadTurns(1 << 20)
	a, b := newSession(nil, [32]byte{1}, nil, nil, false), newSession(nil, [32]byte{2}, nil, nil, false)
	if !ut.take(a) {
		t.Fatal("the first session to ask did not get the limiter")
	}
	if ut.take(b) {
		t.Fatal("a second session got the limiter while the first waits on it")
	}
	// a's batch did not end its piece: a, back from writing it, goes on.
	ut.waited(a, false)
	if !ut.take(a) {
		t.Fatal("a session in the middle of a piece lost its turn to a later one")
	}
	if ut.take(b) {
		t.Fatal("b got the limiter while a waits on it")
	}
	// a's piece ends: b's run is now the oldest.
	ut.waited(a, true)
	if ut.take(a) {
		t.Fatal("a session that finished its piece went ahead of one waiting")
	}
	if !ut.take(b) {
		t.Fatal("b did not get its turn after a's piece")
	}
	ut.waited(b, true)
	if !woken(a) || !ut.take(a) {
		t.Fatal("a was not given the limiter back")
	}
}

func TestUploadTurnsBlockedWriterDoesNotStall(t *testing.T) {
	ut := newUploadTurns(1 << 20)
	a, b := newSession(nil, [32]byte{1}, nil, nil, false), newSession(nil, [32]byte{2}, nil, nil, false)
	ut.take(a)
	ut.take(b)
	ut.waited(a, false) // a now writes, and its write blocks: it does not come back
	select {
	case <-b.notify:
	case <-time.After(time.Second):
		t.Fatal("the next session was not woken while a's write blocked")
	}
	if !ut.take(b) {
		t.Fatal("a session whose write blocks kept the limiter from others")
	}
	ut.waited(b, true)
}

func TestUploadTurnsDoneWakesNext(t *testing.T) {
	ut := newUploadTurns(1 << 20)
	a, b, c := newSession(nil, [32]byte{1}, nil, nil, false), newSession(nil, [32]byte{2}, nil, nil, false), newSession(nil, [32]byte{3}, nil, nil, false)
	ut.take(a)
	ut.take(b)
	ut.take(c)
	ut.waited(a, true)
	woken(b)
	ut.done(b) // choked or closed before it took its turn
	if !woken(c) {
		t.Fatal("the next session was not woken when the one ahead left the line")
	}
	if !ut.take(c) {
		t.Fatal("c did not get the limiter")
	}
}

func TestUploadTurnsUnlimited(t *testing.T) {
	ut := newUploadTurns(0)
	a, b := newSession(nil, [32]byte{1}, nil, nil, false), newSession(nil, [32]byte{2}, nil, nil, false)
	if !ut.take(a) || !ut.take(b) {
		t.Fatal("an unlimited upload made sessions wait")
	}
	ut.waited(a, true)
	ut.done(b)
}
