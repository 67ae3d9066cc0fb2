package relay

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// BenchmarkRelayedVsDirect moves the same bytes over one QUIC stream on
// loopback three ways in each iteration, with no rate cap: direct between
// two UDP sockets, through this relay, and through coturn when its
// turnserver is installed. The listener sits on the allocation, as a peer
// behind a NAT does, and the dialler sends to the relayed address. It
// reports each path's rate and the relayed ones as a share of direct.
func BenchmarkRelayedVsDirect(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, size)
	rand.Read(data)

	s := newRelay(b, Config{AllowLoopbackPeers: true}, zerolog.WarnLevel)
	ours, err := tryAllocate(b, serverAddr(s, false), false, mint("peer-a"))
	if err != nil {
		b.Fatal(err)
	}
	type path struct {
		name  string
		alloc *Allocation // where the listener sits; nil: a UDP socket of its own
	}
	paths := []path{{"direct", nil}, {"relay", ours}}
	if _, err := exec.LookPath("turnserver"); err == nil {
		_, coturn := startCoturn(b)
		paths = append(paths, path{"coturn", coturn})
	}
	took := make([]time.Duration, len(paths))
	b.SetBytes(size * int64(len(paths)))
	b.ResetTimer()
	for range b.N {
		for i, p := range paths {
			pc := loopbackUDP(b)
			var lpc net.PacketConn
			var to net.Addr
			if p.alloc == nil {
				l := loopbackUDP(b)
				lpc, to = l, l.LocalAddr()
			} else {
				if err := p.alloc.Permit(pc.LocalAddr()); err != nil {
					b.Fatal(err)
				}
				lpc, to = p.alloc, p.alloc.RelayedAddr()
			}
			var got counter
			d := quicMove(b, lpc, pc, to, data, &got)
			if got != size {
				b.Fatalf("%s: %d bytes arrived, want %d", p.name, got, size)
			}
			took[i] += d
		}
	}
	b.StopTimer()
	rate := func(i int) float64 { return float64(size) * float64(b.N) / took[i].Seconds() / 1e6 }
	direct := rate(0)
	b.ReportMetric(direct, "direct-MB/s")
	for i, p := range paths[1:] {
		r := rate(i + 1)
		b.ReportMetric(r, p.name+"-MB/s")
		b.ReportMetric(100*r/direct, p.name+"-%direct")
		fmt.Fprintf(os.Stderr, "%-7s %7.1f MB/s, %3.0f%% of direct %.1f MB/s (target: our relay >= 60%%, stretch 80%%)\n",
			p.name, r, 100*r/direct, direct)
	}
}

// counter counts what is written to it and keeps none of it.
type counter int64

func (c *counter) Write(p []byte) (int, error) {
	*c += counter(len(p))
	return len(p), nil
}
