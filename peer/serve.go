package peer

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// Limits on what one transfer connection may make this peer hold.
const (
	// maxServedStreams caps the streams of one transfer connection served at
	// once: swarms and downloads between two peers are a handful; more are
	// refused (overloaded) rather than queued.
	maxServedStreams = 32
	// maxOpenFrame caps the first frame of a stream: join, get_meta or deliver,
	// all well under a kilobyte.
	maxOpenFrame = 16 << 10
	// maxSwarmFrame caps the other frames of a swarm or download stream: the
	// largest, peers, holds at most MaxSourcesPerHit sources of about 2 KiB;
	// a block is read in place and capped by its own length check.
	maxSwarmFrame = 256 << 10
)

// serveTransfer answers another peer's transfer connection: every stream it opens
// starts with Join (a swarm stream) or GetMeta (a plain download, as v1 and v2
// peers fetch) for one content ID.
func (d *Daemon) serveTransfer(l *transport.Link) {
	defer d.wg.Done()
	d.mu.Lock()
	d.transfers[l] = struct{}{}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.transfers, l)
		d.mu.Unlock()
		l.Close(nil)
	}()
	// The hello stream carries only pings; drain it so the link notices closing.
	// A peer that pings and does not read the pongs is cut off at its queue's cap.
	go func() {
		for {
			m, err := l.Recv()
			if err != nil {
				l.Close(err)
				return
			}
			if p, ok := m.(*protocol.Ping); ok {
				if err := l.Send(&protocol.Pong{Seq: p.Seq}); err != nil {
					l.Close(err)
					return
				}
			}
		}
	}()
	slots := make(chan struct{}, maxServedStreams)
	for {
		s, err := l.AcceptStream(d.ctx)
		if err != nil {
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			refuseStream(s, fmt.Errorf("%w: %d streams already served on this connection", protocol.ErrOverloaded, maxServedStreams))
			continue
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() { <-slots }()
			if err := d.serveStream(l, s); err != nil && !errors.Is(err, io.EOF) {
				l.Log().Debug().Err(err).Msg("transfer stream ended")
			}
		}()
	}
}

// refuseStream answers a stream with an Error and resets it, reading none of it.
func refuseStream(s transport.LinkStream, err error) {
	s.CancelRead(1)
	s.SetWriteDeadline(time.Now().Add(time.Second))
	protocol.WriteMessage(s, protocol.ErrorMessage(err))
	s.Close()
}

func (d *Daemon) serveStream(l *transport.Link, s transport.LinkStream) error {
	defer s.Close()
	fr := transport.NewFrameReader(s, 16<<10, d.node.FrameTimeouts())
	fr.ExpectFirst()
	fr.SetMax(maxOpenFrame)
	m, err := fr.ReadMessage(nil)
	if err != nil {
		s.CancelRead(1)
		return err
	}
	fr.SetMax(maxSwarmFrame)
	if j, ok := m.(*protocol.Join); ok {
		return d.serveJoin(l, s, fr, j)
	}
	if dm, ok := m.(*protocol.Deliver); ok {
		fr.Raw()
		return d.serveDeliver(l, s, fr.Reader(), dm)
	}
	gm, ok := m.(*protocol.GetMeta)
	if !ok {
		protocol.WriteMessage(s, &protocol.Error{Code: protocol.StatusBadRequest, Message: "transfer stream must start with join, get_meta or deliver"})
		return fmt.Errorf("%w: stream opened with %s", protocol.ErrBadRequest, m.Type())
	}
	var f content.File
	shared := false
	if d.share != nil {
		f, shared = d.share.Get(gm.ID)
	}
	if !shared {
		protocol.WriteMessage(s, &protocol.Error{Code: protocol.StatusNotFound, Message: "not shared here: " + gm.ID.Short()})
		return nil
	}
	if err := protocol.WriteMessage(s, &protocol.Meta{ID: gm.ID, Name: f.Name, Size: f.Meta.Size, PieceSize: f.Meta.PieceSize, Hashes: f.Meta.Hashes}); err != nil {
		return err
	}
	return d.serveBlocks(s, fr, gm.ID, f)
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
func (d *Daemon) serveBlocks(s transport.LinkStream, fr *transport.FrameReader, id protocol.ContentID, f content.File) error {
	ready := make(chan servedBlock, prefetch)
	free := make(chan []byte, prefetch+1)
	for i := 0; i < prefetch+1; i++ {
		free <- nil
	}
	errc := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		defer close(ready)
		errc <- d.readBlocks(s, fr, id, f, ready, free, stop)
	}()
	var werr error
	ft := d.node.FrameTimeouts()
	for blk := range ready {
		// A downloader that stops reading is cut off like a sender that stalls.
		s.SetWriteDeadline(time.Now().Add(ft.For(len(blk.frame))))
		if _, werr = s.Write(blk.frame); werr != nil {
			break
		}
		d.uploaded.Add(blk.n)
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
	return err
}

func (d *Daemon) readBlocks(s transport.LinkStream, fr *transport.FrameReader, id protocol.ContentID, f content.File, ready chan<- servedBlock, free chan []byte, stop <-chan struct{}) error {
	rbuf := make([]byte, 256)
	for {
		m, err := fr.ReadMessage(rbuf)
		if err != nil {
			return err
		}
		req, ok := m.(*protocol.Request)
		if !ok {
			return fmt.Errorf("%w: %s on a transfer stream", protocol.ErrBadRequest, m.Type())
		}
		if int(req.Piece) >= f.Meta.NumPieces() || int64(req.Offset)+int64(req.Length) > f.Meta.PieceLen(int(req.Piece)) {
			return fmt.Errorf("%w: request outside the file: piece %d offset %d length %d", protocol.ErrBadRequest, req.Piece, req.Offset, req.Length)
		}
		if err := d.upLimit.wait(d.ctx, int(req.Length)); err != nil {
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
		if _, err := d.share.ReadAt(id, buf[h:], off); err != nil {
			return fmt.Errorf("%w: cannot read %s: %v", protocol.ErrUnavailable, f.RelPath, err)
		}
		select {
		case ready <- servedBlock{frame: buf, n: int64(req.Length)}:
		case <-stop:
			return nil
		}
	}
}
