package peer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// These tests attack a peer daemon's transfer connections the way a hostile
// peer with fresh keys would, on loopback, while an honest download from the
// same daemon must keep working.

// sharingDaemon runs a daemon with no supernode that shares one file of size
// bytes, and returns it with the file's content ID.
func sharingDaemon(t *testing.T, size int) (*Daemon, protocol.ContentID) {
	t.Helper()
	share := t.TempDir()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 31)
	}
	if err := os.WriteFile(filepath.Join(share, "song.mp3"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{DataDir: t.TempDir(), ShareDir: share, Listen: "127.0.0.1:0", ControlSocket: "-",
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		d.Close()
		<-done
	})
	waitFor(t, 10*time.Second, "the share was not scanned", func() bool { return len(d.Share().Files()) == 1 })
	return d, d.Share().Files()[0].ID
}

// transferConn is a raw transfer connection to d from a fresh identity on a
// socket of its own, with the hello exchanged.
func transferConn(t *testing.T, d *Daemon, ip string) *quic.Conn {
	t.Helper()
	return transferConnV(t, d, ip, protocol.MaxVersion)
}

// transferConnV is transferConn from a peer that speaks at most version max.
func transferConnV(t *testing.T, d *Daemon, ip string, max uint16) *quic.Conn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close(); pc.Close() })
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, d.Addr(), id.ClientTLS(d.ID()), transport.QUICConfig(time.Minute, 10*time.Second, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseWithError(0, "") })
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteMessage(s, &protocol.Hello{Role: protocol.RoleTransfer, MinVersion: protocol.MinVersion, MaxVersion: max}); err != nil {
		t.Fatal(err)
	}
	if m, err := protocol.ReadMessage(s, nil); err != nil || m.Type() != protocol.TypeWelcome || m.(*protocol.Welcome).Version != max {
		t.Fatalf("hello: %#v, %v", m, err)
	}
	return c
}

