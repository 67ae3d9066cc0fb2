package supernode

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

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

// electionConfig configures the election core: the Config fields of the
// same names, and what it needs of the server.
type electionConfig struct {
	// Identity and Chain sign the certificates of the supernodes we
	// promote, in Network.
	Identity *protocol.Identity
	Network  protocol.NetworkID
	Chain    func() protocol.Chain

	LeafLimit                     int
	PromoteEvery                  time.Duration
	Promoted                      bool
	Parent                        string
	StepDownBelow                 int
	StepDownAfter                 time.Duration
	GossipInterval, MemberTimeout time.Duration
	PromotedCertTTL               time.Duration

	// Leaves counts our leaves now.
	Leaves func() int
	// Probe checks that a promoted leaf's supernode answers at addr under
	// the ID sn, and calls done with what it found, later and from another
	// goroutine if it likes (not at all when the server is closing).
	Probe func(sn protocol.PeerID, addr string, done func(error))
	// Stop ends a promoted supernode that stepped down; it is called with
	// the election's lock held, and must not call back into it.
	Stop func()
	Now  func() time.Time
	Rand io.Reader
	Log  zerolog.Logger
}

// election promotes leaves and, on a promoted supernode, steps down. It
// speaks to leaves by peer ID; the server probes the new supernodes.
type election struct {
	cfg     electionConfig
	members *Members
	links   linkView
	out     peerOutbox
	rnd     randSource
	log     zerolog.Logger

	mu         sync.Mutex
	cands      map[protocol.PeerID]*candidate // by leaf
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
	claim   bool          // the leaf says it would lead
	public  bool          // our dial-back reached it
	uptime  time.Duration // as the leaf said, at
	at      time.Time
	refused time.Time
}

type promotion struct {
	leaf protocol.PeerID
	sent time.Time
}

func newElection(cfg electionConfig, members *Members, links linkView, out peerOutbox) *election {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &election{cfg: cfg, members: members, links: links, out: out, rnd: randSource{r: cfg.Rand}, log: cfg.Log,
		cands: make(map[protocol.PeerID]*candidate), started: cfg.Now(), certified: make(map[protocol.PeerID]*certified)}
}

func (e *election) candLocked(leaf protocol.PeerID) *candidate {
	c := e.cands[leaf]
	if c == nil {
		c = &candidate{}
		e.cands[leaf] = c
	}
	return c
}

// Candidacy takes a leaf's word on whether it would lead.
func (e *election) Candidacy(leaf protocol.PeerID, m *protocol.Candidacy) {
	e.mu.Lock()
	c := e.candLocked(leaf)
	changed := c.claim != m.Eligible
	c.claim, c.uptime, c.at = m.Eligible, time.Duration(m.Uptime)*time.Second, e.cfg.Now()
	e.mu.Unlock()
	if changed {
		e.log.Debug().Str("leaf", leaf.Short()).Bool("eligible", m.Eligible).Str("why_not", m.Why).Msg("leaf candidacy")
	}
}

