package supernode

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// Members is a supernode's view of the live supernodes, kept by heartbeat
// gossip: every round each supernode signs its own entry with a higher beat and
// passes on the freshest entry it holds of every other. An entry whose beat
// has not risen for failAfter is taken as dead. A dead entry is remembered,
// with its beat, until forgetAfter, so that an older copy still going round
// does not bring it back; a higher beat does (it restarted, or was only cut
// off). Remembering it only as long again as failAfter was not enough: a
// supernode that learnt of the death late still held the entry live when
// another had forgotten it, passed it back as news, and the dead supernode
// went round as live for minutes.
type Members struct {
	mu        sync.Mutex
	network   protocol.NetworkID
	failAfter time.Duration
	max       int
	m         map[protocol.PeerID]*member
	gen       uint64 // raised when a supernode joins, dies or comes back
}

type member struct {
	rec   *protocol.MemberRecord
	seen  time.Time // when its beat last rose
	until time.Time // when its certificate chain runs out
	dead  bool
}

// NewMembers makes an empty view of the supernodes admitted to network,
// holding at most max of them.
func NewMembers(network protocol.NetworkID, failAfter time.Duration, max int) *Members {
	return &Members{network: network, failAfter: failAfter, max: max, m: make(map[protocol.PeerID]*member)}
}

// Merge takes entries gossiped by a neighbour (or our own). It returns how
// many were news, and how many were refused: bad signatures, bounds or
// chains, which a supernode that sends them should be dropped for. An entry
// whose chain has only expired is skipped without blame: the sender may not
// have seen the clock pass it yet.
func (ms *Members) Merge(recs []*protocol.MemberRecord, now time.Time) (fresh, bad int) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, r := range recs {
		id := r.Peer()
		old := ms.m[id]
		// A later incarnation is newer whatever its beat: a supernode whose
		// clock stepped back across a restart still comes back at once.
		if old != nil && (r.Incarnation < old.rec.Incarnation || r.Incarnation == old.rec.Incarnation && r.Beat <= old.rec.Beat) {
			continue // what we hold is as new; no need to check the signature
		}
		if err := r.Verify(); err != nil {
			bad++
			continue
		}
		// A chain already checked in the entry held is not checked again;
		// its expiry still is.
		if old == nil || !old.rec.Chain.Equal(r.Chain) {
			if err := r.Chain.Verify(ms.network, id, protocol.CertSupernode, now); err != nil {
				if !errors.Is(err, protocol.ErrCertExpired) {
					bad++
				}
				continue
			}
		} else if now.After(old.until.Add(protocol.CertSkew)) {
			continue
		}
		if old == nil && len(ms.m) >= ms.max {
			continue
		}
		if old == nil || old.dead {
			ms.gen++
		}
		ms.m[id] = &member{rec: r.Clone(), seen: now, until: r.Chain.Expires()}
		fresh++
	}
	return fresh, bad
}

// Expire marks the supernodes whose beat stopped as dead, forgets those dead
// for long, and returns the ones that died now.
func (ms *Members) Expire(now time.Time) []protocol.PeerID {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var died []protocol.PeerID
	for id, m := range ms.m {
		age := now.Sub(m.seen)
		switch {
		case age >= ms.forgetAfter():
			delete(ms.m, id)
		case (age >= ms.failAfter || now.After(m.until.Add(protocol.CertSkew))) && !m.dead:
			// A lapsed certificate ends a member like silence does; a
			// renewed one comes with a higher beat and brings it back.
			m.dead = true
			ms.gen++
			died = append(died, id)
		}
	}
	return died
}

// forgetAfter is how long an entry is kept after its beat last rose: far
// longer than a dead entry can still be going round as live.
func (ms *Members) forgetAfter() time.Duration {
	return max(10*ms.failAfter, time.Minute)
}

// Live are the entries of the supernodes taken as alive, by peer ID: what a
// supernode gossips and hands to its leaves, and the ring of the directory.
func (ms *Members) Live() []*protocol.MemberRecord {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := make([]*protocol.MemberRecord, 0, len(ms.m))
	for _, m := range ms.m {
		if !m.dead {
			out = append(out, m.rec.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *protocol.MemberRecord) int {
		x, y := a.Peer(), b.Peer()
		return bytes.Compare(x[:], y[:])
	})
	return out
}

// Gen changes whenever the set of live supernodes does (not with their beats),
// so a view derived from Live can be kept until it changes.
func (ms *Members) Gen() uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.gen
}

// AdmittedUntil is when the chain of the live entry for id runs out (zero
// when there is none).
func (ms *Members) AdmittedUntil(id protocol.PeerID) time.Time {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.m[id]; m != nil && !m.dead {
		return m.until
	}
	return time.Time{}
}

// Key is the public key of the live entry for id, and its first address
// (nil and "" when there is none).
func (ms *Members) Key(id protocol.PeerID) (ed25519.PublicKey, string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.m[id]; m != nil && !m.dead {
		return ed25519.PublicKey(m.rec.Key), m.rec.Addrs[0]
	}
	return nil, ""
}

// Incarnation is the incarnation of the live entry for id (zero when none).
func (ms *Members) Incarnation(id protocol.PeerID) uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.m[id]; m != nil && !m.dead {
		return m.rec.Incarnation
	}
	return 0
}

// Alive reports whether id is taken as a live supernode.
func (ms *Members) Alive(id protocol.PeerID) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.m[id]
	return m != nil && !m.dead
}
