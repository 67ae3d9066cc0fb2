package attach

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/internal/defaults"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/transport"
)

// Config is what the attachment needs of the daemon.
type Config struct {
	Self protocol.PeerID
	// Name is the name shown to the supernodes.
	Name string
	// Supernodes are the configured targets, as host:port or peerid@host:port.
	Supernodes []string
	// DataDir keeps the supernode list between runs ("": not kept).
	DataDir string
	// Slots is how many supernodes the peer attaches to at once.
	Slots int
	// ProbeInterval is how often each supernode is pinged (<= 0: never).
	ProbeInterval time.Duration
	Log           zerolog.Logger
	// Node is the node the links run on, read on each use.
	Node func() *transport.Node
	// OnRelay says whether the peer lives on a relay because UDP is blocked.
	OnRelay func() bool
	// CheckSupernode refuses a supernode not admitted to the overlay.
	CheckSupernode func(*transport.Link, *protocol.Welcome) error
	// Network is the overlay's network ID, for checking member lists.
	Network func() protocol.NetworkID
	// IsOurs says whether a supernode is the one this peer runs.
	IsOurs func(protocol.PeerID) bool
	// Records are what the peer offers, published to every supernode.
	Records func() []protocol.FileRecord
	// Changed is called when a supernode is attached or lost, or measured
	// our NAT.
	Changed func(Change)
	// MembersChanged gets the supernodes of a member list just taken.
	MembersChanged func(ids []ring.ID, incs map[ring.ID]uint64)
	// Handle takes the messages from a supernode for the daemon's other
	// parts: user replies, signals, promotions and certificates. It must not
	// block: the link's reads wait for it.
	Handle func(*transport.Link, protocol.Message)
}

// Change is what Config.Changed is told of.
type Change int

const (
	// ChangeAttached: a slot attached to a supernode.
	ChangeAttached Change = iota + 1
	// ChangeDetached: a slot lost its supernode.
	ChangeDetached
	// ChangeNAT: a supernode established our NAT.
	ChangeNAT
)

// Query is a search's side of its queries in flight: the attachment routes
// each answer that comes through the link a query went through to it.
type Query interface {
	Hits(id protocol.QueryID, hits []protocol.Hit)
	// Over ends the query id with its QueryDone or an error.
	Over(id protocol.QueryID, m *protocol.QueryDone, err error)
	// Lost ends the query id whose link l was lost.
	Lost(id protocol.QueryID, l *transport.Link)
}

// Attachment keeps the peer attached to up to Config.Slots supernodes at once,
// each in its own slot: a slot whose supernode dies attaches to another from the
// list while the others carry on, so searches, signalling and the index stay up
// through the failover. Each slot publishes the share to its supernode.
type Attachment struct {
	cfg Config
	log zerolog.Logger
	ctx context.Context
	wg  *sync.WaitGroup

	mu       sync.Mutex
	slots    []*slot
	claims   *Claims
	searches map[protocol.QueryID]leg // every query in flight, by its ID
	attached chan struct{}            // closed while some slot is attached; replaced when none is
	lastErr  apitype.SupernodeStatus
	listed   []listedSN // supernodes from the member list (and its cache)
	// prefer is where a supernode redirected us, tried first until preferUntil.
	prefer      string
	preferUntil time.Time
	changed     chan struct{} // closed when a slot detaches, for the slots waiting for a target
	// chains are the member entries' chains already checked, by supernode.
	chains map[protocol.PeerID]protocol.Chain
	// rounds are the liveness rounds (see watch); urged wakes the watch
	// when a supernode is suspected (see Suspect).
	rounds *Watch
	urged  chan struct{}
	// leftChecked and leftStalled count the supernodes left as silent whose
	// check has ended, and those of them that still answered.
	leftChecked, leftStalled int
}

// slot is one of the peer's supernode attachments.
type slot struct {
	link   *transport.Link
	status apitype.SupernodeStatus
	// published is what the supernode holds of each file we offer: its
	// name and tags, so a rename is published again.
	published map[protocol.ContentID]published
	nat       protocol.NATType
	live      Liveness
}

// leg routes a query ID to its search and the link it went through.
type leg struct {
	q   Query
	via *transport.Link
}

