// Package leafload runs many light leaves in one process against one
// supernode, to measure what a supernode holds: each leaf has its own key
// and UDP socket on its own loopback address, makes a real QUIC connection,
// says hello, publishes its files and stays attached, reading what the
// supernode sends. A leaf whose link drops dials again with the backoff a
// peer uses.
package leafload

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/internal/defaults"
	"github.com/supernet-p2p/supernet/peer/attach"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// Config sets up a fleet.
type Config struct {
	// Target is the supernode, as peerid@host:port.
	Target string
	// Leaves is how many leaves to run; Files how many files each publishes.
	Leaves, Files int
	// Seed picks the file names (the same seed, the same names).
	Seed uint64
	// Hosts is the loopback block the leaves bind in: leaf i takes the i-th
	// address of 127.<Hosts>.0.0/16 (default 10), one address per leaf, as
	// if each were its own host. At most 65,000 leaves.
	Hosts byte
	// PingInterval is how often each leaf pings its supernode, as a peer
	// does to find a dead supernode fast (default: the peer's 500 ms), or
	// as seldom as the supernode asks (at most attach.MaxPace). A leaf that hears nothing for as long
	// as a peer allows drops the link and dials again. Below zero, leaves
	// do not ping and find a dead supernode by QUIC's idle timeout.
	PingInterval time.Duration
	// Log gets the fleet's own warnings.
	Log zerolog.Logger
}

// DefaultPingInterval is the peer's default probe interval.
const DefaultPingInterval = 500 * time.Millisecond

// Words make the file names: a search for one finds the files named with it.
var Words = []string{
	"blue", "river", "night", "summer", "train", "garden", "silver", "morning", "ocean", "fire",
	"window", "street", "dream", "winter", "heart", "moon", "paper", "desert", "golden", "rain",
	"mountain", "city", "shadow", "island", "thunder", "velvet", "highway", "harbor", "crystal", "forest",
}

// maxLeaves bounds a fleet: one loopback /16 less its first and last blocks.
const maxLeaves = 65000

// Fleet is a running set of leaves.
type Fleet struct {
	cfg    Config
	expect protocol.PeerID
	addr   *net.UDPAddr
	leaves []*leaf

	attached   atomic.Int64 // leaves with a live link
	attaches   atomic.Int64 // attachments made, first ones and again
	failMu     sync.Mutex
	failures   map[string]int64 // failed dials by kind
	firstOther error
	changed    chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type leaf struct {
	f     *Fleet
	name  string
	node  *transport.Node
	files []protocol.FileRecord

	mu   sync.Mutex
	link *transport.Link
	// waits are this leaf's searches in flight, by query ID: each gets
	// nil when the supernode is done with it, or the error it answered.
	waits map[protocol.QueryID]chan error
}

// Start opens every leaf's socket and starts each attaching, at most rate a
// second (0: all at once). It returns once the sockets are open; see
// WaitAttached.
func Start(cfg Config, rate float64) (*Fleet, error) {
	if cfg.Leaves < 1 || cfg.Leaves > maxLeaves {
		return nil, fmt.Errorf("leaves: %d is not between 1 and %d", cfg.Leaves, maxLeaves)
	}
	if cfg.Files < 0 || cfg.Files > protocol.MaxFilesPerFrame {
		return nil, fmt.Errorf("files: %d is not between 0 and %d", cfg.Files, protocol.MaxFilesPerFrame)
	}
	if cfg.Hosts == 0 {
		cfg.Hosts = 10
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	expect, addr, err := transport.ParseTarget(cfg.Target)
	if err != nil {
		return nil, err
	}
	if expect.IsZero() {
		return nil, fmt.Errorf("target %q: name the supernode as peerid@host:port", cfg.Target)
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{cfg: cfg, expect: expect, addr: ua, changed: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	rnd := rand.New(rand.NewPCG(cfg.Seed, 0x1eaf))
	for i := range cfg.Leaves {
		l, err := f.newLeaf(i, rnd)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("leaf %d: %w", i, err)
		}
		f.leaves = append(f.leaves, l)
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		var tick <-chan time.Time
		if rate > 0 {
			t := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer t.Stop()
			tick = t.C
		}
		for _, l := range f.leaves {
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					return
				}
			}
			f.wg.Add(1)
			go l.run()
		}
	}()
	return f, nil
}

// LeafAddr is the loopback address leaf i binds.
func LeafAddr(hosts byte, i int) net.IP {
	n := i + 256 // skip 127.h.0.x
	return net.IPv4(127, hosts, byte(n>>8), byte(n))
}

func (f *Fleet) newLeaf(i int, rnd *rand.Rand) (*leaf, error) {
	id, err := protocol.GenerateIdentity()
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: LeafAddr(f.cfg.Hosts, i)})
	if err != nil {
		return nil, err
	}
	node, err := transport.New(transport.Config{Identity: id, Conn: pc, Log: f.cfg.Log.Level(zerolog.Disabled), Agent: "supernet-leafload"})
	if err != nil {
		pc.Close()
		return nil, err
	}
	l := &leaf{f: f, name: fmt.Sprintf("leaf%05d", i), node: node, waits: make(map[protocol.QueryID]chan error)}
	for k := range f.cfg.Files {
		var cid protocol.ContentID
		crand.Read(cid[:])
		name := fmt.Sprintf("%s %s %s %d-%d.mp3", Words[rnd.IntN(len(Words))], Words[rnd.IntN(len(Words))],
			Words[rnd.IntN(len(Words))], i, k)
		l.files = append(l.files, protocol.FileRecord{ID: cid, Name: name, Size: 1 << 20})
	}
	return l, nil
}

