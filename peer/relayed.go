package peer

import (
	"errors"
	"fmt"
)

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
