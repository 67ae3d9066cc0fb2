package peer

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// inboxLoad accounts for the deliveries in progress: how many there are, in
// all and per sender, and the bytes they claim. A delivery's claim is the
// bytes it announced and has not yet sent; it shrinks as bytes arrive and is
// given back whole when the delivery ends, stored or not.
type inboxLoad struct {
	lim InboxLimits

	mu      sync.Mutex
	n       int   // deliveries admitted
	claimed int64 // announced and not yet received, over the admitted
	// ahead is disk reserved beyond the bytes received. The file system no
	// longer counts it as free, but it is part of the claims, so it is added
	// back before the free space is shared out.
	ahead   int64
	senders map[protocol.PeerID]*senderLoad
	// holdoff says until when a sender whose delivery stalled is refused.
	holdoff map[protocol.PeerID]time.Time
	now     func() time.Time

	overloaded, unavailable, aborted int64 // refusals and aborts, for tests and logs
}

type senderLoad struct {
	n       int   // deliveries in progress, admitted or still being checked
	claimed int64 // as inboxLoad.claimed, for this sender alone
}

// maxHoldoffs bounds the senders held off; past it the one whose hold-off
// ends first is forgotten. (A sender with many keys is not held off by this
// at all; the share of free space and the deadline bound it.)
const maxHoldoffs = 1024

func newInboxLoad(lim InboxLimits) *inboxLoad {
	return &inboxLoad{lim: lim, senders: make(map[protocol.PeerID]*senderLoad),
		holdoff: make(map[protocol.PeerID]time.Time), now: time.Now}
}

// inboxClaim is one delivery's share of the load.
type inboxClaim struct {
	lo       *inboxLoad
	peer     protocol.PeerID
	admitted bool
	size     int64
	left     int64 // announced and not yet received
	ahead    int64 // disk reserved beyond the bytes received
	released bool
}

// enter takes one of the sender's delivery slots, before anything else is
// looked at, so one sender cannot have more than its share of deliveries
// being checked (a policy check may ask the directory).
func (lo *inboxLoad) enter(p protocol.PeerID) (*inboxClaim, error) {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if until, ok := lo.holdoff[p]; ok {
		if left := until.Sub(lo.now()); left > 0 {
			lo.overloaded++
			return nil, fmt.Errorf("%w: your last delivery stalled; try again in %s", protocol.ErrOverloaded, left.Round(time.Second))
		}
		delete(lo.holdoff, p)
	}
	s := lo.senders[p]
	if s == nil {
		s = &senderLoad{}
		lo.senders[p] = s
	}
	if s.n >= lo.lim.SenderDeliveries {
		lo.overloaded++
		return nil, fmt.Errorf("%w: %d of your deliveries are in progress already, the most one sender may have",
			protocol.ErrOverloaded, s.n)
	}
	s.n++
	return &inboxClaim{lo: lo, peer: p}, nil
}

// admit claims size bytes. free reports the inbox file system's free space;
// errors.ErrUnsupported there leaves the share of free space unchecked. A
// file that does not fit in the share even with nothing else in progress is
// unavailable (the disk is too full for it); one that does not fit beside
// the deliveries in progress is overloaded (it may fit later).
func (c *inboxClaim) admit(size int64, free func() (int64, error)) error {
	lo := c.lo
	lo.mu.Lock()
	defer lo.mu.Unlock()
	s := lo.senders[c.peer]
	if lo.n >= lo.lim.Deliveries {
		lo.overloaded++
		return fmt.Errorf("%w: the inbox takes %d deliveries at once", protocol.ErrOverloaded, lo.lim.Deliveries)
	}
	if size > lo.lim.SenderBytes {
		return fmt.Errorf("%w: %d bytes, one sender may have at most %d bytes on the way", protocol.ErrForbidden, size, lo.lim.SenderBytes)
	}
	if s.claimed+size > lo.lim.SenderBytes {
		lo.overloaded++
		return fmt.Errorf("%w: %d bytes of your deliveries in progress are still to come; one sender may have at most %d on the way",
			protocol.ErrOverloaded, s.claimed, lo.lim.SenderBytes)
	}
	f, err := free()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
	case err != nil:
		return &localError{public: fmt.Errorf("%w: the inbox cannot tell its free space", protocol.ErrInternal), detail: err}
	default:
		pool := int64(lo.lim.FreeShare * float64(f+lo.ahead))
		if size > pool {
			lo.unavailable++
			return fmt.Errorf("%w: the inbox has no room for %d bytes", protocol.ErrUnavailable, size)
		}
		if lo.claimed+size > pool {
			lo.overloaded++
			return fmt.Errorf("%w: deliveries in progress hold the inbox's free space; try again later", protocol.ErrOverloaded)
		}
	}
	lo.n++
	lo.claimed += size
	s.claimed += size
	c.admitted, c.size, c.left = true, size, size
	return nil
}

