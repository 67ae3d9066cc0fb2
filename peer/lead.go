package peer

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// minLeadRate is the least upload capacity (bytes/s) a supernode needs: its
// leaves' queries, hits and member lists, and signalling.
const minLeadRate = 1 << 20

// candidacyEvery is how often the peer checks whether its candidacy changed.
const candidacyEvery = 2 * time.Second

// leadStatus checks the conditions to lead: reachable from outside as the
// supernodes' dial-back confirmed (not as the peer claims), up for long
// enough, with upload to spare, not opted out, and not leading already.
func (d *Daemon) leadStatus(now time.Time) apitype.LeadStatus {
	var why []string
	if d.cfg.NoLead {
		why = append(why, "opted out (--no-lead)")
	}
	if d.cfg.StartLead == nil {
		why = append(why, "this program cannot run a supernode")
	}
	public := false
	for _, st := range d.attach.All() {
		public = public || st.Public
	}
	if !public {
		why = append(why, "not confirmed publicly reachable by a supernode's dial-back")
	}
	if up := now.Sub(d.started); up < d.cfg.LeadAfter {
		why = append(why, fmt.Sprintf("up %v of the %v required", up.Round(time.Second), d.cfg.LeadAfter))
	}
	if d.cfg.UploadRate > 0 && d.cfg.UploadRate < minLeadRate {
		why = append(why, fmt.Sprintf("upload capped at %d B/s, under the %d B/s a supernode needs", d.cfg.UploadRate, minLeadRate))
	}
	st := apitype.LeadStatus{Leading: d.lead.snapshot()}
	if st.Leading != nil && st.Leading.Active {
		why = append(why, "already leading a supernode")
	}
	st.Eligible, st.Why = len(why) == 0, why
	return st
}

// LeadServer is the supernode a promoted peer runs in its process. The peer
// does not build one itself: Config.StartLead does, so that a peer program
// without a supernode in it stays as small as a leaf.
type LeadServer interface {
	ID() protocol.PeerID
	PublicKey() []byte
	// Leaves is how many leaves are attached to it.
	Leaves() int
	// SetChain takes the certificate chain its promoter issued, or a renewal.
	SetChain(protocol.Chain) error
	Serve(ctx context.Context) error
	Close() error
	// SteppedDown says why it stepped down, "" when it did not.
	SteppedDown() string
}

// LeadConfig is the supernode a promotion asks for.
type LeadConfig struct {
	Listen, AltListen string
	Conn              net.PacketConn
	// Join are the supernodes to join through, the promoting one (Parent) first.
	Join      []string
	Parent    string
	Identity  *protocol.Identity
	Advertise []string
	Network   protocol.NetworkID
	LeafLimit int
	// GossipInterval and MemberTimeout are the promoter's.
	GossipInterval, MemberTimeout time.Duration
	StepDownAfter                 time.Duration
	IdleTimeout                   time.Duration
	Log                           zerolog.Logger
}

// leader tells the supernodes whether this peer would lead, and runs the
// supernode a promotion starts.
type leader struct {
	d *Daemon

	mu       sync.Mutex
	srv      LeadServer
	starting bool
	st       *apitype.LeadingStatus
	sent     map[*transport.Link]bool // the candidacy each supernode has
	kick     chan struct{}
}

func newLeader(d *Daemon) *leader {
	return &leader{d: d, sent: make(map[*transport.Link]bool), kick: make(chan struct{}, 1)}
}

// changed asks for the candidacy to be checked now: a supernode attached or
// established our NAT.
func (ld *leader) changed() {
	select {
	case ld.kick <- struct{}{}:
	default:
	}
}

func (ld *leader) run() {
	d := ld.d
	defer d.wg.Done()
	t := time.NewTicker(candidacyEvery)
	defer t.Stop()
	for {
		ld.sendCandidacy()
		select {
		case <-t.C:
		case <-ld.kick:
		case <-d.ctx.Done():
			return
		}
	}
}

