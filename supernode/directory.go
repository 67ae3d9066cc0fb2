package supernode

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
)

// Bounds of the directory's bookkeeping.
const (
	maxUserRecords = 200_000 // records one supernode holds
	maxDirPending  = 20_000  // requests in flight through one supernode
	dirRequestTTL  = 10 * time.Second
)

// dirRecords is what the directory needs of the store that keeps its share
// of the records (dirStore): reads of what is held, and changes answered
// from the store's writer once they are on disk.
type dirRecords interface {
	get(name string, now time.Time) (*protocol.UserRecord, bool)
	holds(rec *protocol.UserRecord) bool
	records(now time.Time) []*protocol.UserRecord
	put(rec *protocol.UserRecord, claim bool, done func(changed bool, err error))
	copies(recs []*protocol.UserRecord, done func(fresh []*protocol.UserRecord)) error
	drop(name string, cond func() bool)
	prune()
	onRing()
	aloneMayClaim(joins bool) bool
}

// directoryConfig configures the directory core.
type directoryConfig struct {
	ID protocol.PeerID
	// Joins: the supernode is configured to join others, so alone it may
	// not yet know the supernodes that hold the records it lacks.
	Joins bool
	// LeafRate and LeafBurst bound the requests one leaf may send.
	LeafRate  float64
	LeafBurst int
	Now       func() time.Time
	Rand      io.Reader
	Log       zerolog.Logger
}

// directory is this supernode's part of the username directory: its share of
// the records, and the requests in flight through it. It speaks only in
// messages to and from peer IDs; the ring is that of the live members.
type directory struct {
	cfg     directoryConfig
	store   dirRecords
	members *Members
	links   linkView
	out     peerOutbox
	rnd     randSource
	log     zerolog.Logger

	mu      sync.Mutex
	pending map[protocol.QueryID]*dirRequest
	limits  map[protocol.PeerID]*rate.Limiter // per leaf
	ring    []ring.ID                         // the ring at the last sweep
	cur     *ring.Ring                        // the ring now, as of members generation curGen
	curGen  uint64
	incs    map[ring.ID]uint64 // incarnations of the ring's supernodes at the last sweep

	Stats DirStats
}

// DirStats are cumulative counts, for status and tests.
type DirStats struct {
	Puts, Gets, Forwarded, Stored, Refused, Moved atomic.Uint64
	// Confirms are claims of free names asked of the other replicas first.
	Confirms atomic.Uint64
}

type dirRequest struct {
	from     protocol.PeerID  // zero: our own handover of name
	replyAs  protocol.QueryID // the ID the reply goes back under
	via      protocol.PeerID  // where it went on
	hops     uint8
	name     string
	deadline time.Time
	// claim is a put of a free name that waits for the other replicas to
	// say whether they hold the name (see confirmClaim).
	claim *protocol.UserRecord
}

func newDirectory(cfg directoryConfig, store dirRecords, members *Members, links linkView, out peerOutbox) *directory {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &directory{
		cfg: cfg, store: store, members: members, links: links, out: out,
		rnd: randSource{r: cfg.Rand}, log: cfg.Log,
		pending: make(map[protocol.QueryID]*dirRequest),
		limits:  make(map[protocol.PeerID]*rate.Limiter),
	}
}

// dirRing is the ring of the live supernodes not reported gone, ourselves
// included. Every directory message needs it; it is built again only when
// that set has changed.
func (d *directory) dirRing() *ring.Ring {
	gen := d.members.Gen() // before Live: a change in between rebuilds next time
	d.mu.Lock()
	r := d.cur
	ok := r != nil && d.curGen == gen
	d.mu.Unlock()
	if ok {
		return r
	}
	live := d.members.Unsuspected()
	ids := make([]ring.ID, 0, len(live)+1)
	ids = append(ids, ring.ID(d.cfg.ID))
	for _, m := range live {
		ids = append(ids, ring.ID(m.Peer()))
	}
	r = ring.New(ids)
	d.mu.Lock()
	d.cur, d.curGen = r, gen
	d.mu.Unlock()
	return r
}

