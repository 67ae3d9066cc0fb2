// Package swarmbench runs a swarm on loopback (one supernode as the tracker, a
// first source and N downloaders, each a real peer daemon with its own QUIC
// socket, all in this process) and compares its completion times with the
// lower bound for the same rates. `peer bench swarm` prints what it measures.
package swarmbench

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

// Config sets up one run. Rates are bytes per second; 0 means unlimited.
type Config struct {
	Downloaders        int
	FileSize           int64
	SourceUp           int64
	PeerUp             int64
	PeerDown           int64
	UnchokeInterval    time.Duration
	OptimisticInterval time.Duration
	UnchokeSlots       int
	Timeout            time.Duration
	Dir                string    // where the files go; a temporary folder when empty (in RAM where there is room)
	Seed               uint64    // of the file's random bytes
	Trace              io.Writer // if set, gets the swarm's rates every TraceEvery
	TraceEvery         time.Duration
	Log                zerolog.Logger
}

// Result is what one run measured.
type Result struct {
	Config
	Done      []time.Duration // completion time of each downloader, sorted
	Bound     time.Duration   // max{F/u_s, F/d_min, N*F/(u_s + sum u_i)}
	ClientSrv time.Duration   // N*F/u_s: the first source alone sending to all
	Copies    float64         // bytes the first source sent, in copies of the file
	PeerBytes int64           // bytes all downloaders uploaded
	Identical int             // downloads byte-identical to the original
	WallSwarm time.Duration   // slowest downloader
	CPU       time.Duration   // user and system time of this process during the swarm
}

// Ratio is the slowest completion over the bound.
func (r *Result) Ratio() float64 { return r.WallSwarm.Seconds() / r.Bound.Seconds() }

// Bound is the least time any schedule needs to bring the file to every downloader.
func Bound(n int, size, srcUp, peerUp, peerDown int64) time.Duration {
	f := float64(size)
	d := f / float64(srcUp)
	if peerDown > 0 {
		d = max(d, f/float64(peerDown))
	}
	d = max(d, float64(n)*f/(float64(srcUp)+float64(n)*float64(peerUp)))
	return time.Duration(d * float64(time.Second))
}