// honestFetch downloads the first block of id from d over a connection of its
// own: get_meta, then one request.
func honestFetch(t *testing.T, d *Daemon, id protocol.ContentID) time.Duration {
	t.Helper()
	t0 := time.Now()
	c := transferConn(t, d, "127.0.0.2")
	defer c.CloseWithError(0, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.CancelRead(0)
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if err := protocol.WriteMessage(s, &protocol.GetMeta{ID: id}); err != nil {
		t.Fatal(err)
	}
	m, err := protocol.ReadMessage(s, nil)
	meta, ok := m.(*protocol.Meta)
	if err != nil || !ok {
		t.Fatalf("honest get_meta: %#v, %v", m, err)
	}
	n := uint32(min(16<<10, meta.Size))
	if err := protocol.WriteMessage(s, &protocol.Request{Piece: 0, Length: n}); err != nil {
		t.Fatal(err)
	}
	m, err = protocol.ReadMessage(s, nil)
	if b, ok := m.(*protocol.Block); err != nil || !ok || len(b.Data) != int(n) {
		t.Fatalf("honest request: %#v, %v", m, err)
	}
	s.Close()
	return time.Since(t0)
}

func frameHeader(t protocol.MsgType, n int) []byte { return protocol.AppendHeader(nil, t, uint32(n)) }

func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// 255 streams opened at once on one transfer connection, each with a first
// frame that begins and stalls: QUIC grants at most TransferStreams, the
// daemon serves maxServedStreams of them and refuses the rest as overloaded,
// the served ones are cut when their first frame's deadline passes (the
// default, about 11 s here), and an honest download is served throughout.
func TestTransferStreamFlood(t *testing.T) {
	d, id := sharingDaemon(t, 64<<10)
	honestFetch(t, d, id) // warm: the swarm and the share are loaded
	h0 := heapNow()
	c := transferConn(t, d, "127.0.0.1")
	var streams []*quic.Stream
	for range 255 {
		s, err := c.OpenStream()
		if err != nil {
			var le *quic.StreamLimitReachedError
			if !errors.As(err, &le) {
				t.Fatalf("open stream: %v", err)
			}
			continue
		}
		streams = append(streams, s)
	}
	// Nothing is written while opening, so the daemon has seen no stream and
	// returned no credit: the count is the grant alone.
	if len(streams) > transport.TransferStreams-1 {
		t.Fatalf("%d streams opened besides the message stream, cap %d", len(streams), transport.TransferStreams-1)
	}
	for _, s := range streams {
		// A get_meta that claims 8 KiB and sends 10 bytes of it.
		s.Write(append(frameHeader(protocol.TypeGetMeta, 8<<10), make([]byte, 10)...))
	}
	// Each stream ends: refused at once when the daemon serves its cap already,
	// or cut when its frame's deadline passes.
	type end struct {
		refused, timedOut bool
		at                time.Duration
	}
	ends := make([]end, len(streams))
	var refusals atomic.Int32
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Go(func() {
			s.SetReadDeadline(time.Now().Add(30 * time.Second))
			b, err := io.ReadAll(s)
			var ne net.Error
			ends[i] = end{at: time.Since(t0), timedOut: errors.As(err, &ne) && ne.Timeout()}
			if m, _ := protocol.ReadMessage(bytes.NewReader(b), nil); m != nil {
				e, ok := m.(*protocol.Error)
				ends[i].refused = ok && e.Code == protocol.StatusOverloaded
			}
			if ends[i].refused {
				refusals.Add(1)
			}
		})
	}
	// During the attack: memory, and an honest download.
	waitFor(t, 5*time.Second, "refusals", func() bool { return int(refusals.Load()) >= len(streams)-maxServedStreams })
	grown := int64(heapNow()) - int64(h0)
	took := honestFetch(t, d, id)
	wg.Wait()
	refused, cut := 0, 0
	var last time.Duration
	for _, e := range ends {
		switch {
		case e.timedOut:
			t.Error("a stream was not ended by the daemon")
		case e.refused:
			refused++
		default:
			cut++
			last = max(last, e.at)
		}
	}
	t.Logf("255 streams asked: %d opened, %d served then cut (the last after %v), %d refused as overloaded; heap grew %.2f MiB (both ends); honest download took %v",
		len(streams), cut, last.Round(time.Millisecond), refused, float64(grown)/(1<<20), took.Round(time.Millisecond))
	if cut > maxServedStreams {
		t.Errorf("%d streams served at once on one connection, cap %d", cut, maxServedStreams)
	}
	if refused != len(streams)-maxServedStreams {
		t.Errorf("%d streams refused, want %d", refused, len(streams)-maxServedStreams)
	}
	ft := d.node.FrameTimeouts()
	if last > ft.First+ft.For(8<<10)+5*time.Second {
		t.Errorf("stalled streams held for %v", last)
	}
	if grown > 8<<20 {
		t.Errorf("heap grew %.2f MiB", float64(grown)/(1<<20))
	}
}

// First frames over their cap, and swarm frames over theirs, are refused from
// the header: a stream that claims 1 MiB costs nothing.
func TestTransferFrameCaps(t *testing.T) {
	d, id := sharingDaemon(t, 64<<10)
	c := transferConn(t, d, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func() *quic.Stream {
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		return s
	}
	// ended reads s to its end, which must come from the daemon well before
	// the read deadline.
	ended := func(what string, s *quic.Stream) {
		t.Helper()
		t0 := time.Now()
		_, err := io.ReadAll(s)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the stream was not ended", what)
		}
		t.Logf("%s: ended after %v (%v)", what, time.Since(t0).Round(time.Millisecond), err)
	}
	// A first frame claiming 1 MiB: the stream ends without an answer.
	s := open()
	s.Write(frameHeader(protocol.TypeJoin, protocol.MaxFrameSize))
	ended("1 MiB join header", s)
	// A swarm stream whose peer then claims 1 MiB: the session ends.
	s = open()
	protocol.WriteMessage(s, &protocol.Join{ID: id})
	if m, err := protocol.ReadMessage(s, nil); err != nil || m.Type() != protocol.TypeMeta {
		t.Fatalf("join: %#v, %v", m, err)
	}
	s.Write(frameHeader(protocol.TypeBitfield, protocol.MaxFrameSize))
	ended("1 MiB have-map header on a swarm stream", s)
	honestFetch(t, d, id)
}