// linked are the supernodes linked to us that speak the directory.
func (d *directory) linked() []ring.ID {
	ps := d.links.Neighbours(protocol.TypeUserPut)
	out := make([]ring.ID, len(ps))
	for i, p := range ps {
		out[i] = ring.ID(p)
	}
	return out
}

// nextHop is the supernode toward target: target itself when linked, else
// the linked supernode farthest round the ring before it.
func (d *directory) nextHop(target ring.ID) (protocol.PeerID, bool) {
	linked := d.linked()
	if slices.Contains(linked, target) {
		return protocol.PeerID(target), true
	}
	p, ok := ring.Toward(ring.ID(d.cfg.ID), linked, target)
	return protocol.PeerID(p), ok
}

// Handle takes one directory message from peer from, linked to us as role.
// An error means the sender is bad: its link is to be closed.
func (d *directory) Handle(from protocol.PeerID, role protocol.Role, m protocol.Message) error {
	switch m := m.(type) {
	case *protocol.UserPut:
		if d.allowed(from, role, m.ID) {
			d.userPut(from, m)
		}
	case *protocol.UserGet:
		if d.allowed(from, role, m.ID) {
			d.userGet(from, m)
		}
	case *protocol.UserReply:
		d.userReply(m)
	case *protocol.UserStore:
		return d.userStore(m)
	default:
		return unexpected(m)
	}
	return nil
}

// allowed keeps leaves to their rate and refuses request IDs in use.
func (d *directory) allowed(from protocol.PeerID, role protocol.Role, req protocol.QueryID) bool {
	d.mu.Lock()
	_, dup := d.pending[req]
	var over bool
	if role == protocol.RoleLeaf {
		lim := d.limits[from]
		if lim == nil {
			lim = rate.NewLimiter(rate.Limit(d.cfg.LeafRate), d.cfg.LeafBurst)
			d.limits[from] = lim
		}
		over = !lim.AllowN(d.cfg.Now(), 1)
	}
	d.mu.Unlock()
	switch {
	case over:
		d.replyErr(from, req, 0, fmt.Errorf("%w: more than %g directory requests a second", protocol.ErrOverloaded, d.cfg.LeafRate))
	case dup:
		// A loop (views of the ring that disagree) or a reused ID: either
		// way the first copy gets the answer.
		d.replyErr(from, req, 0, fmt.Errorf("%w: request %s is already in flight here", protocol.ErrBadRequest, req))
	default:
		return true
	}
	return false
}

// send sends m to peer to; our own requests (the zero ID) get no answer.
func (d *directory) send(to protocol.PeerID, m protocol.Message) {
	if !to.IsZero() {
		d.out.Send(to, m)
	}
}

func (d *directory) replyErr(to protocol.PeerID, req protocol.QueryID, hops uint8, err error) {
	d.send(to, &protocol.UserReply{ID: req, Code: protocol.StatusOf(err), Message: err.Error(), Hops: hops})
}

// forward passes a request on toward target, remembering where the reply goes.
func (d *directory) forward(from protocol.PeerID, req protocol.QueryID, name string, hops uint8, target ring.ID, m protocol.Message) {
	d.forwardAs(from, req, req, name, hops, target, m)
}

// forwardAs is forward for a request that goes on under the ID next (which m
// carries) and is answered under req.
func (d *directory) forwardAs(from protocol.PeerID, req, next protocol.QueryID, name string, hops uint8, target ring.ID, m protocol.Message) {
	d.forwardReq(&dirRequest{from: from, replyAs: req, hops: hops, name: name}, next, target, m)
}

