package dial

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// The decisions of a connection setup, apart from its sockets: which ways of
// getting a link each side tries and in what order, which of two links to the
// same peer is kept, and when a relayed link keeps trying for a direct one.
// The target's supernode picks the plan from both sides' NAT types and
// addresses; these functions turn that plan into steps.

// step is one way of getting a link to the other side.
type step int

const (
	// stepDial dials the addresses the plan gives, in turn.
	stepDial step = iota + 1
	// stepAwait lets the peer in (through our relay allocation when we live
	// on one) and waits for it to dial us.
	stepAwait
	// stepPunch opens both NATs with punch packets, then dials the address
	// that answered.
	stepPunch
	// stepRelayed waits for the relayed address the other side sends, and
	// dials it.
	stepRelayed
	// stepPunchAwait (target side) punches towards the initiator and waits
	// for its dial.
	stepPunchAwait
	// stepAllocate allocates on the relay the supernode chose, sends the
	// relayed address and waits for the dial: the target's, or the
	// initiator's with relay-reverse.
	stepAllocate
	// stepPermit (target side) lets the initiator in through our relay
	// allocation, if we live on one, and then says so with the relayed
	// address; no link comes of it here, the initiator's dial arrives as
	// any incoming link.
	stepPermit
	// stepDialPermitted dials a target that lives on a relay once it says
	// its relay lets us in (a SignalRelayed): a packet sent before that is
	// dropped by the relay and costs a retransmission. A target that does
	// not say so within permitWait is dialled anyway.
	stepDialPermitted
)

// permitWait bounds how long a dial waits for a target on a relay to let
// us in: its signal takes one more pass through the supernodes.
const permitWait = time.Second

var stepNames = map[step]string{
	stepDial: "dial", stepAwait: "await", stepPunch: "punch", stepRelayed: "relayed",
	stepPunchAwait: "punch-await", stepAllocate: "allocate", stepPermit: "permit", stepDialPermitted: "dial-permitted",
}

