// Package dial sets up links to other peers: it reuses a link it has, or sets
// one up through the supernodes (a plain dial, a reversed dial, a hole punch
// or a relay, as the target's supernode planned it), and moves a peer whose
// network drops UDP onto a relay. A relayed link is replaced by a direct one
// when a later punch works; users of the old link are told, finish what they
// have in flight, and move. It reaches the daemon only through Config.
package dial

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/internal/waiters"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/transport"
)

// ErrConnect wraps every failure to reach a peer.
var ErrConnect = errors.New("cannot connect to peer")

// maxAttempts bounds the attempts kept for status.
const maxAttempts = 64

// maxSetups bounds our setups awaiting signals; each has a goroutine waiting
// on it, and the downloads dial only a few peers each at once.
const maxSetups = 1024

// peerLink is a connection to one peer shared by whoever needs it.
type peerLink struct {
	peer   protocol.PeerID
	link   *transport.Link
	path   string
	plan   protocol.Plan
	better chan struct{} // closed when a direct link replaces this one
	users  int
	owned  bool // we set it up, so we close it when unused
	dialed bool // we dialled the QUIC connection (the other side accepted it)
	idle   *time.Timer
	since  time.Time
	setup  apitype.Attempt // how we set it up; zero for a link the peer made
}

// Config is what the connector needs of the daemon.
type Config struct {
	Self protocol.PeerID
	Log  zerolog.Logger
	// Node is the node links run on. It is read on each use: a peer whose
	// network drops UDP moves to a node on a relay before it starts serving.
	Node func() *transport.Node
	// OnRelay is the allocation this peer lives on, or nil.
	OnRelay func() *relay.Allocation
	// Supernode is the link to the supernode signals go through, or nil.
	Supernode func() *transport.Link
	// Observed is our address as our supernode sees it, or "": a peer's LAN
	// addresses are tried only from behind the same public address.
	Observed func() string
	// Serve starts serving what the other side asks for on a link we
	// dialled, and returns at once.
	Serve func(*transport.Link)

	PunchTimeout, SignalTimeout, UpgradeInterval, LinkLinger time.Duration
}

// Connector keeps the links to other peers. Its goroutines are counted in the
// WaitGroup given to New and stop when its context ends.
type Connector struct {
	cfg Config
	log zerolog.Logger
	ctx context.Context
	wg  *sync.WaitGroup

	mu       sync.Mutex
	links    map[protocol.PeerID]*peerLink
	waits    map[protocol.PeerID][]chan *transport.Link // incoming links awaited
	inflight map[protocol.PeerID]chan struct{}          // setups in progress, one per peer
	attempts []apitype.Attempt

	setups *waiters.Set[uint64, *protocol.Signal] // our requests, by setup ID
}

// New returns a connector whose goroutines live until ctx ends, counted in wg.
func New(ctx context.Context, wg *sync.WaitGroup, cfg Config) *Connector {
	return &Connector{
		cfg:      cfg,
		log:      cfg.Log,
		ctx:      ctx,
		wg:       wg,
		links:    make(map[protocol.PeerID]*peerLink),
		waits:    make(map[protocol.PeerID][]chan *transport.Link),
		setups:   waiters.New[uint64, *protocol.Signal](maxSetups),
		inflight: make(map[protocol.PeerID]chan struct{}),
	}
}

// Attempts returns the recent connection setups, oldest first.
func (c *Connector) Attempts() []apitype.Attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]apitype.Attempt(nil), c.attempts...)
}

func (c *Connector) record(a apitype.Attempt) {
	c.mu.Lock()
	c.attempts = append(c.attempts, a)
	if len(c.attempts) > maxAttempts {
		c.attempts = c.attempts[len(c.attempts)-maxAttempts:]
	}
	c.mu.Unlock()
	ev := c.log.Info()
	if a.Err != "" {
		ev = c.log.Warn().Str("error", a.Err)
	}
	ev.Str("peer_id", a.Peer[:10]).Str("plan", a.Plan).Str("path", a.Path).Bool("upgrade", a.Upgrade).
		Dur("took", a.Took).Msg("connection attempt")
}

