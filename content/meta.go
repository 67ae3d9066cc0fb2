// Package content turns files into verifiable pieces: it computes a file's metadata and
// content ID, keeps the share folder indexed (with a hash cache so a restart does not re-read
// every byte), serves piece reads for uploads, and stores downloads in progress so that only
// verified pieces are ever counted and a crash loses no verified work.
//
// It is not the transfer protocol: choosing pieces, peers and who to unchoke belongs to
// package peer, and the wire encoding of metadata belongs to package protocol. Nothing here
// touches the network.
package content

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"os"

	"github.com/supernet-p2p/supernet/protocol"
)

const (
	// DefaultPieceSize is the piece size of every file up to 4 GiB.
	DefaultPieceSize = 256 << 10
	// MinPieceSize and MaxPieceSize bound the piece size a Meta may declare.
	MinPieceSize = 16 << 10
	MaxPieceSize = 64 << 20
	// MaxPieces caps the piece count so that metadata (32 bytes a piece) always fits in one
	// 1 MiB wire frame. With MaxPieceSize this allows files up to 1 TiB.
	MaxPieces = 16384
)

// idDomain separates content IDs from every other SHA-256 in the system; bump the version
// if the canonical encoding ever changes.
const idDomain = "supernet content v1\n"

// hashBufSize is the read size when hashing: large enough that syscalls cost nothing next to
// SHA-256, small enough that the two buffers in flight do not matter when several files
// are hashed at once.
const hashBufSize = 4 << 20

// ErrBadMeta is wrapped by every Validate error.
var ErrBadMeta = errors.New("invalid content metadata")

// PieceSizeFor returns the piece size for a file of size bytes: DefaultPieceSize, doubled
// until the file needs at most MaxPieces pieces (but never above MaxPieceSize).
func PieceSizeFor(size int64) int64 {
	ps := int64(DefaultPieceSize)
	for ps < MaxPieceSize && numPieces(size, ps) > MaxPieces {
		ps *= 2
	}
	return ps
}

// Meta describes a file as pieces. Its ID is what the network calls the file. Hashes is
// shared, not copied, by everything that hands out a Meta: treat it as read-only.
type Meta struct {
	Size      int64  `msgpack:"s"`
	PieceSize int64  `msgpack:"p"`
	Hashes    []byte `msgpack:"h"` // SHA-256 of each piece, concatenated
}

func numPieces(size, pieceSize int64) int64 {
	if size <= 0 || pieceSize <= 0 {
		return 0
	}
	n := size / pieceSize
	if size%pieceSize != 0 {
		n++
	}
	return n
}

// NumPieces is the number of pieces; zero for an empty file.
func (m *Meta) NumPieces() int {
	n := numPieces(m.Size, m.PieceSize)
	if n > int64(^uint(0)>>1) {
		return int(^uint(0) >> 1)
	}
	return int(n)
}

// PieceLen is the length of piece i: PieceSize except for a shorter last piece. It is 0 for
// an index out of range.
func (m *Meta) PieceLen(i int) int64 {
	n := m.NumPieces()
	if i < 0 || i >= n {
		return 0
	}
	if i == n-1 {
		return m.Size - int64(i)*m.PieceSize
	}
	return m.PieceSize
}

// PieceHash is the SHA-256 of piece i. It is all zeros for an index out of range (or a Meta
// that does not validate), which no piece hashes to.
func (m *Meta) PieceHash(i int) [32]byte {
	var h [32]byte
	if i < 0 || i >= m.NumPieces() || len(m.Hashes) < 32*(i+1) {
		return h
	}
	copy(h[:], m.Hashes[32*i:])
	return h
}

// ID is the content ID: SHA-256 over the domain string, the size and piece size as
// big-endian uint64s, and the piece hashes.
func (m *Meta) ID() protocol.ContentID {
	h := sha256.New()
	var hdr [len(idDomain) + 16]byte
	copy(hdr[:], idDomain)
	binary.BigEndian.PutUint64(hdr[len(idDomain):], uint64(m.Size))
	binary.BigEndian.PutUint64(hdr[len(idDomain)+8:], uint64(m.PieceSize))
	h.Write(hdr[:])
	h.Write(m.Hashes)
	var id protocol.ContentID
	h.Sum(id[:0])
	return id
}

// Validate checks that m is well formed, as metadata from the network must be before use.
func (m *Meta) Validate() error {
	if err := validateShape(m.Size, m.PieceSize); err != nil {
		return err
	}
	if want := 32 * m.NumPieces(); len(m.Hashes) != want {
		return fmt.Errorf("%w: %d bytes of piece hashes for %d pieces (want %d)",
			ErrBadMeta, len(m.Hashes), m.NumPieces(), want)
	}
	return nil
}

