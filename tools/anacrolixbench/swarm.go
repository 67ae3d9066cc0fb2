package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"
)

const (
	fileName = "swarm-bench.bin"
	// chunk is the request size anacrolix uses on the wire; the rate limiters'
	// bursts are sized from it the way the project's swarm sizes them from its block.
	chunk = 16 << 10
)

// Config sets up one run. Rates are bytes per second; PeerDown 0 means unlimited.
type Config struct {
	Downloaders int
	FileSize    int64
	PieceSize   int64 // 0: the project's piece size for FileSize (pieceSizeFor)
	SourceUp    int64
	PeerUp      int64
	PeerDown    int64
	Timeout     time.Duration
	Seed        uint64 // of the file's random bytes
	Log         *slog.Logger
}

// Result is what one run measured; its fields mean what swarmbench.Result's do.
type Result struct {
	Config
	Done      []time.Duration // completion time of each downloader, sorted
	Bound     time.Duration   // max{F/u_s, F/d_min, N*F/(u_s + sum u_i)}
	ClientSrv time.Duration   // N*F/u_s
	Copies    float64         // chunk bytes the seeder sent, in copies of the file
	PeerBytes int64           // chunk bytes all downloaders sent
	Identical int             // downloads byte-identical to the original
	WallSwarm time.Duration   // slowest downloader
	CPU       time.Duration   // user and system time of this process during the swarm
}

// Ratio is the slowest completion over the bound.
func (r *Result) Ratio() float64 { return r.WallSwarm.Seconds() / r.Bound.Seconds() }

// The tool does not import the project's module: its dependencies and
// anacrolix's do not resolve together (pion/turn v4.1 against the pion/ice
// anacrolix needs). So the two formulas the comparison rests on are restated
// here; keep them as content.PieceSizeFor and swarmbench.Bound have them.

// pieceSizeFor is content.PieceSizeFor: 256 KiB, doubled until the file has at
// most 16384 pieces, but never above 64 MiB.
func pieceSizeFor(size int64) int64 {
	ps := int64(256 << 10)
	for ps < 64<<20 && (size+ps-1)/ps > 16384 {
		ps *= 2
	}
	return ps
}

// bound is swarmbench.Bound: the least time any schedule needs to bring the
// file to every downloader, max{F/u_s, F/d_min, N*F/(u_s + sum u_i)}.
func bound(n int, size, srcUp, peerUp, peerDown int64) time.Duration {
	f := float64(size)
	d := f / float64(srcUp)
	if peerDown > 0 {
		d = max(d, f/float64(peerDown))
	}
	d = max(d, float64(n)*f/(float64(srcUp)+float64(n)*float64(peerUp)))
	return time.Duration(d * float64(time.Second))
}

// clientConfig is a torrent client that talks only to the peers it is given:
// TCP on 127.0.0.1, no DHT, trackers, PEX, uTP, UPnP, web seeds or WebTorrent.
func clientConfig(cfg Config, dataDir string, up, down int64) *torrent.ClientConfig {
	c := torrent.NewDefaultClientConfig()
	c.DataDir = dataDir
	c.ListenHost = func(string) string { return "127.0.0.1" }
	c.ListenPort = 0
	c.NoDHT = true
	c.DisableTrackers = true
	c.DisablePEX = true
	c.DisableUTP = true
	c.DisableIPv6 = true
	c.NoDefaultPortForwarding = true
	c.DisableWebtorrent = true
	c.DisableWebseeds = true
	// Keep uploading once complete, as the project's peers do until the run ends.
	c.Seed = true
	// Every peer is meant to reach every other; the default caps are for the internet.
	c.EstablishedConnsPerTorrent = max(c.EstablishedConnsPerTorrent, cfg.Downloaders+1)
	c.DialRateLimiter = rate.NewLimiter(rate.Inf, 0)
	c.UploadRateLimiter = limiter(up)
	c.DownloadRateLimiter = nil
	if down > 0 {
		c.DownloadRateLimiter = limiter(down)
	}
	c.Slogger = cfg.Log
	return c
}

// limiter allows bytesPerSec with the burst the project's swarm uses: a few
// chunks, or a fiftieth of a second, whichever is more.
func limiter(bytesPerSec int64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(bytesPerSec), max(4*chunk, int(bytesPerSec/50)))
}