// Run runs the swarm once.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Downloaders < 1 || cfg.FileSize < 1 || cfg.SourceUp <= 0 || cfg.PeerUp <= 0 {
		return nil, errors.New("swarmbench: need at least one downloader, a file, and upload rates above zero")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp(scratchRoot(int64(cfg.Downloaders+1)*cfg.FileSize), "swarmbench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	sn, snDone, err := startSupernode(cfg.Log, cfg.Downloaders+1)
	if err != nil {
		return nil, err
	}
	defer func() { sn.Close(); <-snDone }()
	target := sn.ID().String() + "@" + sn.Addr().String()

	srcDir := filepath.Join(dir, "source")
	share := filepath.Join(srcDir, "share")
	if err := os.MkdirAll(share, 0o755); err != nil {
		return nil, err
	}
	if err := writeRandom(filepath.Join(share, "swarm-bench.bin"), cfg.FileSize, cfg.Seed); err != nil {
		return nil, err
	}
	tune := func(c *peer.Config) {
		c.UnchokeInterval, c.OptimisticInterval, c.UnchokeSlots = cfg.UnchokeInterval, cfg.OptimisticInterval, cfg.UnchokeSlots
		c.MaxSwarmPeers = max(peer.DefaultConfig().MaxSwarmPeers, cfg.Downloaders+1)
	}
	var daemons []*peer.Daemon
	var wg sync.WaitGroup
	defer func() {
		for _, d := range daemons {
			d.Close()
		}
		wg.Wait()
	}()
	start := func(name, share string, up, down int64) (*peer.Daemon, error) {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		c := peer.Config{
			DataDir: filepath.Join(dir, name, "data"), ShareDir: share, Name: name,
			Supernodes: []string{target}, Conn: conn, ControlSocket: "-",
			UploadRate: up, DownloadRate: down, Log: cfg.Log.With().Str("peer", name).Logger(),
		}
		tune(&c)
		d, err := peer.New(c)
		if err != nil {
			conn.Close()
			return nil, err
		}
		daemons = append(daemons, d)
		wg.Add(1)
		go func() { defer wg.Done(); d.Serve(context.Background()) }()
		return d, nil
	}
	src, err := start("source", share, cfg.SourceUp, 0)
	if err != nil {
		return nil, err
	}
	var id protocol.ContentID
	if err := poll(ctx, func() bool {
		f := src.Share().Files()
		if len(f) != 1 {
			return false
		}
		id = f[0].ID
		found := false
		_, err := src.Search(ctx, "", id, 0, func(h []protocol.Hit) { found = found || len(h) > 0 })
		return err == nil && found
	}); err != nil {
		return nil, fmt.Errorf("the first source's file never showed in the index: %w", err)
	}
	var getters []*peer.Daemon
	for i := range cfg.Downloaders {
		name := fmt.Sprintf("peer%02d", i+1)
		if err := os.MkdirAll(filepath.Join(dir, name, "out"), 0o755); err != nil {
			return nil, err
		}
		d, err := start(name, "", cfg.PeerUp, cfg.PeerDown)
		if err != nil {
			return nil, err
		}
		getters = append(getters, d)
	}
	// They attach in a second or two; a minute means the supernode refuses.
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, d := range getters {
		if err := poll(actx, func() bool { return d.Status().Supernode.Connected }); err != nil {
			return nil, fmt.Errorf("downloader peer%02d did not attach: %w", i+1, err)
		}
	}
	res := &Result{Config: cfg}
	res.Bound = Bound(cfg.Downloaders, cfg.FileSize, cfg.SourceUp, cfg.PeerUp, cfg.PeerDown)
	res.ClientSrv = time.Duration(float64(cfg.Downloaders) * float64(cfg.FileSize) / float64(cfg.SourceUp) * float64(time.Second))

	upBefore := src.Status().Uploaded
	cpu0 := cpuTime()
	t0 := time.Now()
	done := make([]time.Duration, len(getters))
	paths := make([]string, len(getters))
	errs := make([]error, len(getters))
	var gw sync.WaitGroup
	for i, d := range getters {
		gw.Add(1)
		go func() {
			defer gw.Done()
			paths[i], errs[i] = d.Get(ctx, id, filepath.Join(dir, fmt.Sprintf("peer%02d", i+1), "out"), nil)
			done[i] = time.Since(t0)
		}()
	}
	stopTrace, traced := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(traced)
		if cfg.Trace != nil {
			trace(cfg, src, getters, t0, stopTrace)
		}
	}()
	gw.Wait()
	close(stopTrace)
	<-traced
	res.CPU = cpuTime() - cpu0
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	res.Copies = float64(src.Status().Uploaded-upBefore) / float64(cfg.FileSize)
	for _, d := range getters {
		res.PeerBytes += d.Status().Uploaded
	}
	slices.Sort(done)
	res.Done = done
	res.WallSwarm = done[len(done)-1]
	// The same content ID is the same bytes: it hashes every piece.
	for _, p := range paths {
		if m, err := content.HashFile(p); err == nil && m.ID() == id {
			res.Identical++
		}
	}
	return res, nil
}

