package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
	"github.com/supernet-p2p/supernet/transport"
)

// A leaf whose process dies without a goodbye (its socket just stops) is dropped
// when the idle timeout passes, and its files leave the index.
func TestSilentLeafIsDropped(t *testing.T) {
	id, _ := protocol.GenerateIdentity()
	sn, err := supernode.New(supernode.Config{
		Conn: loopbackConn(t), Identity: id, IdleTimeout: 600 * time.Millisecond, Network: testNetwork, Chain: testAdmit(id),
		TickInterval: 50 * time.Millisecond, Log: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	go sn.Serve(context.Background())
	t.Cleanup(func() { sn.Close() })

	leafID, _ := protocol.GenerateIdentity()
	pc := loopbackConn(t)
	n, err := transport.New(transport.Config{Identity: leafID, Conn: pc, Log: testLog(t), IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := n.Dial(context.Background(), sn.Addr().String(), sn.ID(), &protocol.Hello{Role: protocol.RoleLeaf, Name: "ghost"})
	if err != nil {
		t.Fatal(err)
	}
	l.Send(&protocol.Publish{Files: []protocol.FileRecord{{ID: protocol.ContentID{1}, Name: "ghost song.mp3", Size: 10}}})
	eventually(t, 5*time.Second, "the leaf's file indexed", func() bool { return sn.Router().IndexedFiles() == 1 })
	// Kill the socket under the QUIC connection: no CONNECTION_CLOSE goes out.
	pc.Close()
	start := time.Now()
	eventually(t, 5*time.Second, "the silent leaf dropped", func() bool {
		return sn.Router().Leaves() == 0 && sn.Router().IndexedFiles() == 0
	})
	t.Logf("silent leaf dropped after %v (idle timeout 600ms)", time.Since(start).Round(10*time.Millisecond))
	n.Close()
}

// A peer whose supernode dies attaches to the next one on its list, publishes
// again, and its files are found through the new supernode.
func TestPeerFailsOverToNextSupernode(t *testing.T) {
	a := startSupernode(t)
	b := startSupernode(t, a)
	searcher := startPeer(t, b, "searcher", nil)
	p := startPeer(t, a, "mover", map[string][]byte{"Wandering Song.mp3": randomBytes(5, 3000)},
		func(c *peer.Config) {
			c.Supernodes = append(c.Supernodes, b.ID().String()+"@"+b.Addr().String())
		})
	// Searches paced within a leaf's query rate (20 a second).
	eventually(t, 10*time.Second, "the song findable from b", func() bool {
		h, _ := search(t, searcher, "wandering")
		if len(h) != 1 {
			time.Sleep(60 * time.Millisecond)
		}
		return len(h) == 1
	})
	a.Close()
	start := time.Now()
	eventually(t, 15*time.Second, "the peer attached to b", func() bool {
		st := p.Status()
		return st.Supernode.Connected && st.Supernode.PeerID == b.ID().String()
	})
	eventually(t, 5*time.Second, "the song findable again", func() bool {
		h, _ := search(t, searcher, "wandering")
		if len(h) == 1 && h[0].Sources[0].Peer == p.ID() {
			return true
		}
		time.Sleep(60 * time.Millisecond)
		return false
	})
	t.Logf("failover and republish took %v", time.Since(start).Round(10*time.Millisecond))
}

// A download stopped half way resumes from its verified pieces: they are not
// fetched again, and the result is byte-identical.
func TestDownloadResumes(t *testing.T) {
	sn := startSupernode(t)
	data := randomBytes(11, 64<<20) // 256 pieces
	startPeer(t, sn, "src", map[string][]byte{"Long Mix.flac": data})
	getter := startPeer(t, sn, "getter", nil, func(c *peer.Config) {
		c.Pipeline = 2
		c.ProgressInterval = time.Millisecond
	})
	id := findOne(t, getter, "long mix", 10*time.Second).ID
	out := filepath.Join(t.TempDir(), "mix.flac")
	ctx, cancel := context.WithCancel(context.Background())
	var stoppedAt int
	_, err := getter.Get(ctx, id, out, func(p apitype.Progress) {
		if p.Pieces > 0 && p.Have >= p.Pieces/4 && stoppedAt == 0 {
			stoppedAt = p.Have
			cancel()
		}
	})
	cancel()
	if err == nil {
		t.Fatal("the download finished before it could be stopped")
	}
	if _, err := os.Stat(out + ".part"); err != nil {
		t.Fatalf("no partial file after the stop: %v", err)
	}
	var last apitype.Progress
	if _, err := getter.Get(context.Background(), id, out, func(p apitype.Progress) { last = p }); err != nil {
		t.Fatalf("resume: %v", err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("resumed file differs (%v)", err)
	}
	if last.Resumed < stoppedAt {
		t.Fatalf("resumed with %d pieces, but %d were verified at the stop", last.Resumed, stoppedAt)
	}
	t.Logf("stopped at %d of %d pieces; resumed with %d already verified", stoppedAt, last.Pieces, last.Resumed)
}

// A leaf that sends garbage loses its link; the supernode keeps serving others.
func TestMalformedFrameClosesOnlyThatLink(t *testing.T) {
	sn := startSupernode(t)
	good := startPeer(t, sn, "good", map[string][]byte{"Steady Song.mp3": randomBytes(1, 2000)})
	eventually(t, 10*time.Second, "good peer's file indexed", func() bool { return sn.Router().IndexedFiles() == 1 })

	// Speak QUIC directly: the transport package never sends a malformed frame.
	id, _ := protocol.GenerateIdentity()
	tr := &quic.Transport{Conn: loopbackConn(t)}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, sn.Addr(), id.ClientTLS(sn.ID()), transport.QUICConfig(10*time.Second, 3*time.Second, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteMessage(s, &protocol.Hello{MinVersion: 1, MaxVersion: 1, Role: protocol.RoleLeaf, Name: "vandal"}); err != nil {
		t.Fatal(err)
	}
	if m, err := protocol.ReadMessage(s, nil); err != nil || m.Type() != protocol.TypeWelcome {
		t.Fatalf("welcome: %v %v", m, err)
	}
	eventually(t, 5*time.Second, "the vandal attached", func() bool { return sn.Router().Leaves() == 2 })
	// A publish whose body claims 2^32 files: refused before anything is allocated.
	if _, err := s.Write([]byte{byte(protocol.TypePublish), 0, 0, 0, 7, 0x81, 0xa1, 'f', 0xdd, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the supernode kept a connection that sent a malformed frame")
	}
	var appErr *quic.ApplicationError
	if err := context.Cause(c.Context()); !errors.As(err, &appErr) || !strings.Contains(appErr.ErrorMessage, "malformed") {
		t.Fatalf("closed with %v; want a reason naming the malformed message", err)
	}
	eventually(t, 5*time.Second, "the vandal dropped", func() bool { return sn.Router().Leaves() == 1 })
	if h, _ := search(t, good, "steady song"); len(h) != 1 {
		t.Fatalf("the supernode stopped answering: %d hits", len(h))
	}
}

// A peer asked for content it does not share says so, also when it shares nothing.
func TestTransferUnknownContent(t *testing.T) {
	sn := startSupernode(t)
	t.Run("sharing", func(t *testing.T) {
		askForUnknown(t, startPeer(t, sn, "src", map[string][]byte{"Known.mp3": randomBytes(1, 2000)}))
	})
	t.Run("no share folder", func(t *testing.T) {
		askForUnknown(t, startPeer(t, sn, "empty", nil, func(c *peer.Config) { c.ShareDir = "" }))
	})
}

func askForUnknown(t *testing.T, src *peer.Daemon) {
	id, _ := protocol.GenerateIdentity()
	n, err := transport.New(transport.Config{Identity: id, Conn: loopbackConn(t), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	l, _, err := n.Dial(context.Background(), src.Addr().String(), src.ID(), &protocol.Hello{Role: protocol.RoleTransfer})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(nil)
	s, err := l.Conn().OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteMessage(s, &protocol.GetMeta{ID: protocol.ContentID{9, 9}}); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := protocol.ReadMessage(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.(*protocol.Error)
	if !ok || !errors.Is(e.AsError(), protocol.ErrNotFound) {
		t.Fatalf("answer %#v, want a not-found error", m)
	}
}

// A leaf that pings its supernode and then falls silent, its connection
// still up at the QUIC level (a hung process, a host that lost power behind
// a NAT that keeps the mapping), is dropped within seconds, not at the idle
// timeout, and its files leave the index.
func TestSilentPingingLeafDropped(t *testing.T) {
	sn := startSupernode(t)
	id, _ := protocol.GenerateIdentity()
	n, err := transport.New(transport.Config{Identity: id, Conn: peerConn(t), Log: testLog(t), IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	l, _, err := n.Dial(context.Background(), sn.Addr().String(), sn.ID(), &protocol.Hello{Role: protocol.RoleLeaf})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := l.Recv(); err != nil {
				return
			}
		}
	}()
	l.Send(&protocol.Publish{Files: []protocol.FileRecord{{ID: protocol.ContentID{7}, Name: "hung.mp3", Size: 1}}})
	for i := range 3 {
		l.Send(&protocol.Ping{Seq: uint64(i)})
	}
	eventually(t, 5*time.Second, "the file indexed", func() bool { return sn.Router().IndexedFiles() == 1 })
	stopped := time.Now()
	select {
	case <-l.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the silent leaf was not dropped")
	}
	t.Logf("dropped %v after its last frame", time.Since(stopped).Round(100*time.Millisecond))
	eventually(t, 5*time.Second, "its file gone from the index", func() bool { return sn.Router().IndexedFiles() == 0 })
}
