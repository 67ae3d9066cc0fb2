package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/quic-go/quic-go"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
)

// rawConn is a QUIC connection made by hand with a fresh key: an attacker
// that writes whatever bytes it likes, hello or not.
func rawConn(ctx context.Context, t *testing.T, ip, addr string, expect protocol.PeerID) (*quic.Conn, *quic.Transport, error) {
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: c}
	ua, _ := net.ResolveUDPAddr("udp", addr)
	conn, err := tr.Dial(ctx, ua, id.ClientTLS(expect), &quic.Config{HandshakeIdleTimeout: 5 * time.Second, MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		tr.Close()
		c.Close()
		return nil, nil, err
	}
	return conn, tr, nil
}

func closeRaw(c *quic.Conn, tr *quic.Transport) {
	c.CloseWithError(0, "")
	tr.Close()
	tr.Conn.Close()
}

// header is a frame header claiming n bytes of type ty.
func header(ty protocol.MsgType, n int) []byte { return protocol.AppendHeader(nil, ty, uint32(n)) }

// Memory amplification: before any hello, connections send a 1 MiB
// user_store frame of records whose supernode lists are nils, which once
// decoded to 66 MB each; and after a hello, leaves send 1 MiB frames of the
// most expensive bodies the decoder takes. From one host, for the whole
// attack, 16 connections at a time.
func TestHostileMemoryAmplification(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	// A user_store whose 64 records each ask for a long list of nil supernodes.
	var body bytes.Buffer
	body.Write([]byte{0x81, 0xa1, 'r', 0xdc, 0x00, 0x40})
	for range 64 {
		body.Write([]byte{0x81, 0xa2, 's', 'n', 0xdc, 0x3f, 0x00})
		body.Write(bytes.Repeat([]byte{0xc0}, 0x3f00))
	}
	userStore := append(header(protocol.TypeUserStore, body.Len()), body.Bytes()...)
	// After a hello: hits of 256 hits of 64 sources (the costliest body there is).
	var hits bytes.Buffer
	hits.Write([]byte{0x82, 0xa1, 'q', 0xc4, 0x10})
	hits.Write(make([]byte, 16))
	hits.Write([]byte{0xa1, 'h', 0xdc, 0x01, 0x00})
	for i := range 256 {
		hits.Write([]byte{0x83, 0xa1, 'i', 0xc4, 0x20})
		hits.Write(bytes.Repeat([]byte{byte(i + 1)}, 32))
		hits.Write([]byte{0xa1, 'n', 0xa1, 'x', 0xa3, 's', 'r', 'c', 0xdc, 0x00, 0x40})
		for range 64 {
			hits.Write([]byte{0x82, 0xa1, 'p', 0xc4, 0x20})
			hits.Write(bytes.Repeat([]byte{0x01}, 32))
			hits.Write([]byte{0xa1, 'a', 0x98})
			for range 8 {
				hits.Write([]byte{0xa1, '1'})
			}
		}
	}
	hitsFrame := append(header(protocol.TypeHits, hits.Len()), hits.Bytes()...)
	var sent, refusedBeforeHello atomic.Int64
	a.during(15*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					c, tr, err := rawConn(ctx, t, ip, a.sn1Addr, a.sn1ID)
					if err != nil {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					s, err := c.OpenStreamSync(ctx)
					if err == nil {
						if w%2 == 0 {
							// Before the hello.
							s.Write(userStore)
							if _, err := s.Read(make([]byte, 1)); err != nil {
								refusedBeforeHello.Add(1)
							}
						} else {
							// As a leaf, then the costliest body, again and again.
							h, _ := protocol.AppendFrame(nil, &protocol.Hello{MinVersion: 1, MaxVersion: protocol.MaxVersion, Role: protocol.RoleLeaf})
							s.Write(h)
							for i := 0; i < 20 && ctx.Err() == nil; i++ {
								if _, err := s.Write(hitsFrame); err != nil {
									break
								}
								sent.Add(1)
							}
						}
					}
					closeRaw(c, tr)
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("%d-byte user_store frames before the hello: %d connections refused; %d hits frames of %d bytes sent by leaves",
		len(userStore), refusedBeforeHello.Load(), sent.Load(), len(hitsFrame))
}

// Slow bodies: connections send frame headers that claim 1 MiB and then
// stall, on the message stream and on every stream they may open, up to
// the per-address connection cap.
func TestHostileSlowBodies(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	var opened, streams atomic.Int64
	a.during(20*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		var wg sync.WaitGroup
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, tr, err := rawConn(ctx, t, ip, a.sn1Addr, a.sn1ID)
				if err != nil {
					return
				}
				defer closeRaw(c, tr)
				opened.Add(1)
				s, err := c.OpenStreamSync(ctx)
				if err != nil {
					return
				}
				h, _ := protocol.AppendFrame(nil, &protocol.Hello{MinVersion: 1, MaxVersion: protocol.MaxVersion, Role: protocol.RoleLeaf})
				s.Write(h)
				s.Write(header(protocol.TypePublish, protocol.MaxFrameSize))
				s.Write(bytes.Repeat([]byte{0x80}, 1000))
				for i := 0; i < 255; i++ {
					more, err := c.OpenStream()
					if err != nil {
						break
					}
					streams.Add(1)
					more.Write(header(protocol.TypePublish, protocol.MaxFrameSize))
				}
				<-ctx.Done()
			}()
		}
		wg.Wait()
	})
	t.Logf("%d connections opened from one host (40 tried), %d extra streams opened on them; each stalled a header claiming 1 MiB",
		opened.Load(), streams.Load())
}

