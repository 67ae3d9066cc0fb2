package peer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// networkFile keeps, in the data directory, the overlay's network ID: the one
// configured, or the one the first supernode showed (trust on first use).
const networkFile = "network"

// trust is the network whose admitted supernodes this peer attaches to and
// takes from member lists.
type trust struct {
	mu         sync.Mutex
	id         protocol.NetworkID
	configured bool
	path       string
}

// loadTrust takes the configured network, or the one kept from an earlier run.
func loadTrust(dataDir string, configured protocol.NetworkID) (*trust, error) {
	t := &trust{id: configured, configured: !configured.IsZero(), path: filepath.Join(dataDir, networkFile)}
	b, err := os.ReadFile(t.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("network file: %w", err)
	case !t.configured:
		n, err := protocol.ParseNetworkID(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("network file %s: %w (delete it to trust the next supernode's network)", t.path, err)
		}
		t.id = n
	}
	if t.configured {
		if err := t.save(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *trust) save() error {
	return content.WriteFileAtomic(t.path, []byte(t.id.String()+"\n"), 0o600, true)
}

// network is the trusted network ID, zero until one is known.
func (t *trust) network() protocol.NetworkID {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id
}

// Network is the overlay this peer trusts: configured, or learnt from the
// first supernode it attached to.
func (d *Daemon) Network() protocol.NetworkID { return d.trust.network() }

// checkSupernode checks that a supernode we attached to is admitted to our
// network. With none known yet, the first admitted supernode's network
// becomes ours, and is kept for later runs.
func (d *Daemon) checkSupernode(l *transport.Link, w *protocol.Welcome) error {
	t := d.trust
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.id.IsZero() {
		return w.CheckAdmitted(t.id, l.Peer, time.Now())
	}
	if w.Network.IsZero() {
		return fmt.Errorf("%w: %s shows no network", protocol.ErrNotAdmitted, l.Peer.Short())
	}
	if err := w.CheckAdmitted(w.Network, l.Peer, time.Now()); err != nil {
		return err
	}
	t.id = w.Network
	if err := t.save(); err != nil {
		d.log.Warn().Err(err).Msg("cannot keep the network ID")
	}
	d.log.Info().Str("network", t.id.String()).Str("peer_id", l.Peer.Short()).
		Msg("trusting the overlay of the first supernode on first use")
	return nil
}
