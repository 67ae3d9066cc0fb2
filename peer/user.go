package peer

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/internal/defaults"
	"github.com/supernet-p2p/supernet/internal/waiters"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/transport"
)

// userDir keeps the peer's username registered: it puts a fresh record
// whenever the attachments or the NAT change, and again before it expires.
type userDir struct {
	d     *Daemon
	waits *waiters.Set[protocol.QueryID, *protocol.UserReply] // our requests, by ID

	mu     sync.Mutex
	status apitype.UserStatus
	sent   *protocol.UserRecord // the last record put, to spot changes
	kick   chan struct{}
	// replicas are the supernodes that hold our record, as the member list
	// has it, with their incarnations; when they change the record is put
	// again, since the new ones may lack it (all of the old ones may have
	// died at once), and so it is when one of them restarted (its
	// incarnation rose): it may have lost a record put while it was down.
	replicas []ring.ID
	incs     map[ring.ID]uint64
	force    bool
}

// membersChanged puts the record again if the supernodes that should hold it
// changed, or one of them restarted. ids are the listed supernodes, incs
// their incarnations.
func (u *userDir) membersChanged(ids []ring.ID, incs map[ring.ID]uint64) {
	if u.d.cfg.Username == "" {
		return
	}
	reps := ring.New(ids).Replicas(ring.KeyOf(u.d.cfg.Username), ring.Copies)
	mine := make(map[ring.ID]uint64, len(reps))
	for _, r := range reps {
		mine[r] = incs[r]
	}
	u.mu.Lock()
	changed := u.replicas != nil && !slices.Equal(reps, u.replicas)
	for r, inc := range mine {
		if old, ok := u.incs[r]; ok && inc > old {
			changed = true
			u.d.log.Info().Str("peer_id", protocol.PeerID(r).Short()).Msg("a supernode holding our username record restarted; putting it again")
		}
	}
	u.replicas, u.incs = reps, mine
	if changed {
		u.force = true
	}
	u.mu.Unlock()
	if changed {
		u.attachmentsChanged()
	}
}

func newUserDir(d *Daemon) *userDir {
	return &userDir{d: d, waits: waiters.New[protocol.QueryID, *protocol.UserReply](maxUserWaits),
		status: apitype.UserStatus{Name: d.cfg.Username}, kick: make(chan struct{}, 1)}
}

func (u *userDir) snapshot() *apitype.UserStatus {
	if u.d.cfg.Username == "" {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.status
	st.Supernodes = slices.Clone(st.Supernodes)
	return &st
}

// attachmentsChanged asks for a new record (supernodes or NAT changed).
func (u *userDir) attachmentsChanged() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

func (u *userDir) reply(m *protocol.UserReply) {
	u.waits.Deliver(m.ID, m)
}

// Directory requests are tried again, through the next attached supernode
// in turn, when no answer comes within askTimeout: a request can be lost on a
// supernode link that closes under it, or on a ring that is changing.
const (
	askTimeout  = 2 * time.Second
	askAttempts = 4
)

// maxUserWaits bounds the directory requests awaiting replies; each has a
// goroutine waiting on it.
const maxUserWaits = 1024

// ask sends the request build makes, under a fresh ID each try, and waits for
// its reply. A reply that refuses (not found, taken) is an answer; a timeout,
// a lost link or an unavailable ring is tried again.
func (u *userDir) ask(ctx context.Context, build func(protocol.QueryID) protocol.Message) (*protocol.UserReply, error) {
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := u.d.attach.WaitAttached(wctx)
	wcancel()
	if err != nil {
		return nil, ErrNoSupernode
	}
	var last error
	for try := 0; try < askAttempts && ctx.Err() == nil; try++ {
		links := u.d.attach.Links()
		if len(links) == 0 {
			return nil, ErrNoSupernode
		}
		l := links[try%len(links)]
		r, err := u.askOnce(ctx, l, build)
		if err == nil || r != nil && r.Code != protocol.StatusUnavailable && r.Code != protocol.StatusOverloaded {
			return r, err
		}
		last = err
	}
	if last == nil {
		last = ctx.Err()
	}
	return nil, last
}

func (u *userDir) askOnce(ctx context.Context, l *transport.Link, build func(protocol.QueryID) protocol.Message) (*protocol.UserReply, error) {
	if !protocol.Supports(l.Version, protocol.TypeUserGet) {
		return nil, fmt.Errorf("%w: the supernode speaks protocol v%d, the directory needs v%d",
			protocol.ErrUnsupportedVersion, l.Version, protocol.VersionUsers)
	}
	var id protocol.QueryID
	crand.Read(id[:])
	ch, forget, ok := u.waits.Add(id, 1)
	if !ok {
		return nil, fmt.Errorf("%w: %d directory requests in flight", protocol.ErrOverloaded, maxUserWaits)
	}
	defer forget()
	if err := l.Send(build(id)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoSupernode, err)
	}
	t := time.NewTimer(askTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.Code != protocol.StatusOK {
			return r, (&protocol.Error{Code: r.Code, Message: r.Message}).AsError()
		}
		return r, nil
	case <-t.C:
		return nil, fmt.Errorf("%w: the directory did not answer within %v", protocol.ErrTimeout, askTimeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the directory did not answer", protocol.ErrTimeout)
	case <-l.Done():
		return nil, fmt.Errorf("%w: supernode connection lost", ErrNoSupernode)
	}
}

// Lookup resolves a username through the directory.
func (d *Daemon) Lookup(ctx context.Context, name string) (*apitype.LookupResult, error) {
	res, _, err := d.lookup(ctx, name)
	return res, err
}

// lookup resolves a username, and returns the signed record too.
func (d *Daemon) lookup(ctx context.Context, name string) (*apitype.LookupResult, *protocol.UserRecord, error) {
	if err := protocol.CheckUsername(name); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.SearchTimeout)
	defer cancel()
	start := time.Now()
	r, err := d.user.ask(ctx, func(id protocol.QueryID) protocol.Message { return &protocol.UserGet{ID: id, Name: name} })
	if err != nil {
		if errors.Is(err, protocol.ErrNotFound) {
			return nil, nil, fmt.Errorf("%w: %q", ErrNoSuchUser, name)
		}
		return nil, nil, err
	}
	rec := r.Rec
	if rec == nil || rec.Name != name {
		return nil, nil, fmt.Errorf("%w: the directory answered without the record", protocol.ErrInternal)
	}
	// The supernodes checked it; the owner's signature is what counts.
	if err := rec.Verify(); err != nil {
		return nil, nil, fmt.Errorf("record for %q: %w", name, err)
	}
	out := &apitype.LookupResult{Name: name, PeerID: rec.Peer().String(), Addrs: rec.Addrs, NAT: rec.NAT.String(),
		Expires: time.Unix(rec.Expires, 0), Hops: int(r.Hops), Elapsed: time.Since(start).Seconds()}
	for _, sn := range rec.Supernodes {
		out.Supernodes = append(out.Supernodes, sn.String())
	}
	return out, rec, nil
}