// Links returns the open links to other peers.
func (c *Connector) Links() []apitype.LinkStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]apitype.LinkStatus, 0, len(c.links))
	for p, pl := range c.links {
		ls := apitype.LinkStatus{Peer: p.String(), Path: pl.path, Remote: pl.link.RemoteAddr().String(), Users: pl.users, Since: pl.since}
		if pl.plan != 0 {
			ls.Plan = pl.plan.String()
		}
		out = append(out, ls)
	}
	slices.SortFunc(out, func(a, b apitype.LinkStatus) int { return a.Since.Compare(b.Since) })
	return out
}

// liveLocked returns the usable link to p, if any.
func (c *Connector) liveLocked(p protocol.PeerID) *peerLink {
	pl := c.links[p]
	if pl == nil {
		return nil
	}
	select {
	case <-pl.link.Done():
		delete(c.links, p)
		return nil
	default:
		return pl
	}
}

// acquire returns a link to src, setting one up if needed. Call release when done.
func (c *Connector) acquire(ctx context.Context, src protocol.Source) (*peerLink, error) {
	for {
		c.mu.Lock()
		if pl := c.liveLocked(src.Peer); pl != nil {
			pl.users++
			if pl.idle != nil {
				pl.idle.Stop()
				pl.idle = nil
			}
			c.mu.Unlock()
			return pl, nil
		}
		if wait, ok := c.inflight[src.Peer]; ok {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.inflight[src.Peer] = done
		c.mu.Unlock()

		pl, err := c.setup(ctx, src, false)
		c.mu.Lock()
		delete(c.inflight, src.Peer)
		close(done)
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		pl.users++
		c.mu.Unlock()
		return pl, nil
	}
}

// release gives a link back; an unused link we set up closes after a while.
func (c *Connector) release(pl *peerLink) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pl.users--
	if pl.users > 0 {
		return
	}
	if c.links[pl.peer] != pl {
		// Replaced by a better link: nobody will use this one again.
		pl.link.Close(nil)
		return
	}
	if pl.owned && pl.idle == nil {
		pl.idle = time.AfterFunc(c.cfg.LinkLinger, func() {
			c.mu.Lock()
			idle := pl.users == 0
			if idle && c.links[pl.peer] == pl {
				delete(c.links, pl.peer)
			}
			c.mu.Unlock()
			if idle {
				pl.link.Close(nil)
			}
		})
	}
}

// register makes l the link to its peer, replacing a relayed one with a direct
// one, and returns the entry. Users of a replaced link are told through its
// better channel. The side that dialled the new link closes the old one once
// nobody here uses it: the other side may still be draining transfers on it,
// and closes it itself when it has moved.
//
// Two peers that dial each other at once end up with two links of the same
// kind; both keep the one the peer with the smaller ID dialled, and the other
// side's dialler closes its own, so they never both close the one the other kept.
func (c *Connector) register(l *transport.Link, path string, plan protocol.Plan, owned, dialed bool) *peerLink {
	pl := &peerLink{peer: l.Peer, link: l, path: path, plan: plan, owned: owned, dialed: dialed, better: make(chan struct{}), since: time.Now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.liveLocked(l.Peer)
	if old != nil {
		if old.link == l {
			return old
		}
		replace, closeOld := replaces(linkKind{old.path, old.dialed, old.users}, linkKind{path, dialed, 0}, dialsFirst(c.cfg.Self, l.Peer))
		if !replace {
			return old // keep the one in use; the new one serves the other side only
		}
		close(old.better)
		if closeOld {
			old.link.Close(nil)
		}
	}
	c.links[l.Peer] = pl
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		select {
		case <-l.Done():
		case <-c.ctx.Done():
			return
		}
		c.mu.Lock()
		if c.links[l.Peer] == pl {
			delete(c.links, l.Peer)
		}
		c.mu.Unlock()
	}()
	return pl
}

// Incoming hands a newly accepted peer link to whoever waits for it, and
// registers it.
func (c *Connector) Incoming(l *transport.Link) {
	c.mu.Lock()
	ws := c.waits[l.Peer]
	delete(c.waits, l.Peer)
	c.mu.Unlock()
	c.register(l, c.pathOf(l, protocol.NATUnknown), 0, len(ws) > 0, false)
	for _, w := range ws {
		select {
		case w <- l:
		default:
		}
	}
}

