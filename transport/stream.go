package transport

import (
	"context"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/supernet-p2p/supernet/protocol"
)

// LinkStream is a stream of a link's connection, besides the one that carries
// the link's messages: a transfer, a swarm exchange or a delivery. Users of a
// link reach QUIC only through it.
type LinkStream interface {
	io.Reader
	io.Writer
	// Close ends the write side; what was written still arrives.
	Close() error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	// CancelRead and CancelWrite abort one side at once, with an application
	// code the other end sees (0: no error).
	CancelRead(code uint64)
	CancelWrite(code uint64)
}

type quicStream struct{ *quic.Stream }

func (s quicStream) CancelRead(code uint64)  { s.Stream.CancelRead(quic.StreamErrorCode(code)) }
func (s quicStream) CancelWrite(code uint64) { s.Stream.CancelWrite(quic.StreamErrorCode(code)) }

// NewStreamReader reads a stream of the link other than the message stream,
// through a buffer of size bytes, under the node's FrameTimeouts (see
// NewFrameReader). A frame whose type the protocol does not carry on transfer
// streams at the link's version (protocol.CheckTransfer) is refused from its
// header, as the message stream refuses what it does not take: a peer cannot
// reach a decoder with a hello, a supernode's message or a type newer than
// the link.
func (l *Link) NewStreamReader(s Stream, size int) *FrameReader {
	r := NewFrameReader(s, size, l.frames)
	v := l.Version
	r.check = func(t protocol.MsgType) error {
		if err := protocol.CheckTransfer(t, v); err != nil {
			return &refusedType{err}
		}
		return nil
	}
	return r
}

// refusedType is a frame whose type a transfer stream does not take. Whatever
// the protocol's reason, it is a bad request on the stream: the handler
// answers it as it answers any other (StatusBadRequest) and ends the stream.
type refusedType struct{ err error }

func (e *refusedType) Error() string   { return e.err.Error() }
func (e *refusedType) Unwrap() []error { return []error{protocol.ErrBadRequest, e.err} }

// OpenStream opens a new stream to the peer, waiting while the peer's stream
// limit is reached.
func (l *Link) OpenStream(ctx context.Context) (LinkStream, error) {
	s, err := l.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{s}, nil
}

// AcceptStream waits for the peer to open a stream.
func (l *Link) AcceptStream(ctx context.Context) (LinkStream, error) {
	s, err := l.conn.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{s}, nil
}

// PacketsReceived counts the packets that arrived on the link's connection:
// any of them is a sign of life from the peer.
func (l *Link) PacketsReceived() uint64 {
	return l.conn.ConnectionStats().PacketsReceived
}

// RTT is the connection's smoothed round-trip time and its mean deviation.
func (l *Link) RTT() (smoothed, deviation time.Duration) {
	st := l.conn.ConnectionStats()
	return st.SmoothedRTT, st.MeanDeviation
}
