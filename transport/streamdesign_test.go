package transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

const (
	sdBlock     = 16 << 10  // block payload
	sdPieceLen  = 256 << 10 // piece size used to number requests
	sdWindow    = 64        // requests outstanding
	sdReqLen    = 12        // request: piece, offset, length (uint32 each)
	sdHdrLen    = sdReqLen  // block header: the request echoed
	sdMaxStream = 1000      // MaxIncomingStreams for stream-per-block
)

// sdPayload is the block body every upload sends (read-only, shared).
var sdPayload = make([]byte, sdBlock)

// BenchmarkStreamDesign compares two ways to carry a BitTorrent-style peer wire
// over one quic-go connection on loopback, with 64 requests outstanding in both:
//
//   - long-lived: one bidirectional stream, requests pipelined one way and
//     16 KiB blocks the other, as on a TCP peer wire;
//   - stream-per-block: a new bidirectional stream per block (request, FIN,
//     block, FIN).
//
// It shows what opening and closing a stream per block costs, so the project
// can justify its stream design. One op is one block; allocations count both
// peers and quic-go. p50/p99 are request-to-block latencies.
func BenchmarkStreamDesign(b *testing.B) {
	b.Run("long-lived", benchLongLived)
	b.Run("stream-per-block", benchStreamPerBlock)
}

func benchLongLived(b *testing.B) {
	p := newSDPair(b)
	n := b.N

	// Uploader: answer each request on the same stream until the downloader's FIN.
	p.wg.Go(func() {
		s, err := p.up.AcceptStream(p.ctx)
		if err != nil {
			p.fail(err)
			return
		}
		req := make([]byte, sdReqLen)
		for {
			if _, err := io.ReadFull(s, req); err != nil {
				if !errors.Is(err, io.EOF) {
					p.fail(err)
				}
				s.Close()
				return
			}
			if err := sdWriteBlock(s, req); err != nil {
				p.fail(err)
				return
			}
		}
	})

	s, err := p.down.OpenStreamSync(p.ctx)
	if err != nil {
		b.Fatal(err)
	}
	// inflight is the window: it holds the send time of each outstanding
	// request, in order, as the blocks come back in order.
	inflight := make(chan time.Time, sdWindow)
	lat := make([]time.Duration, n)
	buf := make([]byte, sdHdrLen+sdBlock)
	want := make([]byte, sdReqLen)
	b.SetBytes(sdBlock)
	b.ReportAllocs()
	b.ResetTimer()

	p.wg.Go(func() {
		req := make([]byte, sdReqLen)
		for i := range n {
			select {
			case inflight <- time.Now():
			case <-p.ctx.Done():
				return
			}
			sdPutReq(req, i)
			if _, err := s.Write(req); err != nil {
				p.fail(err)
				return
			}
		}
	})
	for i := range n {
		if _, err := io.ReadFull(s, buf); err != nil {
			p.fail(err)
			return
		}
		sdPutReq(want, i)
		if !bytes.Equal(buf[:sdHdrLen], want) {
			p.fail(fmt.Errorf("block %d: header %x, want %x", i, buf[:sdHdrLen], want))
			return
		}
		lat[i] = time.Since(<-inflight)
	}
	b.StopTimer()
	s.Close()
	sdReport(b, lat, 1/float64(n))
}

