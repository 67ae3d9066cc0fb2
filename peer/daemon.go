// Package peer is an ordinary node of the overlay: a daemon that shares a folder,
// attaches to a supernode, searches through it, serves pieces to other peers and
// downloads from them with every piece verified. A local control socket lets the
// `peer` command talk to a running daemon.
package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofrs/flock"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/attach"
	"github.com/supernet-p2p/supernet/peer/dial"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/peer/webui"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/swarm"
	"github.com/supernet-p2p/supernet/transport"
)

// Errors the CLI and tests match.
var (
	ErrNoSupernode    = apitype.ErrNoSupernode
	ErrNothingFound   = apitype.ErrNothingFound
	ErrDaemonClosed   = apitype.ErrDaemonClosed
	ErrNoSuchUser     = apitype.ErrNoSuchUser
	ErrExists         = apitype.ErrExists
	ErrDiskFull       = apitype.ErrDiskFull
	ErrAlreadyRunning = localapi.ErrAlreadyRunning
	// ErrConnect wraps every failure to reach a peer.
	ErrConnect = dial.ErrConnect
)

// Config configures a Daemon.
type Config struct {
	// DataDir holds the identity, the hash cache and the control socket.
	DataDir string
	// ShareDir is the folder to share; empty shares nothing.
	ShareDir string
	// Name is the username shown to others.
	Name string
	// Username is registered in the overlay's username directory, so others
	// can find this peer by it (empty: none).
	Username string
	// Supernodes to attach to, as host:port or peerid@host:port, tried in order.
	Supernodes []string
	// Network is the overlay's network ID: the peer attaches only to
	// supernodes admitted to it and trusts only those in member lists. Zero
	// takes the network of the first supernode it attaches to and keeps it in
	// DataDir (trust on first use).
	Network protocol.NetworkID
	// Attach is how many supernodes the peer attaches to at once, so that one
	// dying leaves it attached to the others (default 3).
	Attach int
	// InboxDir is where files other peers send arrive (default DataDir/inbox).
	InboxDir string
	// InboxPolicy says who may send files: InboxAnyone (the default),
	// InboxAccepted (the peer IDs and usernames in AcceptFrom) or InboxNobody.
	InboxPolicy string
	AcceptFrom  []string
	// InboxMaxBytes is the largest file taken (default 4 GiB).
	InboxMaxBytes int64
	// InboxLimits bound the deliveries in progress (see InboxLimits).
	InboxLimits InboxLimits
	// NoLead opts out of ever serving as a supernode; LeadAfter is how long
	// the peer must be up before it may (default 30 min).
	NoLead    bool
	LeadAfter time.Duration
	// LeadListen is the UDP address of the supernode the peer runs once
	// promoted (default: the host of Listen, any port). LeadStepDown is how
	// long that supernode stays underused before it hands its leaves back and
	// stops (default 10 min).
	LeadListen   string
	LeadStepDown time.Duration
	// StartLead starts the supernode a promotion asks for; nil: this peer
	// never leads.
	StartLead func(LeadConfig) (LeadServer, error)
	// Listen is the UDP address of the peer's one socket (default "[::]:0":
	// IPv6 and IPv4 at once, IPv4 alone where the host has no IPv6).
	Listen string
	// Conn, when set, is used instead of opening Listen.
	Conn     net.PacketConn
	Identity *protocol.Identity
	// ControlSocket is the unix socket path (default DataDir/peer.sock); "-" disables it.
	ControlSocket string
	// Web is the loopback TCP address of the web page (webui); empty for
	// none. Its token is in DataDir/web.token while it runs.
	Web string
	// DownloadDir is where a download asked for without a target goes, as
	// the web page asks (default ~/Downloads when it exists, else
	// DataDir/downloads).
	DownloadDir string
	// LimitLoopback applies the transport's per-address limits to loopback
	// sources too (they are exempt by default).
	LimitLoopback bool
	// IdleTimeout drops silent connections (default 15 s).
	IdleTimeout time.Duration
	// ProbeInterval is how often the peer pings each supernode it is attached
	// to (default 500 ms). One silent for three intervals while something
	// else answers is left for another, so a supernode that dies without a
	// goodbye costs its leaves under 2 s rather than IdleTimeout. Negative:
	// no pings, and a dead supernode is noticed after IdleTimeout.
	ProbeInterval time.Duration
	// SearchTimeout bounds one search (default 10 s).
	SearchTimeout time.Duration
	// RescanInterval is how often the share folder is rescanned (default 60 s).
	RescanInterval time.Duration
	// Pipeline is the fewest 16 KiB blocks a download keeps requested from each
	// peer; more are asked for as the peer's rate grows (default 16).
	Pipeline int
	// UnchokeInterval is how often the peers we upload to are chosen again
	// (default 10 s); rates are measured over twice that.
	UnchokeInterval time.Duration
	// OptimisticInterval is how often the optimistic unchoke moves on (default 30 s).
	OptimisticInterval time.Duration
	// UnchokeSlots is how many peers are unchoked by rate (default 4).
	UnchokeSlots int
	// OptimisticSlots is 1 for an optimistic unchoke, or -1 for none (default 1).
	OptimisticSlots int
	// UploadRate and DownloadRate cap this peer's block traffic, in bytes per
	// second, over all swarms (0: no cap).
	UploadRate, DownloadRate int64
	// MaxSwarmPeers caps the peers one swarm exchanges with at once (default 50).
	MaxSwarmPeers int
	// TrackerInterval is how often a download asks the supernodes for more
	// peers, once it has started (default 30 s).
	TrackerInterval time.Duration
	// StallTimeout fails a download that has verified nothing for this long
	// (default 2 min).
	StallTimeout time.Duration
	// ProgressInterval is how often a download reports progress (default 200 ms).
	ProgressInterval time.Duration
	// PunchTimeout is how long a hole punch may take before a relay is used
	// (default 750 ms: a punch between endpoint-independent NATs works about one
	// round trip after both sides start, so this covers round trips up to about
	// half a second and still leaves room to be relayed within a second).
	PunchTimeout time.Duration
	// SignalTimeout bounds each wait for the supernodes during a connection
	// setup (default 5 s).
	SignalTimeout time.Duration
	// UpgradeInterval is how often a relayed link retries a punch (default 30 s).
	UpgradeInterval time.Duration
	// LinkLinger keeps an unused link to a peer open this long (default 20 s).
	LinkLinger time.Duration
	Log        zerolog.Logger
}

