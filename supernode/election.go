package supernode

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// Election: a supernode over its leaf limit promotes the eligible leaf up
// longest, which starts a supernode in its own process; once this supernode
// has reached the new one at the address it gave, it redirects half of its
// other leaves there. A promoted supernode left with few leaves for long hands
// them to a supernode with room and stops.

const (
	// promoteTimeout bounds the wait for a promoted leaf's supernode.
	promoteTimeout = 20 * time.Second
	// refusedHoldoff keeps a leaf that refused, or whose supernode could not
	// be reached, from being asked again soon.
	refusedHoldoff = 10 * time.Minute
	// maxPromotions is how many past promotions status keeps.
	maxPromotions = 32
)

// Promotion is one leaf this supernode promoted.
type Promotion struct {
	Leaf       protocol.PeerID `json:"leaf"`
	Supernode  protocol.PeerID `json:"supernode"`
	Addr       string          `json:"addr"`
	At         time.Time       `json:"at"`
	Redirected int             `json:"redirected"`
}

// ElectionStatus is what the supernode's election state shows.
type ElectionStatus struct {
	LeafLimit  int         `json:"leaf_limit"`
	Leaves     int         `json:"leaves"`
	Candidates int         `json:"candidates"` // leaves that would lead and whose dial-back reached them
	Promoting  string      `json:"promoting,omitempty"`
	Promotions []Promotion `json:"promotions,omitempty"`
	// Promoted is set on a supernode a leaf runs because another promoted it.
	Promoted bool   `json:"promoted"`
	Parent   string `json:"parent,omitempty"`
	// SteppingDown says where a promoted supernode stepping down sent its
	// leaves, and StepDownWhy why it stepped down: underused, or its
	// certificate was not renewed.
	SteppingDown string `json:"stepping_down,omitempty"`
	StepDownWhy  string `json:"step_down_why,omitempty"`
}

type election struct {
	mu         sync.Mutex
	cands      map[LinkID]*candidate
	pending    *promotion
	last       time.Time // the last promote sent
	promotions []Promotion
	noneLogged bool      // "no eligible leaf" was logged since we went over the limit
	lowSince   time.Time // a promoted supernode's leaves fell under StepDownBelow
	filled     bool      // it has had StepDownBelow leaves
	started    time.Time
	stopAt     time.Time // a promoted supernode stepping down stops then
	stepTarget string
	stepWhy    string
	// certified are the supernodes we promoted and keep certifying, by the
	// promoted leaf's peer ID.
	certified map[protocol.PeerID]*certified
	noAdmit   bool // "cannot promote: no admit role" was logged
}

// certified is a promoted supernode whose certificate we renew while its
// leaf stays attached to us and it stays live.
type certified struct {
	sn   protocol.PeerID
	key  []byte
	next time.Time // when to renew
}

type candidate struct {
	peer    protocol.PeerID
	claim   bool          // the leaf says it would lead
	public  bool          // our dial-back reached it
	uptime  time.Duration // as the leaf said, at
	at      time.Time
	refused time.Time
}

type promotion struct {
	leaf LinkID
	peer protocol.PeerID
	sent time.Time
}

func newElection() *election {
	return &election{cands: make(map[LinkID]*candidate), started: time.Now(), certified: make(map[protocol.PeerID]*certified)}
}

func (e *election) candLocked(id LinkID, peer protocol.PeerID) *candidate {
	c := e.cands[id]
	if c == nil {
		c = &candidate{peer: peer}
		e.cands[id] = c
	}
	return c
}

// setPublic records what our dial-back found of a leaf.
func (e *election) setPublic(id LinkID, peer protocol.PeerID, public bool) {
	e.mu.Lock()
	e.candLocked(id, peer).public = public
	e.mu.Unlock()
}

// failedLocked ends the promotion in flight, which the leaf refused or
// could not carry out, and holds that leaf off for refusedHoldoff.
func (e *election) failedLocked(now time.Time) {
	if c := e.cands[e.pending.leaf]; c != nil {
		c.refused = now
	}
	e.pending = nil
}

func (e *election) leafGone(id LinkID) {
	e.mu.Lock()
	delete(e.cands, id)
	if e.pending != nil && e.pending.leaf == id {
		e.pending = nil
	}
	e.mu.Unlock()
}

