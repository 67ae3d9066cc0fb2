package peer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/supernet-p2p/supernet/internal/defaults"
	"github.com/supernet-p2p/supernet/peer/dial"
)

// ErrRelayLost ends a daemon that lived on a relay allocation and lost it.
var ErrRelayLost = errors.New("the relay this peer lived on is gone")

// watchRelay keeps a peer whose network drops UDP on a relay: before its
// credentials run out (the relay refreshes an allocation no longer after
// that) it gets new ones over TCP and moves to a new allocation, with a
// third of the old one's lifetime to spare for retries. The links on the old
// one end with it; the supernodes and the other peers are dialled again on
// the new one. An allocation lost otherwise (the relay stopped) stops the
// daemon, saying so.
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
	oldNode, oldAlloc := d.node, d.onRelay
	d.node, d.onRelay, d.relayTCP, d.relayUntil = r.Node, r.Alloc, r.TCP, r.Expires
	d.renewals++
	n := d.renewals
	d.netMu.Unlock()
	// What ran on the old allocation ends here and is dialled again on the
	// new one: the supernodes by the attachment, the peers as they are needed.
	oldNode.Close()
	oldAlloc.Close()
	d.log.Info().Int("renewals", n).Str("relay", r.TCP).Str("relayed_addr", r.Alloc.RelayedAddr().String()).
		Time("expires", r.Expires).Msg("relay credentials renewed: living on a new allocation")
	return nil
}
