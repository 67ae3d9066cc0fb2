package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/turn/v4"
	"github.com/rs/zerolog"
)

// ClientConfig says which relay to allocate on and how.
type ClientConfig struct {
	// Server is the relay's TURN address, host:port.
	Server string
	// TCP reaches the relay over TCP, for networks that drop UDP.
	TCP   bool
	Creds Credentials
	// Realm defaults to "supernet".
	Realm string
	Log   zerolog.Logger
}

// Allocation is a relayed socket: packets written to it leave the relay from
// RelayedAddr, and packets sent there by permitted peers arrive on it.
type Allocation struct {
	net.PacketConn
	client *turn.Client
	conn   net.PacketConn // to the relay
	once   sync.Once
}

// Allocate gets an allocation on the relay.
func Allocate(ctx context.Context, cfg ClientConfig) (*Allocation, error) {
	if cfg.Realm == "" {
		cfg.Realm = "supernet"
	}
	var conn net.PacketConn
	if cfg.TCP {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", cfg.Server)
		if err != nil {
			return nil, fmt.Errorf("relay %s over tcp: %w", cfg.Server, err)
		}
		conn = turn.NewSTUNConn(c)
	} else {
		c, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return nil, fmt.Errorf("relay socket: %w", err)
		}
		conn = c
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: cfg.Server, TURNServerAddr: cfg.Server, Conn: conn,
		Username: cfg.Creds.Username, Password: cfg.Creds.Password, Realm: cfg.Realm,
		LoggerFactory: quietLogs, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("relay client: %w", err)
	}
	if err := client.Listen(); err != nil {
		client.Close()
		conn.Close()
		return nil, fmt.Errorf("relay client: %w", err)
	}
	// pion's Allocate takes no context: closing the socket ends it early.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	rc, err := client.Allocate()
	stopped := !stop()
	if err != nil || stopped {
		client.Close()
		conn.Close()
		if stopped && ctx.Err() != nil {
			return nil, fmt.Errorf("relay %s: %w", cfg.Server, ctx.Err())
		}
		return nil, fmt.Errorf("relay %s: %w", cfg.Server, classify(err))
	}
	return &Allocation{PacketConn: rc, client: client, conn: conn}, nil
}

// classify maps pion's error texts (it has no typed errors for these) to ours.
func classify(err error) error {
	if err == nil {
		return nil
	}
	s := err.Error()
	switch {
	// pion answers 400 when the message integrity does not match the key.
	case strings.Contains(s, "error 401") || strings.Contains(s, "error 400") || strings.Contains(s, "Unauthorized"):
		return fmt.Errorf("%w: %v", ErrUnauthorized, err)
	case strings.Contains(s, "486") || strings.Contains(s, "Quota"):
		return fmt.Errorf("%w: %v", ErrQuota, err)
	}
	return err
}

// RelayedAddr is the address peers send to.
func (a *Allocation) RelayedAddr() *net.UDPAddr {
	ua, _ := a.LocalAddr().(*net.UDPAddr)
	return ua
}

// Permit lets packets from the addresses' IPs in (TURN permissions are per IP).
func (a *Allocation) Permit(addrs ...net.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	if err := a.client.CreatePermission(addrs...); err != nil {
		return fmt.Errorf("relay permission: %w", err)
	}
	return nil
}

// Close releases the allocation and the connection to the relay. Safe twice.
func (a *Allocation) Close() error {
	var err error
	a.once.Do(func() {
		err = a.PacketConn.Close()
		a.client.Close()
		if cerr := a.conn.Close(); err == nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	})
	return err
}