// candidacy takes a leaf's word on whether it would lead.
func (s *Server) candidacy(id LinkID, l *transport.Link, m *protocol.Candidacy) {
	e := s.elect
	e.mu.Lock()
	c := e.candLocked(id, l.Peer)
	changed := c.claim != m.Eligible
	c.claim, c.uptime, c.at = m.Eligible, time.Duration(m.Uptime)*time.Second, time.Now()
	e.mu.Unlock()
	if changed {
		l.Log().Debug().Bool("eligible", m.Eligible).Str("why_not", m.Why).Msg("leaf candidacy")
	}
}

// electRound runs once per gossip round.
func (s *Server) electRound(now time.Time) {
	if s.cfg.Promoted {
		s.stepDownRound(now)
	}
	s.renewCertificates(now)
	if s.cfg.LeafLimit < 0 {
		return
	}
	e := s.elect
	leaves := s.router.Leaves()
	e.mu.Lock()
	if leaves <= s.cfg.LeafLimit || !e.stopAt.IsZero() {
		e.noneLogged = false
		e.mu.Unlock()
		return
	}
	if ch := s.Chain(); len(ch) == 0 || ch.Leaf().Roles&protocol.CertAdmit == 0 || len(ch) >= protocol.MaxChain {
		if !e.noAdmit {
			e.noAdmit = true
			s.log.Warn().Int("leaves", leaves).Int("leaf_limit", s.cfg.LeafLimit).
				Msg("over the leaf limit, but our certificate does not let us admit a promoted supernode")
		}
		e.mu.Unlock()
		return
	}
	if p := e.pending; p != nil {
		if now.Sub(p.sent) > promoteTimeout {
			s.log.Warn().Str("leaf", p.peer.Short()).Msg("promoted leaf did not answer in time; asking another")
			e.failedLocked(now)
		}
		e.mu.Unlock()
		return
	}
	if !e.last.IsZero() && now.Sub(e.last) < s.cfg.PromoteEvery {
		e.mu.Unlock()
		return
	}
	var best LinkID
	var bestUp time.Duration
	for id, c := range e.cands {
		if !c.claim || !c.public || now.Sub(c.refused) < refusedHoldoff {
			continue
		}
		if up := c.uptime + now.Sub(c.at); best == 0 || up > bestUp || (up == bestUp && id < best) {
			best, bestUp = id, up
		}
	}
	if best == 0 {
		if !e.noneLogged {
			e.noneLogged = true
			s.log.Info().Int("leaves", leaves).Int("leaf_limit", s.cfg.LeafLimit).Msg("over the leaf limit, but no leaf is eligible to lead")
		}
		e.mu.Unlock()
		return
	}
	c := e.cands[best]
	e.pending = &promotion{leaf: best, peer: c.peer, sent: now}
	e.last = now
	e.mu.Unlock()
	s.mu.Lock()
	l := s.links[best]
	s.mu.Unlock()
	if l == nil {
		return // gone since; leafGone clears the promotion
	}
	s.log.Info().Str("leaf", c.peer.Short()).Int("leaves", leaves).Int("leaf_limit", s.cfg.LeafLimit).
		Dur("up", bestUp.Round(time.Second)).Msg("over the leaf limit: promoting a leaf")
	l.Send(&protocol.Promote{LeafLimit: uint32(min(s.cfg.LeafLimit, protocol.MaxLeadLeaves)),
		GossipMS: uint32(s.cfg.GossipInterval.Milliseconds()), TimeoutMS: uint32(s.cfg.MemberTimeout.Milliseconds())})
}