// forwardReq sends m, a request under the ID next, toward target, and keeps
// p to take the reply.
func (d *directory) forwardReq(p *dirRequest, next protocol.QueryID, target ring.ID, m protocol.Message) {
	if p.hops >= protocol.MaxUserHops {
		d.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: no owner of %q within %d hops", protocol.ErrUnavailable, p.name, p.hops))
		return
	}
	via, ok := d.nextHop(target)
	if !ok {
		d.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: no link toward the owner of %q", protocol.ErrUnavailable, p.name))
		return
	}
	p.via, p.deadline = via, d.cfg.Now().Add(dirRequestTTL)
	d.mu.Lock()
	full := len(d.pending) >= maxDirPending
	if !full {
		d.pending[next] = p
		d.Stats.Forwarded.Add(1)
	}
	d.mu.Unlock()
	if full {
		d.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: %d directory requests in flight", protocol.ErrOverloaded, maxDirPending))
		return
	}
	d.out.Send(via, m)
}

func (d *directory) userPut(from protocol.PeerID, m *protocol.UserPut) {
	d.Stats.Puts.Add(1)
	k := ring.KeyOf(m.Rec.Name)
	r := d.dirRing()
	if owner := r.Successor(k); owner != ring.ID(d.cfg.ID) {
		// Junk goes no further than here; the owner's Put checks again.
		if err := m.Rec.Verify(); err != nil {
			d.replyErr(from, m.ID, m.Hops, dirError(err))
			return
		}
		fwd := *m
		fwd.Hops++
		d.forward(from, m.ID, m.Rec.Name, m.Hops, owner, &fwd)
		return
	}
	rec, now := &m.Rec, d.cfg.Now()
	if d.store.holds(rec) {
		// Replicas pass every record on again when the ring changes:
		// spare the signature check for the copy already held.
		d.send(from, &protocol.UserReply{ID: m.ID, Hops: m.Hops})
		return
	}
	if err := index.CheckRecord(rec, now); err != nil {
		d.putRefused(from, m.ID, m.Hops, rec.Name, err)
		return
	}
	_, held := d.store.get(rec.Name, now)
	replicas := r.Replicas(k, ring.Copies)
	switch {
	case held:
	case len(replicas) > 1:
		d.confirmClaim(from, m, replicas[1])
		return
	case !d.store.aloneMayClaim(d.cfg.Joins):
		d.putRefused(from, m.ID, m.Hops, rec.Name, fmt.Errorf("%w: this supernode knows no other supernode yet, and another may hold %q; ask again",
			protocol.ErrUnavailable, rec.Name))
		return
	}
	// A name held here is decided here; so is a free one on a ring of one.
	d.storePut(from, m.ID, m.Hops, rec, !held)
}

// storePut stores rec, and answers the put once it is on disk. With claim
// false, a name free by then is not taken: the put is answered unavailable,
// and asked again it is confirmed with the other replicas first.
func (d *directory) storePut(from protocol.PeerID, req protocol.QueryID, hops uint8, rec *protocol.UserRecord, claim bool) {
	d.store.put(rec, claim, func(changed bool, err error) {
		if errors.Is(err, index.ErrNoClaim) {
			err = fmt.Errorf("%w: %v; ask again", protocol.ErrUnavailable, err)
		}
		if err != nil {
			d.putRefused(from, req, hops, rec.Name, err)
			return
		}
		if changed {
			d.Stats.Stored.Add(1)
			d.copyToReplicas(d.dirRing(), []*protocol.UserRecord{rec})
		}
		d.send(from, &protocol.UserReply{ID: req, Hops: hops})
	})
}

func (d *directory) putRefused(from protocol.PeerID, req protocol.QueryID, hops uint8, name string, err error) {
	d.Stats.Refused.Add(1)
	d.log.Info().Err(err).Str("user", name).Msg("username record refused")
	d.replyErr(from, req, hops, dirError(err))
}

// confirmClaim asks the other replicas of a name this owner holds no record
// of whether they hold one, before a key may claim it. The owner may lack a
// record the others hold: it restarted and a put came while it was down, or
// the ring changed and their copies have not reached it yet. Without this,
// another key could claim the name in that window and first-key-wins would
// end up with two owners. The get goes to the second replica, which passes it
// to the third if it lacks the record.
func (d *directory) confirmClaim(from protocol.PeerID, m *protocol.UserPut, next ring.ID) {
	id := d.rnd.queryID()
	rec := m.Rec
	d.Stats.Confirms.Add(1)
	d.forwardReq(&dirRequest{from: from, replyAs: m.ID, hops: m.Hops, name: rec.Name, claim: &rec}, id, next,
		&protocol.UserGet{ID: id, Name: rec.Name, Hops: m.Hops + 1, Down: 1})
}