// awaitIncoming waits for the peer to connect to us, or returns the link it
// made since the given time.
func (c *Connector) awaitIncoming(ctx context.Context, p protocol.PeerID, since time.Time) (*transport.Link, error) {
	ch := make(chan *transport.Link, 1)
	c.mu.Lock()
	if pl := c.liveLocked(p); pl != nil && !pl.since.Before(since) {
		c.mu.Unlock()
		return pl.link, nil
	}
	c.waits[p] = append(c.waits[p], ch)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		ws := c.waits[p]
		for i, w := range ws {
			if w == ch {
				c.waits[p] = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		if len(c.waits[p]) == 0 {
			delete(c.waits, p)
		}
		c.mu.Unlock()
	}()
	select {
	case l := <-ch:
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Connect sets up (or reuses) a link to peer and reports how. sn is the peer's
// supernode, if known; without it the request is flooded among supernodes.
func (c *Connector) Connect(ctx context.Context, peer protocol.PeerID, sn *protocol.PeerID) (apitype.Attempt, error) {
	start := time.Now()
	pl, err := c.acquire(ctx, protocol.Source{Peer: peer, SN: sn})
	if err != nil {
		return apitype.Attempt{}, err
	}
	defer c.release(pl)
	c.mu.Lock()
	att := pl.setup
	c.mu.Unlock()
	if !att.At.Before(start) {
		return att, nil
	}
	return apitype.Attempt{Peer: peer.String(), Path: pl.path, Plan: "reuse", At: start}, nil
}

// setup gets a new link to src through the supernodes (or a plain dial where
// no signalling is possible) and records the attempt.
func (c *Connector) setup(ctx context.Context, src protocol.Source, upgrade bool) (*peerLink, error) {
	start := time.Now()
	att := apitype.Attempt{Peer: src.Peer.String(), Upgrade: upgrade, At: start}
	l, path, plan, err := c.establish(ctx, src, upgrade)
	att.Took = time.Since(start)
	att.Plan = plan.String()
	if plan == 0 {
		att.Plan = "dial"
	}
	if err != nil {
		att.Err = err.Error()
		c.record(att)
		return nil, fmt.Errorf("%w %s: %w", ErrConnect, src.Peer.Short(), err)
	}
	if path == apitype.PathDirect {
		path = c.pathOf(l, src.NAT) // relayed after all when either side lives on a relay
	}
	att.Path = path
	c.record(att)
	if plan != protocol.PlanReverse {
		// We dialled it; the other side may open streams on it too.
		c.cfg.Serve(l)
	}
	pl := c.register(l, path, plan, true, plan != protocol.PlanReverse)
	if pl.link != l {
		l.Close(nil)
	} else {
		c.mu.Lock()
		pl.setup = att
		c.mu.Unlock()
	}
	if wantsUpgrade(upgrade, pl.path, plan) {
		c.wg.Add(1)
		go c.upgradeLoop(pl, src)
	}
	return pl, nil
}

func (c *Connector) establish(ctx context.Context, src protocol.Source, upgrade bool) (*transport.Link, string, protocol.Plan, error) {
	start := time.Now()
	sl := c.cfg.Supernode()
	if !signalled(sl != nil, sl != nil && protocol.Supports(sl.Version, protocol.TypeSignal), src.SN != nil, len(src.Addrs)) {
		l, err := c.dialAny(ctx, src.Peer, src.Addrs)
		return l, apitype.PathDirect, 0, err
	}
	var toSN protocol.PeerID // zero: the supernodes flood the request
	if src.SN != nil {
		toSN = *src.SN
	}
	var idb [8]byte
	crand.Read(idb[:])
	id := binary.BigEndian.Uint64(idb[:])
	ch, forget, ok := c.setups.Add(id, 8)
	if !ok {
		return nil, "", 0, fmt.Errorf("%w: %d connection setups in flight", protocol.ErrOverloaded, maxSetups)
	}
	defer forget()
	req := &protocol.Signal{ID: id, Kind: protocol.SignalRequest, To: src.Peer, ToSN: toSN, Upgrade: upgrade}
	if err := sl.Send(req); err != nil {
		return nil, "", 0, fmt.Errorf("%w: %v", apitype.ErrNoSupernode, err)
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.SignalTimeout)
	defer cancel()
	sigs := &setupSignals{ch: ch}
	ans, err := sigs.wait(sctx, protocol.SignalAnswer)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && src.SN == nil {
			err = fmt.Errorf("%w: no supernode within reach knows peer %s", apitype.ErrNothingFound, src.Peer.Short())
		}
		return nil, "", 0, fmt.Errorf("waiting for the supernodes: %w", err)
	}
	plan := ans.Plan
	r, err := initiatorRoute(plan, ans.Delay, upgrade, ans.NAT == protocol.NATUDPBlocked)
	if err != nil {
		return nil, "", plan, err
	}
	if r.wait > 0 {
		sleepCtx(ctx, r.wait)
	}
	for _, s := range r.steps {
		var l *transport.Link
		l, err = c.initiatorStep(ctx, s, ans, sigs, start)
		if err == nil {
			path, ok := stepPath(s)
			if !ok {
				path = c.pathOf(l, ans.NAT)
			}
			return l, path, plan, nil
		}
	}
	return nil, "", plan, err
}

// initiatorStep takes one step of the initiator's route, as ans planned
// it; sigs carries the setup's later signals.
func (c *Connector) initiatorStep(ctx context.Context, s step, ans *protocol.Signal, sigs *setupSignals, start time.Time) (*transport.Link, error) {
	node := c.cfg.Node()
	peer, addrs := ans.From, ans.Addrs
	switch s {
	case stepAllocate:
		return c.relayFor(ctx, ans)
	case stepDial:
		return c.dialAny(ctx, peer, addrs)
	case stepAwait:
		if a := c.cfg.OnRelay(); a != nil {
			// We live on a relay: let the peer in.
			if err := a.Permit(udpAddrs(addrs)...); err != nil {
				return nil, fmt.Errorf("relay permission: %w", err)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, c.cfg.PunchTimeout+node.HandshakeTimeout())
		defer cancel()
		l, err := c.awaitIncoming(wctx, peer, start)
		if err != nil {
			return nil, fmt.Errorf("waiting for the peer to dial us: %w", err)
		}
		return l, nil
	case stepPunch:
		pctx, cancel := context.WithTimeout(ctx, c.cfg.PunchTimeout)
		addr, err := node.Punch(pctx, resolveAll(Candidates(addrs, c.self())), punchInterval)
		cancel()
		if err != nil {
			return nil, err
		}
		l, _, err := node.DialAddr(ctx, addr, peer, c.hello())
		if err != nil {
			c.log.Debug().Err(err).Msg("dial after punch failed")
		}
		return l, err
	case stepRelayed:
		// The target allocates a relay and tells us where.
		return c.dialRelayed(ctx, peer, sigs)
	case stepDialPermitted:
		pctx, cancel := context.WithTimeout(ctx, permitWait)
		rel, err := sigs.wait(pctx, protocol.SignalRelayed)
		cancel()
		if err == nil && len(rel.Addrs) > 0 {
			addrs = rel.Addrs
		} else if ctx.Err() == nil {
			c.log.Debug().Str("peer_id", peer.Short()).Msg("the target did not say its relay lets us in; dialling anyway")
		}
		return c.dialAny(ctx, peer, addrs)
	}
	return nil, fmt.Errorf("%w: the initiator cannot %s", protocol.ErrBadRequest, s)
}

// hello opens our transfer links: it tells the other side when we dial
// from the relay allocation we live on, so that it labels the link as it runs.
func (c *Connector) hello() *protocol.Hello {
	return &protocol.Hello{Role: protocol.RoleTransfer, Relayed: c.cfg.OnRelay != nil && c.cfg.OnRelay() != nil}
}

// dialRelayed waits for the relayed address the other side of a setup
// allocated, and dials the peer there.
func (c *Connector) dialRelayed(ctx context.Context, peer protocol.PeerID, sigs *setupSignals) (*transport.Link, error) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.SignalTimeout)
	rel, err := sigs.wait(rctx, protocol.SignalRelayed)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("waiting for the relayed address: %w", err)
	}
	return c.dialAny(ctx, peer, rel.Addrs)
}