func (f *Fleet) note() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// Attached is how many leaves have a live link now.
func (f *Fleet) Attached() int { return int(f.attached.Load()) }

// Attaches is how many attachments were made, and how many dials failed.
func (f *Fleet) Attaches() (made, failed int64) {
	f.failMu.Lock()
	defer f.failMu.Unlock()
	for _, n := range f.failures {
		failed += n
	}
	return f.attaches.Load(), failed
}

// Failures counts the failed dials by kind, since the fleet started.
func (f *Fleet) Failures() map[string]int64 {
	f.failMu.Lock()
	defer f.failMu.Unlock()
	return maps.Clone(f.failures)
}

// noteFailure counts err by its kind.
func (f *Fleet) noteFailure(err error) {
	kind := "other"
	switch {
	case errors.Is(err, transport.ErrRefused):
		kind = "refused before the handshake (a limit)"
	case errors.Is(err, protocol.ErrOverloaded):
		kind = "refused as overloaded"
	case errors.Is(err, transport.ErrSlowFrame):
		kind = "timed out waiting for the welcome"
	case errors.Is(err, context.DeadlineExceeded):
		kind = "timed out in the QUIC handshake"
	default:
		// QUIC's handshake and idle timeouts are net.Errors that say so.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			kind = "timed out in the QUIC handshake"
		}
	}
	f.failMu.Lock()
	defer f.failMu.Unlock()
	if f.failures == nil {
		f.failures = make(map[string]int64)
	}
	if f.failures[kind]++; kind == "other" && f.failures[kind] == 1 {
		f.firstOther = err
	}
}

// FirstOther is the first failed dial of kind "other".
func (f *Fleet) FirstOther() error {
	f.failMu.Lock()
	defer f.failMu.Unlock()
	return f.firstOther
}

// WaitAttached waits until at least n leaves are attached.
func (f *Fleet) WaitAttached(ctx context.Context, n int) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for f.Attached() < n {
		select {
		case <-f.changed:
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d leaves attached: %w", f.Attached(), n, ctx.Err())
		}
	}
	return nil
}

// WaitDetached waits until at most n leaves are attached.
func (f *Fleet) WaitDetached(ctx context.Context, n int) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for f.Attached() > n {
		select {
		case <-f.changed:
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%d leaves still attached, waiting for %d: %w", f.Attached(), n, ctx.Err())
		}
	}
	return nil
}

// Close detaches every leaf and closes its socket.
func (f *Fleet) Close() {
	f.cancel()
	for _, l := range f.leaves {
		l.node.Close()
	}
	f.wg.Wait()
}

// run keeps the leaf attached until the fleet closes, dialling again with
// the peer's backoff (250 ms doubling to 15 s, jittered) after a failure.
func (l *leaf) run() {
	f := l.f
	defer f.wg.Done()
	retry := defaults.Backoff(250*time.Millisecond, 15*time.Second)
	for f.ctx.Err() == nil {
		err := l.attachOnce()
		if f.ctx.Err() != nil {
			return
		}
		if err == nil {
			retry.Reset()
			continue // the link dropped after it served: dial again at once
		}
		f.noteFailure(err)
		select {
		case <-time.After(retry.NextBackOff()):
		case <-f.ctx.Done():
			return
		}
	}
}