func benchStreamPerBlock(b *testing.B) {
	p := newSDPair(b)
	n := b.N

	// Uploader: one goroutine per accepted stream, as a real server would.
	p.wg.Go(func() {
		for {
			s, err := p.up.AcceptStream(p.ctx)
			if err != nil {
				p.fail(err)
				return
			}
			p.wg.Go(func() {
				req := make([]byte, sdReqLen)
				if _, err := io.ReadFull(s, req); err != nil {
					p.fail(err)
					return
				}
				if err := sdExpectEOF(s); err != nil {
					p.fail(err)
					return
				}
				if err := sdWriteBlock(s, req); err != nil {
					p.fail(err)
					return
				}
				s.Close()
			})
		}
	})

	lat := make([]time.Duration, n)
	bufs := make([][]byte, sdWindow)
	for w := range bufs {
		bufs[w] = make([]byte, sdReqLen+sdHdrLen+sdBlock)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(sdBlock)
	b.ReportAllocs()
	b.ResetTimer()

	// sdWindow downloaders, each with one request outstanding.
	for w := range sdWindow {
		wg.Go(func() {
			req, buf := bufs[w][:sdReqLen], bufs[w][sdReqLen:]
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t := time.Now()
				s, err := p.down.OpenStreamSync(p.ctx)
				if err != nil {
					p.fail(err)
					return
				}
				sdPutReq(req, i)
				if _, err := s.Write(req); err != nil {
					p.fail(err)
					return
				}
				s.Close()
				if _, err := io.ReadFull(s, buf); err != nil {
					p.fail(err)
					return
				}
				if !bytes.Equal(buf[:sdHdrLen], req) {
					p.fail(fmt.Errorf("block %d: header %x, want %x", i, buf[:sdHdrLen], req))
					return
				}
				if err := sdExpectEOF(s); err != nil {
					p.fail(err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	sdReport(b, lat, 1)
}

// sdPair is one QUIC connection between two transports on 127.0.0.1.
type sdPair struct {
	b        *testing.B
	ctx      context.Context
	up, down *quic.Conn // uploader (server) and downloader (client)
	wg       sync.WaitGroup
	once     sync.Once
}

func newSDPair(b *testing.B) *sdPair {
	b.Helper()
	srvID, err := protocol.GenerateIdentity()
	if err != nil {
		b.Fatal(err)
	}
	cliID, err := protocol.GenerateIdentity()
	if err != nil {
		b.Fatal(err)
	}
	srvTLS, cliTLS := srvID.ServerTLS(), cliID.ClientTLS(srvID.ID)
	srvTLS.NextProtos = []string{protocol.ALPN}
	cliTLS.NextProtos = []string{protocol.ALPN}
	qc := transport.QUICConfig(30*time.Second, 10*time.Second, 5*time.Second)
	qc.MaxIncomingStreams = sdMaxStream // the overlay's windows: 1-16 MiB per stream, 2-32 MiB per connection

	ctx, cancel := context.WithCancel(context.Background())
	p := &sdPair{b: b, ctx: ctx}
	var closers []func()
	b.Cleanup(func() {
		cancel() // from here on, errors are expected and not reported
		for _, c := range slices.Backward(closers) {
			c()
		}
		p.wg.Wait()
	})
	udp := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		closers = append(closers, func() { c.Close() })
		return c
	}
	st := &quic.Transport{Conn: udp()}
	closers = append(closers, func() { st.Close() })
	ct := &quic.Transport{Conn: udp()}
	closers = append(closers, func() { ct.Close() })
	ln, err := st.Listen(srvTLS, qc)
	if err != nil {
		b.Fatal(err)
	}
	closers = append(closers, func() { ln.Close() })

	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	defer hcancel()
	p.down, err = ct.Dial(hctx, st.Conn.LocalAddr(), cliTLS, qc)
	if err != nil {
		b.Fatal(err)
	}
	closers = append(closers, func() { p.down.CloseWithError(0, "") })
	p.up, err = ln.Accept(hctx)
	if err != nil {
		b.Fatal(err)
	}
	closers = append(closers, func() { p.up.CloseWithError(0, "") })
	return p
}

// fail reports the first error of a run and closes the connection, which
// unblocks every stream call on both sides.
func (p *sdPair) fail(err error) {
	if p.ctx.Err() != nil {
		return
	}
	p.once.Do(func() {
		p.b.Error(err)
		p.down.CloseWithError(1, "benchmark failed")
	})
}

// sdPutReq encodes the request for block i: 16 blocks per 256 KiB piece.
func sdPutReq(req []byte, i int) {
	const perPiece = sdPieceLen / sdBlock
	binary.BigEndian.PutUint32(req[0:], uint32(i/perPiece))
	binary.BigEndian.PutUint32(req[4:], uint32(i%perPiece*sdBlock))
	binary.BigEndian.PutUint32(req[8:], sdBlock)
}

// sdWriteBlock sends the block header (the request echoed) and the payload.
func sdWriteBlock(s *quic.Stream, req []byte) error {
	if _, err := s.Write(req); err != nil {
		return err
	}
	_, err := s.Write(sdPayload)
	return err
}

// sdExpectEOF reads the peer's FIN, which lets quic-go retire the stream.
func sdExpectEOF(s *quic.Stream) error {
	var one [1]byte
	k, err := s.Read(one[:])
	if k == 0 && errors.Is(err, io.EOF) {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("%d bytes after the frame", k)
	}
	return err
}

func sdReport(b *testing.B, lat []time.Duration, streamsPerOp float64) {
	if b.Failed() || len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-us")
	b.ReportMetric(streamsPerOp, "streams/op")
}