// pathOf says how l to a peer whose NAT is theirs runs: relayed when it
// came in on a relay allocation, or when this peer or that one lives on one
// because its network blocks UDP (the address it is reached at is its
// relay's).
func (c *Connector) pathOf(l *transport.Link, theirs protocol.NATType) string {
	if l.Relayed || c.cfg.OnRelay() != nil || theirs == protocol.NATUDPBlocked {
		return apitype.PathRelayed
	}
	return apitype.PathDirect
}

// punchInterval is how often punch packets go out: short, so the moment both
// NATs are open is found within a few milliseconds.
const punchInterval = 20 * time.Millisecond

// setupSignals are the signals of one of our setups, in arrival order. They
// travel different paths through the supernodes, so one can overtake
// another: the target's relayed address may arrive before the plan that
// says to wait for it. A signal that comes before it is awaited is kept.
type setupSignals struct {
	ch    <-chan *protocol.Signal
	early []*protocol.Signal
}

// wait returns the first signal of kind, or the error a Fail carries.
func (ss *setupSignals) wait(ctx context.Context, kind protocol.SignalKind) (*protocol.Signal, error) {
	for i, m := range ss.early {
		if m.Kind == kind {
			ss.early = slices.Delete(ss.early, i, i+1)
			return m, nil
		}
	}
	for {
		select {
		case m := <-ss.ch:
			switch {
			case m.Kind == protocol.SignalFail:
				return nil, (&protocol.Error{Code: m.Code, Message: m.Message}).AsError()
			case m.Kind == kind:
				return m, nil
			case len(ss.early) < cap(ss.ch):
				// Bounded like the channel: the supernodes deliver each
				// kind once, so more are duplicates or noise.
				ss.early = append(ss.early, m)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func resolveAll(addrs []string) []*net.UDPAddr {
	var out []*net.UDPAddr
	for _, a := range addrs {
		if ua, err := net.ResolveUDPAddr("udp", a); err == nil {
			out = append(out, ua)
		}
	}
	return out
}

// dialAny dials the peer's addresses Happy Eyeballs style (RFC 8305): in
// Candidates' order, each one attemptDelay after the one before or as soon
// as it fails. The first link up wins; the other attempts are called off,
// and a link one of them still makes is closed.
func (c *Connector) dialAny(ctx context.Context, peer protocol.PeerID, addrs []string) (*transport.Link, error) {
	cands := Candidates(addrs, c.self())
	if len(cands) == 0 {
		return nil, errors.New("peer has no address")
	}
	node := c.cfg.Node()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		l   *transport.Link
		err error
	}
	results := make(chan result, len(cands))
	t := time.NewTimer(attemptDelay)
	defer t.Stop()
	next, running := 0, 0
	// startNext dials the next address, if any is left and the dial goes
	// on, and gives it attemptDelay alone.
	startNext := func() {
		if next == len(cands) || ctx.Err() != nil {
			return
		}
		t.Reset(attemptDelay)
		a := cands[next]
		next++
		running++
		dctx, dcancel := ctx, context.CancelFunc(func() {})
		if transport.LANCandidate(a) {
			// Across a LAN a handshake takes a moment; an address of
			// another LAN must not hold up the rest for long.
			dctx, dcancel = context.WithTimeout(ctx, lanDialTimeout)
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer dcancel()
			l, _, err := node.Dial(dctx, a, peer, c.hello())
			results <- result{l, err}
		}()
	}
	startNext()
	var errs []error
	for running > 0 {
		select {
		case r := <-results:
			running--
			if r.err == nil {
				cancel()
				c.wg.Add(1)
				go func(n int) {
					defer c.wg.Done()
					for range n {
						if late := <-results; late.l != nil {
							late.l.Close(nil)
						}
					}
				}(running)
				return r.l, nil
			}
			errs = append(errs, r.err)
			startNext()
		case <-t.C:
			startNext()
		}
	}
	return nil, errors.Join(errs...)
}

// lanDialTimeout bounds a dial to a LAN address.
const lanDialTimeout = time.Second

// attemptDelay is how long a dial has alone before the next address is
// tried beside it: RFC 8305's recommended Connection Attempt Delay.
const attemptDelay = 250 * time.Millisecond

// OnSignal handles a signal from our supernode.
func (c *Connector) OnSignal(m *protocol.Signal) {
	switch m.Kind {
	case protocol.SignalOffer:
		c.wg.Add(1)
		go c.answerOffer(m)
	default:
		c.setups.Deliver(m.ID, m)
	}
}

// answerOffer is the target's side of a setup.
func (c *Connector) answerOffer(m *protocol.Signal) {
	defer c.wg.Done()
	node := c.cfg.Node()
	start := time.Now()
	att := apitype.Attempt{Peer: m.From.String(), Plan: m.Plan.String(), Upgrade: m.Upgrade, At: start}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.PunchTimeout+c.cfg.SignalTimeout+node.HandshakeTimeout())
	defer cancel()
	// The initiator's later signals (its relayed address, with
	// relay-reverse) may come while we wait to start: keep them.
	ch, forget, ok := c.setups.Add(m.ID, 4)
	if !ok {
		att.Err = fmt.Sprintf("%d connection setups in flight", maxSetups)
		c.record(att)
		return
	}
	defer forget()
	sigs := &setupSignals{ch: ch}
	r, err := targetRoute(m.Plan, m.Delay, m.Upgrade, m.Relay != nil)
	if err == nil && r.wait > 0 {
		sleepCtx(ctx, r.wait)
	}
	var l *transport.Link
	var took step
	if err == nil {
		for _, s := range r.steps {
			took = s
			if s == stepPermit {
				// The initiator dials us; if we live on a relay, let it in,
				// then tell it so: a packet before the permission is lost.
				if a := c.cfg.OnRelay(); a != nil && a.Permit(udpAddrs(m.Addrs)...) == nil {
					if sl := c.cfg.Supernode(); sl != nil {
						sl.Send(&protocol.Signal{ID: m.ID, Kind: protocol.SignalRelayed, To: m.From, ToSN: m.FromSN,
							Addrs: []string{a.RelayedAddr().String()}})
					}
				}
				return
			}
			if l, err = c.targetStep(ctx, s, m, sigs, start); err == nil {
				break
			}
		}
	}
	att.Took = time.Since(start)
	if err != nil {
		att.Err = err.Error()
	} else if p, ok := stepPath(took); ok && p == apitype.PathRelayed {
		att.Path = p
	} else {
		att.Path = c.pathOf(l, m.NAT)
	}
	c.record(att)
}

// targetStep takes one step of the target's route.
func (c *Connector) targetStep(ctx context.Context, s step, m *protocol.Signal, sigs *setupSignals, start time.Time) (*transport.Link, error) {
	switch s {
	case stepDial:
		l, err := c.dialAny(ctx, m.From, m.Addrs)
		if err == nil {
			c.register(l, c.pathOf(l, m.NAT), m.Plan, false, true)
			c.cfg.Serve(l)
		}
		return l, err
	case stepPunchAwait:
		pctx, pcancel := context.WithTimeout(ctx, c.cfg.PunchTimeout)
		defer pcancel()
		node := c.cfg.Node()
		c.wg.Add(1)
		go func() {
			// Opens our NAT towards the initiator, whose answer comes as a dial.
			defer c.wg.Done()
			node.Punch(pctx, resolveAll(Candidates(m.Addrs, c.self())), punchInterval)
		}()
		return c.awaitIncoming(pctx, m.From, start)
	case stepAllocate:
		return c.relayFor(ctx, m)
	case stepRelayed:
		// The initiator allocates and tells us where.
		l, err := c.dialRelayed(ctx, m.From, sigs)
		if err == nil {
			c.register(l, apitype.PathRelayed, m.Plan, false, true)
			c.cfg.Serve(l)
		}
		return l, err
	}
	return nil, fmt.Errorf("%w: the target cannot %s", protocol.ErrBadRequest, s)
}

// relayFor allocates on the relay the supernode chose, lets the initiator in,
// tells it the relayed address, and waits for it to connect. The allocation
// lives as long as the link.
func (c *Connector) relayFor(ctx context.Context, m *protocol.Signal) (*transport.Link, error) {
	if m.Relay == nil {
		return nil, errors.New("the supernode gave no relay")
	}
	cfg := relay.ClientConfig{Server: m.Relay.UDP, IPv6: m.Relay.IPv6, Log: c.log, Creds: credsOf(m.Relay)}
	alloc, err := relay.Allocate(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("relay %s: %w", m.Relay.UDP, err)
	}
	if err := alloc.Permit(udpAddrs(m.Addrs)...); err != nil {
		alloc.Close()
		return nil, fmt.Errorf("relay permission: %w", err)
	}
	stop, err := c.cfg.Node().ListenOn(alloc)
	if err != nil {
		alloc.Close()
		return nil, err
	}
	cleanup := func() { stop(); alloc.Close() }
	sl := c.cfg.Supernode()
	if sl == nil {
		cleanup()
		return nil, apitype.ErrNoSupernode
	}
	sent := time.Now()
	if err := sl.Send(&protocol.Signal{ID: m.ID, Kind: protocol.SignalRelayed, To: m.From, ToSN: m.FromSN,
		Addrs: []string{alloc.RelayedAddr().String()}}); err != nil {
		cleanup()
		return nil, fmt.Errorf("telling the peer the relayed address: %w", err)
	}
	l, err := c.awaitIncoming(ctx, m.From, sent)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("waiting for the peer on the relay: %w", err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		select {
		case <-l.Done():
		case <-c.ctx.Done():
		}
		cleanup()
	}()
	return l, nil
}

// credsOf is what the relay client takes of credentials a supernode minted.
func credsOf(c *protocol.RelayCreds) relay.Credentials {
	return relay.Credentials{Username: c.Username, Password: c.Password, Expires: time.Unix(c.Expires, 0)}
}

// udpAddrs are the addresses a relay lets in for a peer: not its LAN
// addresses, which a relay on the internet never reaches (and refuses).
func udpAddrs(addrs []string) []net.Addr {
	var out []net.Addr
	for _, a := range resolveAll(slices.DeleteFunc(slices.Clone(addrs), transport.LANCandidate)) {
		out = append(out, a)
	}
	return out
}

// self is our address as our supernode sees it, or "".
func (c *Connector) self() string {
	if c.cfg.Observed == nil {
		return ""
	}
	return c.cfg.Observed()
}

// upgradeLoop retries a punch now and then while a relayed link is in use; when
// one works, the direct link replaces the relayed one.
func (c *Connector) upgradeLoop(pl *peerLink, src protocol.Source) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.UpgradeInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-pl.link.Done():
			return
		case <-pl.better:
			return
		case <-c.ctx.Done():
			return
		}
		c.mu.Lock()
		current := c.links[pl.peer] == pl
		c.mu.Unlock()
		if !current {
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.SignalTimeout+c.cfg.PunchTimeout+c.cfg.Node().HandshakeTimeout())
		np, err := c.setup(ctx, src, true)
		cancel()
		if err == nil && np.path == apitype.PathDirect {
			return
		}
	}
}

// Lease is a link held by one user: a download, a delivery. Release gives it
// back.
type Lease struct {
	c  *Connector
	pl *peerLink
}

// Link is the link to the peer.
func (l *Lease) Link() *transport.Link { return l.pl.link }

// Better is closed when a direct link to the same peer replaces this one.
func (l *Lease) Better() <-chan struct{} { return l.pl.better }

// Path is how the link runs: apitype.PathDirect or PathRelayed.
func (l *Lease) Path() string { return l.pl.path }

// Release gives the link back; an unused link we set up closes after a while.
func (l *Lease) Release() { l.c.release(l.pl) }

// Acquire returns a link to src, setting one up if needed.
func (c *Connector) Acquire(ctx context.Context, src protocol.Source) (*Lease, error) {
	pl, err := c.acquire(ctx, src)
	if err != nil {
		return nil, err
	}
	return &Lease{c, pl}, nil
}