// Daemon is a running peer.
type Daemon struct {
	cfg Config
	log zerolog.Logger
	id  *protocol.Identity
	// netMu guards node, onRelay, relayTCP, relayUntil and renewals, which
	// a peer on a relay replaces when it renews its allocation.
	netMu sync.RWMutex
	node  *transport.Node
	share *content.Share

	attach  *attach.Attachment
	trust   *trust
	user    *userDir
	lead    *leader
	inbox   *inbox
	started time.Time
	srcs    *sourceCache
	conns   *dial.Connector
	// onRelay is the allocation the node lives on when the network drops UDP.
	onRelay    *relay.Allocation
	relayTCP   string    // the relay's TURN/TCP address, with onRelay
	relayUntil time.Time // when onRelay's credentials expire
	renewals   int       // allocations renewed; under netMu
	fatal      error     // why the daemon stopped by itself; under mu

	swarms *swarm.Swarms

	mu        sync.Mutex
	transfers map[*transport.Link]struct{}

	ctl       *localapi.Server
	web       *webui.Server
	lock      *flock.Flock
	metrics   http.Handler
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	serving   atomic.Bool
	startMu   sync.Mutex // Serve starts its goroutines under it; Close cancels under it
	closeOnce sync.Once
}

// SocketPath is the control socket of a data directory.
func SocketPath(dataDir string) string { return localapi.SocketPath(dataDir) }

