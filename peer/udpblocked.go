package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

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

// checkUDP moves the node onto a relay when UDP is blocked. It returns nil when
// UDP works or nothing could be learnt (every supernode down), and an error
// only when UDP is blocked and no relay could be had.
func (d *Daemon) checkUDP(ctx context.Context) error {
	if d.cfg.Conn != nil || len(d.cfg.Supernodes) == 0 {
		return nil // a caller-supplied socket is the caller's business
	}
	type sn struct {
		expect protocol.PeerID
		addr   string
		udp    *net.UDPAddr
	}
	var sns []sn
	for _, t := range d.cfg.Supernodes {
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
		return nil
	}
	for round := 0; round < udpProbeRounds; round++ {
		for _, s := range sns {
			pctx, cancel := context.WithTimeout(ctx, udpProbeTimeout)
			_, err := d.node.Reflexive(pctx, s.udp)
			cancel()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	var errs []error
	for _, s := range sns {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := relay.AskTCP(actx, d.id, s.addr, s.expect)
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
		alloc, err := relay.Allocate(actx, relay.ClientConfig{Server: ok.Relay.TCP, TCP: true, Log: d.log, Creds: credsOf(&ok.Relay)})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %s over tcp: %w", ok.Relay.TCP, err))
			continue
		}
		node, err := transport.New(transport.Config{
			Identity: d.id, Conn: alloc, Log: d.log, Listen: true, Transfers: true,
			IdleTimeout: d.cfg.IdleTimeout, Agent: "supernet-peer", LimitLoopback: d.cfg.LimitLoopback,
		})
		if err != nil {
			alloc.Close()
			return err
		}
		d.node.Close()
		d.node, d.onRelay, d.relayTCP = node, alloc, ok.Relay.TCP
		d.log.Warn().Str("relay", ok.Relay.TCP).Str("relayed_addr", alloc.RelayedAddr().String()).
			Msg("no supernode answers over UDP but one does over TCP: UDP looks blocked; living on a relay over TURN/TCP")
		return nil
	}
	if len(errs) == len(sns) && allDialFailures(errs) {
		// Nothing answers at all: the supernodes are down, not UDP.
		return nil
	}
	return fmt.Errorf("UDP looks blocked and no relay could be had: %w", errors.Join(errs...))
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

// ErrRelayLost ends a daemon that lived on a relay allocation and lost it.
var ErrRelayLost = errors.New("the relay this peer lived on is gone")

// watchRelay stops the daemon when its allocation is lost: everything it does
// runs through it, so carrying on would leave a deaf daemon. Started again, it
// gets a new allocation.
func (d *Daemon) watchRelay() {
	defer d.wg.Done()
	select {
	case <-d.onRelay.Lost():
		err := fmt.Errorf("%w (%v); start the daemon again to get another", ErrRelayLost, d.onRelay.Err())
		d.log.Error().Err(err).Msg("stopping")
		d.mu.Lock()
		d.fatal = err
		d.mu.Unlock()
		d.cancel()
	case <-d.ctx.Done():
	}
}
