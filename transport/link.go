package transport

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

// maxQueued caps the bytes waiting to be written on a link. A peer that stops
// reading fills it and Send fails rather than growing memory without bound.
const maxQueued = 8 << 20

// Application error codes for closing QUIC connections.
const (
	CodeNormal   quic.ApplicationErrorCode = 0
	CodeProtocol quic.ApplicationErrorCode = 1
)

// Link is an accepted or dialled connection with a message stream.
type Link struct {
	Peer    protocol.PeerID
	Role    protocol.Role
	Version uint16
	// Relayed is set on links accepted on a relay allocation (see ListenOn).
	Relayed bool

	conn   *quic.Conn
	stream *quic.Stream
	br     *bufio.Reader
	rbuf   []byte
	log    zerolog.Logger

	mu      sync.Mutex
	pending []byte
	spare   []byte
	closed  bool
	err     error
	wake    chan struct{}
	done    chan struct{}
	wdone   chan struct{}
}

func newLink(c *quic.Conn, s *quic.Stream, peer protocol.PeerID, log zerolog.Logger) *Link {
	l := &Link{
		Peer:   peer,
		conn:   c,
		stream: s,
		br:     bufio.NewReaderSize(s, 64<<10),
		log:    log,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		wdone:  make(chan struct{}),
	}
	go l.writeLoop()
	go func() {
		select {
		case <-c.Context().Done():
			l.Close(context.Cause(c.Context()))
		case <-l.done:
		}
	}()
	return l
}

// Conn is the underlying QUIC connection, for opening transfer streams.
func (l *Link) Conn() *quic.Conn { return l.conn }

// RemoteAddr is the other side's address.
func (l *Link) RemoteAddr() net.Addr { return l.conn.RemoteAddr() }

// Log is the link's logger, with peer_id and remote_addr set.
func (l *Link) Log() *zerolog.Logger { return &l.log }

// Done is closed when the link is closed, from either side.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err is why the link closed, once Done is closed.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Send queues m for writing and returns at once. Frames queued together go out
// in one write, which is what keeps small-message throughput high.
func (l *Link) Send(m protocol.Message) error {
	l.mu.Lock()
	if l.closed {
		err := l.err
		l.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return err
	}
	if len(l.pending) > maxQueued {
		l.mu.Unlock()
		return ErrQueueFull
	}
	var err error
	l.pending, err = protocol.AppendFrame(l.pending, m)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

func (l *Link) writeLoop() {
	defer close(l.wdone)
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		l.mu.Lock()
		buf := l.pending
		l.pending, l.spare = l.spare[:0], nil
		l.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if _, err := l.stream.Write(buf); err != nil {
			l.Close(err)
			return
		}
		l.mu.Lock()
		if cap(buf) <= 1<<20 { // keep a modest buffer for reuse, let big ones go
			l.spare = buf[:0]
		}
		l.mu.Unlock()
	}
}

// Recv reads the next message. Only one goroutine may call it.
func (l *Link) Recv() (protocol.Message, error) {
	t, body, err := protocol.ReadFrame(l.br, l.rbuf)
	if err != nil {
		return nil, l.readErr(err)
	}
	if cap(body) > cap(l.rbuf) {
		l.rbuf = body[:0]
	}
	m, err := protocol.Decode(t, body)
	if err != nil {
		return nil, err
	}
	if b, ok := m.(*protocol.Block); ok { // Data aliases the read buffer
		b.Data = append([]byte(nil), b.Data...)
	}
	return m, nil
}

func (l *Link) readErr(err error) error {
	select {
	case <-l.done:
		if e := l.Err(); e != nil {
			return e
		}
		return ErrClosed
	default:
		return err
	}
}

// Close closes the link and its connection. A non-nil err other than ErrClosed
// travels as the reason in QUIC's CONNECTION_CLOSE frame. Safe to call twice.
func (l *Link) Close(err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	if err == nil {
		err = ErrClosed
	}
	l.err = err
	l.mu.Unlock()
	close(l.done)
	code, msg := CodeNormal, ""
	if !errors.Is(err, ErrClosed) {
		code, msg = CodeProtocol, err.Error()
		if len(msg) > 200 {
			msg = msg[:200]
		}
	}
	l.conn.CloseWithError(code, msg)
}

// rejectLinger is how long a refused connection stays open for its Error
// frame to arrive: a CONNECTION_CLOSE sent at once can overtake it, and the
// dialler would see only the close.
const rejectLinger = time.Second

// reject writes an Error frame straight to the stream and closes the
// connection once the dialler has closed it or rejectLinger has passed.
func (l *Link) reject(err error) {
	b, e := protocol.AppendFrame(nil, protocol.ErrorMessage(err))
	if e != nil {
		l.Close(err)
		return
	}
	l.stream.Write(b)
	l.stream.Close()
	go func() {
		t := time.NewTimer(rejectLinger)
		defer t.Stop()
		select {
		case <-l.conn.Context().Done():
		case <-t.C:
		}
		l.Close(err)
	}()
}