// New returns an attachment whose goroutines (started by Run) live until ctx
// ends, counted in wg.
func New(ctx context.Context, wg *sync.WaitGroup, cfg Config) *Attachment {
	a := &Attachment{
		cfg:      cfg,
		log:      cfg.Log,
		ctx:      ctx,
		wg:       wg,
		claims:   NewClaims(),
		rounds:   NewWatch(cfg.ProbeInterval),
		urged:    make(chan struct{}, 1),
		searches: make(map[protocol.QueryID]leg),
		attached: make(chan struct{}),
		changed:  make(chan struct{}),
		chains:   make(map[protocol.PeerID]protocol.Chain),
	}
	for range cfg.Slots {
		a.slots = append(a.slots, &slot{})
	}
	return a
}

// primaryLocked is the slot attached longest, or nil.
func (a *Attachment) primaryLocked() *slot {
	var p *slot
	for _, s := range a.slots {
		if s.link != nil && (p == nil || s.status.Since.Before(p.status.Since)) {
			p = s
		}
	}
	return p
}

// Snapshot is the primary attachment's status, or the last failure.
func (a *Attachment) Snapshot() apitype.SupernodeStatus {
	a.mu.Lock()
	st := a.lastErr
	if p := a.primaryLocked(); p != nil {
		st = p.status
	}
	st.Listed = len(a.listed)
	a.mu.Unlock()
	return st
}

// attachedLocked are the attached slots, primary first.
func (a *Attachment) attachedLocked() []*slot {
	p := a.primaryLocked()
	if p == nil {
		return nil
	}
	out := []*slot{p}
	for _, s := range a.slots {
		if s.link != nil && s != p {
			out = append(out, s)
		}
	}
	return out
}

// All are the statuses of the attached slots, primary first.
func (a *Attachment) All() []apitype.SupernodeStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []apitype.SupernodeStatus
	for _, s := range a.attachedLocked() {
		out = append(out, s.status)
	}
	return out
}

// Self is how other peers reach us through the overlay: our primary
// supernode and NAT.
func (a *Attachment) Self() (*protocol.PeerID, protocol.NATType) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.primaryLocked()
	if p == nil {
		return nil, protocol.NATUnknown
	}
	sn := p.link.Peer
	return &sn, a.natLocked()
}

// natLocked is the NAT type a supernode established, the primary's first.
func (a *Attachment) natLocked() protocol.NATType {
	if p := a.primaryLocked(); p != nil && p.nat != protocol.NATUnknown {
		return p.nat
	}
	for _, s := range a.slots {
		if s.link != nil && s.nat != protocol.NATUnknown {
			return s.nat
		}
	}
	return protocol.NATUnknown
}

// Supernodes are the peer IDs of the attached supernodes, primary first.
func (a *Attachment) Supernodes() []protocol.PeerID {
	var out []protocol.PeerID
	for _, l := range a.Links() {
		out = append(out, l.Peer)
	}
	return out
}

// Links are the attached supernodes' links, primary first.
func (a *Attachment) Links() []*transport.Link {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*transport.Link
	for _, s := range a.attachedLocked() {
		out = append(out, s.link)
	}
	return out
}

// Current is the primary supernode's link, or nil.
func (a *Attachment) Current() *transport.Link {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.primaryLocked(); p != nil {
		return p.link
	}
	return nil
}

