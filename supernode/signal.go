package supernode

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// Connection signalling: a peer asks its supernode to connect it to another
// peer; the request travels to the target's supernode, which alone knows both
// NAT types. It picks the plan, mints relay credentials for the target, and
// sends an Offer to the target and an Answer back to the initiator. Later steps
// (the target's relayed address, failures) travel the same way.

type signalKey struct {
	id   uint64
	kind protocol.SignalKind
	from protocol.PeerID
}

// maxSignals bounds the duplicate-suppression set for signals.
const maxSignals = 1 << 16

// SetLeafNAT records what this supernode established about a leaf's NAT and
// the addresses it can be reached at.
func (r *Router) SetLeafNAT(id LinkID, nat protocol.NATType, reflexive, proven []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.leaves[id]
	if l == nil {
		return
	}
	info := l.info
	info.NAT = nat
	info.Addrs = append([]string(nil), info.Addrs...)
	for _, a := range reflexive {
		// A mapping the leaf reports (a symmetric NAT's second port) is
		// taken only on the host this supernode saw it at.
		if len(info.Addrs) < protocol.MaxAddrs && !slices.Contains(info.Addrs, a) && len(info.Addrs) > 0 && transport.SameHost(a, info.Addrs[0]) {
			info.Addrs = append(info.Addrs, a)
		}
	}
	for _, a := range proven {
		// Seen here in the other IP family (see Server.proven).
		if len(info.Addrs) < protocol.MaxAddrs && !slices.Contains(info.Addrs, a) {
			info.Addrs = append(info.Addrs, a)
		}
	}
	// Sources read info under ixMu; replace it whole so they see one or the other.
	r.ixMu.Lock()
	l.info = info
	r.ixMu.Unlock()
}

// LeafNAT is the NAT type recorded for the leaf with peer ID p.
func (r *Router) LeafNAT(p protocol.PeerID) (protocol.NATType, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.leaves[r.leafByPeer[p]]
	if l == nil {
		return 0, false
	}
	r.ixMu.RLock()
	defer r.ixMu.RUnlock()
	return l.info.NAT, true
}

// ChoosePlan picks how initiator i and target t connect. A side that can be
// reached (public, or living on a relay allocation) is dialled by the other; two
// endpoint-independent NATs punch; anything else needs a relay.
func ChoosePlan(i, t protocol.NATType) protocol.Plan {
	reachable := func(n protocol.NATType) bool { return n == protocol.NATNone || n == protocol.NATUDPBlocked }
	switch {
	case reachable(t):
		return protocol.PlanDirect
	case reachable(i):
		return protocol.PlanReverse
	case i == protocol.NATEndpointDependent || t == protocol.NATEndpointDependent:
		return protocol.PlanRelay
	default:
		return protocol.PlanPunch // both endpoint-independent, or not yet known
	}
}