// claimAnswered goes on with a claim once the other replicas answered: with
// the record one of them holds stored first, so that the claim is decided
// against it; as a claim of a free name when none holds one; and not at all
// when they could not be asked.
func (d *directory) claimAnswered(p *dirRequest, m *protocol.UserReply) {
	now := d.cfg.Now()
	switch {
	case m.Code == protocol.StatusOK && m.Rec != nil && m.Rec.Name == p.name && index.CheckRecord(m.Rec, now) == nil:
		held := m.Rec.Clone()
		err := d.store.copies([]*protocol.UserRecord{held}, func(fresh []*protocol.UserRecord) {
			d.Stats.Stored.Add(uint64(len(fresh)))
			d.copyToReplicas(d.dirRing(), fresh)
		})
		if err != nil {
			d.replyErr(p.from, p.replyAs, p.hops, err)
			return
		}
		d.storePut(p.from, p.replyAs, p.hops, p.claim, false)
	case m.Code == protocol.StatusNotFound:
		d.storePut(p.from, p.replyAs, p.hops, p.claim, true)
	default:
		why := m.Message
		if m.Code == protocol.StatusOK {
			why = "the answer held no valid record"
		}
		d.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: cannot confirm with the other replicas that %q is free: %s",
			protocol.ErrUnavailable, p.name, why))
	}
}

// dirError gives the directory's refusals their wire status.
func dirError(err error) error {
	switch {
	case errors.Is(err, protocol.ErrBadSignature), errors.Is(err, protocol.ErrMalformed):
		return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	case errors.Is(err, index.ErrNameTaken):
		return fmt.Errorf("%w: %v", protocol.ErrForbidden, err)
	case errors.Is(err, index.ErrStaleRecord), errors.Is(err, index.ErrExpired):
		return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	case errors.Is(err, index.ErrUsersFull):
		return fmt.Errorf("%w: %v", protocol.ErrOverloaded, err)
	}
	return err
}

func (d *directory) userGet(from protocol.PeerID, m *protocol.UserGet) {
	d.Stats.Gets.Add(1)
	k := ring.KeyOf(m.Name)
	r := d.dirRing()
	replicas := r.Replicas(k, ring.Copies)
	at := slices.Index(replicas, ring.ID(d.cfg.ID))
	// Only a replica answers: a supernode that held the record before the
	// ring changed may hold an old one.
	if at >= 0 {
		if rec, ok := d.store.get(m.Name, d.cfg.Now()); ok {
			d.send(from, &protocol.UserReply{ID: m.ID, Rec: rec, Hops: m.Hops})
			return
		}
	}
	want := min(int(m.Down), len(replicas)-1) // the replica asked
	fwd := *m
	fwd.Hops++
	if at != want {
		d.forward(from, m.ID, m.Name, m.Hops, replicas[want], &fwd)
		return
	}
	// The replica asked lacks the record (a copy may not have reached it
	// yet after a change of the ring): it asks the next, under a new ID so
	// that the request may pass supernodes it passed before.
	if want == len(replicas)-1 {
		d.replyErr(from, m.ID, m.Hops, fmt.Errorf("%w: no user %q", protocol.ErrNotFound, m.Name))
		return
	}
	fwd.Down = uint8(want + 1)
	fwd.ID = d.rnd.queryID()
	d.forwardAs(from, m.ID, fwd.ID, m.Name, m.Hops, replicas[want+1], &fwd)
}