// sendCandidacy tells each supernode whose last word from us differs.
func (ld *leader) sendCandidacy() {
	d := ld.d
	st := d.leadStatus(time.Now())
	m := &protocol.Candidacy{Eligible: st.Eligible, Uptime: uint32(time.Since(d.started).Seconds()), Why: clip(strings.Join(st.Why, "; "), protocol.MaxWhyLen)}
	if d.cfg.UploadRate > 0 {
		m.Upload = uint64(d.cfg.UploadRate)
	}
	links := d.attach.Links()
	ld.mu.Lock()
	now := make(map[*transport.Link]bool, len(links))
	var to []*transport.Link
	for _, l := range links {
		if !protocol.Supports(l.Version, protocol.TypeCandidacy) {
			continue
		}
		if was, ok := ld.sent[l]; !ok || was != st.Eligible {
			to = append(to, l)
		}
		now[l] = st.Eligible
	}
	ld.sent = now
	ld.mu.Unlock()
	for _, l := range to {
		l.Send(m)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (ld *leader) snapshot() *apitype.LeadingStatus {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if ld.st == nil {
		return nil
	}
	st := *ld.st
	if ld.srv != nil {
		st.Leaves = ld.srv.Leaves()
	}
	return &st
}

// server is the supernode this peer runs, or nil.
func (ld *leader) server() LeadServer {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.srv
}

// isOurs reports whether p is the supernode this peer runs: not a
// supernode for this peer to attach to.
func (ld *leader) isOurs(p protocol.PeerID) bool {
	srv := ld.server()
	return srv != nil && srv.ID() == p
}

// promote answers a supernode's promote: it starts a supernode in this
// process that joins the overlay through the promoting one, or says why not.
func (ld *leader) promote(l *transport.Link, m *protocol.Promote) {
	d := ld.d
	defer d.wg.Done()
	refuse := func(why string) {
		l.Log().Info().Str("why", why).Msg("refusing promotion")
		l.Send(&protocol.Promoted{Refused: clip(why, protocol.MaxWhyLen)})
	}
	st := d.leadStatus(time.Now())
	if !st.Eligible {
		refuse(strings.Join(st.Why, "; "))
		return
	}
	ld.mu.Lock()
	busy := ld.srv != nil || ld.starting
	ld.starting = true
	ld.mu.Unlock()
	if busy {
		refuse("already leading a supernode")
		return
	}
	srv, addr, err := ld.start(l, m)
	ld.mu.Lock()
	ld.starting = false
	if err == nil {
		ld.srv = srv
		ld.st = &apitype.LeadingStatus{Active: true, PeerID: srv.ID().String(), Addr: addr, PromotedBy: l.Peer.String(),
			Since: time.Now(), LeafLimit: int(m.LeafLimit)}
	}
	ld.mu.Unlock()
	if err != nil {
		refuse("cannot start a supernode: " + err.Error())
		return
	}
	d.log.Info().Str("supernode", srv.ID().String()).Str("addr", addr).Str("promoted_by", l.Peer.Short()).
		Uint32("leaf_limit", m.LeafLimit).Msg("promoted: serving as a supernode")
	ld.changed()
	d.wg.Add(1)
	go ld.serve(srv)
	l.Send(&protocol.Promoted{Peer: srv.ID(), Addrs: []string{addr}, Key: srv.PublicKey()})
}

// certificate takes the chain a supernode issued for the supernode we run
// since it promoted us, or a renewal of it.
func (ld *leader) certificate(l *transport.Link, m *protocol.Certificate) {
	srv := ld.server()
	if srv == nil || m.Chain.Leaf().Peer() != srv.ID() {
		l.Log().Debug().Msg("ignoring a certificate for a supernode we do not run")
		return
	}
	if err := srv.SetChain(m.Chain); err != nil {
		l.Log().Warn().Err(err).Msg("certificate for our supernode refused")
	}
}

// start opens the supernode on its own port, on the host our supernodes see
// us at, with its own identity kept in DataDir/lead.
func (ld *leader) start(l *transport.Link, m *protocol.Promote) (LeadServer, string, error) {
	d := ld.d
	host := ""
	for _, st := range d.attach.All() {
		if st.PeerID == l.Peer.String() && st.Observed != "" {
			host, _, _ = net.SplitHostPort(st.Observed)
		}
	}
	if host == "" {
		return nil, "", fmt.Errorf("the supernode did not say where it sees us")
	}
	listen := d.cfg.LeadListen
	if listen == "" {
		ip := d.Addr().IP
		if ip == nil || ip.IsUnspecified() {
			listen = ":0"
		} else {
			listen = net.JoinHostPort(ip.String(), "0")
		}
	}
	id, err := protocol.LoadOrCreateIdentity(filepath.Join(d.cfg.DataDir, "lead"))
	if err != nil {
		return nil, "", err
	}
	pc, err := transport.ListenUDP(listen)
	if err != nil {
		return nil, "", err
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	addr := net.JoinHostPort(host, fmt.Sprint(port))
	parent := l.Peer.String() + "@" + l.RemoteAddr().String()
	join := []string{parent}
	for _, o := range d.attach.Links() {
		if o != l && len(join) < 3 {
			join = append(join, o.Peer.String()+"@"+o.RemoteAddr().String())
		}
	}
	lhost, _, _ := net.SplitHostPort(listen)
	srv, err := d.cfg.StartLead(LeadConfig{
		Listen: listen, Conn: pc, AltListen: net.JoinHostPort(lhost, "0"),
		Join: join, Identity: id, Advertise: []string{addr}, Network: d.Network(),
		LeafLimit: int(m.LeafLimit), GossipInterval: m.Gossip(), MemberTimeout: m.Timeout(),
		Parent: parent, StepDownAfter: d.cfg.LeadStepDown,
		IdleTimeout: d.cfg.IdleTimeout,
		Log:         d.log.With().Str("part", "lead").Logger(),
	})
	if err != nil {
		pc.Close()
		return nil, "", err
	}
	return srv, addr, nil
}

// serve runs the promoted supernode until it steps down or the daemon stops.
func (ld *leader) serve(srv LeadServer) {
	d := ld.d
	defer d.wg.Done()
	err := srv.Serve(d.ctx)
	srv.Close()
	why := "the peer stopped"
	switch {
	case srv.SteppedDown() != "":
		why = "stepped down, " + srv.SteppedDown()
	case d.ctx.Err() == nil && err != nil:
		why = err.Error()
	}
	ld.mu.Lock()
	ld.srv = nil
	if ld.st != nil {
		ld.st.Active, ld.st.Ended, ld.st.EndedWhy = false, time.Now(), why
	}
	ld.mu.Unlock()
	if d.ctx.Err() == nil {
		d.log.Info().Str("supernode", srv.ID().String()).Str("why", why).Msg("no longer a supernode")
		ld.changed()
	}
}
