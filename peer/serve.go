package peer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/quic-go/quic-go"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// serveTransfer answers another peer's transfer connection: every stream it opens
// starts with GetMeta for one content ID and continues with block requests.
func (d *Daemon) serveTransfer(l *transport.Link) {
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		delete(d.transfers, l)
		d.mu.Unlock()
		l.Close(nil)
	}()
	// The hello stream carries only pings; drain it so the link notices closing.
	go func() {
		for {
			m, err := l.Recv()
			if err != nil {
				l.Close(err)
				return
			}
			if p, ok := m.(*protocol.Ping); ok {
				l.Send(&protocol.Pong{Seq: p.Seq})
			}
		}
	}()
	for {
		s, err := l.Conn().AcceptStream(d.ctx)
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := d.serveStream(s); err != nil && !errors.Is(err, io.EOF) {
				l.Log().Debug().Err(err).Msg("transfer stream ended")
			}
		}()
	}
}

func (d *Daemon) serveStream(s *quic.Stream) error {
	defer s.Close()
	br := bufio.NewReaderSize(s, 16<<10)
	m, err := protocol.ReadMessage(br, nil)
	if err != nil {
		s.CancelRead(1)
		return err
	}
	gm, ok := m.(*protocol.GetMeta)
	if !ok {
		protocol.WriteMessage(s, &protocol.Error{Code: protocol.StatusBadRequest, Message: "transfer stream must start with get_meta"})
		return fmt.Errorf("%w: stream opened with %s", protocol.ErrBadRequest, m.Type())
	}
	var f content.File
	if d.share != nil {
		f, ok = d.share.Get(gm.ID)
	}
	if !ok {
		protocol.WriteMessage(s, &protocol.Error{Code: protocol.StatusNotFound, Message: "not shared here: " + gm.ID.Short()})
		return nil
	}
	if err := protocol.WriteMessage(s, &protocol.Meta{ID: gm.ID, Name: f.Name, Size: f.Meta.Size, PieceSize: f.Meta.PieceSize, Hashes: f.Meta.Hashes}); err != nil {
		return err
	}
	var buf []byte
	rbuf := make([]byte, 256)
	for {
		m, err := protocol.ReadMessage(br, rbuf)
		if err != nil {
			return err
		}
		req, ok := m.(*protocol.Request)
		if !ok {
			return fmt.Errorf("%w: %s on a transfer stream", protocol.ErrBadRequest, m.Type())
		}
		n := f.Meta.NumPieces()
		if int(req.Piece) >= n || int64(req.Offset)+int64(req.Length) > f.Meta.PieceLen(int(req.Piece)) {
			protocol.WriteMessage(s, &protocol.Error{Code: protocol.StatusBadRequest, Message: fmt.Sprintf("request outside the file: piece %d offset %d length %d", req.Piece, req.Offset, req.Length)})
			return fmt.Errorf("%w: request outside the file", protocol.ErrBadRequest)
		}
		buf = protocol.AppendBlockHeader(buf[:0], req.Piece, req.Offset, int(req.Length))
		h := len(buf)
		buf = slices.Grow(buf, int(req.Length))[:h+int(req.Length)]
		off := int64(req.Piece)*f.Meta.PieceSize + int64(req.Offset)
		if _, err := d.share.ReadAt(gm.ID, buf[h:], off); err != nil {
			protocol.WriteMessage(s, &protocol.Error{Code: protocol.StatusUnavailable, Message: "cannot read the file: " + err.Error()})
			return fmt.Errorf("read %s: %w", f.RelPath, err)
		}
		if _, err := s.Write(buf); err != nil {
			return err
		}
		d.uploaded.Add(int64(req.Length))
	}
}