func (r *Router) signal(from LinkID, m *protocol.Signal) error {
	r.mu.Lock()
	if !r.signalAllowedLocked(from) {
		r.mu.Unlock()
		r.Stats.SignalsDropped.Add(1)
		return nil
	}
	if l := r.leaves[from]; l != nil {
		// A leaf speaks only for itself; what it says of its NAT and addresses
		// is replaced by what this supernode established.
		if m.Kind == protocol.SignalOffer || m.Kind == protocol.SignalAnswer {
			r.mu.Unlock()
			return fmt.Errorf("%w: a leaf cannot send a %s signal", protocol.ErrForbidden, m.Kind)
		}
		r.ixMu.RLock()
		info := l.info
		r.ixMu.RUnlock()
		m.From, m.FromSN, m.NAT, m.Hops = info.Peer, r.cfg.ID, info.NAT, r.cfg.HopLimit
		switch m.Kind {
		case protocol.SignalRequest:
			m.Addrs = info.Addrs
			m.Delay = r.halfRTTms(from)
		case protocol.SignalRelayed:
			// The one address a leaf names itself: its allocation, which
			// must be on a relay we know.
			if r.cfg.RelayAddr != nil {
				m.Addrs = slices.DeleteFunc(slices.Clone(m.Addrs), func(a string) bool { return !r.cfg.RelayAddr(a) })
			}
		default:
			m.Addrs = nil
		}
	} else if r.neighbours[from] == nil {
		r.mu.Unlock()
		return fmt.Errorf("%w: signal from an unknown link", protocol.ErrForbidden)
	} else if m.Kind == protocol.SignalRequest {
		m.Delay += r.halfRTTms(from)
	}
	key := signalKey{m.ID, m.Kind, m.From}
	now := r.cfg.Now()
	if exp, dup := r.signals[key]; dup && now.Before(exp) {
		r.mu.Unlock()
		return nil
	}
	if len(r.signals) >= maxSignals {
		for k, exp := range r.signals {
			if !now.Before(exp) || len(r.signals) >= maxSignals {
				delete(r.signals, k)
			}
		}
	}
	r.signals[key] = now.Add(r.cfg.SeenTTL)

	if to, ok := r.leafByPeer[m.To]; ok {
		if m.Kind != protocol.SignalRequest {
			r.mu.Unlock()
			r.out.Send(to, m)
			return nil
		}
		r.ixMu.RLock()
		target := r.leaves[to].info
		r.ixMu.RUnlock()
		r.mu.Unlock()
		r.rendezvous(from, to, m, target)
		return nil
	}
	var sends []LinkID
	_, fromLeaf := r.leaves[from]
	if n, ok := r.nbrByPeer[m.ToSN]; ok && n != from {
		sends = append(sends, n)
	} else if m.ToSN == r.cfg.ID || m.Hops == 0 {
		// The target should be here and is not, or the signal has gone far
		// enough. A flooded request (no supernode named) fails silently: another
		// branch of the flood may still find the peer.
		r.mu.Unlock()
		if m.Kind == protocol.SignalRequest && !m.ToSN.IsZero() {
			r.routeBack(from, m, protocol.StatusNotFound, "peer is not attached to its supernode")
		}
		return nil
	} else {
		for id := range r.neighbours {
			if id != from {
				sends = append(sends, id)
			}
		}
		slices.Sort(sends)
	}
	r.mu.Unlock()
	if len(sends) == 0 && m.Kind == protocol.SignalRequest && (!m.ToSN.IsZero() || fromLeaf) {
		msg := "no route to the peer's supernode"
		if m.ToSN.IsZero() {
			msg = "the peer is not attached here and there is no other supernode to ask"
		}
		r.routeBack(from, m, protocol.StatusNotFound, msg)
		return nil
	}
	fwd := *m
	if fwd.Hops > 0 {
		fwd.Hops--
	}
	for _, id := range sends {
		r.out.Send(id, &fwd)
	}
	return nil
}

// routeBack answers a request that cannot be delivered with a Fail to its sender.
func (r *Router) routeBack(from LinkID, m *protocol.Signal, code protocol.Status, msg string) {
	r.out.Send(from, &protocol.Signal{ID: m.ID, Kind: protocol.SignalFail, From: m.To, FromSN: r.cfg.ID,
		To: m.From, ToSN: m.FromSN, Hops: r.cfg.HopLimit, Code: code, Message: msg})
}

func (r *Router) halfRTTms(id LinkID) uint32 {
	if r.cfg.RTT == nil {
		return 0
	}
	return uint32(r.cfg.RTT(id) / 2 / time.Millisecond)
}