// New loads the identity, opens the share (hashing what changed) and the socket.
func New(cfg Config) (*Daemon, error) {
	cfg = cfg.withDefaults()
	if cfg.Username != "" {
		if err := protocol.CheckUsername(cfg.Username); err != nil {
			return nil, err
		}
	}
	switch cfg.InboxPolicy {
	case InboxAnyone, InboxAccepted, InboxNobody:
	default:
		return nil, fmt.Errorf("inbox policy %q: want %s, %s or %s", cfg.InboxPolicy, InboxAnyone, InboxAccepted, InboxNobody)
	}
	for _, a := range cfg.AcceptFrom {
		if _, err := protocol.ParsePeerID(a); err != nil && protocol.CheckUsername(a) != nil {
			return nil, fmt.Errorf("accept %q: neither a peer ID nor a username", a)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// One daemon per data dir: two would share a key, a share cache and
	// partial downloads. The lock goes with the process, also on a crash.
	lock := flock.New(filepath.Join(cfg.DataDir, lockFile))
	if ok, err := lock.TryLock(); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w (%s is locked)", localapi.ErrAlreadyRunning, lock.Path())
		}
		return nil, err
	}
	locked := false
	defer func() {
		if !locked {
			lock.Unlock()
		}
	}()
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = protocol.LoadOrCreateIdentity(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	tr, err := loadTrust(cfg.DataDir, cfg.Network)
	if err != nil {
		return nil, err
	}
	log := cfg.Log.With().Str("node", id.ID.Short()).Logger()
	d := &Daemon{
		trust: tr,
		cfg:   cfg, log: log, id: id,
		srcs:      newSourceCache(4096),
		transfers: make(map[*transport.Link]struct{}),
	}
	d.metrics = d.metricsHandler()
	if cfg.ControlSocket != "-" {
		ctl, err := localapi.Listen(cfg.ControlSocket, backend{d})
		if err != nil {
			return nil, err
		}
		d.ctl = ctl
	}
	fail := func(err error) (*Daemon, error) {
		if d.ctl != nil {
			d.ctl.Close()
		}
		if d.web != nil {
			d.web.Close()
		}
		return nil, err
	}
	if cfg.Web != "" {
		web, err := webui.New(webui.Config{Listen: cfg.Web, API: localapi.Handler(backend{d}), Backend: backend{d},
			TokenFile: filepath.Join(cfg.DataDir, WebTokenFile), UploadDir: filepath.Join(cfg.DataDir, "web-uploads"),
			MaxUpload: cfg.InboxMaxBytes, Log: log})
		if err != nil {
			return fail(err)
		}
		d.web = web
	}
	if cfg.ShareDir != "" {
		fi, err := os.Stat(cfg.ShareDir)
		if err != nil {
			return fail(fmt.Errorf("share folder: %w", err))
		}
		if !fi.IsDir() {
			return fail(fmt.Errorf("share folder %s is not a directory", cfg.ShareDir))
		}
		sh, err := content.OpenShare(cfg.ShareDir, filepath.Join(cfg.DataDir, "hashcache"), log)
		if err != nil {
			return fail(err)
		}
		d.share = sh
	}
	pc := cfg.Conn
	if pc == nil {
		c, err := transport.ListenUDP(cfg.Listen)
		if err != nil {
			return fail(err)
		}
		pc = c
	}
	node, err := transport.New(transport.Config{
		Identity: id, Conn: pc, Log: log, Listen: true, Transfers: true,
		IdleTimeout: cfg.IdleTimeout, Agent: "supernet-peer", LimitLoopback: cfg.LimitLoopback,
	})
	if err != nil {
		pc.Close()
		return fail(err)
	}
	d.node = node
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.attach = attach.New(d.ctx, &d.wg, attach.Config{
		Self: id.ID, Name: cfg.Name, Supernodes: cfg.Supernodes, DataDir: cfg.DataDir,
		Slots: cfg.Attach, ProbeInterval: cfg.ProbeInterval, Log: log,
		Node:           d.nodeNow,
		OnRelay:        func() bool { return d.relayNow() != nil },
		CheckSupernode: d.checkSupernode,
		Network:        d.Network,
		IsOurs:         func(p protocol.PeerID) bool { return d.lead.isOurs(p) },
		Records:        d.records,
		Changed:        d.attachmentChanged,
		MembersChanged: func(ids []ring.ID, incs map[ring.ID]uint64) { d.user.membersChanged(ids, incs) },
		Handle:         d.fromSupernode,
	})
	d.user = newUserDir(d)
	d.lead = newLeader(d)
	d.inbox = newInbox(d)
	d.started = time.Now()
	d.conns = dial.New(d.ctx, &d.wg, dial.Config{
		Self: id.ID, Log: log,
		Node:         d.nodeNow,
		OnRelay:      d.relayNow,
		Supernode:    d.attach.Current,
		Observed:     func() string { return d.attach.Snapshot().Observed },
		Serve:        func(l *transport.Link) { d.wg.Add(1); go d.serveTransfer(l) },
		PunchTimeout: cfg.PunchTimeout, SignalTimeout: cfg.SignalTimeout,
		UpgradeInterval: cfg.UpgradeInterval, LinkLinger: cfg.LinkLinger,
	})
	d.swarms = swarm.New(d.ctx, &d.wg, swarm.Config{
		Self: id.ID, Log: log, Share: d.share,
		Pipeline: cfg.Pipeline, MaxSwarmPeers: cfg.MaxSwarmPeers, UnchokeSlots: cfg.UnchokeSlots, OptimisticSlots: cfg.OptimisticSlots,
		UnchokeInterval: cfg.UnchokeInterval, OptimisticInterval: cfg.OptimisticInterval,
		TrackerInterval: cfg.TrackerInterval, StallTimeout: cfg.StallTimeout, ProgressInterval: cfg.ProgressInterval,
		UploadRate: cfg.UploadRate, DownloadRate: cfg.DownloadRate,
		FrameTimeouts: node.FrameTimeouts(),
		Dial:          d.lease, Reach: d.attach.Self, Locate: d.locate, Republish: d.attach.Republish,
	})
	d.lock, locked = lock, true
	return d, nil
}

// ID is the peer's ID.
func (d *Daemon) ID() protocol.PeerID { return d.id.ID }

// Addr is the local address of the peer's socket.
func (d *Daemon) Addr() *net.UDPAddr { return d.nodeNow().Addr() }

// nodeNow is the node links run on now; relayNow the relay allocation it
// lives on, or nil.
func (d *Daemon) nodeNow() *transport.Node {
	d.netMu.RLock()
	defer d.netMu.RUnlock()
	return d.node
}

func (d *Daemon) relayNow() *relay.Allocation {
	d.netMu.RLock()
	defer d.netMu.RUnlock()
	return d.onRelay
}

// Share is the shared folder, or nil.
func (d *Daemon) Share() *content.Share { return d.share }

// Serve hashes the share, attaches to a supernode, and serves transfers and the
// control socket until ctx ends or Close is called.
func (d *Daemon) Serve(ctx context.Context) error {
	if !d.serving.CompareAndSwap(false, true) {
		return errors.New("peer: Serve called twice")
	}
	if d.share != nil {
		// The share logs what the scan found.
		if _, _, err := d.share.Scan(d.ctx); err != nil && d.ctx.Err() == nil {
			d.log.Error().Err(err).Msg("scanning share folder")
		}
	}
	if d.cfg.Conn == nil { // a caller-supplied socket is the caller's business
		r, err := dial.CheckUDP(d.ctx, dial.UDPCheck{
			Identity: d.id, Supernodes: d.cfg.Supernodes, Node: d.node, Log: d.log,
			IdleTimeout: d.cfg.IdleTimeout, LimitLoopback: d.cfg.LimitLoopback,
		})
		switch {
		case err != nil && d.ctx.Err() == nil:
			d.log.Error().Err(err).Msg("checking the UDP path")
		case r != nil:
			d.node.Close()
			d.netMu.Lock()
			d.node, d.onRelay, d.relayTCP, d.relayUntil = r.Node, r.Alloc, r.TCP, r.Expires
			d.netMu.Unlock()
		}
	}
	// Close may already be waiting for the goroutines: starting them is
	// done under startMu, which Close takes before it waits, so none starts
	// after that wait began.
	d.startMu.Lock()
	if d.ctx.Err() != nil {
		d.startMu.Unlock()
		return ErrDaemonClosed
	}
	if d.onRelay != nil {
		d.wg.Add(1)
		go d.watchRelay()
	}
	if d.ctl != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.ctl.Serve() }()
	}
	if d.web != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := d.web.Serve(); err != nil {
				d.log.Error().Err(err).Msg("web UI stopped")
			}
		}()
	}
	if d.cfg.Username != "" {
		d.wg.Add(1)
		go d.user.run()
	}
	d.wg.Add(4)
	go d.attach.Run()
	go d.lead.run()
	go d.rescanLoop()
	go d.acceptLoop(d.nodeNow())
	d.startMu.Unlock()
	d.log.Info().Str("listen", d.Addr().String()).Str("peer_id", d.ID().String()).Msg("peer up")
	select {
	case <-ctx.Done():
		d.Close()
		return nil
	case <-d.ctx.Done():
		d.mu.Lock()
		err := d.fatal
		d.mu.Unlock()
		if err != nil {
			return err
		}
		return ErrDaemonClosed
	}
}

