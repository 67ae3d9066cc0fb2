package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
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

// A supernode holds thousands of idle links, so what a link keeps between
// frames is small: readAhead is the buffer in front of its message stream
// (a body longer than that is read straight into place), keepBuf the
// largest body buffer it keeps, and keepWrite the largest write buffer.
// Larger frames get buffers of their own that go once they are used.
const (
	readAhead = 4 << 10
	keepBuf   = 16 << 10
	keepWrite = 64 << 10
)

// Link is an accepted or dialled connection with a message stream.
type Link struct {
	Peer    protocol.PeerID
	Role    protocol.Role
	Version uint16
	// Relayed is set on links that run through a relay: accepted on our
	// relay allocation (see ListenOn), or from a dialler that says it
	// lives on one (its hello's Relayed).
	Relayed bool

	// from are the roles the other side may hold: the one its hello declared
	// on an accepted link, the listener's of our hello's role on a dialled one.
	from      protocol.Roles
	anySender bool

	conn   *quic.Conn
	stream *quic.Stream
	fr     *FrameReader
	frames FrameTimeouts // for the link's other streams
	rbuf   []byte
	log    zerolog.Logger
	src    *source // the source of an incoming link, charged for its queue
	srcMax int64
	slow   *atomic.Uint64
	ended  func() // the node counts it closed
	// lastRecv is when the last frame arrived (Unix ns), for Quiet.
	lastRecv atomic.Int64

	mu      sync.Mutex
	pending []byte
	spare   []byte
	// writing is set while a goroutine writes pending out: one runs only
	// while there is something to write, so an idle link has none.
	writing bool
	closed  bool
	err     error
	done    chan struct{}
	// unwatch stops the wait for the connection's end, which closes the link
	// (under mu).
	unwatch func() bool
}

func (n *Node) newLink(c *quic.Conn, s *quic.Stream, peer protocol.PeerID, log zerolog.Logger, tk *ticket) *Link {
	l := &Link{
		Peer:      peer,
		conn:      c,
		stream:    s,
		fr:        NewFrameReader(s, readAhead, n.cfg.Frames),
		frames:    n.cfg.Frames,
		log:       log,
		srcMax:    int64(n.cfg.MaxQueuedPerIP),
		anySender: n.cfg.AnySender,
		slow:      &n.slow,
		done:      make(chan struct{}),
	}
	l.ended = func() { n.linkEnded(l) }
	n.linkMu.Lock()
	n.links[l] = struct{}{}
	n.linkMu.Unlock()
	if tk != nil {
		l.src = tk.src
	}
	l.lastRecv.Store(time.Now().UnixNano())
	l.mu.Lock() // the func may run at once, and Close reads unwatch
	l.unwatch = context.AfterFunc(c.Context(), func() { l.Close(context.Cause(c.Context())) })
	l.mu.Unlock()
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

// negotiated records the version and role the hello exchange settled; the
// other side holds role when we accepted the link, role's listener when we
// dialled it.
func (l *Link) negotiated(version uint16, role protocol.Role, dialled bool) {
	l.Version, l.Role = version, role
	l.from = protocol.RolesOf(role)
	if dialled {
		l.from = protocol.RolesOf(role.Listener())
	}
	if l.anySender {
		l.from = protocol.AnyRole
	}
}

// Send queues m for writing and returns at once. Frames queued together go out
// in one write, which is what keeps small-message throughput high. A type the
// link's version does not have is refused (ErrUnsupportedVersion): the other
// side would close the link for it.
func (l *Link) Send(m protocol.Message) error {
	if err := protocol.CheckVersion(m.Type(), l.Version); err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		err := l.err
		l.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return err
	}
	if len(l.pending) > maxQueued || (l.src != nil && l.src.queued.Load() > l.srcMax) {
		l.mu.Unlock()
		return ErrQueueFull
	}
	var err error
	before := len(l.pending)
	l.pending, err = protocol.AppendFrame(l.pending, m)
	if l.src != nil {
		l.src.queued.Add(int64(len(l.pending) - before))
	}
	start := err == nil && !l.writing && len(l.pending) > 0
	if start {
		l.writing = true
	}
	l.mu.Unlock()
	if start {
		go l.writeOut()
	}
	return err
}

