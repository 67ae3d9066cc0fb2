package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// TestStreamReaderRefusesTypes: a link's stream reader refuses, from the
// header alone, a type that does not travel on transfer streams, an unknown
// type and a type newer than the link's version. Each frame claims a body
// that never comes, so a reader that went on to read it would wait for the
// frame's deadline (10 s) instead of answering at once.
func TestStreamReaderRefusesTypes(t *testing.T) {
	l := &Link{Version: protocol.VersionSwarm}
	for _, tt := range []struct {
		name  string
		t     protocol.MsgType
		want  error
		reads string
	}{
		{"message-stream type", protocol.TypePing, protocol.ErrBadRequest, "bad request: ping belongs on the message stream, not a transfer stream"},
		{"handshake type", protocol.TypeHello, protocol.ErrBadRequest, "bad request: hello belongs on the handshake, not a transfer stream"},
		{"supernode's type", protocol.TypeSummary, protocol.ErrBadRequest, ""},
		{"unknown type", 0xee, protocol.ErrUnknownType, "unknown message type: 0xee"},
		{"type newer than the link", protocol.TypeDeliver, protocol.ErrUnsupportedVersion, "no common protocol version: deliver is a v5 message, the connection speaks v3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, w := pipe(t)
			fr := l.NewStreamReader(r, 4096)
			send(w, header(tt.t, 200<<10))
			t0 := time.Now()
			m, err := fr.ReadMessage(nil)
			if m != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want %v", m, err, tt.want)
			}
			// Whatever the reason, it is a bad request on this stream.
			if !errors.Is(err, protocol.ErrBadRequest) || protocol.StatusOf(err) != protocol.StatusBadRequest {
				t.Errorf("%v is not a bad request", err)
			}
			if tt.reads != "" && err.Error() != tt.reads {
				t.Errorf("error reads %q, want %q", err, tt.reads)
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("refused after %v", d)
			}
		})
	}
	// What transfer streams carry at the link's version is read, and the
	// message stream's reader takes its own types as before.
	r, w := pipe(t)
	fr := l.NewStreamReader(r, 4096)
	send(w, frame(t, &protocol.Have{Piece: 3}), frame(t, &protocol.Error{Code: protocol.StatusNotFound}))
	for _, want := range []protocol.MsgType{protocol.TypeHave, protocol.TypeError} {
		if m, err := fr.ReadMessage(nil); err != nil || m.Type() != want {
			t.Fatalf("got %v, %v; want a %s", m, err, want)
		}
	}
	r, w = pipe(t)
	send(w, frame(t, &protocol.Ping{Seq: 1}))
	if m, err := NewFrameReader(r, 4096, testFrames).ReadMessage(nil); err != nil || m.Type() != protocol.TypePing {
		t.Fatalf("message stream reader: %v, %v", m, err)
	}
}

// TestStreamReaderOnLink: on a transfer link that negotiated v3, a stream
// whose peer sends a delivery (v5) or a ping is refused at once, while the
// link's message stream and its other streams go on.
func TestStreamReaderOnLink(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	p := linkPair(t, cli, srv, &protocol.Hello{Role: protocol.RoleTransfer, MinVersion: 1, MaxVersion: protocol.VersionSwarm})
	if p.dialler.Version != protocol.VersionSwarm {
		t.Fatalf("negotiated v%d", p.dialler.Version)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The listener opens the streams: the dialler's side of a transfer
	// connection grants them whatever the listening node is.
	open := func(first []byte) (LinkStream, *FrameReader) {
		t.Helper()
		s, err := p.listener.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(first); err != nil {
			t.Fatal(err)
		}
		in, err := p.dialler.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s, p.dialler.NewStreamReader(in, 4096)
	}
	hs, honest := open(frame(t, &protocol.Join{}))
	if m, err := honest.ReadMessage(nil); err != nil || m.Type() != protocol.TypeJoin {
		t.Fatalf("join: %v, %v", m, err)
	}
	for _, tt := range []struct {
		t    protocol.MsgType
		want error
	}{
		{protocol.TypeDeliver, protocol.ErrUnsupportedVersion},
		{protocol.TypePing, protocol.ErrBadRequest},
	} {
		_, fr := open(header(tt.t, 64<<10))
		t0 := time.Now()
		if m, err := fr.ReadMessage(nil); m != nil || !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, %v; want %v", tt.t, m, err, tt.want)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("%s refused after %v", tt.t, d)
		}
	}
	if err := p.listener.Send(&protocol.Ping{Seq: 9}); err != nil {
		t.Fatal(err)
	}
	if m, err := recvOne(t, p.dialler); err != nil || m.Type() != protocol.TypePing {
		t.Fatalf("message stream after the refusals: %v, %v", m, err)
	}
	if _, err := hs.Write(frame(t, &protocol.Have{Piece: 1})); err != nil {
		t.Fatal(err)
	}
	if m, err := honest.ReadMessage(nil); err != nil || m.Type() != protocol.TypeHave {
		t.Fatalf("the honest stream after the refusals: %v, %v", m, err)
	}
	_, fr := open(frame(t, &protocol.Bitfield{Bits: []byte{0x80}}))
	if m, err := fr.ReadMessage(nil); err != nil || m.Type() != protocol.TypeBitfield {
		t.Fatalf("a new stream after the refusals: %v, %v", m, err)
	}
}