// promoted takes a leaf's answer to promote: it checks that the new
// supernode answers at the address given, under the ID given, and then
// redirects leaves to it. The link between the two is the new one's: it
// joins us.
func (s *Server) promoted(id LinkID, l *transport.Link, m *protocol.Promoted) {
	e := s.elect
	e.mu.Lock()
	p := e.pending
	if p == nil || p.leaf != id {
		e.mu.Unlock()
		l.Send(protocol.ErrorMessage(fmt.Errorf("%w: promoted, but no promotion was asked of this leaf", protocol.ErrForbidden)))
		return
	}
	if m.Refused != "" {
		e.failedLocked(time.Now())
		e.mu.Unlock()
		l.Log().Info().Str("why", m.Refused).Msg("leaf refused promotion")
		return
	}
	e.mu.Unlock()
	target := m.Peer.String() + "@" + m.Addrs[0]
	// It cannot join the overlay before it is admitted: certify it first.
	if err := s.certify(l, m.Peer, m.Key, time.Now()); err != nil {
		e.mu.Lock()
		if e.pending == p {
			e.failedLocked(time.Now())
		}
		e.mu.Unlock()
		l.Log().Warn().Err(err).Msg("cannot certify the promoted leaf's supernode")
		l.Send(protocol.ErrorMessage(fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)))
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, max(s.cfg.MemberTimeout, 5*time.Second))
		probe, _, err := s.node.Dial(ctx, m.Addrs[0], m.Peer, &protocol.Hello{Role: protocol.RoleProbe})
		cancel()
		if err == nil {
			probe.Close(nil)
		}
		e.mu.Lock()
		still := e.pending == p
		if err != nil || !still {
			if still {
				e.failedLocked(time.Now())
			}
			e.mu.Unlock()
			if err != nil && s.ctx.Err() == nil {
				l.Log().Warn().Err(err).Str("supernode", target).Msg("cannot reach the promoted leaf's supernode; no leaves go to it")
			}
			return
		}
		e.pending = nil
		e.mu.Unlock()
		moved := s.redirectLeaves(target, "a promoted supernode takes over some leaves", id, (s.router.Leaves()-1)/2)
		e.mu.Lock()
		e.promotions = append(e.promotions, Promotion{Leaf: l.Peer, Supernode: m.Peer, Addr: m.Addrs[0], At: time.Now(), Redirected: moved})
		if len(e.promotions) > maxPromotions {
			e.promotions = slices.Delete(e.promotions, 0, len(e.promotions)-maxPromotions)
		}
		e.mu.Unlock()
		l.Log().Info().Str("supernode", target).Int("redirected", moved).Msg("leaf promoted to supernode")
	}()
}

// redirectLeaves sends up to n leaves (all when n < 0), chosen at random and
// never skip, a redirect to target. It returns how many it sent.
func (s *Server) redirectLeaves(target, why string, skip LinkID, n int) int {
	s.mu.Lock()
	var ls []*transport.Link
	for _, id := range s.leafOf {
		if l := s.links[id]; l != nil && id != skip && l.Version >= protocol.VersionElection {
			ls = append(ls, l)
		}
	}
	s.mu.Unlock()
	rand.Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
	if n >= 0 && n < len(ls) {
		ls = ls[:n]
	}
	for _, l := range ls {
		l.Send(&protocol.Redirect{Target: target, Why: why})
	}
	return len(ls)
}

// stepDownRound hands a promoted supernode's leaves to a supernode with room
// once it has kept fewer than StepDownBelow for StepDownAfter, and stops it a
// round later, when the redirects are out.
func (s *Server) stepDownRound(now time.Time) {
	e := s.elect
	leaves := s.router.Leaves()
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.stopAt.IsZero():
		if now.After(e.stopAt) {
			s.log.Info().Str("leaves", e.stepTarget).Msg("stepped down: supernode stops")
			s.steppedDown.Store(true)
			s.cancel()
		}
		return
	case leaves >= s.cfg.StepDownBelow:
		e.lowSince, e.filled = time.Time{}, true
		return
	case !e.filled && now.Sub(e.started) < 2*s.cfg.StepDownAfter:
		// Newly promoted: the leaves redirected to us are still on their way.
		return
	case e.lowSince.IsZero():
		e.lowSince = now
		return
	case now.Sub(e.lowSince) < s.cfg.StepDownAfter:
		return
	}
	if !s.stepDownLocked(now, leaves, "underused", false) {
		s.log.Info().Int("leaves", leaves).Msg("underused, but no supernode has room for our leaves; staying up")
		e.lowSince = now
		return
	}
	s.log.Info().Int("leaves", leaves).Str("to", e.stepTarget).
		Dur("underused_for", now.Sub(e.lowSince).Round(time.Second)).Msg("underused promoted supernode stepping down")
}

// stepDown hands our leaves to a supernode with room and stops a round
// later: a promoted supernode whose certificate lapsed, which nobody takes as
// a supernode any more, whether or not another has room.
func (s *Server) stepDown(now time.Time, why string) {
	e := s.elect
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.stopAt.IsZero() {
		return
	}
	s.stepDownLocked(now, s.router.Leaves(), why, true)
	s.log.Info().Str("why", why).Str("leaves", e.stepTarget).Msg("promoted supernode stepping down")
}