func (d *directory) userReply(m *protocol.UserReply) {
	d.mu.Lock()
	p := d.pending[m.ID]
	delete(d.pending, m.ID)
	d.mu.Unlock()
	switch {
	case p == nil:
		// Late, or not ours.
	case p.claim != nil:
		d.claimAnswered(p, m)
	case !p.from.IsZero():
		r := *m
		r.ID = p.replyAs
		d.out.Send(p.from, &r)
	case m.Code == protocol.StatusOK || m.Code == protocol.StatusForbidden || m.Code == protocol.StatusBadRequest:
		// Our handover reached the owner, which has this record or a
		// better claim: ours is no longer needed.
		d.dropMoved(p.name)
	}
}

// userStore takes copies from another supernode: those of the names we hold a
// replica of. A record that does not verify means a bad supernode; a claim
// that loses to the one held (another key, an older sequence) is only news
// that did not reach the sender yet.
func (d *directory) userStore(m *protocol.UserStore) error {
	r := d.dirRing()
	self := ring.ID(d.cfg.ID)
	now := d.cfg.Now()
	var recs []*protocol.UserRecord
	for i := range m.Recs {
		rec := &m.Recs[i]
		if !holds(r, self, rec.Name) || d.store.holds(rec) {
			continue
		}
		err := index.CheckRecord(rec, now)
		switch {
		case errors.Is(err, protocol.ErrBadSignature) || errors.Is(err, protocol.ErrMalformed):
			return fmt.Errorf("%w: user_store with a bad record: %v", protocol.ErrForbidden, err)
		case err != nil:
			d.log.Debug().Err(err).Str("user", rec.Name).Msg("replica copy refused")
		default:
			recs = append(recs, rec)
		}
	}
	// Copies are written in batches, one fsync for many; they pass on once
	// written, so a copy is on disk at each replica that passed it on.
	err := d.store.copies(recs, func(fresh []*protocol.UserRecord) {
		d.Stats.Stored.Add(uint64(len(fresh)))
		d.copyToReplicas(d.dirRing(), fresh)
	})
	if err != nil {
		d.log.Debug().Err(err).Int("records", len(recs)).Msg("replica copies dropped")
	}
	return nil
}

// holds reports whether self is one of the replicas of name on r.
func holds(r *ring.Ring, self ring.ID, name string) bool {
	return slices.Contains(r.Replicas(ring.KeyOf(name), ring.Copies), self)
}

// copyToReplicas passes records on to the other replicas we are linked to:
// each replica that took a new record hands it on the same way, so the copies
// spread even when a replica lacks the link to its successor, and stop where
// they are no news.
func (d *directory) copyToReplicas(r *ring.Ring, recs []*protocol.UserRecord) {
	self := ring.ID(d.cfg.ID)
	linked := d.linked()
	out := make(map[ring.ID][]protocol.UserRecord)
	for _, rec := range recs {
		for _, p := range r.Replicas(ring.KeyOf(rec.Name), ring.Copies) {
			if p != self && slices.Contains(linked, p) {
				out[p] = append(out[p], *rec)
			}
		}
	}
	// A replica not linked yet gets them from a later sweep.
	for _, p := range linked {
		if rs := out[p]; len(rs) > 0 {
			d.sendStore(protocol.PeerID(p), rs)
		}
	}
}

// sendStore sends recs to a supernode, in frames of the most allowed.
func (d *directory) sendStore(to protocol.PeerID, recs []protocol.UserRecord) {
	for len(recs) > 0 {
		n := min(len(recs), protocol.MaxUserRecords)
		d.out.Send(to, &protocol.UserStore{Recs: recs[:n]})
		recs = recs[n:]
	}
}

