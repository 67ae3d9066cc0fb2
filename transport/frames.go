package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// ErrSlowFrame is returned when a frame, once begun, does not arrive within its
// deadline, or a stream's first frame does not begin within its own.
var ErrSlowFrame = errors.New("frame arrived too slowly")

// FrameTimeouts bound how long reading a frame may take. Waiting for a frame to
// begin is not bounded on a message stream (keep-alives and the idle timeout
// watch the connection); once its first byte is in, the whole frame must arrive
// within Fixed plus its size at MinRate.
type FrameTimeouts struct {
	// Fixed is the time every frame gets whatever its size (default 10 s).
	Fixed time.Duration
	// MinRate is the slowest a frame may arrive, in bytes per second (default
	// 8 KiB/s, 64 kbit/s): a 1 MiB frame gets 138 s.
	MinRate int
	// First bounds the wait for the first frame of a newly accepted stream
	// (default 10 s).
	First time.Duration
}

// DefaultFrameTimeouts are the timeouts a Node uses unless told otherwise.
var DefaultFrameTimeouts = FrameTimeouts{Fixed: 10 * time.Second, MinRate: 8 << 10, First: 10 * time.Second}

func (ft FrameTimeouts) withDefaults() FrameTimeouts {
	if ft.Fixed <= 0 {
		ft.Fixed = DefaultFrameTimeouts.Fixed
	}
	if ft.MinRate <= 0 {
		ft.MinRate = DefaultFrameTimeouts.MinRate
	}
	if ft.First <= 0 {
		ft.First = DefaultFrameTimeouts.First
	}
	return ft
}

// For is how long a frame of n body bytes may take from its first byte.
func (ft FrameTimeouts) For(n int) time.Duration {
	ft = ft.withDefaults()
	return ft.Fixed + time.Duration(int64(protocol.HeaderSize+n)*int64(time.Second)/int64(ft.MinRate))
}

// quota is what raw bytes must bring every Fixed.
func (ft FrameTimeouts) quota() int {
	return max(1, int(int64(ft.Fixed)*int64(ft.MinRate)/int64(time.Second)))
}

// Stream is what a FrameReader reads: a QUIC stream, or any reader with a read
// deadline.
type Stream interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// deadlines sits between a stream and its buffer and keeps the stream's read
// deadline. In raw mode (bytes that are not frames, such as a delivery's body)
// every Fixed must bring at least Fixed*MinRate bytes.
type deadlines struct {
	s     Stream
	ft    FrameTimeouts
	armed bool // a deadline is set on s
	raw   bool
	got   int // raw bytes since the deadline was last set
}

func (d *deadlines) set(t time.Time) {
	if t.IsZero() && !d.armed {
		return
	}
	d.s.SetReadDeadline(t)
	d.armed = !t.IsZero()
}

func (d *deadlines) Read(p []byte) (int, error) {
	if d.raw && (!d.armed || d.got >= d.ft.quota()) {
		d.set(time.Now().Add(d.ft.Fixed))
		d.got = 0
	}
	n, err := d.s.Read(p)
	d.got += n
	return n, err
}

// FrameReader reads frames from one stream under FrameTimeouts and a size cap.
// Only one goroutine may use it.
type FrameReader struct {
	d     deadlines
	br    *bufio.Reader
	max   int
	begin time.Time // when the next frame must have begun; zero: no bound
	// check, when set, refuses a frame's type from its header (see
	// Link.NewStreamReader).
	check func(protocol.MsgType) error
}

// NewFrameReader reads s through a buffer of size bytes. Frames may be up to
// protocol.MaxFrameSize until SetMax says otherwise.
func NewFrameReader(s Stream, size int, ft FrameTimeouts) *FrameReader {
	r := &FrameReader{d: deadlines{s: s, ft: ft.withDefaults()}, max: protocol.MaxFrameSize}
	r.br = bufio.NewReaderSize(&r.d, size)
	return r
}

// SetMax caps the body of the frames read from now on.
func (r *FrameReader) SetMax(n int) { r.max = min(n, protocol.MaxFrameSize) }

