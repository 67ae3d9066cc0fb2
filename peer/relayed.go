package peer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/supernet-p2p/supernet/internal/defaults"
	"github.com/supernet-p2p/supernet/peer/attach"
	"github.com/supernet-p2p/supernet/peer/dial"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/transport"
)

// retireLinger is how long a retired allocation stays open after its links
// are closed, for their closes to reach the other sides.
const retireLinger = 500 * time.Millisecond

// errMoved closes the links to peers on an allocation being retired.
var errMoved = errors.New("moved to a new relay allocation")

// retire keeps an old allocation for the links to peers still on it, and
// closes it when the last ends, when its credentials run out, or when the
// daemon stops.
func (d *Daemon) retire(node *transport.Node, alloc *relay.Allocation, until time.Time) {
	defer d.wg.Done()
	// A second early, so that the links' close reaches the other sides
	// while the relay still carries it.
	t := time.NewTimer(time.Until(until) - time.Second)
	defer t.Stop()
	select {
	case <-node.Idle():
	case <-alloc.Lost():
	case <-t.C:
	case <-d.ctx.Done():
	}
	node.Retire(errMoved, retireLinger)
	alloc.Close()
	d.log.Debug().Str("relayed_addr", alloc.RelayedAddr().String()).Msg("old relay allocation closed")
}

// ErrRelayLost ends a daemon that lived on a relay allocation and lost it.
var ErrRelayLost = errors.New("the relay this peer lived on is gone")

// watchRelay keeps a peer whose network drops UDP on a relay: before its
// credentials run out (the relay refreshes an allocation no longer after
// that) it gets new ones over TCP and moves to a new allocation, with a
// third of the old one's lifetime to spare for retries. The supernodes are
// dialled again on the new one at once; links to peers stay on the old one
// until they end or its credentials do. An allocation lost otherwise (the
// relay stopped) stops the daemon, saying so.
func (d *Daemon) watchRelay() {
	defer d.wg.Done()
	retry := defaults.Backoff(time.Second, 30*time.Second)
	for {
		d.netMu.RLock()
		a, until := d.onRelay, d.relayUntil
		d.netMu.RUnlock()
		wait := time.Duration(1<<63 - 1)
		if !until.IsZero() {
			wait = max(time.Until(until)*2/3, time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-a.Lost():
			t.Stop()
			err := fmt.Errorf("%w (%v); start the daemon again to get another", ErrRelayLost, a.Err())
			d.log.Error().Err(err).Msg("stopping")
			d.mu.Lock()
			d.fatal = err
			d.mu.Unlock()
			d.cancel()
			return
		case <-t.C:
			if err := d.renewRelay(); err != nil {
				wait := retry.NextBackOff()
				d.log.Warn().Err(err).Time("expires", until).Dur("retry_in", wait).Msg("cannot renew the relay allocation")
				select {
				case <-time.After(wait):
				case <-d.ctx.Done():
					return
				}
				continue
			}
			retry.Reset()
		case <-d.ctx.Done():
			t.Stop()
			return
		}
	}
}

// renewRelay moves the daemon to a new allocation with new credentials.
func (d *Daemon) renewRelay() error {
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	r, err := dial.RelayOverTCP(ctx, dial.UDPCheck{Identity: d.id, Supernodes: d.cfg.Supernodes, Log: d.log,
		IdleTimeout: d.cfg.IdleTimeout, LimitLoopback: d.cfg.LimitLoopback})
	if err != nil {
		return err
	}
	d.netMu.Lock()
	oldNode, oldAlloc, oldUntil := d.node, d.onRelay, d.relayUntil
	d.node, d.onRelay, d.relayTCP, d.relayUntil = r.Node, r.Alloc, r.TCP, r.Expires
	d.renewals++
	n := d.renewals
	d.netMu.Unlock()
	d.wg.Add(2)
	go d.acceptLoop(r.Node)
	go d.retire(oldNode, oldAlloc, oldUntil)
	// The supernodes must list us at the new relayed address: attach there.
	for _, l := range d.attach.Links() {
		if l.Err() == nil {
			l.Close(attach.ErrMoving)
		}
	}
	d.log.Info().Int("renewals", n).Str("relay", r.TCP).Str("relayed_addr", r.Alloc.RelayedAddr().String()).
		Time("expires", r.Expires).Msg("relay credentials renewed: living on a new allocation")
	return nil
}