// SetPublic records what our dial-back found of a leaf.
func (e *election) SetPublic(leaf protocol.PeerID, public bool) {
	e.mu.Lock()
	e.candLocked(leaf).public = public
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

// LeafDown forgets a leaf that detached, and a promotion asked of it.
func (e *election) LeafDown(leaf protocol.PeerID) {
	e.mu.Lock()
	delete(e.cands, leaf)
	if e.pending != nil && e.pending.leaf == leaf {
		e.pending = nil
	}
	e.mu.Unlock()
}

// Round runs once per gossip round: a promoted supernode's step down, the
// renewal of the certificates we issued, and a promotion when we are over
// the leaf limit.
func (e *election) Round(now time.Time) {
	cfg := &e.cfg
	if cfg.Promoted {
		e.stepDownRound(now)
	}
	e.renewCertificates(now)
	if cfg.LeafLimit < 0 {
		return
	}
	leaves := cfg.Leaves()
	e.mu.Lock()
	if leaves <= cfg.LeafLimit || !e.stopAt.IsZero() {
		e.noneLogged = false
		e.mu.Unlock()
		return
	}
	if ch := cfg.Chain(); len(ch) == 0 || ch.Leaf().Roles&protocol.CertAdmit == 0 || len(ch) >= protocol.MaxChain {
		if !e.noAdmit {
			e.noAdmit = true
			e.log.Warn().Int("leaves", leaves).Int("leaf_limit", cfg.LeafLimit).
				Msg("over the leaf limit, but our certificate does not let us admit a promoted supernode")
		}
		e.mu.Unlock()
		return
	}
	if p := e.pending; p != nil {
		if now.Sub(p.sent) > promoteTimeout {
			e.log.Warn().Str("leaf", p.leaf.Short()).Msg("promoted leaf did not answer in time; asking another")
			e.failedLocked(now)
		}
		e.mu.Unlock()
		return
	}
	if !e.last.IsZero() && now.Sub(e.last) < cfg.PromoteEvery {
		e.mu.Unlock()
		return
	}
	var best protocol.PeerID
	var bestUp time.Duration
	found := false
	for leaf, c := range e.cands {
		if !c.claim || !c.public || now.Sub(c.refused) < refusedHoldoff {
			continue
		}
		if up := c.uptime + now.Sub(c.at); !found || up > bestUp || (up == bestUp && bytes.Compare(leaf[:], best[:]) < 0) {
			best, bestUp, found = leaf, up, true
		}
	}
	if !found {
		if !e.noneLogged {
			e.noneLogged = true
			e.log.Info().Int("leaves", leaves).Int("leaf_limit", cfg.LeafLimit).Msg("over the leaf limit, but no leaf is eligible to lead")
		}
		e.mu.Unlock()
		return
	}
	e.pending = &promotion{leaf: best, sent: now}
	e.last = now
	e.mu.Unlock()
	e.log.Info().Str("leaf", best.Short()).Int("leaves", leaves).Int("leaf_limit", cfg.LeafLimit).
		Dur("up", bestUp.Round(time.Second)).Msg("over the leaf limit: promoting a leaf")
	// A leaf gone since gets nothing; LeafDown clears the promotion.
	e.out.Send(best, &protocol.Promote{LeafLimit: uint32(min(cfg.LeafLimit, protocol.MaxLeadLeaves)),
		GossipMS: uint32(cfg.GossipInterval.Milliseconds()), TimeoutMS: uint32(cfg.MemberTimeout.Milliseconds())})
}

// Promoted takes a leaf's answer to promote: it certifies the new
// supernode, has the server check that it answers at the address given,
// under the ID given, and then redirects leaves to it. The link between the
// two is the new one's: it joins us.
func (e *election) Promoted(leaf protocol.PeerID, m *protocol.Promoted) {
	now := e.cfg.Now()
	e.mu.Lock()
	p := e.pending
	if p == nil || p.leaf != leaf {
		e.mu.Unlock()
		e.out.Send(leaf, protocol.ErrorMessage(fmt.Errorf("%w: promoted, but no promotion was asked of this leaf", protocol.ErrForbidden)))
		return
	}
	if m.Refused != "" {
		e.failedLocked(now)
		e.mu.Unlock()
		e.log.Info().Str("leaf", leaf.Short()).Str("why", m.Refused).Msg("leaf refused promotion")
		return
	}
	e.mu.Unlock()
	addr := m.Addrs[0]
	target := m.Peer.String() + "@" + addr
	// It cannot join the overlay before it is admitted: certify it first.
	if err := e.certify(leaf, m.Peer, m.Key, now); err != nil {
		e.mu.Lock()
		if e.pending == p {
			e.failedLocked(now)
		}
		e.mu.Unlock()
		e.log.Warn().Err(err).Str("leaf", leaf.Short()).Msg("cannot certify the promoted leaf's supernode")
		e.out.Send(leaf, protocol.ErrorMessage(fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)))
		return
	}
	e.cfg.Probe(m.Peer, addr, func(err error) {
		now := e.cfg.Now()
		e.mu.Lock()
		still := e.pending == p
		if err != nil || !still {
			if still {
				e.failedLocked(now)
			}
			e.mu.Unlock()
			if err != nil {
				e.log.Warn().Err(err).Str("leaf", leaf.Short()).Str("supernode", target).Msg("cannot reach the promoted leaf's supernode; no leaves go to it")
			}
			return
		}
		e.pending = nil
		e.mu.Unlock()
		moved := e.redirectLeaves(target, "a promoted supernode takes over some leaves", leaf, (e.cfg.Leaves()-1)/2)
		e.mu.Lock()
		e.promotions = append(e.promotions, Promotion{Leaf: leaf, Supernode: m.Peer, Addr: addr, At: now, Redirected: moved})
		if len(e.promotions) > maxPromotions {
			e.promotions = slices.Delete(e.promotions, 0, len(e.promotions)-maxPromotions)
		}
		e.mu.Unlock()
		e.log.Info().Str("leaf", leaf.Short()).Str("supernode", target).Int("redirected", moved).Msg("leaf promoted to supernode")
	})
}