// trace prints, every TraceEvery, the first source's upload rate, the
// downloaders' total upload and verified-download rates, how many are done,
// how many uploaded under half their limit (the swarm is not using them), and
// the downloaders' swarm sessions and unchoked peers.
func trace(cfg Config, src *peer.Daemon, getters []*peer.Daemon, t0 time.Time, stop <-chan struct{}) {
	every := cfg.TraceEvery
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastSrc, lastUp, lastDown int64
	last := make([]int64, len(getters))
	fmt.Fprintf(cfg.Trace, "%7s %12s %14s %14s %5s %5s %6s %8s\n", "t (s)", "source MB/s", "peers up MB/s", "verified MB/s", "done", "slow", "links", "unchoked")
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s := src.Status().Uploaded
		var up, down int64
		done, slow, links, unchoked := 0, 0, 0, 0
		sec := every.Seconds()
		for i, g := range getters {
			st := g.Status()
			up += st.Uploaded
			down += st.Downloaded
			if st.Downloaded >= cfg.FileSize {
				done++
			}
			if float64(st.Uploaded-last[i]) < 0.5*sec*float64(cfg.PeerUp) {
				slow++
			}
			last[i] = st.Uploaded
			for _, sw := range st.Swarms {
				links += sw.Peers
				unchoked += sw.Unchoked
			}
		}
		fmt.Fprintf(cfg.Trace, "%7.2f %12.1f %14.1f %14.1f %5d %5d %6d %8d\n", time.Since(t0).Seconds(),
			float64(s-lastSrc)/sec/1e6, float64(up-lastUp)/sec/1e6, float64(down-lastDown)/sec/1e6, done, slow, links, unchoked)
		lastSrc, lastUp, lastDown = s, up, down
	}
}

// startSupernode starts the swarm's supernode, which takes all its leaves
// from one loopback address.
func startSupernode(log zerolog.Logger, leaves int) (*supernode.Server, chan error, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, err
	}
	id, err := protocol.GenerateIdentity()
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	_, netKey, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	s, err := supernode.New(supernode.Config{Conn: conn, Identity: id, Log: log, NetworkKey: netKey,
		MaxLeaves: max(leaves, supernode.DefaultConfig().MaxLeaves), MaxLeavesPerAddr: leaves,
		Router: supernode.RouterConfig{LeafQueryRate: 1e6, LeafQueryBurst: 1e6}})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	return s, done, nil
}

// scratchRoot picks where a run's files go: a RAM-backed folder when it has
// room for them, so the swarm is measured rather than the disk, which all the
// peers of a run on one machine share (each would have a disk of its own).
func scratchRoot(need int64) string {
	if free, ok := freeBytes("/dev/shm"); ok && free > need+need/4 {
		return "/dev/shm"
	}
	return os.TempDir()
}

func writeRandom(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		for i := 0; i < int(n); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < int(n); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	return f.Close()
}

func poll(ctx context.Context, ok func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Print writes the result as a table with its references.
func (r *Result) Print(w io.Writer) {
	mb := func(v int64) string {
		if v <= 0 {
			return "unlimited"
		}
		return fmt.Sprintf("%.1f MB/s", float64(v)/1e6)
	}
	fmt.Fprintf(w, "swarm: %d downloaders, %.1f MiB file, first source up %s, downloaders up %s, down %s\n",
		r.Downloaders, float64(r.FileSize)/(1<<20), mb(r.SourceUp), mb(r.PeerUp), mb(r.PeerDown))
	fmt.Fprintf(w, "choking: every %v, optimistic every %v, %d slots\n", r.UnchokeInterval, r.OptimisticInterval, r.UnchokeSlots)
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
	fmt.Fprintf(w, "%-34s %8.3f   (target <= 1.10; off-the-shelf 1.4-1.9)\n", "ratio to the bound", r.Ratio())
	fmt.Fprintf(w, "%-34s %8.3f   (target <= 1.10; off-the-shelf 2.3-2.9)\n", "copies sent by the first source", r.Copies)
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
		fmt.Fprintf(w, "%-34s %8.2f s/GB (target <= 6.5)\n", "CPU per GB delivered (N*F)", r.CPUPerGB())
	}
}

// CPUPerGB is the CPU all the peers used per 10^9 bytes delivered to the
// downloaders (N*F): what moving the file cost, uploads and hashing included.
func (r *Result) CPUPerGB() float64 {
	return r.CPU.Seconds() / (float64(r.Downloaders) * float64(r.FileSize) / 1e9)
}