// A frame whose type no transfer stream takes (a message-stream or handshake
// type, or one newer than the connection's version) is refused from its
// header wherever it comes on a transfer stream: the daemon answers a bad
// request and ends that stream at once, without waiting for the body it
// claims, while another stream of the same connection and an honest download
// go on.
func TestTransferStreamWrongType(t *testing.T) {
	d, id := sharingDaemon(t, 64<<10)
	c := transferConn(t, d, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func(c *quic.Conn) *quic.Stream {
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		return s
	}
	// expect reads m's answer on s: a frame of type want.
	expect := func(s *quic.Stream, m protocol.Message, want protocol.MsgType) {
		t.Helper()
		if err := protocol.WriteMessage(s, m); err != nil {
			t.Fatal(err)
		}
		if got, err := protocol.ReadMessage(s, nil); err != nil || got.Type() != want {
			t.Fatalf("%s: %#v, %v; want a %s", m.Type(), got, err, want)
		}
	}
	// refused sends a header of type ty claiming 32 KiB, and no body: the
	// stream must end at once with a bad request that says why.
	refused := func(what string, s *quic.Stream, ty protocol.MsgType, why string) {
		t.Helper()
		t0 := time.Now()
		if _, err := s.Write(frameHeader(ty, 32<<10)); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(s)
		took := time.Since(t0)
		if err != nil {
			t.Errorf("%s: the stream was not ended: %v", what, err)
			return
		}
		var last protocol.Message
		for r := bytes.NewReader(b); r.Len() > 0; {
			if last, err = protocol.ReadMessage(r, nil); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		e, ok := last.(*protocol.Error)
		if !ok || e.Code != protocol.StatusBadRequest || !strings.Contains(e.Message, why) {
			t.Errorf("%s: ended with %#v, want a bad request saying %q", what, last, why)
		}
		if took > 3*time.Second {
			t.Errorf("%s: ended after %v", what, took)
		}
		t.Logf("%s: ended after %v with %q", what, took.Round(time.Millisecond), e.Message)
	}
	// An honest download on the same connection, under way throughout.
	hs := open(c)
	expect(hs, &protocol.GetMeta{ID: id}, protocol.TypeMeta)

	refused("ping opening a stream", open(c), protocol.TypePing, "ping belongs on the message stream, not a transfer stream")
	s := open(c)
	expect(s, &protocol.GetMeta{ID: id}, protocol.TypeMeta)
	refused("hello in a download", s, protocol.TypeHello, "hello belongs on the handshake, not a transfer stream")
	s = open(c)
	expect(s, &protocol.Join{ID: id}, protocol.TypeMeta)
	refused("summary in a swarm", s, protocol.TypeSummary, "summary belongs on the message stream, not a transfer stream")
	// A v3 peer's connection: a delivery (v5) is not on it.
	v3 := transferConnV(t, d, "127.0.0.1", protocol.VersionSwarm)
	refused("deliver on a v3 connection", open(v3), protocol.TypeDeliver, "deliver is a v5 message, the connection speaks v3")

	expect(hs, &protocol.Request{Piece: 0, Length: 16 << 10}, protocol.TypeBlock)
	s = open(v3)
	expect(s, &protocol.GetMeta{ID: id}, protocol.TypeMeta)
	honestFetch(t, d, id)
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A downloader that asks for blocks and never reads them is cut off once a
// block's write deadline passes (the default, about 12 s for a 16 KiB block),
// rather than holding the upload's stream and buffers for ever.
func TestDownloaderThatStopsReading(t *testing.T) {
	d, id := sharingDaemon(t, 4<<20)
	c := transferConn(t, d, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	protocol.WriteMessage(s, &protocol.GetMeta{ID: id})
	if m, err := protocol.ReadMessage(s, nil); err != nil || m.Type() != protocol.TypeMeta {
		t.Fatalf("get_meta: %#v, %v", m, err)
	}
	// Ask for the whole file, far past the stream's receive window, and read nothing.
	var reqs []byte
	for off := 0; off < 4<<20; off += 16 << 10 {
		piece, in := off/(256<<10), off%(256<<10)
		reqs, _ = protocol.AppendFrame(reqs, &protocol.Request{Piece: uint32(piece), Offset: uint32(in), Length: 16 << 10})
	}
	s.Write(reqs)
	t0 := time.Now()
	ft := d.node.FrameTimeouts()
	var se *quic.StreamError
	waitFor(t, ft.For(16<<10)+10*time.Second, "the upload to a downloader that does not read was not cut off", func() bool {
		_, err := s.Write([]byte{})
		if errors.As(err, &se) {
			return true
		}
		select {
		case <-s.Context().Done():
			return true
		default:
			return false
		}
	})
	t.Logf("upload cut off after %v", time.Since(t0).Round(time.Millisecond))
	honestFetch(t, d, id)
}