// redirectLeaves sends up to n leaves (all when n < 0), chosen at random and
// never skip, a redirect to target. It returns how many it sent.
func (e *election) redirectLeaves(target, why string, skip protocol.PeerID, n int) int {
	ls := slices.DeleteFunc(e.links.Leaves(protocol.TypeRedirect), func(p protocol.PeerID) bool { return p == skip })
	shuffle(&e.rnd, ls)
	if n >= 0 && n < len(ls) {
		ls = ls[:n]
	}
	for _, l := range ls {
		e.out.Send(l, &protocol.Redirect{Target: target, Why: why})
	}
	return len(ls)
}

// stepDownRound hands a promoted supernode's leaves to a supernode with room
// once it has kept fewer than StepDownBelow for StepDownAfter, and stops it a
// round later, when the redirects are out.
func (e *election) stepDownRound(now time.Time) {
	cfg := &e.cfg
	leaves := cfg.Leaves()
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.stopAt.IsZero():
		if now.After(e.stopAt) {
			e.log.Info().Str("leaves", e.stepTarget).Msg("stepped down: supernode stops")
			cfg.Stop()
		}
		return
	case leaves >= cfg.StepDownBelow:
		e.lowSince, e.filled = time.Time{}, true
		return
	case !e.filled && now.Sub(e.started) < 2*cfg.StepDownAfter:
		// Newly promoted: the leaves redirected to us are still on their way.
		return
	case e.lowSince.IsZero():
		e.lowSince = now
		return
	case now.Sub(e.lowSince) < cfg.StepDownAfter:
		return
	}
	if !e.stepDownLocked(now, leaves, "underused", false) {
		e.log.Info().Int("leaves", leaves).Msg("underused, but no supernode has room for our leaves; staying up")
		e.lowSince = now
		return
	}
	e.log.Info().Int("leaves", leaves).Str("to", e.stepTarget).
		Dur("underused_for", now.Sub(e.lowSince).Round(time.Second)).Msg("underused promoted supernode stepping down")
}

// CertLapsed stops a promoted supernode whose certificate was not renewed
// (its promoter is gone): nobody takes it as a supernode any more, so it
// hands its leaves to a supernode with room, whether or not one has room,
// and stops a round later, as when stepping down.
func (e *election) CertLapsed(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.stopAt.IsZero() {
		return
	}
	e.log.Warn().Msg("our certificate was not renewed in time: stepping down")
	why := "certificate not renewed"
	e.stepDownLocked(now, e.cfg.Leaves(), why, true)
	e.log.Info().Str("why", why).Str("leaves", e.stepTarget).Msg("promoted supernode stepping down")
}

// stepDownLocked redirects the leaves to the supernode stepDownTarget picks
// and sets the stop a round later. Without force it does nothing, and
// reports false, when no supernode has room for them.
func (e *election) stepDownLocked(now time.Time, leaves int, why string, force bool) bool {
	target := e.stepDownTarget(leaves)
	if target == "" && leaves > 0 && !force {
		return false
	}
	e.stepWhy = why
	e.stopAt = now.Add(max(e.cfg.GossipInterval, 500*time.Millisecond))
	e.stepTarget = "no leaves to hand over"
	if target == "" && leaves > 0 {
		e.stepTarget = fmt.Sprintf("%d leaves left to find another supernode", leaves)
	}
	if target != "" {
		e.mu.Unlock()
		n := e.redirectLeaves(target, "supernode stepping down", protocol.PeerID{}, -1)
		e.mu.Lock()
		e.stepTarget = fmt.Sprintf("%d leaves redirected to %s", n, target)
	}
	return true
}

