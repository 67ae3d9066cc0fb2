// Package swarm exchanges files with other peers BitTorrent-style: the
// swarms this peer downloads or seeds, their sessions with other peers,
// the plain downloads it serves from its share, and the caps on its
// transfer rates. It reaches the rest of the daemon only through the
// callbacks in Config: links to other peers come from Dial, sources from
// Locate, and a change of what this peer offers goes out through Republish.
//
// The decisions (which block to ask for, whom to upload to) are plain code
// over the swarm's state, in picker.go and choker.go, tested without sockets.
package swarm

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// Lease is a link to another peer, held while a session uses it.
type Lease interface {
	Link() *transport.Link
	// Better is closed when a better link to the same peer replaces this one.
	Better() <-chan struct{}
	Release()
}

// Config configures the swarms; the daemon fills in every field (see
// peer.Config for the meaning of each).
type Config struct {
	Self  protocol.PeerID
	Log   zerolog.Logger
	Share *content.Share // nil: nothing shared

	Pipeline, MaxSwarmPeers, UnchokeSlots, OptimisticSlots int
	UnchokeInterval, OptimisticInterval                    time.Duration
	TrackerInterval, StallTimeout, ProgressInterval        time.Duration
	UploadRate, DownloadRate                               int64
	FrameTimeouts                                          transport.FrameTimeouts

	// Dial gets a link to a source.
	Dial func(ctx context.Context, src protocol.Source) (Lease, error)
	// Reach is how other peers reach this one: its supernode and NAT.
	Reach func() (*protocol.PeerID, protocol.NATType)
	// Locate asks the overlay for the sources of a content ID, and returns
	// what is known of it now; ok is false when nothing is.
	Locate func(ctx context.Context, id protocol.ContentID) (hit protocol.Hit, ok bool, err error)
	// Republish is called, on a goroutine of its own or not, when what this
	// peer offers beyond its share changed (see Files).
	Republish func()
}

// Swarms are every file this peer exchanges.
type Swarms struct {
	cfg   Config
	log   zerolog.Logger
	share *content.Share
	ctx   context.Context
	wg    *sync.WaitGroup

	mu        sync.Mutex
	downloads map[protocol.ContentID]*Progress
	swarms    map[protocol.ContentID]*swarm
	seeding   map[protocol.ContentID]seedRecord
	seedFiles map[string]*os.File

	upLimit, downLimit limiter
	upTurns            *uploadTurns
	bufs               chan []byte // piece buffers, recycled once a piece is written

	uploaded   atomic.Int64
	downloaded atomic.Int64
}

// New makes the swarms. Their goroutines stop when ctx ends and are counted
// in wg, the daemon's, so that the daemon's Close waits for them.
func New(ctx context.Context, wg *sync.WaitGroup, cfg Config) *Swarms {
	return &Swarms{
		cfg: cfg, log: cfg.Log, share: cfg.Share, ctx: ctx, wg: wg,
		downloads: make(map[protocol.ContentID]*Progress),
		swarms:    make(map[protocol.ContentID]*swarm),
		seeding:   make(map[protocol.ContentID]seedRecord),
		seedFiles: make(map[string]*os.File),
		upLimit:   newLimiter(cfg.UploadRate),
		upTurns:   newUploadTurns(cfg.UploadRate),
		downLimit: newLimiter(cfg.DownloadRate),
		bufs:      make(chan []byte, 64),
	}
}

// ID is this peer's ID.
func (m *Swarms) ID() protocol.PeerID { return m.cfg.Self }

// Uploaded and Downloaded count the bytes of blocks sent and verified.
func (m *Swarms) Uploaded() int64   { return m.uploaded.Load() }
func (m *Swarms) Downloaded() int64 { return m.downloaded.Load() }

// Downloads are the downloads in progress.
func (m *Swarms) Downloads() []Progress {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Progress
	for _, p := range m.downloads {
		out = append(out, *p)
	}
	return out
}

// Close closes the files of the swarms. The daemon calls it once every
// goroutine of the swarms has ended.
func (m *Swarms) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sw := range m.swarms {
		sw.ioMu.Lock()
		if sw.part != nil {
			sw.part.Close()
		}
		sw.ioMu.Unlock()
	}
	for _, f := range m.seedFiles {
		f.Close()
	}
}

func (m *Swarms) republish() {
	if m.cfg.Republish != nil {
		m.cfg.Republish()
	}
}

// errPathChanged ends a session whose link was replaced by a better one, once
// everything requested on it has arrived.
var errPathChanged = errors.New("moving to a better path")