// Close stops everything and waits for the daemon's goroutines. Safe twice.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.startMu.Lock()
		if d.cancel != nil {
			d.cancel()
		}
		d.startMu.Unlock()
		if d.ctl != nil {
			d.ctl.Close()
		}
		if d.web != nil {
			d.web.Close()
		}
		d.mu.Lock()
		for l := range d.transfers {
			l.Close(nil)
		}
		d.mu.Unlock()
		if d.attach != nil {
			// Said, so the supernodes drop us now rather than at their idle timeout.
			for _, l := range d.attach.Links() {
				l.Close(nil)
			}
		}
		d.netMu.RLock()
		node, onRelay := d.node, d.onRelay
		d.netMu.RUnlock()
		if node != nil {
			node.Close()
		}
		if onRelay != nil {
			onRelay.Close()
		}
	})
	d.wg.Wait()
	if d.swarms != nil {
		d.swarms.Close()
	}
	if d.share != nil {
		d.share.Close()
	}
	d.lock.Unlock() // last: the data dir is free for the next daemon
	return nil
}

// lockFile is held while a daemon runs on its data dir.
const lockFile = "peer.lock"

func (d *Daemon) rescanLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.RescanInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := d.Rescan(d.ctx); err != nil && d.ctx.Err() == nil {
				d.log.Warn().Err(err).Msg("rescan")
			}
		case <-d.ctx.Done():
			return
		}
	}
}

