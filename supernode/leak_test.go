package supernode

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/transport"
)

// TestCloseLeavesNoGoroutines: two linked supernodes, one with a relay, that
// routed a search between their leaves and granted relay credentials over
// TCP leave nothing running once closed, though their leaves' links are
// still open.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// Whatever was opened is closed before the check, also when the test
	// fails halfway.
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	secret := []byte("a secret of at least sixteen bytes")
	r, err := relay.New(relay.Config{Secret: secret, ListenUDP: "127.0.0.1:0", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { r.Close() })
	serve := func(cfg Config) (*Server, chan error) {
		cfg.Listen, cfg.DataDir, cfg.NetworkKey, cfg.Log = "127.0.0.1:0", t.TempDir(), testNetKey, log
		cfg.TickInterval, cfg.Neighbours = 20*time.Millisecond, -1
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(context.Background()); close(done) }()
		closers = append(closers, func() { s.Close(); <-done })
		return s, done
	}
	a, aDone := serve(Config{RelaySecret: secret, Relay: r})
	b, bDone := serve(Config{Join: []string{a.ID().String() + "@" + a.Addr().String()}})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leaf := func(sn *Server) (*transport.Node, *transport.Link) {
		id, err := protocol.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		n, err := transport.New(transport.Config{Identity: id, Conn: pc, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, func() { n.Close() })
		l, _, err := n.Dial(ctx, sn.Addr().String(), sn.ID(), &protocol.Hello{Role: protocol.RoleLeaf})
		if err != nil {
			t.Fatal(err)
		}
		return n, l
	}
	srcNode, src := leaf(a)
	askNode, ask := leaf(b)
	var cid protocol.ContentID
	rand.Read(cid[:])
	if err := src.Send(&protocol.Publish{Reset: true, Files: []protocol.FileRecord{{ID: cid, Name: "Leak Check.mp3", Size: 1}}}); err != nil {
		t.Fatal(err)
	}
	// The hit comes once b has a's summary; until then each query ends empty.
	// Every read is bounded by ctx: a query may also end in an error (the
	// leaf's query rate), and then the next try waits a moment.
	msgs, stop := make(chan protocol.Message, 16), make(chan struct{})
	var stopOnce sync.Once
	closers = append(closers, func() { stopOnce.Do(func() { close(stop) }) })
	go func() {
		for {
			m, err := ask.Recv()
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			case <-stop:
				return
			}
		}
	}()
	found := false
	for try := 0; !found; try++ {
		if try > 0 {
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no hit through the other supernode after %d queries", try)
		}
		var q protocol.QueryID
		rand.Read(q[:])
		if err := ask.Send(&protocol.Query{ID: q, Text: "leak check", Hops: 2}); err != nil {
			t.Fatal(err)
		}
		for done := false; !done; {
			select {
			case m := <-msgs:
				switch m := m.(type) {
				case *protocol.Hits:
					found = found || (m.ID == q && len(m.Hits) > 0 && m.Hits[0].ID == cid)
				case *protocol.QueryDone:
					done = m.ID == q
				case *protocol.Error:
					done = true
				}
			case <-ctx.Done():
				t.Fatalf("query %d not answered", try)
			}
		}
	}
	stopOnce.Do(func() { close(stop) })
	peer, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relay.AskTCP(ctx, peer, a.TCPAddr().String(), a.ID()); err != nil {
		t.Fatal(err)
	}

	for _, s := range []*Server{b, a} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, done := range []chan error{aDone, bDone} {
		<-done
	}
	srcNode.Close()
	askNode.Close()
}

// dialLeaf attaches a leaf with a node of its own on 127.0.0.1 to s. The
// node is returned also when the dial fails, for the caller to close.
func dialLeaf(ctx context.Context, s *Server, log zerolog.Logger) (*transport.Node, *transport.Link, error) {
	id, err := protocol.GenerateIdentity()
	if err != nil {
		return nil, nil, err
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, err
	}
	n, err := transport.New(transport.Config{Identity: id, Conn: pc, Log: log})
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	l, _, err := n.Dial(ctx, s.Addr().String(), s.ID(), &protocol.Hello{Role: protocol.RoleLeaf})
	return n, l, err
}

// TestCloseWhileLeavesAttach: leaves whose handshakes are under way as the
// supernode closes start nothing that outlives Close, and the links it took
// are closed.
func TestCloseWhileLeavesAttach(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	const rounds, leaves = 8, 12
	for round := range rounds {
		s, err := New(Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NetworkKey: testNetKey, Log: log,
			Neighbours: -1, AltListen: "-", ListenTCP: "-"})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(context.Background()) }()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var nodes []*transport.Node
		var links []*transport.Link
		attached := make(chan struct{}, leaves)
		for range leaves {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, l, err := dialLeaf(ctx, s, log)
				mu.Lock()
				defer mu.Unlock()
				if n != nil {
					nodes = append(nodes, n)
				}
				if err == nil {
					links = append(links, l)
					attached <- struct{}{}
				}
			}()
		}
		// Close once a leaf is in, while the others are arriving.
		select {
		case <-attached:
		case <-ctx.Done():
		}
		closeErr := s.Close()
		serveErr := <-done
		cancel() // the dials still under way would wait for their timeout
		wg.Wait()
		if closeErr != nil {
			t.Errorf("round %d: Close: %v", round, closeErr)
		}
		if !errors.Is(serveErr, ErrServerClosed) {
			t.Errorf("round %d: Serve: %v", round, serveErr)
		}
		for _, l := range links {
			select {
			case <-l.Done():
			case <-time.After(10 * time.Second):
				t.Errorf("round %d: a leaf's link stayed open after Close", round)
			}
		}
		for _, n := range nodes {
			n.Close()
		}
		if len(links) == 0 {
			t.Fatalf("round %d: no leaf attached", round)
		}
	}
}
