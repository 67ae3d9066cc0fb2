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

// Members is a supernode's view of the live supernodes. A supernode issues
// its signed entry when it starts, when the entry changes, to answer a report
// of it gone, and every refresh interval; the others pass on what is news to
// them. A gone report for an entry (or a later one) makes it suspected: still
// live, while the report reaches the supernode, which answers with a later
// entry if it is alive. One still suspected after suspectFor is dead, as is
// one not issued again for expireAfter: the net under reports lost on the
// way. A dead entry is remembered, with its beat, until
// forgetAfter, so that an older copy still going round does not bring it
// back; a higher beat does (it restarted, or was only cut off).
type Members struct {
	mu          sync.Mutex
	network     protocol.NetworkID
	expireAfter time.Duration
	suspectFor  time.Duration
	max         int
	m           map[protocol.PeerID]*member
	gen         uint64 // raised when a supernode joins, dies or comes back
}

type member struct {
	rec   *protocol.MemberRecord
	seen  time.Time // when its beat last rose
	until time.Time // when its certificate chain runs out
	dead  bool
	// gone is the report it is suspected or died of, if one, and suspectAt
	// when it came.
	gone      *protocol.MemberGone
	suspectAt time.Time
}

// NewMembers makes an empty view of the supernodes admitted to network,
// holding at most max of them; an entry not issued again for expireAfter, or
// reported gone and not issued again within suspectFor, is taken as dead.
func NewMembers(network protocol.NetworkID, expireAfter, suspectFor time.Duration, max int) *Members {
	return &Members{network: network, expireAfter: expireAfter, suspectFor: suspectFor, max: max, m: make(map[protocol.PeerID]*member)}
}

// Merge takes entries gossiped by a neighbour (or our own). It returns how
// many were news, and how many were refused: bad signatures, bounds or
// chains, which a supernode that sends them should be dropped for. An entry
// whose chain has only expired is skipped without blame: the sender may not
// have seen the clock pass it yet.
func (ms *Members) Merge(recs []*protocol.MemberRecord, now time.Time) (fresh, bad int) {
	news, bad := ms.MergeNews(recs, now)
	return len(news), bad
}

// MergeNews is Merge returning the entries that were news, to pass on.
func (ms *Members) MergeNews(recs []*protocol.MemberRecord, now time.Time) (news []*protocol.MemberRecord, bad int) {
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
		if old == nil && len(ms.m) >= ms.max && !ms.evictDeadLocked() {
			continue
		}
		// A restart counts too: the keyword ring's keepers lost their keys.
		if old == nil || old.dead || old.gone != nil || old.rec.Incarnation != r.Incarnation {
			ms.gen++
		}
		c := r.Clone()
		ms.m[id] = &member{rec: c, seen: now, until: r.Chain.Expires()}
		news = append(news, c)
	}
	return news, bad
}

// evictDeadLocked forgets the dead entry heard of longest ago, to make room
// for a live one; it reports whether there was one.
func (ms *Members) evictDeadLocked() bool {
	var oldest protocol.PeerID
	var at time.Time
	for id, m := range ms.m {
		if m.dead && (at.IsZero() || m.seen.Before(at)) {
			oldest, at = id, m.seen
		}
	}
	if at.IsZero() {
		return false
	}
	delete(ms.m, oldest)
	return true
}

// Gone takes a report of a supernode gone, at now. It returns whether the
// report was news: it made an entry held live suspected. A report of an
// entry older than the one held, of an unknown or suspected supernode or by
// a reporter not taken as alive is skipped; one that fails its reporter's
// signature is an error. allow, asked only for a report that would be news,
// may refuse it (a reporter over its rate).
func (ms *Members) Gone(g *protocol.MemberGone, now time.Time, allow func(by protocol.PeerID) bool) (bool, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m, by := ms.m[g.Peer], ms.m[g.By]
	if m == nil || m.dead || m.gone != nil || by == nil || by.dead ||
		g.Incarnation < m.rec.Incarnation || g.Incarnation == m.rec.Incarnation && g.Beat < m.rec.Beat {
		return false, nil
	}
	if err := g.VerifyBy(ed25519.PublicKey(by.rec.Key)); err != nil {
		return false, err
	}
	if allow != nil && !allow(g.By) {
		return false, nil
	}
	m.gone, m.suspectAt = g, now
	ms.gen++
	return true, nil
}

// GoneReport is the report a supernode is suspected or died of, or nil.
func (ms *Members) GoneReport(id protocol.PeerID) *protocol.MemberGone {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.m[id]; m != nil {
		return m.gone
	}
	return nil
}

// Held is the incarnation and beat of the live entry for id.
func (ms *Members) Held(id protocol.PeerID) (inc, beat uint64, ok bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.m[id]; m != nil && !m.dead {
		return m.rec.Incarnation, m.rec.Beat, true
	}
	return 0, 0, false
}

// Entry is the live entry held for id, if it is the one of inc and beat.
func (ms *Members) Entry(id protocol.PeerID, inc, beat uint64) *protocol.MemberRecord {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.m[id]; m != nil && !m.dead && m.rec.Incarnation == inc && m.rec.Beat == beat {
		return m.rec
	}
	return nil
}

// Expire marks the supernodes whose entries were not issued again in time,
// or that stayed suspected too long, as dead, forgets those dead for long,
// and returns the ones that died now.
func (ms *Members) Expire(now time.Time) []protocol.PeerID {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var died []protocol.PeerID
	for id, m := range ms.m {
		age := now.Sub(m.seen)
		switch {
		case age >= ms.forgetAfter():
			delete(ms.m, id)
		case (age >= ms.expireAfter || m.gone != nil && now.Sub(m.suspectAt) >= ms.suspectFor || now.After(m.until.Add(protocol.CertSkew))) && !m.dead:
			// A lapsed certificate ends a member like silence does; a
			// renewed one comes with a higher beat and brings it back.
			m.dead = true
			ms.gen++
			died = append(died, id)
		}
	}
	return died
}

// forgetAfter is how long an entry is kept after its beat last rose: longer
// than a dead entry can still be going round as live, which it is at most
// until every holder has expired it.
func (ms *Members) forgetAfter() time.Duration {
	return max(2*ms.expireAfter, time.Minute)
}

// Live are the entries of the supernodes taken as alive, by peer ID: what a
// supernode gossips and hands to its leaves.
func (ms *Members) Live() []*protocol.MemberRecord {
	return ms.entries(func(m *member) bool { return !m.dead })
}

// Unsuspected are the live entries of supernodes not reported gone: the ring
// of the directory, which should not wait on a supernode that is likely dead.
func (ms *Members) Unsuspected() []*protocol.MemberRecord {
	return ms.entries(func(m *member) bool { return !m.dead && m.gone == nil })
}

// entries are copies of the entries keep takes, by peer ID.
func (ms *Members) entries(keep func(*member) bool) []*protocol.MemberRecord {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := make([]*protocol.MemberRecord, 0, len(ms.m))
	for _, m := range ms.m {
		if keep(m) {
			out = append(out, m.rec.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *protocol.MemberRecord) int {
		x, y := a.Peer(), b.Peer()
		return bytes.Compare(x[:], y[:])
	})
	return out
}

// Gen changes whenever the set of live or of unsuspected supernodes does
// (not with their beats), so a view derived from Live or Unsuspected can be
// kept until it changes.
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