// progress records that written bytes have arrived and that the disk is
// reserved up to allocated.
func (c *inboxClaim) progress(written, allocated int64) {
	lo := c.lo
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if c.released || !c.admitted {
		return
	}
	left, ahead := c.size-written, max(allocated-written, 0)
	lo.claimed += left - c.left
	lo.senders[c.peer].claimed += left - c.left
	lo.ahead += ahead - c.ahead
	c.left, c.ahead = left, ahead
}

// abort counts a delivery ended for stalling, and holds its sender off.
func (c *inboxClaim) abort() {
	lo := c.lo
	lo.mu.Lock()
	defer lo.mu.Unlock()
	lo.aborted++
	if _, ok := lo.holdoff[c.peer]; !ok && len(lo.holdoff) >= maxHoldoffs {
		var first protocol.PeerID
		var firstEnd time.Time
		for p, end := range lo.holdoff {
			if firstEnd.IsZero() || end.Before(firstEnd) {
				first, firstEnd = p, end
			}
		}
		delete(lo.holdoff, first)
	}
	lo.holdoff[c.peer] = lo.now().Add(lo.lim.StallHoldoff)
}

// noRoom counts a delivery the disk could not reserve a step for.
func (c *inboxClaim) noRoom() {
	c.lo.mu.Lock()
	c.lo.unavailable++
	c.lo.mu.Unlock()
}

// release gives the claim back. Safe twice.
func (c *inboxClaim) release() {
	lo := c.lo
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if c.released {
		return
	}
	c.released = true
	s := lo.senders[c.peer]
	if c.admitted {
		lo.n--
		lo.claimed -= c.left
		lo.ahead -= c.ahead
		s.claimed -= c.left
	}
	s.n--
	if s.n == 0 {
		delete(lo.senders, c.peer)
	}
}

// inboxUsage is a snapshot of the load.
type inboxUsage struct {
	Deliveries int
	Claimed    int64
	Ahead      int64
	Senders    map[protocol.PeerID]senderLoad

	HeldOff                          int
	Overloaded, Unavailable, Aborted int64
}

func (lo *inboxLoad) usage() inboxUsage {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	u := inboxUsage{Deliveries: lo.n, Claimed: lo.claimed, Ahead: lo.ahead,
		Senders:    make(map[protocol.PeerID]senderLoad, len(lo.senders)),
		HeldOff:    len(lo.holdoff),
		Overloaded: lo.overloaded, Unavailable: lo.unavailable, Aborted: lo.aborted}
	for p, s := range lo.senders {
		u.Senders[p] = *s
	}
	return u
}

// localError is an error told to a sender apart from what this peer logs:
// local paths and system errors stay in the log.
type localError struct {
	public error // what the sender is told
	detail error // what the log keeps besides
}

func (e *localError) Error() string { return e.public.Error() + ": " + e.detail.Error() }
func (e *localError) Unwrap() error { return e.public }

// publicError is what a sender may be told of err.
func publicError(err error) error {
	if le, ok := errors.AsType[*localError](err); ok {
		return le.public
	}
	return err
}
