package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/supernet-p2p/supernet/protocol"
)

// A peer whose network drops UDP cannot ask its supernode for a relay over
// QUIC; it asks over TLS on TCP instead, with the same identity pinning, and
// then allocates over TURN/TCP.

// AskTCP asks the supernode at addr, over TLS on TCP, for relay
// credentials. expect pins the supernode's identity unless zero.
func AskTCP(ctx context.Context, id *protocol.Identity, addr string, expect protocol.PeerID) (*protocol.RelayOK, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp to supernode %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	tc := tls.Client(c, id.ClientTLS(expect))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls to supernode %s: %w", addr, err)
	}
	if err := protocol.WriteMessage(tc, &protocol.RelayAsk{}); err != nil {
		return nil, err
	}
	m, err := protocol.ReadMessage(tc, nil)
	if err != nil {
		return nil, fmt.Errorf("relay ask to %s: %w", addr, err)
	}
	switch m := m.(type) {
	case *protocol.RelayOK:
		return m, nil
	case *protocol.Error:
		return nil, fmt.Errorf("relay ask to %s: %w", addr, m.AsError())
	}
	return nil, fmt.Errorf("%w: %s in answer to relay_ask", protocol.ErrBadRequest, m.Type())
}