// writeOut writes what is pending until nothing is, then ends.
func (l *Link) writeOut() {
	for {
		l.mu.Lock()
		if len(l.pending) == 0 || l.closed {
			l.writing = false
			l.mu.Unlock()
			return
		}
		buf := l.pending
		l.pending, l.spare = l.spare[:0], nil
		l.mu.Unlock()
		_, err := l.stream.Write(buf)
		if l.src != nil {
			l.src.queued.Add(-int64(len(buf)))
		}
		if err != nil {
			l.Close(err)
			l.mu.Lock()
			l.writing = false
			l.mu.Unlock()
			return
		}
		l.mu.Lock()
		if cap(buf) <= keepWrite { // keep a modest buffer for reuse, let big ones go
			l.spare = buf[:0]
		}
		l.mu.Unlock()
	}
}

// Recv reads the next message. Only one goroutine may call it. A frame that
// does not arrive within its deadline (see FrameTimeouts) closes the link, and
// so does one the protocol does not let the other side send here (see
// protocol.CheckIncoming: a type newer than the link's version, or not its
// role's to send), before its body is read.
func (l *Link) Recv() (protocol.Message, error) {
	t, n, err := l.fr.ReadHeader()
	if err == nil {
		if err = protocol.CheckIncoming(t, l.Version, l.from); err != nil {
			l.Close(err)
			return nil, l.readErr(err)
		}
	}
	var body []byte
	if err == nil {
		body, err = l.fr.ReadBody(t, n, l.rbuf)
	}
	if err == nil {
		l.lastRecv.Store(time.Now().UnixNano())
	}
	if err != nil {
		if errors.Is(err, ErrSlowFrame) {
			l.slow.Add(1)
			l.Close(err)
		}
		return nil, l.readErr(err)
	}
	if cap(body) > cap(l.rbuf) && cap(body) <= keepBuf {
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
	if l.src != nil {
		l.src.queued.Add(-int64(len(l.pending)))
	}
	l.pending = nil
	unwatch := l.unwatch
	l.mu.Unlock()
	close(l.done)
	if unwatch != nil {
		unwatch()
	}
	closeConn(l.conn, err)
	if l.ended != nil {
		l.ended()
	}
}

// linkEnded counts a closed link, and wakes Idle's waiters when it was the
// last.
func (n *Node) linkEnded(l *Link) {
	n.linkMu.Lock()
	defer n.linkMu.Unlock()
	delete(n.links, l)
	if len(n.links) == 0 {
		for _, ch := range n.idle {
			close(ch)
		}
		n.idle = nil
	}
}

// Idle is closed once none of the node's links is open, at once when none
// is now: a node being retired is closed when its last link ends.
func (n *Node) Idle() <-chan struct{} {
	ch := make(chan struct{})
	n.linkMu.Lock()
	defer n.linkMu.Unlock()
	if len(n.links) == 0 {
		close(ch)
	} else {
		n.idle = append(n.idle, ch)
	}
	return ch
}

// closeConn closes c, with err as the reason unless it is ErrClosed.
func closeConn(c *quic.Conn, err error) {
	code, msg := CodeNormal, ""
	if err != nil && !errors.Is(err, ErrClosed) {
		code, msg = CodeProtocol, err.Error()
		if len(msg) > 200 {
			msg = msg[:200]
		}
	}
	c.CloseWithError(code, msg)
}

// rejectLinger is how long a refused connection stays open for its Error
// frame to arrive: a CONNECTION_CLOSE sent at once can overtake it, and the
// dialler would see only the close.
const rejectLinger = time.Second

// reject writes an Error frame straight to the stream and closes the
// connection once the dialler has closed it or rejectLinger has passed.
func (l *Link) reject(err error) {
	writeError(l.stream, err)
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

// refuse is reject before there is a link.
func refuse(c *quic.Conn, s *quic.Stream, err error) {
	writeError(s, err)
	closeConn(c, err)
}

func writeError(s *quic.Stream, err error) {
	if b, e := protocol.AppendFrame(nil, protocol.ErrorMessage(err)); e == nil {
		s.SetWriteDeadline(time.Now().Add(time.Second))
		s.Write(b)
		s.Close()
	}
}

// Quiet is how long ago the last frame arrived on the link, or since it was
// made when none has.
func (l *Link) Quiet() time.Duration {
	return time.Since(time.Unix(0, l.lastRecv.Load()))
}
