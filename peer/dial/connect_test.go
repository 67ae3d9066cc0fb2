package dial

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// TestSignalsForNobodyKeepNothing: signals under setup IDs we never used,
// however many, leave the connector's setup table as empty as it was.
func TestSignalsForNobodyKeepNothing(t *testing.T) {
	var wg sync.WaitGroup
	c := New(context.Background(), &wg, Config{})
	for id := range uint64(10000) {
		c.OnSignal(&protocol.Signal{ID: id, Kind: protocol.SignalAnswer})
		c.OnSignal(&protocol.Signal{ID: id, Kind: protocol.SignalRelayed})
	}
	if n := c.setups.Len(); n != 0 {
		t.Fatalf("%d setups kept, want 0", n)
	}
	wg.Wait()
}

// TestDialAnyHappyEyeballs: a first address that swallows every packet does
// not hold up the next one for its handshake timeout: the next is dialled
// beside it after attemptDelay, and its link wins.
func TestDialAnyHappyEyeballs(t *testing.T) {
	node := func(listen bool) *transport.Node {
		id, err := protocol.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		n, err := transport.New(transport.Config{Identity: id, Conn: pc, Listen: listen, Transfers: listen,
			HandshakeTimeout: time.Minute, Log: zerolog.New(zerolog.NewTestWriter(t))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	target, us := node(true), node(false)
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		in, err := target.Accept(ctx)
		if err == nil {
			in.Accept(&protocol.Welcome{Role: protocol.RoleTransfer})
		}
	}()
	var wg sync.WaitGroup
	cctx, stop := context.WithCancel(ctx)
	c := New(cctx, &wg, Config{Node: func() *transport.Node { return us }, Observed: func() string { return "" }})
	defer func() { stop(); wg.Wait() }()
	l, err := c.dialAny(ctx, target.Identity().ID, []string{silent.LocalAddr().String(), target.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(nil)
	if l.RemoteAddr().String() != target.Addr().String() {
		t.Fatalf("link to %s, want %s", l.RemoteAddr(), target.Addr())
	}
	// In turn, the silent address would have held the dial for the
	// minute of its handshake timeout.
	if ctx.Err() != nil {
		t.Fatal("the dial waited for the silent address")
	}
}