// stepDownLocked redirects the leaves to the supernode stepDownTarget picks
// and sets the stop a round later. Without force it does nothing, and
// reports false, when no supernode has room for them.
func (s *Server) stepDownLocked(now time.Time, leaves int, why string, force bool) bool {
	e := s.elect
	target := s.stepDownTarget(leaves)
	if target == "" && leaves > 0 && !force {
		return false
	}
	e.stepWhy = why
	e.stopAt = now.Add(max(s.cfg.GossipInterval, 500*time.Millisecond))
	e.stepTarget = "no leaves to hand over"
	if target == "" && leaves > 0 {
		e.stepTarget = fmt.Sprintf("%d leaves left to find another supernode", leaves)
	}
	if target != "" {
		e.mu.Unlock()
		n := s.redirectLeaves(target, "supernode stepping down", 0, -1)
		e.mu.Lock()
		e.stepTarget = fmt.Sprintf("%d leaves redirected to %s", n, target)
	}
	return true
}

// stepDownTarget is the supernode our leaves go to: the one that promoted
// us if it has room, else the least loaded live one that has.
func (s *Server) stepDownTarget(leaves int) string {
	parent, _, _ := transport.ParseTarget(s.cfg.Parent)
	var best string
	bestLoad := -1
	for _, m := range s.members.Live() {
		if m.Peer() == s.ID() || !transport.Dialable(m.Addrs[0]) {
			continue
		}
		after := int(m.Leaves) + leaves
		if after > s.cfg.LeafLimit || (m.Cap > 0 && after > int(m.Cap)) {
			continue
		}
		t := m.Peer().String() + "@" + m.Addrs[0]
		if m.Peer() == parent {
			return t
		}
		if bestLoad < 0 || int(m.Leaves) < bestLoad {
			best, bestLoad = t, int(m.Leaves)
		}
	}
	return best
}

// Election reports the election state.
func (s *Server) Election() ElectionStatus {
	e := s.elect
	e.mu.Lock()
	defer e.mu.Unlock()
	st := ElectionStatus{LeafLimit: s.cfg.LeafLimit, Leaves: s.router.Leaves(), Promoted: s.cfg.Promoted,
		Parent: s.cfg.Parent, SteppingDown: e.stepTarget, StepDownWhy: e.stepWhy, Promotions: slices.Clone(e.promotions)}
	for _, c := range e.cands {
		if c.claim && c.public {
			st.Candidates++
		}
	}
	if e.pending != nil {
		st.Promoting = e.pending.peer.String()
	}
	return st
}

// SteppedDown reports whether a promoted supernode stopped because it was underused.
func (s *Server) SteppedDown() bool { return s.steppedDown.Load() }

// certify issues the supernode a leaf of ours runs since we promoted it a
// certificate under our own chain and sends it on the leaf's link; the
// gossip rounds renew it (renewCertificates).
func (s *Server) certify(l *transport.Link, sn protocol.PeerID, key []byte, now time.Time) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: the promoted supernode's key is missing (the leaf speaks protocol v%d)", protocol.ErrNotAdmitted, l.Version)
	}
	ch, err := s.Chain().Extend(s.cfg.Network, s.node.Identity(), ed25519.PublicKey(key),
		protocol.CertSupernode|protocol.CertAdmit, now.Add(s.cfg.PromotedCertTTL))
	if err != nil {
		return err
	}
	if err := l.Send(&protocol.Certificate{Chain: ch}); err != nil {
		return err
	}
	e := s.elect
	e.mu.Lock()
	e.certified[l.Peer] = &certified{sn: sn, key: key, next: now.Add(s.cfg.PromotedCertTTL / 3)}
	e.mu.Unlock()
	return nil
}

// renewCertificates runs every gossip round: it renews the certificates of
// the supernodes we promoted while their leaves stay attached to us and they
// are live (or newly promoted), and forgets the others, whose certificates
// then run out.
func (s *Server) renewCertificates(now time.Time) {
	e := s.elect
	e.mu.Lock()
	type due struct {
		leaf protocol.PeerID
		c    certified
	}
	var renew []due
	for leaf, c := range e.certified {
		if now.Before(c.next) {
			continue
		}
		renew = append(renew, due{leaf, *c})
	}
	e.mu.Unlock()
	for _, r := range renew {
		s.mu.Lock()
		l := s.links[s.leafOf[r.leaf]]
		s.mu.Unlock()
		if l == nil || !s.members.Alive(r.c.sn) {
			e.mu.Lock()
			delete(e.certified, r.leaf)
			e.mu.Unlock()
			s.log.Info().Str("leaf", r.leaf.Short()).Str("supernode", r.c.sn.Short()).Bool("leaf_attached", l != nil).
				Msg("no longer certifying a promoted supernode: its certificate runs out")
			continue
		}
		if err := s.certify(l, r.c.sn, r.c.key, now); err != nil {
			l.Log().Warn().Err(err).Msg("cannot renew the promoted supernode's certificate")
		}
	}
}