// rendezvous runs at the target's supernode: both sides learn each other's
// addresses and the plan, and start together. The answer travels back the way
// the request came, so the target waits about that long before it starts.
func (r *Router) rendezvous(from, to LinkID, req *protocol.Signal, target LeafInfo) {
	plan := ChoosePlan(req.NAT, target.NAT)
	if behindOneNAT(req.Addrs, target.Addrs) {
		// Seen at one public address, and the target names its LAN
		// addresses: the initiator dials those, across their LAN.
		plan = protocol.PlanDirect
	}
	if plan == protocol.PlanRelay && hasIPv6(req.Addrs) && hasIPv6(target.Addrs) {
		// An IPv6 firewall keeps a host's address and port, as an
		// endpoint-independent NAT does: a punch there may work where the
		// IPv4 NATs need a relay, which stays the fallback.
		plan = protocol.PlanPunch
	}
	if plan == protocol.PlanRelay && onlyIPv6(target.Addrs) {
		// The target reaches no relay's TURN service, which is on IPv4:
		// the initiator allocates, an IPv6 relayed address the target
		// sends to.
		plan = protocol.PlanRelayReverse
	}
	if req.Upgrade && plan != protocol.PlanPunch && plan != protocol.PlanDirect && plan != protocol.PlanReverse {
		r.routeBack(from, req, protocol.StatusUnavailable, "no direct path between these NATs")
		return
	}
	wait := req.Delay
	if own := r.halfRTTms(to); own < wait {
		wait -= own
	} else {
		wait = 0
	}
	offer := &protocol.Signal{ID: req.ID, Kind: protocol.SignalOffer, From: req.From, FromSN: req.FromSN,
		To: target.Peer, ToSN: r.cfg.ID, NAT: req.NAT, Addrs: req.Addrs, Plan: plan, Delay: wait, Upgrade: req.Upgrade}
	if r.cfg.Relay != nil && !req.Upgrade && (plan == protocol.PlanRelay || plan == protocol.PlanPunch) {
		// With a punch, the credentials are the fallback if it fails. The
		// initiator sends to the relayed address: in IPv6 when that is all
		// it has.
		offer.Relay = r.cfg.Relay(target.Peer, onlyIPv6(req.Addrs))
		if offer.Relay == nil && plan == protocol.PlanRelay {
			r.routeBack(from, req, protocol.StatusUnavailable, "the peers need a relay and none is known")
			return
		}
	}
	answer := &protocol.Signal{ID: req.ID, Kind: protocol.SignalAnswer, From: target.Peer, FromSN: r.cfg.ID,
		To: req.From, ToSN: req.FromSN, Hops: r.cfg.HopLimit, NAT: target.NAT, Addrs: target.Addrs,
		Plan: plan, Upgrade: req.Upgrade}
	if plan == protocol.PlanRelayReverse {
		if r.cfg.Relay != nil {
			answer.Relay = r.cfg.Relay(req.From, true)
		}
		if answer.Relay == nil {
			r.routeBack(from, req, protocol.StatusUnavailable, "the target has IPv6 alone and no relay offers IPv6")
			return
		}
	}
	r.log.Debug().Str("from", req.From.Short()).Str("to", target.Peer.Short()).
		Str("plan", plan.String()).Uint32("delay_ms", wait).Msg("rendezvous")
	r.out.Send(to, offer)
	r.out.Send(from, answer)
}

// hasIPv6 reports whether a leaf was seen at a public IPv6 address.
func hasIPv6(addrs []string) bool { return seenAt(addrs, true) }

// onlyIPv6 reports whether a leaf was seen at a public IPv6 address and at
// no public IPv4 one.
func onlyIPv6(addrs []string) bool { return seenAt(addrs, true) && !seenAt(addrs, false) }

// seenAt reports whether one of a leaf's addresses is a public one in
// IPv6, or in IPv4 (IPv4-mapped ones included).
func seenAt(addrs []string, v6 bool) bool {
	return slices.ContainsFunc(addrs, func(a string) bool {
		ap, err := netip.ParseAddrPort(a)
		return err == nil && ap.Addr().Unmap().Is6() == v6 && transport.IsPublicAddr(ap.Addr())
	})
}

// behindOneNAT reports whether two leaves were seen at the same public
// address and the second has LAN addresses to be dialled at.
func behindOneNAT(a, b []string) bool {
	return len(a) > 0 && len(b) > 0 && transport.SameHost(a[0], b[0]) && !transport.LANCandidate(b[0]) &&
		slices.ContainsFunc(b[1:], transport.LANCandidate)
}

// signalAllowedLocked keeps each leaf and neighbour to its signal rate. A
// dropped signal is not answered: the initiator's own timeout covers it.
func (r *Router) signalAllowedLocked(from LinkID) bool {
	now := r.cfg.Now()
	if l := r.leaves[from]; l != nil {
		return l.signals.AllowN(now, 1)
	}
	if n := r.neighbours[from]; n != nil {
		return n.signals.AllowN(now, 1)
	}
	return true // refused below as from an unknown link
}