// attachOnce dials, publishes and reads until the link drops. A nil error
// means the leaf was attached.
func (l *leaf) attachOnce() error {
	f := l.f
	hello := &protocol.Hello{Role: protocol.RoleLeaf, Name: l.name, Addrs: []string{l.node.Addr().String()}}
	link, _, err := l.node.DialAddr(f.ctx, f.addr, f.expect, hello)
	if err != nil {
		return err
	}
	if len(l.files) > 0 {
		if err := link.Send(&protocol.Publish{Reset: true, Files: l.files}); err != nil {
			link.Close(nil)
			return err
		}
	}
	l.mu.Lock()
	l.link = link
	l.mu.Unlock()
	f.attaches.Add(1)
	f.attached.Add(1)
	f.note()
	lv := &liveness{w: attach.NewWatch(f.cfg.PingInterval)}
	lv.live = attach.Attached(time.Now(), 0)
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		l.ping(link, lv)
	}()
	defer func() {
		link.Close(nil)
		<-pinged
		l.mu.Lock()
		l.link = nil
		for _, w := range l.waits {
			close(w)
		}
		clear(l.waits)
		l.mu.Unlock()
		f.attached.Add(-1)
		f.note()
	}()
	for {
		m, err := link.Recv()
		if err != nil {
			return nil
		}
		lv.heard(m)
		switch m := m.(type) {
		case *protocol.QueryDone:
			l.answer(m.ID, nil)
		case *protocol.Error:
			if m.Ref != (protocol.QueryID{}) {
				l.answer(m.Ref, m.AsError())
			}
		}
	}
}

// answer ends the search q with err (nil: done).
func (l *leaf) answer(q protocol.QueryID, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.waits[q]; w != nil {
		delete(l.waits, q)
		w <- err
	}
}

// errSilent closes a link that went quiet.
var errSilent = errors.New("supernode silent")

// liveness is what a leaf knows of its supernode's life, kept by the
// peer's own rules (attach.Watch and attach.Liveness).
type liveness struct {
	mu   sync.Mutex
	w    *attach.Watch
	live attach.Liveness
	rx   uint64 // messages received, for Hear
}

func (v *liveness) heard(m protocol.Message) {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rx++
	v.live.Hear(now, v.rx)
	if p, ok := m.(*protocol.Pong); ok {
		v.w.Ponged(&v.live, p.Seq, now)
		v.live.Paced(time.Duration(p.Every) * time.Millisecond)
	}
}

// round starts a ping round and returns its number, the interval until the
// next, and whether the supernode has been silent too long: as long as a
// peer allows it (attach.Liveness.SilentAfter, which gives a slow
// supernode its usual answer time) when its own network is shown to work,
// as it is on loopback.
func (v *liveness) round(ours time.Duration) (seq uint64, every time.Duration, silent bool) {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	every = v.w.Pace(now, ours, []*attach.Liveness{&v.live})
	if now.Sub(v.live.Heard()) >= v.live.SilentAfter(every, 0) {
		return 0, every, true
	}
	return v.w.Round(now), every, false
}

// ping sends a Ping each interval (ours, or as seldom as the supernode
// asks), starting at a random phase, until the link closes; it closes the
// link when the supernode stays silent too long.
func (l *leaf) ping(link *transport.Link, lv *liveness) {
	ours := l.f.cfg.PingInterval
	if ours < 0 {
		<-link.Done()
		return
	}
	select {
	case <-time.After(rand.N(ours)):
	case <-link.Done():
		return
	}
	for {
		seq, every, silent := lv.round(ours)
		if silent {
			link.Close(errSilent)
			return
		}
		if link.Send(protocol.NewPing(seq)) != nil {
			return
		}
		select {
		case <-time.After(every):
		case <-link.Done():
			return
		}
	}
}

// ErrNotAttached is a search from a leaf without a link.
var ErrNotAttached = errors.New("leaf not attached")

// Search sends one keyword query from leaf i and waits for the supernode to
// say it is done; it returns how long that took.
func (f *Fleet) Search(ctx context.Context, i int, text string) (time.Duration, error) {
	l := f.leaves[i%len(f.leaves)]
	var q protocol.QueryID
	crand.Read(q[:])
	w := make(chan error, 1)
	l.mu.Lock()
	link := l.link
	if link != nil {
		l.waits[q] = w
	}
	l.mu.Unlock()
	if link == nil {
		return 0, ErrNotAttached
	}
	forget := func() {
		l.mu.Lock()
		delete(l.waits, q)
		l.mu.Unlock()
	}
	start := time.Now()
	if err := link.Send(&protocol.Query{ID: q, Text: text, Hops: 1}); err != nil {
		forget()
		return 0, err
	}
	select {
	case err, ok := <-w:
		if !ok {
			return 0, fmt.Errorf("link lost during the search: %w", link.Err())
		}
		if err != nil {
			return 0, fmt.Errorf("the supernode refused the search: %w", err)
		}
		return time.Since(start), nil
	case <-ctx.Done():
		forget()
		return 0, ctx.Err()
	}
}

// Percentile is the p-th percentile (0..100) of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// SortDurations sorts d in place and returns it.
func SortDurations(d []time.Duration) []time.Duration {
	slices.Sort(d)
	return d
}