func validateShape(size, pieceSize int64) error {
	switch {
	case size < 0:
		return fmt.Errorf("%w: negative size %d", ErrBadMeta, size)
	case pieceSize < MinPieceSize || pieceSize > MaxPieceSize:
		return fmt.Errorf("%w: piece size %d outside [%d, %d]", ErrBadMeta, pieceSize, MinPieceSize, MaxPieceSize)
	case bits.OnesCount64(uint64(pieceSize)) != 1:
		return fmt.Errorf("%w: piece size %d is not a power of two", ErrBadMeta, pieceSize)
	case numPieces(size, pieceSize) > MaxPieces:
		return fmt.Errorf("%w: %d bytes in %d-byte pieces is %d pieces, more than %d",
			ErrBadMeta, size, pieceSize, numPieces(size, pieceSize), MaxPieces)
	}
	return nil
}

// HashReader reads exactly size bytes from r and hashes them in pieces of pieceSize.
// A reader that ends early is an error (io.ErrUnexpectedEOF); bytes after size are not read.
func HashReader(r io.Reader, size, pieceSize int64) (Meta, error) {
	if err := validateShape(size, pieceSize); err != nil {
		return Meta{}, err
	}
	m := Meta{Size: size, PieceSize: pieceSize}
	m.Hashes = make([]byte, 0, 32*m.NumPieces())
	ph := pieceHasher{h: sha256.New(), pieceSize: pieceSize, hashes: m.Hashes}
	var err error
	if size <= hashBufSize {
		buf := make([]byte, size)
		_, err = io.ReadFull(r, buf)
		ph.write(buf)
	} else {
		err = readPipelined(r, size, ph.write)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Meta{}, fmt.Errorf("content: read %d bytes: %w", size, err)
	}
	m.Hashes = ph.finish()
	return m, nil
}

// pieceHasher turns a stream of bytes into piece hashes.
type pieceHasher struct {
	h         hash.Hash
	pieceSize int64
	inPiece   int64 // bytes of the current piece hashed so far
	hashes    []byte
}

func (p *pieceHasher) write(b []byte) {
	for len(b) > 0 {
		n := min(int64(len(b)), p.pieceSize-p.inPiece)
		p.h.Write(b[:n])
		b = b[n:]
		if p.inPiece += n; p.inPiece == p.pieceSize {
			p.hashes = p.h.Sum(p.hashes)
			p.h.Reset()
			p.inPiece = 0
		}
	}
}

// finish hashes the short last piece, if there is one.
func (p *pieceHasher) finish() []byte {
	if p.inPiece > 0 {
		p.hashes = p.h.Sum(p.hashes)
		p.inPiece = 0
	}
	return p.hashes
}

// readPipelined reads size bytes from r in large chunks and hands them to consume in
// order, reading the next chunk while consume works on the last, so that a file is hashed
// at the speed of SHA-256 or of the disk, whichever is slower, rather than their sum.
func readPipelined(r io.Reader, size int64, consume func([]byte)) error {
	type chunk struct {
		b   []byte
		err error
	}
	const nbuf = 2
	free := make(chan []byte, nbuf)
	full := make(chan chunk, nbuf)
	for range nbuf {
		free <- make([]byte, hashBufSize)
	}
	go func() {
		defer close(full)
		for left := size; left > 0; {
			b := <-free
			b = b[:min(int64(len(b)), left)]
			if _, err := io.ReadFull(r, b); err != nil {
				full <- chunk{err: err}
				return
			}
			full <- chunk{b: b}
			left -= int64(len(b))
		}
	}()
	var err error
	for c := range full { // until the reader is done, so it never outlives the call
		if c.err != nil {
			err = c.err
			continue
		}
		consume(c.b)
		free <- c.b[:cap(c.b)]
	}
	return err
}

// HashFile hashes the file at path with the piece size PieceSizeFor picks for its size.
func HashFile(path string) (Meta, error) {
	return hashFile(context.Background(), path)
}

func hashFile(ctx context.Context, path string) (Meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Meta{}, err
	}
	if !fi.Mode().IsRegular() {
		return Meta{}, fmt.Errorf("content: %s is not a regular file", path)
	}
	m, err := HashReader(ctxReader{ctx, f}, fi.Size(), PieceSizeFor(fi.Size()))
	if err != nil {
		return Meta{}, fmt.Errorf("content: hash %s: %w", path, err)
	}
	return m, nil
}

// ctxReader lets a long hash stop between reads when its scan is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