// Run runs the swarm once: a seeder and cfg.Downloaders clients, each with its
// own data folder under a temporary folder that Run removes before it returns.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Downloaders < 1 || cfg.FileSize < 1 || cfg.SourceUp <= 0 || cfg.PeerUp <= 0 {
		return nil, errors.New("need at least one downloader, a file, and upload rates above zero")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.PieceSize <= 0 {
		cfg.PieceSize = pieceSizeFor(cfg.FileSize)
	}
	if cfg.PieceSize%chunk != 0 {
		return nil, fmt.Errorf("piece size %d is not a multiple of %d", cfg.PieceSize, chunk)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp(scratchRoot(int64(cfg.Downloaders+1)*cfg.FileSize), "anacrolixbench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	var clients []*torrent.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	start := func(name string, up, down int64) (*torrent.Client, error) {
		data := filepath.Join(dir, name)
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		c, err := torrent.NewClient(clientConfig(cfg, data, up, down))
		if err != nil {
			return nil, fmt.Errorf("client %s: %w", name, err)
		}
		clients = append(clients, c)
		return c, nil
	}

	src, err := start("source", cfg.SourceUp, 0)
	if err != nil {
		return nil, err
	}
	orig := filepath.Join(dir, "source", fileName)
	if err := writeRandom(orig, cfg.FileSize, cfg.Seed); err != nil {
		return nil, err
	}
	info := metainfo.Info{PieceLength: cfg.PieceSize}
	if err := info.BuildFromFilePath(orig); err != nil {
		return nil, fmt.Errorf("hashing the file: %w", err)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, err
	}
	mi := &metainfo.MetaInfo{InfoBytes: infoBytes}
	srcT, err := src.AddTorrent(mi)
	if err != nil {
		return nil, fmt.Errorf("seeder: %w", err)
	}
	// The seeder checks its copy before the clock starts, as the project's first
	// source hashes its share before it is found in the index.
	if err := srcT.VerifyDataContext(ctx); err != nil {
		return nil, fmt.Errorf("seeder: %w", err)
	}
	select {
	case <-srcT.Complete().On():
	case <-ctx.Done():
		return nil, fmt.Errorf("the seeder never had the whole file: %w", context.Cause(ctx))
	}

	getters := make([]*torrent.Client, cfg.Downloaders)
	for i := range getters {
		if getters[i], err = start(fmt.Sprintf("peer%02d", i+1), cfg.PeerUp, cfg.PeerDown); err != nil {
			return nil, err
		}
	}
	addr := func(c *torrent.Client) torrent.PeerInfo {
		return torrent.PeerInfo{
			Addr:   &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.LocalPort()},
			Source: torrent.PeerSourceDirect,
		}
	}
	everyone := []torrent.PeerInfo{addr(src)}
	for _, g := range getters {
		everyone = append(everyone, addr(g))
	}

	res = &Result{Config: cfg}
	res.Bound = bound(cfg.Downloaders, cfg.FileSize, cfg.SourceUp, cfg.PeerUp, cfg.PeerDown)
	res.ClientSrv = time.Duration(float64(cfg.Downloaders) * float64(cfg.FileSize) / float64(cfg.SourceUp) * float64(time.Second))

	srcBefore := sent(srcT)
	cpu0 := cpuTime()
	t0 := time.Now()
	ts := make([]*torrent.Torrent, len(getters))
	for i, g := range getters {
		t, err := g.AddTorrent(mi)
		if err != nil {
			return nil, fmt.Errorf("peer%02d: %w", i+1, err)
		}
		t.DownloadAll()
		ts[i] = t
	}
	// Each peer is told of all the others; a pair that dials both ways keeps one connection.
	srcT.AddPeers(everyone[1:])
	for i, t := range ts {
		others := slices.Concat(everyone[:i+1], everyone[i+2:])
		t.AddPeers(others)
	}
	done := make([]time.Duration, len(ts))
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Go(func() {
			select {
			case <-t.Complete().On():
				done[i] = time.Since(t0)
			case <-ctx.Done():
				errs[i] = fmt.Errorf("peer%02d has %d of %d bytes: %w", i+1, t.BytesCompleted(), cfg.FileSize, context.Cause(ctx))
			}
		})
	}
	wg.Wait()
	res.CPU = cpuTime() - cpu0
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	res.Copies = float64(sent(srcT)-srcBefore) / float64(cfg.FileSize)
	for _, t := range ts {
		res.PeerBytes += sent(t)
	}
	slices.Sort(done)
	res.Done = done
	res.WallSwarm = done[len(done)-1]
	for i := range getters {
		same, err := sameBytes(orig, filepath.Join(dir, fmt.Sprintf("peer%02d", i+1), fileName))
		if err != nil {
			return nil, err
		}
		if same {
			res.Identical++
		}
	}
	return res, nil
}