func (s step) String() string {
	if n, ok := stepNames[s]; ok {
		return n
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// route is what one side does for a setup: wait, then try the steps in order
// until one gives a link. A step after a failed one is the fallback for it.
type route struct {
	wait  time.Duration
	steps []step
}

// signalled says whether a setup goes through the supernodes. It cannot
// without a supernode that speaks signalling; and a source with addresses
// but no supernode comes from a supernode that predates signalling, so it is
// dialled as it is.
func signalled(attached, speaksSignal, knowsSN bool, addrs int) bool {
	return attached && speaksSignal && (knowsSN || addrs == 0)
}

// initiatorRoute is the initiator's side of the plan the target's supernode
// answered. delayMS is the wait the supernode asked for, so both sides start
// punching at once. An upgrade only tries for a direct link: a failed punch
// does not fall back to the relay it already has.
func initiatorRoute(plan protocol.Plan, delayMS uint32, upgrade, targetOnRelay bool) (route, error) {
	r := route{wait: delay(delayMS)}
	switch plan {
	case protocol.PlanDirect:
		r.steps = []step{stepDial}
		if targetOnRelay {
			r.steps = []step{stepDialPermitted}
		}
	case protocol.PlanReverse:
		r.steps = []step{stepAwait}
	case protocol.PlanPunch:
		r.steps = []step{stepPunch}
		if !upgrade {
			r.steps = append(r.steps, stepRelayed)
		}
	case protocol.PlanRelay:
		r.steps = []step{stepRelayed}
	case protocol.PlanRelayReverse:
		r.steps = []step{stepAllocate}
	default:
		return route{}, fmt.Errorf("%w: plan %d", protocol.ErrBadRequest, plan)
	}
	return r, nil
}

// targetRoute is the target's side of an offer. A punch falls back to a
// relay only when the supernode named one and this is not an upgrade.
func targetRoute(plan protocol.Plan, delayMS uint32, upgrade, hasRelay bool) (route, error) {
	r := route{wait: delay(delayMS)}
	switch plan {
	case protocol.PlanDirect:
		r.steps = []step{stepPermit}
	case protocol.PlanReverse:
		r.steps = []step{stepDial}
	case protocol.PlanPunch:
		r.steps = []step{stepPunchAwait}
		if !upgrade && hasRelay {
			r.steps = append(r.steps, stepAllocate)
		}
	case protocol.PlanRelay:
		r.steps = []step{stepAllocate}
	case protocol.PlanRelayReverse:
		r.steps = []step{stepRelayed}
	default:
		return route{}, fmt.Errorf("%w: plan %d", protocol.ErrBadRequest, plan)
	}
	return r, nil
}

func delay(ms uint32) time.Duration {
	if ms == 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// stepPath is the path a link got by s runs on, before we know whether this
// peer itself lives on a relay. An awaited link's path depends on how it
// came in, so it is not known here.
func stepPath(s step) (path string, known bool) {
	switch s {
	case stepDial, stepPunch:
		return apitype.PathDirect, true
	case stepRelayed, stepDialPermitted, stepAllocate:
		return apitype.PathRelayed, true
	}
	return "", false
}

// wantsUpgrade says whether a new link keeps trying for a direct one: only a
// first setup whose punch failed and fell back to a relay.
func wantsUpgrade(upgrade bool, path string, plan protocol.Plan) bool {
	return !upgrade && path == apitype.PathRelayed && plan == protocol.PlanPunch
}

// linkKind is what register weighs of a link to a peer.
type linkKind struct {
	path   string
	dialed bool // we dialled it
	users  int
}

// replaces decides whether a new link to a peer replaces the one we have:
// a direct link replaces a relayed one; of two links of the same kind made by
// both sides dialling at once, both sides keep the one the peer with the
// smaller ID dialled (iDialFirst: that is us). closeOld says whether we close
// the replaced link now: only the side that dialled the kept link does, and
// only when nobody here uses the old one, since the other side may still be
// draining transfers on it and closes it itself when it has moved.
func replaces(old, nw linkKind, iDialFirst bool) (replace, closeOld bool) {
	switch {
	case old.path == apitype.PathRelayed && nw.path == apitype.PathDirect:
		return true, old.users == 0 && nw.dialed
	case old.path == nw.path && old.dialed != nw.dialed && nw.dialed == iDialFirst:
		return true, old.users == 0 && old.dialed
	}
	return false, false
}

// dialsFirst says whether me is the peer with the smaller ID of the two.
func dialsFirst(me, other protocol.PeerID) bool {
	return bytes.Compare(me[:], other[:]) < 0
}

// Candidates orders a peer's addresses for a dial from self, our address as
// our supernode sees it. LAN addresses (private ranges) lead to that peer
// only from behind its NAT: they come first when self shares one of its
// public addresses, and are dropped otherwise, where they would name some
// other network's hosts. The public ones follow with the families
// interleaved, IPv6 first (RFC 8305, section 4).
func Candidates(addrs []string, self string) []string {
	var lan, v6, v4 []string
	sameNAT := false
	for _, a := range addrs {
		if transport.LANCandidate(a) {
			lan = append(lan, a)
			continue
		}
		if isIPv6(a) {
			v6 = append(v6, a)
		} else {
			v4 = append(v4, a)
		}
		sameNAT = sameNAT || (self != "" && transport.SameHost(a, self))
	}
	var out []string
	if sameNAT {
		out = lan
	}
	for i := 0; i < max(len(v6), len(v4)); i++ {
		if i < len(v6) {
			out = append(out, v6[i])
		}
		if i < len(v4) {
			out = append(out, v4[i])
		}
	}
	return out
}

// isIPv6 reports whether addr is on an IPv6 address proper, not an
// IPv4-mapped one.
func isIPv6(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Is6() && !ap.Addr().Is4In6()
}