// STUN flood: one host sends Binding requests as fast as it can; a peer on
// another address still has its own answered by the supernode's socket.
func TestHostileSTUNFlood(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	var floods, answered atomic.Int64
	var honestOK, honestTries atomic.Int64
	a.during(12*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		srv, _ := net.ResolveUDPAddr("udp", a.sn1Addr)
		var wg sync.WaitGroup
		for range 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
				if err != nil {
					return
				}
				defer c.Close()
				go func() {
					buf := make([]byte, 1500)
					for {
						if _, _, err := c.ReadFrom(buf); err != nil {
							return
						}
						answered.Add(1)
					}
				}()
				req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
				for ctx.Err() == nil {
					for range 1000 {
						c.WriteTo(req.Raw, srv)
					}
					floods.Add(1000)
				}
			}()
		}
		// The honest client: the peer's own STUN client (retransmitting at
		// 500 ms, 1 s, 2 s, ...), with the 5 s a NAT check gives it.
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := a.attackerNode("127.2.200.1")
			for ctx.Err() == nil {
				honestTries.Add(1)
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := n.Reflexive(rctx, srv); err == nil {
					honestOK.Add(1)
				}
				cancel()
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
		wg.Wait()
	})
	t.Logf("flood: %d binding requests from one host, %d answered; honest client: %d of %d bindings answered",
		floods.Load(), answered.Load(), honestOK.Load(), honestTries.Load())
	if honestOK.Load() == 0 {
		t.Errorf("the honest client got none of its %d bindings answered during the flood", honestTries.Load())
	}
}

// The attacks on a peer daemon: connections to the asker that open transfer
// streams claiming big frames and stall, deliveries that announce gigabytes
// and send nothing, and a flood of silent handshakes. The daemon stays within
// its memory, and a file sent by an honest peer still arrives.
func TestHostilePeerDaemon(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	askerAddr := a.peerAddr(a.asker)
	askerID, err := protocol.ParsePeerID(a.peerID(a.asker))
	if err != nil {
		t.Fatal(err)
	}
	var conns, deliveries atomic.Int64
	a.during(20*time.Second, []*process{a.asker.proc}, func(ctx context.Context) {
		var wg sync.WaitGroup
		for w := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					c, tr, err := rawConn(ctx, t, ip, askerAddr, askerID)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					conns.Add(1)
					s, err := c.OpenStreamSync(ctx)
					if err != nil {
						closeRaw(c, tr)
						continue
					}
					h, _ := protocol.AppendFrame(nil, &protocol.Hello{MinVersion: 1, MaxVersion: protocol.MaxVersion, Role: protocol.RoleTransfer})
					s.Write(h)
					for i := 0; i < 64 && ctx.Err() == nil; i++ {
						st, err := c.OpenStream()
						if err != nil {
							break
						}
						if w%2 == 0 {
							d, _ := protocol.AppendFrame(nil, &protocol.Deliver{Name: fmt.Sprintf("big%d.bin", i), Size: 4 << 30,
								SHA256: bytes.Repeat([]byte{1}, 32)})
							st.Write(d)
							deliveries.Add(1)
						} else {
							st.Write(header(protocol.TypeJoin, 16<<10))
						}
					}
					select {
					case <-ctx.Done():
					case <-time.After(12 * time.Second):
					}
					closeRaw(c, tr)
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("%d transfer connections to the asker, %d stalled deliveries of 4 GiB announced", conns.Load(), deliveries.Load())
	// An honest delivery afterwards, and nothing left of the attacker's.
	note := filepath.Join(a.l.root, "note.txt")
	if err := os.WriteFile(note, []byte("still here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 20*time.Second, "holder1's note delivered to the asker", func() (bool, string) {
		r := a.l.peer(a.holder1.dataDir, "send", "asker", note)
		return r.code == 0, r.String()
	})
	entries, _ := os.ReadDir(filepath.Join(a.asker.dataDir, "inbox"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "big") || strings.HasPrefix(e.Name(), ".incoming") {
			t.Errorf("the attacker's delivery left %s in the inbox", e.Name())
		}
	}
	_ = sha256.Size
	_ = peer.InboxAnyone
}

// peerAddr is where a daemon listens.
func (a *arena) peerAddr(d daemon) string { return a.status(d).LocalAddr }