// sent is the chunk payload t has uploaded, as the project counts the block
// bytes a peer sends: no message headers, handshakes or retransmissions.
func sent(t *torrent.Torrent) int64 {
	st := t.Stats()
	return st.BytesWrittenData.Int64()
}

// sameBytes reports whether the files at a and b hold the same bytes. A
// missing b is a difference, not an error.
func sameBytes(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		endA := ea == io.EOF || ea == io.ErrUnexpectedEOF
		endB := eb == io.EOF || eb == io.ErrUnexpectedEOF
		if ea != nil && !endA {
			return false, ea
		}
		if eb != nil && !endB {
			return false, eb
		}
		if endA || endB {
			return endA && endB, nil
		}
	}
}

// scratchRoot picks a RAM-backed folder when it has room, as swarmbench does,
// so both harnesses measure the swarm rather than the one disk all peers share.
func scratchRoot(need int64) string {
	if free, ok := freeBytes("/dev/shm"); ok && free > need+need/4 {
		return "/dev/shm"
	}
	return os.TempDir()
}

// writeRandom fills path with size bytes drawn from a generator seeded with seed.
func writeRandom(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, ^seed))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		for i := 0; i < len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	return f.Close()
}

// anacrolixVersion is the version of github.com/anacrolix/torrent built in.
func anacrolixVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/anacrolix/torrent" {
				return m.Version
			}
		}
	}
	return "(unknown version)"
}

// Print writes the result in the layout of swarmbench.Result.Print, so that
// the two outputs line up; the second line names this client instead of the
// project's choking settings, and a last line gives CPU-seconds per GB delivered.
func (r *Result) Print(w io.Writer) {
	mb := func(v int64) string {
		if v <= 0 {
			return "unlimited"
		}
		return fmt.Sprintf("%.1f MB/s", float64(v)/1e6)
	}
	fmt.Fprintf(w, "swarm: %d downloaders, %.1f MiB file, first source up %s, downloaders up %s, down %s\n",
		r.Downloaders, float64(r.FileSize)/(1<<20), mb(r.SourceUp), mb(r.PeerUp), mb(r.PeerDown))
	fmt.Fprintf(w, "client: anacrolix/torrent %s, TCP on loopback, %d KiB pieces, no DHT, trackers or PEX\n",
		anacrolixVersion(), r.PieceSize>>10)
	fmt.Fprintf(w, "completion times (s):")
	for i, d := range r.Done {
		if i%12 == 0 {
			fmt.Fprintf(w, "\n ")
		}
		fmt.Fprintf(w, " %.2f", d.Seconds())
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-34s %8.2f s\n", "slowest downloader", r.WallSwarm.Seconds())
	fmt.Fprintf(w, "%-34s %8.2f s\n", "bound D", r.Bound.Seconds())
	fmt.Fprintf(w, "%-34s %8.3f\n", "ratio to the bound", r.Ratio())
	fmt.Fprintf(w, "%-34s %8.3f\n", "copies sent by the first source", r.Copies)
	fmt.Fprintf(w, "%-34s %8.2f s\n", "client-server time N*F/u_s", r.ClientSrv.Seconds())
	fmt.Fprintf(w, "%-34s %8.2f copies\n", "uploaded by the downloaders", float64(r.PeerBytes)/float64(r.FileSize))
	fmt.Fprintf(w, "%-34s %5d of %d\n", "byte-identical downloads", r.Identical, r.Downloaders)
	if r.CPU > 0 {
		busy := r.CPU.Seconds() / r.WallSwarm.Seconds() / float64(runtime.NumCPU())
		fmt.Fprintf(w, "%-34s %8.1f s, %.0f%% of %d cores", "CPU used by all the peers", r.CPU.Seconds(), 100*busy, runtime.NumCPU())
		if busy > 0.7 {
			fmt.Fprint(w, " (near the limit: the times measure this machine, not the swarm)")
		}
		fmt.Fprintln(w)
		gb := float64(r.Downloaders) * float64(r.FileSize) / 1e9
		fmt.Fprintf(w, "%-34s %8.2f s/GB\n", "CPU per GB delivered (N*F)", r.CPU.Seconds()/gb)
	}
}