// stepDownTarget is the supernode our leaves go to: the one that promoted
// us if it has room, else the least loaded live one that has.
func (e *election) stepDownTarget(leaves int) string {
	parent, _, _ := transport.ParseTarget(e.cfg.Parent)
	self := e.cfg.Identity.ID
	var best string
	bestLoad := -1
	for _, m := range e.members.Live() {
		if m.Peer() == self || !transport.Dialable(m.Addrs[0]) {
			continue
		}
		after := int(m.Leaves) + leaves
		if after > e.cfg.LeafLimit || (m.Cap > 0 && after > int(m.Cap)) {
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

// Status reports the election state.
func (e *election) Status() ElectionStatus {
	cfg := &e.cfg
	leaves := cfg.Leaves()
	e.mu.Lock()
	defer e.mu.Unlock()
	st := ElectionStatus{LeafLimit: cfg.LeafLimit, Leaves: leaves, Promoted: cfg.Promoted,
		Parent: cfg.Parent, SteppingDown: e.stepTarget, StepDownWhy: e.stepWhy, Promotions: slices.Clone(e.promotions)}
	for _, c := range e.cands {
		if c.claim && c.public {
			st.Candidates++
		}
	}
	if e.pending != nil {
		st.Promoting = e.pending.leaf.String()
	}
	return st
}

// certify issues the supernode a leaf of ours runs since we promoted it a
// certificate under our own chain and sends it to the leaf; the rounds
// renew it (renewCertificates).
func (e *election) certify(leaf, sn protocol.PeerID, key []byte, now time.Time) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: the promoted supernode's key is missing (the leaf speaks an older protocol)", protocol.ErrNotAdmitted)
	}
	ch, err := e.cfg.Chain().Extend(e.cfg.Network, e.cfg.Identity, ed25519.PublicKey(key),
		protocol.CertSupernode|protocol.CertAdmit, now.Add(e.cfg.PromotedCertTTL))
	if err != nil {
		return err
	}
	e.out.Send(leaf, &protocol.Certificate{Chain: ch})
	e.mu.Lock()
	e.certified[leaf] = &certified{sn: sn, key: key, next: now.Add(e.cfg.PromotedCertTTL / 3)}
	e.mu.Unlock()
	return nil
}

// renewCertificates renews the certificates of the supernodes we promoted
// while their leaves stay attached to us and they are live (or newly
// promoted), and forgets the others, whose certificates then run out.
func (e *election) renewCertificates(now time.Time) {
	type due struct {
		leaf protocol.PeerID
		c    certified
	}
	var renew []due
	e.mu.Lock()
	for leaf, c := range e.certified {
		if !now.Before(c.next) {
			renew = append(renew, due{leaf, *c})
		}
	}
	e.mu.Unlock()
	if len(renew) == 0 {
		return
	}
	slices.SortFunc(renew, func(a, b due) int { return bytes.Compare(a.leaf[:], b.leaf[:]) })
	attached := e.links.Leaves(0)
	for _, r := range renew {
		on := slices.Contains(attached, r.leaf)
		if !on || !e.members.Alive(r.c.sn) {
			e.mu.Lock()
			delete(e.certified, r.leaf)
			e.mu.Unlock()
			e.log.Info().Str("leaf", r.leaf.Short()).Str("supernode", r.c.sn.Short()).Bool("leaf_attached", on).
				Msg("no longer certifying a promoted supernode: its certificate runs out")
			continue
		}
		if err := e.certify(r.leaf, r.c.sn, r.c.key, now); err != nil {
			e.log.Warn().Err(err).Str("leaf", r.leaf.Short()).Msg("cannot renew the promoted supernode's certificate")
		}
	}
}

// probe checks that a promoted leaf's supernode answers at addr.
func (s *Server) probe(sn protocol.PeerID, addr string, done func(error)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, max(s.cfg.MemberTimeout, 5*time.Second))
		probe, _, err := s.node.Dial(ctx, addr, sn, &protocol.Hello{Role: protocol.RoleProbe})
		cancel()
		if err == nil {
			probe.Close(nil)
		}
		if s.ctx.Err() != nil {
			return
		}
		done(err)
	}()
}

// stop ends a promoted supernode that stepped down.
func (s *Server) stop() {
	s.steppedDown.Store(true)
	s.cancel()
}

// Election reports the election state.
func (s *Server) Election() ElectionStatus { return s.elect.Status() }

// SteppedDown reports whether a promoted supernode stopped because it was underused.
func (s *Server) SteppedDown() bool { return s.steppedDown.Load() }