// ExpectFirst bounds the wait for the next frame to begin by the First timeout:
// for the first frame of a stream, or the answer to a request.
func (r *FrameReader) ExpectFirst() { r.begin = time.Now().Add(r.d.ft.First) }

// Reader is the buffer in front of the stream, for reading a frame's body in
// place after ReadHeader (the frame's deadline still holds) or raw bytes after
// Raw.
func (r *FrameReader) Reader() *bufio.Reader { return r.br }

// Raw switches the stream from frames to raw bytes: from now on every Fixed of
// reading must bring at least Fixed*MinRate bytes.
func (r *FrameReader) Raw() {
	r.d.set(time.Time{})
	r.d.raw = true
}

// ReadHeader waits for the next frame and reads its header; the frame's
// deadline then runs until the next ReadHeader. A body over the cap, or a type
// the reader's check refuses, is refused before any of the body is read.
func (r *FrameReader) ReadHeader() (protocol.MsgType, int, error) {
	r.d.set(r.begin)
	first := !r.begin.IsZero()
	r.begin = time.Time{}
	if _, err := r.br.Peek(1); err != nil {
		if first {
			err = slow(err, "no frame began")
		}
		return 0, 0, err
	}
	start := time.Now()
	if r.br.Buffered() < protocol.HeaderSize {
		r.d.set(start.Add(r.d.ft.Fixed))
	}
	t, n, err := protocol.ReadHeader(r.br)
	if err != nil {
		return t, n, slow(err, "frame header")
	}
	if r.check != nil {
		if err := r.check(t); err != nil {
			return t, n, err
		}
	}
	if n > r.max {
		return t, n, fmt.Errorf("%w: %s frame of %d bytes (at most %d here)", protocol.ErrFrameTooLarge, t, n, r.max)
	}
	if r.br.Buffered() < n {
		r.d.set(start.Add(r.d.ft.For(n)))
	}
	return t, n, nil
}

// ReadBody reads the body of the frame whose header ReadHeader returned, into
// buf when it is large enough (see protocol.ReadBody).
func (r *FrameReader) ReadBody(t protocol.MsgType, n int, buf []byte) ([]byte, error) {
	b, err := protocol.ReadBody(r.br, t, n, buf)
	return b, slow(err, "frame body")
}

// ReadFrame reads one whole frame.
func (r *FrameReader) ReadFrame(buf []byte) (protocol.MsgType, []byte, error) {
	t, n, err := r.ReadHeader()
	if err != nil {
		return t, nil, err
	}
	body, err := r.ReadBody(t, n, buf)
	return t, body, err
}

// ReadMessage reads and decodes one frame. Block data aliases buf.
func (r *FrameReader) ReadMessage(buf []byte) (protocol.Message, error) {
	t, body, err := r.ReadFrame(buf)
	if err != nil {
		return nil, err
	}
	return protocol.Decode(t, body)
}

// slow marks a deadline that expired as ErrSlowFrame.
func slow(err error, what string) error {
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %s: %w", ErrSlowFrame, what, err)
	}
	return err
}

// readFirst reads the first frame of a connection's message stream straight
// from s, with no buffer, so nothing after the frame is taken. A type not in
// types, or a body over max, is refused from the header alone.
func readFirst(s Stream, deadline time.Time, max int, types ...protocol.MsgType) (protocol.Message, error) {
	s.SetReadDeadline(deadline)
	defer s.SetReadDeadline(time.Time{})
	m, err := decodeFirst(s, max, types...)
	return m, slow(err, "first frame")
}

// decodeFirst is readFirst without the deadline.
func decodeFirst(r io.Reader, max int, types ...protocol.MsgType) (protocol.Message, error) {
	t, n, err := protocol.ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(types, t) {
		return nil, fmt.Errorf("%w: first message is %s, not %s", protocol.ErrBadRequest, t, types[0])
	}
	if n > max {
		return nil, fmt.Errorf("%w: %s of %d bytes (at most %d)", protocol.ErrFrameTooLarge, t, n, max)
	}
	body, err := protocol.ReadBody(r, t, n, nil)
	if err != nil {
		return nil, err
	}
	return protocol.Decode(t, body)
}
