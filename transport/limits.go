package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// ErrRefused is returned by Dial when the other side refused the connection
// before its handshake: it is at a limit (too many handshakes in flight, or too
// many connections from our address).
var ErrRefused = errors.New("connection refused by a limit of the other side")

// Errors admit refuses with; quic-go answers them with CONNECTION_REFUSED.
var (
	errTooManyHandshakes      = errors.New("too many handshakes in flight")
	errTooManySourceHandshake = errors.New("too many handshakes in flight from one address")
	errTooManySourceConns     = errors.New("too many connections from one address")
)

// Source is the unit the per-source limits count by: the IPv4 address, or the
// /64 an IPv6 address is in (one subscriber's share of IPv6 space).
func Source(addr net.Addr) (netip.Prefix, bool) {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		p, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return netip.Prefix{}, false
		}
		ap = p
	}
	ip := ap.Addr().Unmap()
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.WithZone("").Prefix(bits)
	return p, err == nil
}

// Stats counts what a Node's limits did. Counters only grow.
type Stats struct {
	Handshakes int // incoming connections between their first packet and Accept
	Conns      int // incoming connections open, handshakes included
	Sources    int // source addresses with an incoming connection

	RefusedHandshakes       uint64 // refused: MaxHandshakes in flight
	RefusedSourceHandshakes uint64 // refused: MaxHandshakesPerIP in flight from the source
	RefusedSourceConns      uint64 // refused: MaxConnsPerIP open from the source
	RetriesAsked            uint64 // attempts told to prove their address (QUIC Retry)
	Verified                uint64 // attempts admitted with a proven address
	SlowFrames              uint64 // links closed because a frame was too slow
	STUNDropped             uint64 // STUN requests not answered: over a rate
}

// admission counts incoming connections and handshakes, in all and by source,
// and refuses what would go over the limits before quic-go does any TLS work.
type admission struct {
	maxHS, maxHSPerSrc, retryAbove, maxConnsPerSrc int
	limitLoopback                                  bool

	mu      sync.Mutex
	hs      int
	conns   int
	sources map[netip.Prefix]*source

	refusedHS, refusedSrcHS, refusedSrcConns, retries, verified atomic.Uint64
}

// source is what one source address holds.
type source struct {
	conns, hs int          // under admission.mu
	queued    atomic.Int64 // bytes waiting on its links' send queues
}

// ticket is one admitted connection's claim on the counts.
type ticket struct {
	a        *admission
	key      netip.Prefix
	src      *source // nil for an exempt (loopback) source
	hsOnce   sync.Once
	connOnce sync.Once
}

type ticketKey struct{}

func newAdmission(cfg Config) *admission {
	return &admission{
		maxHS: cfg.MaxHandshakes, maxHSPerSrc: cfg.MaxHandshakesPerIP, retryAbove: cfg.RetryAbove,
		maxConnsPerSrc: cfg.MaxConnsPerIP, limitLoopback: cfg.LimitLoopback,
		sources: make(map[netip.Prefix]*source),
	}
}

// key is addr's source; exempt sources are not counted by source.
func (a *admission) key(addr net.Addr) (netip.Prefix, bool) {
	p, ok := Source(addr)
	if !ok {
		return p, false
	}
	if p.Addr().IsLoopback() && !a.limitLoopback {
		return p, false
	}
	return p, true
}

// connContext is quic.Transport.ConnContext: it admits a connection attempt or
// refuses it, and ties the counts to the connection's life.
func (a *admission) connContext(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
	t, err := a.admit(ci.RemoteAddr)
	if err != nil {
		return ctx, err
	}
	if ci.AddrVerified {
		a.verified.Add(1)
	}
	context.AfterFunc(ctx, t.closed)
	return context.WithValue(ctx, ticketKey{}, t), nil
}

func (a *admission) admit(addr net.Addr) (*ticket, error) {
	key, counted := a.key(addr)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hs >= a.maxHS {
		a.refusedHS.Add(1)
		return nil, errTooManyHandshakes
	}
	t := &ticket{a: a, key: key}
	if counted {
		src := a.sources[key]
		if src != nil && src.hs >= a.maxHSPerSrc {
			a.refusedSrcHS.Add(1)
			return nil, errTooManySourceHandshake
		}
		if src != nil && src.conns >= a.maxConnsPerSrc {
			a.refusedSrcConns.Add(1)
			return nil, errTooManySourceConns
		}
		if src == nil {
			src = &source{}
			a.sources[key] = src
		}
		src.hs++
		src.conns++
		t.src = src
	}
	a.hs++
	a.conns++
	return t, nil
}

// needRetry is quic.Transport.VerifySourceAddress: under load, an attempt must
// first prove it can receive at its address, which costs it a round trip and
// makes a flood from spoofed addresses cost nothing.
func (a *admission) needRetry(addr net.Addr) bool {
	key, counted := a.key(addr)
	a.mu.Lock()
	defer a.mu.Unlock()
	busy := a.hs >= a.retryAbove
	if src := a.sources[key]; counted && src != nil && src.hs >= max(1, a.maxHSPerSrc/2) {
		busy = true
	}
	if busy {
		a.retries.Add(1)
	}
	return busy
}

// handshakeDone ends the ticket's handshake: its hello was taken or refused.
func (t *ticket) handshakeDone() {
	if t == nil {
		return
	}
	t.hsOnce.Do(func() {
		t.a.mu.Lock()
		t.a.hs--
		if t.src != nil {
			t.src.hs--
		}
		t.a.mu.Unlock()
	})
}

// closed ends the ticket: the connection is gone.
func (t *ticket) closed() {
	t.handshakeDone()
	t.connOnce.Do(func() {
		t.a.mu.Lock()
		t.a.conns--
		if t.src != nil {
			t.src.conns--
			if t.src.conns == 0 && t.a.sources[t.key] == t.src {
				delete(t.a.sources, t.key)
			}
		}
		t.a.mu.Unlock()
	})
}

func ticketOf(c *quic.Conn) *ticket {
	t, _ := c.Context().Value(ticketKey{}).(*ticket)
	return t
}

func (a *admission) stats(s *Stats) {
	a.mu.Lock()
	s.Handshakes, s.Conns, s.Sources = a.hs, a.conns, len(a.sources)
	a.mu.Unlock()
	s.RefusedHandshakes = a.refusedHS.Load()
	s.RefusedSourceHandshakes = a.refusedSrcHS.Load()
	s.RefusedSourceConns = a.refusedSrcConns.Load()
	s.RetriesAsked = a.retries.Load()
	s.Verified = a.verified.Load()
}

// refusedErr says so when a dial failed because the other side refused it.
func refusedErr(err error) error {
	var te *quic.TransportError
	if errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ConnectionRefused {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return err
}
