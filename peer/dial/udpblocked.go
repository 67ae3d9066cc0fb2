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
}

// CheckUDP finds whether UDP is blocked, and if so builds a node on a relay;
// the caller closes its old node and moves to it. It returns nil, nil when
// UDP works or nothing could be learnt (every supernode down), and an error
// only when UDP is blocked and no relay could be had.
func CheckUDP(ctx context.Context, c UDPCheck) (*OnRelay, error) {
	if len(c.Supernodes) == 0 {
		return nil, nil
	}
	type sn struct {
		expect protocol.PeerID
		addr   string
		udp    *net.UDPAddr
	}
	var sns []sn
	for _, t := range c.Supernodes {
		expect, addr, err := transport.ParseTarget(t)
		if err != nil {
			continue
		}
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			continue
		}
		sns = append(sns, sn{expect: expect, addr: addr, udp: ua})
		if len(sns) == 3 {
			break
		}
	}
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
			return nil, err
		}
		c.Log.Warn().Str("relay", ok.Relay.TCP).Str("relayed_addr", alloc.RelayedAddr().String()).
			Msg("no supernode answers over UDP but one does over TCP: UDP looks blocked; living on a relay over TURN/TCP")
		return &OnRelay{Node: node, Alloc: alloc, TCP: ok.Relay.TCP}, nil
	}
	if len(errs) == len(sns) && allDialFailures(errs) {
		// Nothing answers at all: the supernodes are down, not UDP.
		return nil, nil
	}
	return nil, fmt.Errorf("UDP looks blocked and no relay could be had: %w", errors.Join(errs...))
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
