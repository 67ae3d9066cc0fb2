package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the fixed frame header: one type byte and a big-endian uint32 body length.
const HeaderSize = 5

// MaxFrameSize caps a frame body. It is checked before any body byte is read or any
// buffer is sized, so a hostile length costs nothing. Metadata of the largest file
// (MaxPieces hashes) and a whole 256 KiB piece both fit.
const MaxFrameSize = 1 << 20

// Errors a reader can match with errors.Is.
var (
	ErrFrameTooLarge = errors.New("frame exceeds maximum size")
	ErrUnknownType   = errors.New("unknown message type")
	ErrMalformed     = errors.New("malformed message")
)

// ReadFrame reads one frame from r. buf is reused when it is large enough; the
// returned body aliases it and is valid until the next call.
func ReadFrame(r io.Reader, buf []byte) (MsgType, []byte, error) {
	t, n, err := ReadHeader(r)
	if err != nil {
		return t, nil, err
	}
	body, err := ReadBody(r, t, n, buf)
	return t, body, err
}

// MaxHelloSize caps the body of the first frame a listener reads, which must be a
// Hello; MaxWelcomeSize caps the body of the answer, a Welcome or an Error. A hello
// is a few hundred bytes (a certificate chain of a few short certificates and a
// relay proof included); a welcome lists at most MaxWelcomeAddrs addresses of
// MaxAddrLen bytes and a chain. Nothing else is read before the exchange is over.
const (
	MaxHelloSize   = 4 << 10
	MaxWelcomeSize = 16 << 10
)

// readChunk is the most ReadBody allocates ahead of the bytes it has, so a length
// in a header costs nothing until the bytes it promises arrive.
const readChunk = 32 << 10

// ReadBody reads the n-byte body of a frame of type t whose header ReadHeader
// returned. It reads into buf when buf can hold n bytes; otherwise it grows a
// buffer as the bytes arrive, never more than readChunk or twice what has
// arrived ahead of them, so a sender that claims a large body and stalls costs
// next to nothing.
func ReadBody(r io.Reader, t MsgType, n int, buf []byte) ([]byte, error) {
	if n < 0 || n > MaxFrameSize {
		return nil, fmt.Errorf("%w: %s frame of %d bytes (max %d)", ErrFrameTooLarge, t, n, MaxFrameSize)
	}
	if cap(buf) >= n {
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, bodyErr(t, err)
		}
		return buf, nil
	}
	buf = buf[:0]
	idle := 0
	for len(buf) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), len(buf)+min(n-len(buf), max(readChunk, len(buf))))
			copy(nb, buf)
			buf = nb
		}
		k, err := r.Read(buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+k]
		if len(buf) == n {
			break
		}
		if err != nil {
			return nil, bodyErr(t, err)
		}
		if k > 0 {
			idle = 0
		} else if idle++; idle >= 100 {
			return nil, bodyErr(t, io.ErrNoProgress)
		}
	}
	return buf, nil
}

func bodyErr(t MsgType, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %s body: %w", t, err)
}

// ReadMessage reads and decodes one frame.
func ReadMessage(r io.Reader, buf []byte) (Message, error) {
	t, body, err := ReadFrame(r, buf)
	if err != nil {
		return nil, err
	}
	return Decode(t, body)
}

// AppendHeader appends a frame header announcing n body bytes of type t.
// It checks nothing: the length is the sender's claim.
func AppendHeader(dst []byte, t MsgType, n uint32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, byte(t)), n)
}

// AppendFrame appends m as a whole frame to dst.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	dst = AppendHeader(dst, m.Type(), 0)
	dst, err := appendBody(dst, m)
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start - HeaderSize
	if n > MaxFrameSize {
		return dst[:start], fmt.Errorf("encode %s: %w: %d bytes", m.Type(), ErrFrameTooLarge, n)
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(n))
	return dst, nil
}

// WriteMessage encodes m and writes it to w in one Write call.
func WriteMessage(w io.Writer, m Message) error {
	b, err := AppendFrame(nil, m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// AppendBlockHeader appends the frame header and block header of a Block frame
// carrying n data bytes; the caller appends exactly n bytes of data after it.
// Uploaders read file data straight into the frame this way, with no copy.
func AppendBlockHeader(dst []byte, piece, offset uint32, n int) []byte {
	start := len(dst)
	dst = append(AppendHeader(dst, TypeBlock, 0), 0x92)
	dst = appendUint(dst, piece)
	dst = appendUint(dst, offset)
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-HeaderSize+n))
	return dst
}

// appendUint writes v in msgpack's shortest unsigned form.
func appendUint(dst []byte, v uint32) []byte {
	switch {
	case v <= 0x7f:
		return append(dst, byte(v))
	case v <= 0xff:
		return append(dst, 0xcc, byte(v))
	case v <= 0xffff:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	}
	return append(dst, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// ReadHeader reads a frame header and returns the type and the body length,
// already checked against MaxFrameSize. The caller reads the body.
func ReadHeader(r io.Reader) (MsgType, int, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	t := MsgType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrameSize {
		return t, 0, fmt.Errorf("%w: %s frame of %d bytes (max %d)", ErrFrameTooLarge, t, n, MaxFrameSize)
	}
	return t, int(n), nil
}

// ParseBlockHeader parses the [piece, offset] prefix of a Block body and returns
// how many bytes it took; the rest of the body is the data. Downloaders use it to
// read block data straight into place.
func ParseBlockHeader(b []byte) (piece, offset uint32, n int, err error) {
	if len(b) < 1 || b[0] != 0x92 {
		return 0, 0, 0, malformed("block header is not a 2-element array")
	}
	n = 1
	for i, dst := range []*uint32{&piece, &offset} {
		v, w, err := parseUint32(b[n:])
		if err != nil {
			return 0, 0, 0, fmt.Errorf("block header field %d: %w", i, err)
		}
		*dst = v
		n += w
	}
	return piece, offset, n, nil
}

func parseUint32(b []byte) (uint32, int, error) {
	if len(b) == 0 {
		return 0, 0, malformed("truncated block header")
	}
	switch c := b[0]; {
	case c <= 0x7f:
		return uint32(c), 1, nil
	case c == 0xcc && len(b) >= 2:
		return uint32(b[1]), 2, nil
	case c == 0xcd && len(b) >= 3:
		return uint32(binary.BigEndian.Uint16(b[1:])), 3, nil
	case c == 0xce && len(b) >= 5:
		return binary.BigEndian.Uint32(b[1:]), 5, nil
	}
	return 0, 0, malformed("block header: bad unsigned integer 0x%02x", b[0])
}
