package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/transport"
)

// Some networks (hotels, offices) drop all outgoing UDP. Before it attaches,
// the daemon checks that a supernode answers STUN over UDP. When none does but
// one answers over TCP, UDP is taken as blocked: the daemon asks that
// supernode for relay credentials over TLS on TCP, allocates on the relay over
// TURN/TCP, and runs its QUIC node on the relayed address. Everything else
// (attachment, signalling, transfers) then runs as usual on that node; the
// supernodes plan connections to it as to a public peer, since the relay
// admits whoever the peer permits.

// udpProbeTimeout bounds each STUN check of the UDP path.
const udpProbeTimeout = 700 * time.Millisecond

// udpProbeRounds is how many times every supernode is asked before UDP is
// taken as blocked: a lost packet must not put a peer on a relay.
const udpProbeRounds = 2

// UDPCheck is what CheckUDP needs: the node to probe from and the settings
// of a node to build on a relay.
type UDPCheck struct {
	Identity      *protocol.Identity
	Supernodes    []string
	Node          *transport.Node
	Log           zerolog.Logger
	IdleTimeout   time.Duration
	LimitLoopback bool
}

// OnRelay is a node that lives on a relay allocation reached over TURN/TCP.
type OnRelay struct {
	Node  *transport.Node
	Alloc *relay.Allocation
	TCP   string // the relay's TURN/TCP address
	// Expires is when the allocation's credentials run out: the relay
	// refreshes it no longer, so a new one must be had before.
	Expires time.Time
}

// CheckUDP finds whether UDP is blocked, and if so builds a node on a relay;
// the caller closes its old node and moves to it. It returns nil, nil when
// UDP works or nothing could be learnt (every supernode down), and an error
// only when UDP is blocked and no relay could be had.
func CheckUDP(ctx context.Context, c UDPCheck) (*OnRelay, error) {
	sns := targets(c.Supernodes)
	if len(sns) == 0 {
		return nil, nil
	}
	for round := 0; round < udpProbeRounds; round++ {
		for _, s := range sns {
			pctx, cancel := context.WithTimeout(ctx, udpProbeTimeout)
			_, err := c.Node.Reflexive(pctx, s.udp)
			cancel()
			if err == nil {
				return nil, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	r, errs := relayOverTCP(ctx, c, sns)
	if r != nil {
		c.Log.Warn().Str("relay", r.TCP).Str("relayed_addr", r.Alloc.RelayedAddr().String()).
			Msg("no supernode answers over UDP but one does over TCP: UDP looks blocked; living on a relay over TURN/TCP")
		return r, nil
	}
	if len(errs) == len(sns) && allDialFailures(errs) {
		// Nothing answers at all: the supernodes are down, not UDP.
		return nil, nil
	}
	return nil, fmt.Errorf("UDP looks blocked and no relay could be had: %w", errors.Join(errs...))
}

// RelayOverTCP asks the supernodes over TCP for a relay and builds a node on
// a new TURN/TCP allocation there: for a peer on a relay whose credentials
// are about to run out.
func RelayOverTCP(ctx context.Context, c UDPCheck) (*OnRelay, error) {
	sns := targets(c.Supernodes)
	if len(sns) == 0 {
		return nil, errors.New("no supernode to ask for a relay")
	}
	r, errs := relayOverTCP(ctx, c, sns)
	if r == nil {
		return nil, fmt.Errorf("no relay could be had: %w", errors.Join(errs...))
	}
	return r, nil
}

type snTarget struct {
	expect protocol.PeerID
	addr   string
	udp    *net.UDPAddr
}

// targets are the first three supernodes that parse and resolve.
func targets(supernodes []string) []snTarget {
	var sns []snTarget
	for _, t := range supernodes {
		expect, addr, err := transport.ParseTarget(t)
		if err != nil {
			continue
		}
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			continue
		}
		sns = append(sns, snTarget{expect: expect, addr: addr, udp: ua})
		if len(sns) == 3 {
			break
		}
	}
	return sns
}

// relayOverTCP gets credentials from the first supernode of sns that gives
// a relay over TCP, and a node on an allocation there.
func relayOverTCP(ctx context.Context, c UDPCheck, sns []snTarget) (*OnRelay, []error) {
	var errs []error
	for _, s := range sns {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := relay.AskTCP(actx, c.Identity, s.addr, s.expect)
		if err != nil {
			cancel()
			errs = append(errs, err)
			continue
		}
		if ok.Relay.TCP == "" {
			cancel()
			errs = append(errs, fmt.Errorf("supernode %s named a relay without TCP", s.addr))
			continue
		}
		// The supernode answers over TCP but never over UDP: UDP is blocked.
		alloc, err := relay.Allocate(actx, relay.ClientConfig{Server: ok.Relay.TCP, TCP: true, Log: c.Log, Creds: credsOf(&ok.Relay)})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %s over tcp: %w", ok.Relay.TCP, err))
			continue
		}
		node, err := transport.New(transport.Config{
			Identity: c.Identity, Conn: alloc, Log: c.Log, Listen: true, Transfers: true,
			IdleTimeout: c.IdleTimeout, Agent: "supernet-peer", LimitLoopback: c.LimitLoopback,
		})
		if err != nil {
			alloc.Close()
			return nil, append(errs, err)
		}
		return &OnRelay{Node: node, Alloc: alloc, TCP: ok.Relay.TCP, Expires: time.Unix(ok.Relay.Expires, 0)}, nil
	}
	return nil, errs
}

// allDialFailures reports whether every error is a failed TCP connect.
func allDialFailures(errs []error) bool {
	for _, err := range errs {
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			return false
		}
	}
	return true
}