// userTTL is how long a record lives; it is put again at a third of that.
const userTTL = time.Hour

// run keeps the record registered while the daemon runs.
func (u *userDir) run() {
	d := u.d
	defer d.wg.Done()
	retry := defaults.Backoff(time.Second, time.Minute)
	for d.ctx.Err() == nil {
		wait := userTTL / 3
		if err := u.register(); err != nil {
			if !errors.Is(err, protocol.ErrForbidden) {
				// A name another key holds stays so until its record
				// expires: that is waited for; anything else is retried.
				wait = retry.NextBackOff()
			}
		} else {
			retry.Reset()
		}
		select {
		case <-u.kick:
			// Several changes come together on an attach: take them as one.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-d.ctx.Done():
				return
			}
			select {
			case <-u.kick:
			default:
			}
		case <-time.After(wait):
		case <-d.ctx.Done():
			return
		}
	}
}

// register puts our record, if it changed or is due.
func (u *userDir) register() error {
	d := u.d
	sns := d.attach.Supernodes()
	if len(sns) == 0 {
		return ErrNoSupernode
	}
	_, nat := d.attach.Self()
	rec := &protocol.UserRecord{Name: d.cfg.Username, Supernodes: sns[:min(len(sns), protocol.MaxUserSNs)],
		Addrs: d.advertisedAddrs(), NAT: nat}
	now := time.Now()
	prev, force, put := u.due(rec, now)
	if !put {
		return nil
	}
	// Nanoseconds keep the sequence rising across restarts.
	rec.Seq = uint64(now.UnixNano())
	if prev != nil && rec.Seq <= prev.Seq {
		rec.Seq = prev.Seq + 1
	}
	rec.Expires = now.Add(userTTL).Unix()
	rec.Sign(d.id)
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.SearchTimeout)
	defer cancel()
	_, err := u.ask(ctx, func(id protocol.QueryID) protocol.Message { return &protocol.UserPut{ID: id, Rec: *rec} })
	u.done(rec, prev, force, err)
	if err != nil {
		d.log.Warn().Err(err).Str("user", rec.Name).Msg("username not registered")
		return err
	}
	d.log.Info().Str("user", rec.Name).Int("supernodes", len(sns)).Msg("username registered")
	return nil
}

// done records how the put of rec went; prev and force are what due gave.
func (u *userDir) done(rec, prev *protocol.UserRecord, force bool, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil {
		// A put asked for by a restart or a ring change stays owed until it
		// lands: the record from before may be missing where it belongs.
		u.force = u.force || force
		// A refresh that failed leaves the record put before live until it
		// expires: the name is still ours unless another key holds it.
		u.status.Registered = prev != nil && u.status.Registered && time.Now().Unix() < prev.Expires &&
			!errors.Is(err, protocol.ErrForbidden)
		u.status.LastError = err.Error()
		return
	}
	u.sent = rec
	u.status = apitype.UserStatus{Name: rec.Name, Registered: true, Seq: rec.Seq, Expires: time.Unix(rec.Expires, 0)}
	for _, sn := range rec.Supernodes {
		u.status.Supernodes = append(u.status.Supernodes, sn.String())
	}
}

// due takes the pending request to put the record again and says whether
// rec must be put: when asked to, when it differs from the last record put,
// when that one is a third through its life, or when it never landed.
func (u *userDir) due(rec *protocol.UserRecord, now time.Time) (prev *protocol.UserRecord, force, put bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	prev, force = u.sent, u.force
	u.force = false
	same := prev != nil && slices.Equal(prev.Supernodes, rec.Supernodes) && slices.Equal(prev.Addrs, rec.Addrs) &&
		prev.NAT == rec.NAT && time.Unix(prev.Expires, 0).Sub(now) > 2*userTTL/3
	return prev, force, force || !same || !u.status.Registered
}

// advertisedAddrs are where other peers may dial us: what the supernodes
// observed and STUN showed, and our socket when it names a host.
func (d *Daemon) advertisedAddrs() []string {
	var out []string
	add := func(a string) {
		if a != "" && len(out) < protocol.MaxAddrs && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if a := d.relayNow(); a != nil {
		add(a.RelayedAddr().String())
	}
	for _, st := range d.attach.All() {
		add(st.Observed)
		add(st.Reflexive)
		for _, a := range st.Proven {
			add(a)
		}
	}
	if la := d.Addr(); la != nil && !la.IP.IsUnspecified() {
		add(la.String())
	}
	return out
}