// WaitAttached blocks until attached or ctx ends.
func (a *Attachment) WaitAttached(ctx context.Context) (*transport.Link, error) {
	for {
		a.mu.Lock()
		ch := a.attached
		var l *transport.Link
		if p := a.primaryLocked(); p != nil {
			l = p.link
		}
		a.mu.Unlock()
		if l != nil {
			return l, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Run keeps the slots attached until the context ends; the caller counted
// it in the WaitGroup.
func (a *Attachment) Run() {
	defer a.wg.Done()
	if a.cfg.DataDir != "" {
		a.mu.Lock()
		a.listed = loadMembers(a.cfg.DataDir)
		a.mu.Unlock()
	}
	if len(a.targets()) == 0 {
		a.log.Warn().Msg("no supernode configured: search and publish are off")
		return
	}
	if a.cfg.ProbeInterval > 0 {
		a.wg.Add(1)
		go a.watch()
	}
	for i, s := range a.slots[1:] {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			// The first slot attaches first, so the supernode list arrives
			// before the others choose.
			select {
			case <-time.After(time.Duration(i+1) * 100 * time.Millisecond):
			case <-a.ctx.Done():
				return
			}
			a.runSlot(s)
		}()
	}
	a.runSlot(a.slots[0])
}

// Attach dials race: a slot dials up to raceDials targets, each raceStagger
// after the one before, and keeps the first that answers. A listed supernode
// may have died since the list was sent, and a dial to a dead one takes the
// whole handshake timeout to fail.
const (
	raceDials      = 4
	raceStagger    = 200 * time.Millisecond
	maxRaceTargets = 16
)

// runSlot keeps one slot attached, trying the targets no other slot holds.
func (a *Attachment) runSlot(s *slot) {
	retry := defaults.Backoff(250*time.Millisecond, 15*time.Second)
	for a.ctx.Err() == nil {
		wait := a.freed() // taken before the race, so no release is missed
		l, w, addr, tried, err := a.dialFirst()
		if len(tried) == 0 {
			// Every target is held by another slot: wait for one to come free.
			select {
			case <-wait:
			case <-time.After(2*time.Second + rand.N(time.Second)):
			case <-a.ctx.Done():
				return
			}
			continue
		}
		if err != nil {
			if a.ctx.Err() != nil {
				return
			}
			a.mu.Lock()
			a.lastErr = apitype.SupernodeStatus{Addr: strings.Join(tried, ", "), LastError: err.Error()}
			a.mu.Unlock()
			a.log.Warn().Err(err).Int("tried", len(tried)).Msg("supernodes unavailable")
			select {
			case <-time.After(retry.NextBackOff()):
			case <-a.ctx.Done():
				return
			}
			continue
		}
		retry.Reset()
		a.attached1(s, l, w, addr)
		a.release(addr)
	}
}

// freed is closed when a slot next lets a target go.
func (a *Attachment) freed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// claimOne claims the first target free for a slot (see Claims).
func (a *Attachment) claimOne() (Claim, bool) {
	targets := a.targets()
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	held := make(map[protocol.PeerID]bool)
	for _, s := range a.slots {
		if s.link != nil {
			held[s.link.Peer] = true
		}
	}
	return a.claims.ClaimOne(now, targets, held)
}

func (a *Attachment) release(addr string) {
	a.mu.Lock()
	a.claims.Release(addr)
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

// markDown holds off redials of addr.
func (a *Attachment) markDown(addr string) {
	now := time.Now()
	a.mu.Lock()
	a.claims.MarkDown(now, addr)
	a.mu.Unlock()
}

// dialFirst dials the free targets in order, claiming each as it goes so that
// the slots racing at once share them: the next one raceStagger after the one
// before or as soon as one fails, with at most raceDials under way. It
// returns the first link made (the others are closed and every other claim
// released) and the targets it tried.
func (a *Attachment) dialFirst() (*transport.Link, *protocol.Welcome, string, []string, error) {
	hello := &protocol.Hello{Role: protocol.RoleLeaf, Name: a.cfg.Name}
	if la := a.cfg.Node().Addr(); la != nil && !la.IP.IsUnspecified() {
		hello.Addrs = []string{la.String()}
	} else if la != nil {
		// Listening on every interface: the LAN addresses, for peers
		// behind the same NAT.
		hello.Addrs = transport.HostCandidates(la.Port)
	}
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	type result struct {
		l    *transport.Link
		w    *protocol.Welcome
		addr string
		err  error
	}
	results := make(chan result, maxRaceTargets)
	var win result
	var errs []error
	var tried []string
	running := 0
	now, exhausted := true, false // now: dial the next target without waiting for the tick
	tick := time.NewTicker(raceStagger)
	defer tick.Stop()
	for (!exhausted && win.l == nil) || running > 0 {
		if now && win.l == nil && !exhausted && running < raceDials {
			now = false
			if len(tried) == maxRaceTargets {
				exhausted = true
				continue
			}
			t, ok := a.claimOne()
			if !ok {
				exhausted = true
				continue
			}
			tried = append(tried, t.Addr)
			running++
			go func() {
				h := *hello // the dial fills in the versions
				l, w, err := a.cfg.Node().Dial(ctx, t.Addr, t.Expect, &h)
				results <- result{l, w, t.Addr, err}
			}()
			continue
		}
		select {
		case r := <-results:
			running--
			switch {
			case r.err != nil:
				if ctx.Err() == nil {
					a.markDown(r.addr)
					errs = append(errs, fmt.Errorf("%s: %w", r.addr, r.err))
					now = true
				}
			case win.l == nil:
				if err := a.cfg.CheckSupernode(r.l, r.w); err != nil {
					r.l.Close(fmt.Errorf("%w: %w", protocol.ErrForbidden, err))
					a.markDown(r.addr)
					errs = append(errs, fmt.Errorf("%s: %w", r.addr, err))
					a.log.Warn().Err(err).Str("supernode", r.addr).Msg("supernode refused: not admitted to the overlay")
					now = true
					continue
				}
				win = r
				cancel()
			default:
				r.l.Close(nil)
			}
		case <-tick.C:
			now = true
		}
	}
	for _, ad := range tried {
		if ad != win.addr {
			a.release(ad)
		}
	}
	if win.l == nil {
		if len(tried) > 0 && len(errs) == 0 {
			return nil, nil, "", tried, apitype.ErrDaemonClosed // every dial was cancelled: we are closing
		}
		return nil, nil, "", tried, errors.Join(errs...)
	}
	return win.l, win.w, win.addr, tried, nil
}

// attached1 runs one slot's attachment to l until it drops.
func (a *Attachment) attached1(s *slot, l *transport.Link, w *protocol.Welcome, addr string) {
	a.mu.Lock()
	a.claims.LedTo(addr, l.Peer)
	for _, o := range a.slots {
		if o.link != nil && o.link.Peer == l.Peer {
			// The same supernode under another address.
			a.mu.Unlock()
			l.Close(fmt.Errorf("%w: already attached to this supernode", protocol.ErrForbidden))
			return
		}
	}
	first := a.primaryLocked() == nil
	s.link = l
	s.nat = protocol.NATUnknown
	s.status = apitype.SupernodeStatus{Addr: addr, PeerID: l.Peer.String(), Connected: true, Since: time.Now(), Observed: w.Observed}
	s.published = make(map[protocol.ContentID]published)
	s.live = Attached(time.Now(), l.PacketsReceived())
	if first {
		close(a.attached)
	}
	if p, _, err := transport.ParseTarget(a.prefer); err == nil && p == l.Peer {
		a.prefer = ""
	}
	a.mu.Unlock()
	l.Log().Info().Str("observed_addr", w.Observed).Msg("attached to supernode")
	a.Republish()
	a.cfg.Changed(ChangeAttached)
	a.wg.Add(1)
	go a.discoverNAT(s, l, w.STUNAlt, w.Dual)
	a.readLoop(s, l)

	a.mu.Lock()
	s.link = nil
	s.status.Connected = false
	if err := l.Err(); err != nil {
		s.status.LastError = err.Error()
	}
	a.lastErr = s.status
	if a.primaryLocked() == nil {
		a.attached = make(chan struct{})
	}
	type lost struct {
		id protocol.QueryID
		q  Query
	}
	var moved []lost
	for id, g := range a.searches {
		if g.via == l {
			delete(a.searches, id)
			moved = append(moved, lost{id, g.q})
		}
	}
	a.mu.Unlock()
	a.cfg.Changed(ChangeDetached)
	// A search with nothing else in flight goes on through another supernode.
	for _, m := range moved {
		m.q.Lost(m.id, l)
	}
	if a.ctx.Err() == nil {
		switch {
		case errors.Is(l.Err(), ErrMoving):
			// Nothing wrong with the supernode: attach there again at once.
			l.Log().Info().Msg("attaching again from our new address")
		case errors.Is(l.Err(), errRedirected):
			a.markDown(addr)
			l.Log().Info().Err(l.Err()).Msg("left the supernode as it asked")
		default:
			a.markDown(addr)
			l.Log().Warn().Err(l.Err()).Msg("supernode connection lost; failing over")
		}
	}
}

// discoverNAT asks the supernode's two STUN ports, from the peer's QUIC socket,
// which address the world sees. The same answer from both means the NAT maps
// independently of the destination; different ones mean a symmetric NAT. The
// supernode then checks by dialling back and answers with NATStatus. Our
// address in the IP family we did not attach over goes along, proven at
// the supernode's address in that family (dual).
func (a *Attachment) discoverNAT(s *slot, l *transport.Link, alt string, dual []string) {
	defer a.wg.Done()
	ua, ok := l.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	type proved struct {
		ps      []protocol.AddrProof
		unheard bool
	}
	proofs := make(chan proved, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, proofWait)
		defer cancel()
		ps, unheard := a.proveOtherFamily(pctx, l, dual)
		proofs <- proved{ps, unheard}
	}()
	r1, err := a.cfg.Node().Reflexive(ctx, ua)
	if err != nil {
		l.Log().Debug().Err(err).Msg("stun")
		<-proofs
		return
	}
	mapping := protocol.NATUnknown
	reflexive := []string{r1.String()}
	if a.cfg.OnRelay() {
		mapping = protocol.NATUDPBlocked
	} else if altAddr := altSTUN(alt, ua); altAddr != nil {
		r2, err := a.cfg.Node().Reflexive(ctx, altAddr)
		switch {
		case err != nil:
			l.Log().Debug().Err(err).Msg("stun on the second port")
		case r1.String() != r2.String():
			mapping = protocol.NATEndpointDependent
			reflexive = append(reflexive, r2.String())
		case r1.String() == a.cfg.Node().Addr().String():
			mapping = protocol.NATNone
		default:
			mapping = protocol.NATEndpointIndependent
		}
	}
	a.mu.Lock()
	if s.link == l {
		s.status.Reflexive = r1.String()
		s.status.Mapping = mapping.String()
	}
	a.mu.Unlock()
	p := <-proofs
	l.Log().Info().Str("reflexive_addr", r1.String()).Str("mapping", mapping.String()).Int("proofs", len(p.ps)).Msg("NAT measured")
	l.Send(&protocol.NATReport{Mapping: mapping, Reflexive: reflexive, Proofs: p.ps})
	if len(p.ps) > 0 || !p.unheard {
		return
	}
	// The first packets of a new path are often lost; keep trying, and
	// report again once the address is proven.
	lctx, lcancel := context.WithTimeout(a.ctx, lateProofWait)
	defer lcancel()
	if ps, _ := a.proveOtherFamily(lctx, l, dual); len(ps) > 0 && l.Err() == nil {
		l.Log().Info().Str("addr", ps[0].Addr).Msg("address in the other IP family proven late")
		l.Send(&protocol.NATReport{Mapping: mapping, Reflexive: reflexive, Proofs: ps})
	}
}

// proofWait bounds the proof of our other family's address that the NAT
// report waits for: two tries. When neither is answered, the proof goes on
// for lateProofWait (five more tries) and a second report carries it.
const (
	proofWait     = 1500 * time.Millisecond
	lateProofWait = 30 * time.Second
)

// proveOtherFamily proves our address at the first of the supernode's
// addresses in the IP family the link does not use that answers. An IPv6
// address is offered only as this host's own, untranslated: peers punch
// there as through an endpoint-independent NAT. A peer on a relay has no
// other address to prove. unheard says whether an address went unanswered,
// rather than unreachable from here.
func (a *Attachment) proveOtherFamily(ctx context.Context, l *transport.Link, dual []string) (proofs []protocol.AddrProof, unheard bool) {
	on, err := netip.ParseAddrPort(l.RemoteAddr().String())
	if err != nil || a.cfg.OnRelay() {
		return nil, false
	}
	for _, d := range dual {
		ap, err := netip.ParseAddrPort(d)
		if err != nil || ap.Addr().Unmap().Is4() == on.Addr().Unmap().Is4() || ap.Addr().IsUnspecified() {
			continue
		}
		p, err := a.cfg.Node().ProveAddr(ctx, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			unheard = unheard || errors.Is(err, transport.ErrNoSTUNAnswer)
			l.Log().Debug().Err(err).Str("at", d).Msg("no proof of our address in the other IP family")
			continue
		}
		mapped, err := netip.ParseAddrPort(p.Addr)
		if err != nil || (mapped.Addr().Unmap().Is6() && !transport.LocalIP(mapped.Addr())) {
			l.Log().Debug().Str("addr", p.Addr).Msg("our IPv6 address is translated; not offered")
			return nil, false
		}
		return []protocol.AddrProof{p}, false
	}
	return nil, unheard
}

// altSTUN is the supernode's second STUN address, with the host we dialled
// when the supernode gave an unspecified one.
func altSTUN(alt string, dialled *net.UDPAddr) *net.UDPAddr {
	if alt == "" {
		return nil
	}
	ua, err := net.ResolveUDPAddr("udp", alt)
	if err != nil {
		return nil
	}
	if ua.IP == nil || ua.IP.IsUnspecified() {
		ua.IP = dialled.IP
	}
	return ua
}

func (a *Attachment) readLoop(s *slot, l *transport.Link) {
	for {
		m, err := l.Recv()
		if err != nil {
			l.Close(err)
			return
		}
		switch m := m.(type) {
		case *protocol.Hits:
			a.mu.Lock()
			g := a.searches[m.ID]
			a.mu.Unlock()
			if g.via == l {
				g.q.Hits(m.ID, m.Hits)
			}
		case *protocol.QueryDone:
			if q := a.TakeLeg(m.ID, l); q != nil {
				q.Over(m.ID, m, nil)
			}
		case *protocol.Error:
			err := m.AsError()
			if q := a.TakeLeg(m.Ref, l); q != nil {
				q.Over(m.Ref, nil, err)
				continue
			}
			l.Log().Warn().Err(err).Msg("supernode reported an error")
		case *protocol.Ping:
			l.Send(&protocol.Pong{Seq: m.Seq})
		case *protocol.Pong:
			a.ponged(s, l, m.Seq, time.Duration(m.Every)*time.Millisecond)
		case *protocol.Members:
			a.takeMembers(m)
		case *protocol.NATStatus:
			a.mu.Lock()
			if s.link == l {
				s.status.NAT, s.status.Public, s.status.Proven = m.NAT.String(), m.Public, m.Proven
				s.nat = m.NAT
			}
			a.mu.Unlock()
			a.cfg.Changed(ChangeNAT)
			l.Log().Info().Str("nat", m.NAT.String()).Bool("public", m.Public).Strs("proven", m.Proven).Msg("supernode established our NAT")
		case *protocol.UserReply, *protocol.Signal, *protocol.Promote, *protocol.Certificate:
			a.cfg.Handle(l, m)
		case *protocol.Redirect:
			a.redirected(l, m)
			return
		default:
			l.Log().Debug().Str("msg", m.Type().String()).Msg("ignoring unexpected message")
		}
	}
}

// redirected leaves a supernode that asked us to attach to another: the
// slot attaches there next, unless another slot is attached there already.
func (a *Attachment) redirected(l *transport.Link, m *protocol.Redirect) {
	to, _, err := transport.ParseTarget(m.Target)
	if err != nil || to == l.Peer {
		l.Log().Warn().Str("target", m.Target).Msg("ignoring a redirect to nowhere new")
		return
	}
	a.mu.Lock()
	held := slices.ContainsFunc(a.slots, func(s *slot) bool { return s.link != nil && s.link.Peer == to })
	if !held {
		a.prefer, a.preferUntil = m.Target, time.Now().Add(preferFor)
	}
	a.mu.Unlock()
	l.Log().Info().Str("to", m.Target).Str("why", m.Why).Bool("already_attached_there", held).Msg("supernode redirected us")
	l.Close(fmt.Errorf("%w to %s", errRedirected, m.Target))
}

// ErrMoving closes the links to supernodes when the peer moves to a new
// address (a new relay allocation): they attach again from there.
var ErrMoving = fmt.Errorf("%w: moved to a new relay allocation", transport.ErrClosed)

// errRedirected closes a link to a supernode that redirected us, as a normal
// close.
var errRedirected = fmt.Errorf("%w: redirected", transport.ErrClosed)

// preferFor is how long a redirect target is tried first.
const preferFor = 30 * time.Second

// The searches' side of the attachment: a link to send a query through,
// and the table that routes the answers to a query's ID back to its search.

// ProbeEvery is the interval the liveness pings go at now: the probe
// interval, or longer when a supernode asked for it (<= 0: no pings).
func (a *Attachment) ProbeEvery() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rounds.Every()
}

// Pick is the attached supernode to send a query to, of those not in avoid:
// the nearest (by the link's round trip) of those heard from within two
// ping intervals, or else (or when freshest is set) the one heard from last;
// and its usual time to answer a ping.
func (a *Attachment) Pick(avoid map[*transport.Link]bool, freshest bool) (*transport.Link, time.Duration) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var slots []*slot
	var cands []pickCand
	for _, s := range a.attachedLocked() {
		if avoid[s.link] {
			continue
		}
		s.hear(now)
		rtt, _ := s.link.RTT()
		live := !freshest && (a.cfg.ProbeInterval <= 0 || now.Sub(s.live.Heard()) < 2*a.rounds.Every())
		slots = append(slots, s)
		cands = append(cands, pickCand{live: live, rtt: rtt, heard: s.live.Heard()})
	}
	i := pick(cands)
	if i < 0 {
		return nil, 0
	}
	return slots[i].link, slots[i].live.AnswerTime()
}

