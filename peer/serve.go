package peer

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/swarm"
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
	fr := l.NewStreamReader(s, 16<<10)
	fr.ExpectFirst()
	fr.SetMax(maxOpenFrame)
	m, err := fr.ReadMessage(nil)
	if errors.Is(err, protocol.ErrBadRequest) {
		// A type no transfer stream takes: say so, as for a wrong first message.
		refuseStream(s, err)
		return err
	}
	if err != nil {
		s.CancelRead(1)
		return err
	}
	fr.SetMax(swarm.MaxFrame)
	if j, ok := m.(*protocol.Join); ok {
		return d.swarms.ServeJoin(l, s, fr, j)
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
	return d.swarms.ServeGetMeta(s, fr, gm)
}
