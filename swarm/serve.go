package swarm

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// MaxFrame caps the frames of a swarm or download stream after the first:
// the largest, peers, holds at most MaxSourcesPerHit sources of about 2 KiB;
// a block is read in place and capped by its own length check.
const MaxFrame = 256 << 10

// ServeGetMeta answers a plain download (GetMeta, as v1 and v2 peers fetch)
// of a file of the share on stream s: the metadata, then the blocks asked for.
// fr reads s; made by the link's NewStreamReader, it refuses types no
// transfer stream takes.
func (m *Swarms) ServeGetMeta(s transport.LinkStream, fr *transport.FrameReader, gm *protocol.GetMeta) error {
	var f content.File
	shared := false
	if m.share != nil {
		f, shared = m.share.Get(gm.ID)
	}
	if !shared {
		protocol.WriteMessage(s, &protocol.Error{Code: protocol.StatusNotFound, Message: "not shared here: " + gm.ID.Short()})
		return nil
	}
	if err := protocol.WriteMessage(s, &protocol.Meta{ID: gm.ID, Name: f.Name, Size: f.Meta.Size, PieceSize: f.Meta.PieceSize, Hashes: f.Meta.Hashes}); err != nil {
		return err
	}
	return m.serveBlocks(s, fr, gm.ID, f)
}

// servedBlock is a Block frame read from disk and waiting to be sent.
type servedBlock struct {
	frame []byte
	n     int64
}

// prefetch is how many blocks an upload reads ahead of the stream, so the disk
// read of the next block overlaps the sending of this one.
const prefetch = 4

// serveBlocks answers block requests: one goroutine reads requests and the file,
// the caller's goroutine writes frames to the stream.
func (m *Swarms) serveBlocks(s transport.LinkStream, fr *transport.FrameReader, id protocol.ContentID, f content.File) error {
	ready := make(chan servedBlock, prefetch)
	free := make(chan []byte, prefetch+1)
	for i := 0; i < prefetch+1; i++ {
		free <- nil
	}
	errc := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		defer close(ready)
		errc <- m.readBlocks(s, fr, id, f, ready, free, stop)
	}()
	var werr error
	ft := m.cfg.FrameTimeouts
	for blk := range ready {
		// A downloader that stops reading is cut off like a sender that stalls.
		s.SetWriteDeadline(time.Now().Add(ft.For(len(blk.frame))))
		if _, werr = s.Write(blk.frame); werr != nil {
			break
		}
		m.uploaded.Add(blk.n)
		free <- blk.frame
	}
	if werr != nil {
		// Unblock the reader, wherever it waits, and wait for it.
		close(stop)
		s.CancelRead(0)
		for range ready {
		}
		<-errc
		return werr
	}
	err := <-errc
	if errors.Is(err, protocol.ErrBadRequest) || errors.Is(err, protocol.ErrUnavailable) {
		protocol.WriteMessage(s, protocol.ErrorMessage(err))
	}
	if errors.Is(err, protocol.ErrBadRequest) {
		s.CancelRead(1) // nothing more of it is read: the frame's body, if any, stays unread
	}
	return err
}

func (m *Swarms) readBlocks(s transport.LinkStream, fr *transport.FrameReader, id protocol.ContentID, f content.File, ready chan<- servedBlock, free chan []byte, stop <-chan struct{}) error {
	rbuf := make([]byte, 256)
	for {
		msg, err := fr.ReadMessage(rbuf)
		if err != nil {
			return err
		}
		req, ok := msg.(*protocol.Request)
		if !ok {
			return fmt.Errorf("%w: %s on a transfer stream", protocol.ErrBadRequest, msg.Type())
		}
		if int(req.Piece) >= f.Meta.NumPieces() || int64(req.Offset)+int64(req.Length) > f.Meta.PieceLen(int(req.Piece)) {
			return fmt.Errorf("%w: request outside the file: piece %d offset %d length %d", protocol.ErrBadRequest, req.Piece, req.Offset, req.Length)
		}
		if err := m.upLimit.wait(m.ctx, int(req.Length)); err != nil {
			return nil
		}
		var buf []byte
		select {
		case buf = <-free:
		case <-stop:
			return nil
		}
		buf = protocol.AppendBlockHeader(buf[:0], req.Piece, req.Offset, int(req.Length))
		h := len(buf)
		buf = slices.Grow(buf, int(req.Length))[:h+int(req.Length)]
		off := int64(req.Piece)*f.Meta.PieceSize + int64(req.Offset)
		if _, err := m.share.ReadAt(id, buf[h:], off); err != nil {
			return fmt.Errorf("%w: cannot read %s: %v", protocol.ErrUnavailable, f.RelPath, err)
		}
		select {
		case ready <- servedBlock{frame: buf, n: int64(req.Length)}:
		case <-stop:
			return nil
		}
	}
}