// nearMargin is how much nearer a supernode must be to take queries from
// one listed before it.
const nearMargin = 5 * time.Millisecond

// pickCand is an attached supernode as Pick weighs it.
type pickCand struct {
	live  bool // heard from lately
	rtt   time.Duration
	heard time.Time
}

// pick is the index of the nearest live candidate: its answers come
// soonest. One must be nearer by nearMargin to beat one before it (the
// primary comes first), so noise in the round trips does not move queries
// about. With none live, the one heard from last; -1 with none.
func pick(cands []pickCand) int {
	best := -1
	for i, c := range cands {
		switch {
		case best < 0:
			best = i
		case c.live != cands[best].live:
			if c.live {
				best = i
			}
		case c.live && c.rtt+nearMargin < cands[best].rtt, !c.live && c.heard.After(cands[best].heard):
			best = i
		}
	}
	return best
}

// AddLeg routes the answers to query id, sent through l, to q.
func (a *Attachment) AddLeg(id protocol.QueryID, q Query, l *transport.Link) {
	a.mu.Lock()
	a.searches[id] = leg{q, l}
	a.mu.Unlock()
}

// ForgetLegs drops the routes of the queries ids.
func (a *Attachment) ForgetLegs(ids []protocol.QueryID) {
	a.mu.Lock()
	for _, id := range ids {
		delete(a.searches, id)
	}
	a.mu.Unlock()
}