// Rescan rescans the share folder and the finished downloads still served,
// and republishes what changed.
func (d *Daemon) Rescan(ctx context.Context) error {
	if d.swarms.Prune() {
		d.attach.Republish()
	}
	if d.share == nil {
		return nil
	}
	added, removed, err := d.share.Scan(ctx)
	if err != nil {
		return err
	}
	if added+removed > 0 {
		d.log.Info().Int("added", added).Int("removed", removed).Msg("share changed")
		d.attach.Republish()
	}
	return nil
}

// acceptLoop takes the links that come in on node until it closes: a peer
// that lives on a relay has one loop per allocation it still serves on.
func (d *Daemon) acceptLoop(node *transport.Node) {
	defer d.wg.Done()
	for {
		in, err := node.Accept(d.ctx)
		if err != nil {
			return
		}
		switch in.Hello.Role {
		case protocol.RoleProbe:
			// A supernode checking that we can be reached: the welcome is the answer.
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				in.AnswerProbe(&protocol.Welcome{Role: protocol.RoleProbe, Agent: "supernet-peer"}, d.ctx.Done())
			}()
			continue
		case protocol.RoleTransfer:
		default:
			in.Reject(fmt.Errorf("%w: a peer only takes transfer connections", protocol.ErrForbidden))
			continue
		}
		l, err := in.Accept(&protocol.Welcome{Role: protocol.RoleTransfer, Agent: "supernet-peer"})
		if err != nil {
			continue
		}
		d.wg.Add(1)
		go d.serveTransfer(l)
		d.conns.Incoming(l)
	}
}

// Connect sets up (or reuses) a link to peer and reports how. sn is the peer's
// supernode, if known; without it the request is flooded among supernodes.
func (d *Daemon) Connect(ctx context.Context, peer protocol.PeerID, sn *protocol.PeerID) (apitype.Attempt, error) {
	return d.conns.Connect(ctx, peer, sn)
}

// lease is the connector's Acquire for the swarms.
func (d *Daemon) lease(ctx context.Context, src protocol.Source) (swarm.Lease, error) {
	l, err := d.conns.Acquire(ctx, src)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// records are what the peer offers: the share folder and the files it
// downloads or downloaded.
func (d *Daemon) records() []protocol.FileRecord {
	var recs []protocol.FileRecord
	if d.share != nil {
		for _, f := range d.share.Files() {
			recs = append(recs, protocol.FileRecord{ID: f.ID, Name: f.Name, Size: f.Meta.Size, Tags: f.Tags})
		}
	}
	return append(recs, d.swarms.Files()...)
}

// attachmentChanged asks for a new user record, and tells the leader, which
// weighs our NAT and supernodes to offer to lead.
func (d *Daemon) attachmentChanged(c attach.Change) {
	d.user.attachmentsChanged()
	if c != attach.ChangeDetached {
		d.lead.changed()
	}
}

// fromSupernode hands a supernode's message to the part it is for; it runs
// on the link's read loop, so nothing here blocks.
func (d *Daemon) fromSupernode(l *transport.Link, m protocol.Message) {
	switch m := m.(type) {
	case *protocol.UserReply:
		d.user.reply(m)
	case *protocol.Signal:
		d.conns.OnSignal(m)
	case *protocol.Promote:
		d.wg.Add(1)
		go d.lead.promote(l, m)
	case *protocol.Certificate:
		d.lead.certificate(l, m)
	}
}
