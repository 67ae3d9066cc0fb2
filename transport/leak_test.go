package transport

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/supernet-p2p/supernet/protocol"
)

// TestCloseLeavesNoGoroutines: nodes that linked up, exchanged messages, asked
// STUN and accepted on a second socket leave nothing running once closed.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	start := func(listen bool) *Node {
		id, err := protocol.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(Config{Identity: id, Conn: pc, Listen: listen, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	srv, cli := start(true), start(false)
	extra, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := srv.ListenOn(extra)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	accepted := make(chan *Link, 2)
	go func() {
		for range 2 {
			in, err := srv.Accept(ctx)
			if err != nil {
				accepted <- nil
				return
			}
			l, err := in.Accept(&protocol.Welcome{Role: in.Hello.Role.Listener()})
			if err != nil {
				l = nil
			}
			accepted <- l
		}
	}()
	direct, _, err := cli.Dial(ctx, srv.Addr().String(), srv.Identity().ID, &protocol.Hello{Role: protocol.RoleLeaf})
	if err != nil {
		t.Fatal(err)
	}
	sl := <-accepted
	if sl == nil {
		t.Fatal("the direct link was not accepted")
	}
	_, _, err = cli.DialAddr(ctx, extra.LocalAddr().(*net.UDPAddr), srv.Identity().ID, &protocol.Hello{Role: protocol.RoleTransfer})
	if err != nil {
		t.Fatal(err)
	}
	if rl := <-accepted; rl == nil || !rl.Relayed {
		t.Fatal("the link on the second socket was not accepted as relayed")
	}
	for i := range 10 {
		if err := direct.Send(&protocol.Ping{Seq: uint64(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := sl.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Reflexive(ctx, srv.Addr()); err != nil {
		t.Fatal(err)
	}
	// The other links stay open: Close must end them itself.
	direct.Close(nil)
	stop()
	srv.Close()
	cli.Close()
	extra.Close()
}