// TakeLeg removes and returns the search whose query id went through l.
func (a *Attachment) TakeLeg(id protocol.QueryID, l *transport.Link) Query {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.searches[id]
	if !ok || g.via != l {
		return nil
	}
	delete(a.searches, id)
	return g.q
}

// Republish brings each supernode's view of what we offer up to date: the
// share folder and the files we download or downloaded. New ones are
// published, vanished ones unpublished.
func (a *Attachment) Republish() {
	recs := a.cfg.Records()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.slots {
		if s.link != nil {
			s.publish(recs)
		}
	}
}

// published is how a file was published: what a supernode indexes it by.
type published struct {
	name string
	tags protocol.Tags
}

func (s *slot) publish(recs []protocol.FileRecord) {
	l := s.link
	now := make(map[protocol.ContentID]published, len(recs))
	var add []protocol.FileRecord
	var del []protocol.ContentID
	for _, f := range recs {
		if _, dup := now[f.ID]; dup {
			continue
		}
		p := published{name: f.Name, tags: f.Tags}
		now[f.ID] = p
		old, had := s.published[f.ID]
		switch {
		case !had:
			add = append(add, f)
		case old != p:
			// Renamed or retagged: the supernode indexes a file by the
			// name it first got, so it is withdrawn and published anew.
			del = append(del, f.ID)
			add = append(add, f)
		}
	}
	for id := range s.published {
		if _, ok := now[id]; !ok {
			del = append(del, id)
		}
	}
	for len(del) > 0 {
		n := min(len(del), protocol.MaxIDsPerFrame)
		if err := l.Send(&protocol.Unpublish{IDs: del[:n]}); err != nil {
			return
		}
		del = del[n:]
	}
	for len(add) > 0 {
		n := min(len(add), protocol.MaxFilesPerFrame)
		if err := l.Send(&protocol.Publish{Files: add[:n]}); err != nil {
			return
		}
		add = add[n:]
	}
	s.published = now
}