// Sweep runs every gossip round: it forgets expired requests and records,
// and when the ring has changed it copies each record it holds to the other
// replicas, and hands the records it should no longer hold to their owner,
// dropping them once the owner has them. With force (every few rounds) it
// does the same with the ring unchanged: a replica may have taken itself for
// none when the copy came, because it learnt of the change later, and a copy
// or handover may have found no link. A copy the receiver holds already costs
// it no signature check.
func (d *directory) Sweep(now time.Time, force bool) {
	r := d.dirRing()
	ids := r.IDs()
	d.mu.Lock()
	for id, p := range d.pending {
		if now.After(p.deadline) {
			delete(d.pending, id)
		}
	}
	changed := !slices.Equal(ids, d.ring)
	d.ring = ids
	d.mu.Unlock()
	d.store.prune()
	if len(ids) > 1 {
		d.store.onRing()
	}
	self := ring.ID(d.cfg.ID)
	restarted := d.ringRestarted(ids, self)
	if !changed && !force && !restarted {
		return
	}
	var mine []*protocol.UserRecord
	var moved []*protocol.UserRecord
	for _, rec := range d.store.records(now) {
		if holds(r, self, rec.Name) {
			mine = append(mine, rec)
		} else {
			moved = append(moved, rec)
		}
	}
	d.copyToReplicas(r, mine)
	// Records we should no longer hold are kept until their owner confirms
	// it has them (or they expire), and offered again every few rounds.
	for _, rec := range moved {
		req := d.rnd.queryID()
		d.forward(protocol.PeerID{}, req, rec.Name, 0, r.Successor(ring.KeyOf(rec.Name)), &protocol.UserPut{ID: req, Rec: *rec})
	}
	d.Stats.Moved.Add(uint64(len(moved)))
}

// ringRestarted reports whether a supernode of the ring has restarted since
// the last sweep (its incarnation rose): it may lack the records put while it
// was down, and gets copies at once rather than at the next forced sweep.
func (d *directory) ringRestarted(ids []ring.ID, self ring.ID) bool {
	incs := make(map[ring.ID]uint64, len(ids))
	for _, id := range ids {
		if id != self {
			incs[id] = d.members.Incarnation(protocol.PeerID(id))
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	restarted := false
	for _, id := range ids {
		inc, ok := incs[id]
		if old, had := d.incs[id]; ok && had && inc > old {
			restarted = true
			d.log.Info().Str("peer_id", protocol.PeerID(id).Short()).Uint64("incarnation", inc).Msg("supernode of the ring restarted; copying records to it")
		}
	}
	d.incs = incs
	return restarted
}

func (d *directory) dropMoved(name string) {
	self := ring.ID(d.cfg.ID)
	d.store.drop(name, func() bool { return !holds(d.dirRing(), self, name) })
}

// NeighbourDown answers the requests that went on to supernode p, whose link
// closed: their replies are lost, and the asker can try again at once rather
// than wait for its timeout.
func (d *directory) NeighbourDown(p protocol.PeerID) {
	d.mu.Lock()
	var lost []*dirRequest
	for req, q := range d.pending {
		if q.via == p {
			lost = append(lost, q)
			delete(d.pending, req)
		}
	}
	d.mu.Unlock()
	slices.SortFunc(lost, func(a, b *dirRequest) int { return cmpQueryID(a.replyAs, b.replyAs) })
	for _, q := range lost {
		d.replyErr(q.from, q.replyAs, q.hops, fmt.Errorf("%w: the link toward the owner of %q closed", protocol.ErrUnavailable, q.name))
	}
}

// LeafDown forgets a leaf's rate limiter.
func (d *directory) LeafDown(p protocol.PeerID) {
	d.mu.Lock()
	delete(d.limits, p)
	d.mu.Unlock()
}

// DirectoryStats are the directory's counts.
func (s *Server) DirectoryStats() *DirStats { return &s.dir.Stats }

// DirectoryStore are the counts of the store that keeps the directory's
// records on disk.
func (s *Server) DirectoryStore() *DirStoreStats { return &s.store.Stats }

// Incarnation is this start's incarnation, as the member entry carries it.
func (s *Server) Incarnation() uint64 { return s.cfg.Incarnation }

// UserRecords is how many username records this supernode holds.
func (s *Server) UserRecords() int { return s.store.users.Len() }

// UserRecord is the record this supernode holds for name, if any.
func (s *Server) UserRecord(name string) (*protocol.UserRecord, bool) {
	return s.store.users.Get(name, time.Now())
}
