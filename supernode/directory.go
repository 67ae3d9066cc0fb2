package supernode

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/transport"
)

// Bounds of the directory's bookkeeping.
const (
	maxUserRecords = 200_000 // records one supernode holds
	maxDirPending  = 20_000  // requests in flight through one supernode
	dirRequestTTL  = 10 * time.Second
)

// directory is this supernode's part of the username directory: its share of
// the records, and the requests in flight through it.
type directory struct {
	store *dirStore
	users *index.Users // the store's records in memory: what lookups read

	mu      sync.Mutex
	pending map[protocol.QueryID]*dirRequest
	limits  map[LinkID]*rate.Limiter // per leaf
	ring    []ring.ID                // the ring at the last sweep
	cur     *ring.Ring               // the ring now, as of members generation curGen
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
	from     LinkID           // 0: our own handover of name
	replyAs  protocol.QueryID // the ID the reply goes back under
	via      LinkID           // where it went on
	hops     uint8
	name     string
	deadline time.Time
	// claim is a put of a free name that waits for the other replicas to
	// say whether they hold the name (see confirmClaim).
	claim *protocol.UserRecord
}

func newDirectory(store *dirStore) *directory {
	return &directory{
		store:   store,
		users:   store.users,
		pending: make(map[protocol.QueryID]*dirRequest),
		limits:  make(map[LinkID]*rate.Limiter),
	}
}

// dirRing is the ring of the live supernodes, ourselves included. Every
// directory message needs it; it is built again only when the set of live
// supernodes has changed.
func (s *Server) dirRing() *ring.Ring {
	d := s.dir
	gen := s.members.Gen() // before Live: a change in between rebuilds next time
	d.mu.Lock()
	r := d.cur
	ok := r != nil && d.curGen == gen
	d.mu.Unlock()
	if ok {
		return r
	}
	live := s.members.Live()
	ids := make([]ring.ID, 0, len(live)+1)
	ids = append(ids, ring.ID(s.ID()))
	for _, m := range live {
		ids = append(ids, ring.ID(m.Peer()))
	}
	r = ring.New(ids)
	d.mu.Lock()
	d.cur, d.curGen = r, gen
	d.mu.Unlock()
	return r
}

// linkedUsers are the supernode links that speak the directory.
func (s *Server) linkedUsers() map[ring.ID]LinkID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[ring.ID]LinkID, len(s.byPeer))
	for p, id := range s.byPeer {
		if l := s.links[id]; l != nil && protocol.Supports(l.Version, protocol.TypeUserPut) {
			out[ring.ID(p)] = id
		}
	}
	return out
}

// nextHop is the link toward target: target itself when linked, else the
// linked supernode farthest round the ring before it.
func (s *Server) nextHop(target ring.ID) (LinkID, bool) {
	linked := s.linkedUsers()
	if id, ok := linked[target]; ok {
		return id, true
	}
	ids := make([]ring.ID, 0, len(linked))
	for p := range linked {
		ids = append(ids, p)
	}
	p, ok := ring.Toward(ring.ID(s.ID()), ids, target)
	if !ok {
		return 0, false
	}
	return linked[p], true
}

// takeDirectory handles the directory's messages; false when m is not one.
func (s *Server) takeDirectory(id LinkID, l *transport.Link, m protocol.Message) bool {
	switch m := m.(type) {
	case *protocol.UserPut:
		if s.dirAllowed(id, l, m.ID) {
			s.userPut(id, m)
		}
	case *protocol.UserGet:
		if s.dirAllowed(id, l, m.ID) {
			s.userGet(id, m)
		}
	case *protocol.UserReply:
		s.userReply(m)
	case *protocol.UserStore:
		s.userStore(l, m)
	default:
		return false
	}
	return true
}

// dirAllowed keeps leaves to their rate and refuses request IDs in use.
func (s *Server) dirAllowed(id LinkID, l *transport.Link, req protocol.QueryID) bool {
	d := s.dir
	d.mu.Lock()
	_, dup := d.pending[req]
	var over bool
	if l.Role == protocol.RoleLeaf {
		lim := d.limits[id]
		if lim == nil {
			lim = rate.NewLimiter(rate.Limit(s.cfg.LeafDirRate), s.cfg.LeafDirBurst)
			d.limits[id] = lim
		}
		over = !lim.Allow()
	}
	d.mu.Unlock()
	switch {
	case over:
		s.replyErr(id, req, 0, fmt.Errorf("%w: more than %g directory requests a second", protocol.ErrOverloaded, s.cfg.LeafDirRate))
	case dup:
		// A loop (views of the ring that disagree) or a reused ID: either
		// way the first copy gets the answer.
		s.replyErr(id, req, 0, fmt.Errorf("%w: request %s is already in flight here", protocol.ErrBadRequest, req))
	default:
		return true
	}
	return false
}

func (s *Server) replyErr(to LinkID, req protocol.QueryID, hops uint8, err error) {
	s.Send(to, &protocol.UserReply{ID: req, Code: protocol.StatusOf(err), Message: err.Error(), Hops: hops})
}

// forward passes a request on toward target, remembering where the reply goes.
func (s *Server) forward(from LinkID, req protocol.QueryID, name string, hops uint8, target ring.ID, m protocol.Message) {
	s.forwardAs(from, req, req, name, hops, target, m)
}

// forwardAs is forward for a request that goes on under the ID next (which m
// carries) and is answered under req.
func (s *Server) forwardAs(from LinkID, req, next protocol.QueryID, name string, hops uint8, target ring.ID, m protocol.Message) {
	s.forwardReq(&dirRequest{from: from, replyAs: req, hops: hops, name: name}, next, target, m)
}

// forwardReq sends m, a request under the ID next, toward target, and keeps
// p to take the reply.
func (s *Server) forwardReq(p *dirRequest, next protocol.QueryID, target ring.ID, m protocol.Message) {
	if p.hops >= protocol.MaxUserHops {
		s.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: no owner of %q within %d hops", protocol.ErrUnavailable, p.name, p.hops))
		return
	}
	link, ok := s.nextHop(target)
	if !ok {
		s.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: no link toward the owner of %q", protocol.ErrUnavailable, p.name))
		return
	}
	p.via, p.deadline = link, time.Now().Add(dirRequestTTL)
	d := s.dir
	d.mu.Lock()
	full := len(d.pending) >= maxDirPending
	if !full {
		d.pending[next] = p
		d.Stats.Forwarded.Add(1)
	}
	d.mu.Unlock()
	if full {
		s.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: %d directory requests in flight", protocol.ErrOverloaded, maxDirPending))
		return
	}
	s.Send(link, m)
}

func (s *Server) userPut(from LinkID, m *protocol.UserPut) {
	s.dir.Stats.Puts.Add(1)
	k := ring.KeyOf(m.Rec.Name)
	r := s.dirRing()
	if owner := r.Successor(k); owner != ring.ID(s.ID()) {
		// Junk goes no further than here; the owner's Put checks again.
		if err := m.Rec.Verify(); err != nil {
			s.replyErr(from, m.ID, m.Hops, dirError(err))
			return
		}
		fwd := *m
		fwd.Hops++
		s.forward(from, m.ID, m.Rec.Name, m.Hops, owner, &fwd)
		return
	}
	rec, now := &m.Rec, time.Now()
	if s.dir.users.Holds(rec) {
		// Replicas pass every record on again when the ring changes:
		// spare the signature check for the copy already held.
		s.Send(from, &protocol.UserReply{ID: m.ID, Hops: m.Hops})
		return
	}
	if err := index.CheckRecord(rec, now); err != nil {
		s.putRefused(from, m.ID, m.Hops, rec.Name, err)
		return
	}
	_, held := s.dir.users.Get(rec.Name, now)
	replicas := r.Replicas(k, ring.Copies)
	switch {
	case held:
	case len(replicas) > 1:
		s.confirmClaim(from, m, replicas[1])
		return
	case !s.dir.store.aloneMayClaim(len(s.cfg.Join) > 0):
		s.putRefused(from, m.ID, m.Hops, rec.Name, fmt.Errorf("%w: this supernode knows no other supernode yet, and another may hold %q; ask again",
			protocol.ErrUnavailable, rec.Name))
		return
	}
	// A name held here is decided here; so is a free one on a ring of one.
	s.storePut(from, m.ID, m.Hops, rec, !held)
}

// storePut stores rec, and answers the put once it is on disk. With claim
// false, a name free by then is not taken: the put is answered unavailable,
// and asked again it is confirmed with the other replicas first.
func (s *Server) storePut(from LinkID, req protocol.QueryID, hops uint8, rec *protocol.UserRecord, claim bool) {
	s.dir.store.put(rec, claim, func(changed bool, err error) {
		if errors.Is(err, index.ErrNoClaim) {
			err = fmt.Errorf("%w: %v; ask again", protocol.ErrUnavailable, err)
		}
		if err != nil {
			s.putRefused(from, req, hops, rec.Name, err)
			return
		}
		if changed {
			s.dir.Stats.Stored.Add(1)
			s.copyToReplicas(s.dirRing(), []*protocol.UserRecord{rec})
		}
		s.Send(from, &protocol.UserReply{ID: req, Hops: hops})
	})
}

func (s *Server) putRefused(from LinkID, req protocol.QueryID, hops uint8, name string, err error) {
	s.dir.Stats.Refused.Add(1)
	s.log.Info().Err(err).Str("user", name).Msg("username record refused")
	s.replyErr(from, req, hops, dirError(err))
}

// confirmClaim asks the other replicas of a name this owner holds no record
// of whether they hold one, before a key may claim it. The owner may lack a
// record the others hold: it restarted and a put came while it was down, or
// the ring changed and their copies have not reached it yet. Without this,
// another key could claim the name in that window and first-key-wins would
// end up with two owners. The get goes to the second replica, which passes it
// to the third if it lacks the record.
func (s *Server) confirmClaim(from LinkID, m *protocol.UserPut, next ring.ID) {
	var id protocol.QueryID
	crand.Read(id[:])
	rec := m.Rec
	s.dir.Stats.Confirms.Add(1)
	s.forwardReq(&dirRequest{from: from, replyAs: m.ID, hops: m.Hops, name: rec.Name, claim: &rec}, id, next,
		&protocol.UserGet{ID: id, Name: rec.Name, Hops: m.Hops + 1, Down: 1})
}

// claimAnswered goes on with a claim once the other replicas answered: with
// the record one of them holds stored first, so that the claim is decided
// against it; as a claim of a free name when none holds one; and not at all
// when they could not be asked.
func (s *Server) claimAnswered(p *dirRequest, m *protocol.UserReply) {
	now := time.Now()
	switch {
	case m.Code == protocol.StatusOK && m.Rec != nil && m.Rec.Name == p.name && index.CheckRecord(m.Rec, now) == nil:
		held := m.Rec.Clone()
		err := s.dir.store.copies([]*protocol.UserRecord{held}, func(fresh []*protocol.UserRecord) {
			s.dir.Stats.Stored.Add(uint64(len(fresh)))
			s.copyToReplicas(s.dirRing(), fresh)
		})
		if err != nil {
			s.replyErr(p.from, p.replyAs, p.hops, err)
			return
		}
		s.storePut(p.from, p.replyAs, p.hops, p.claim, false)
	case m.Code == protocol.StatusNotFound:
		s.storePut(p.from, p.replyAs, p.hops, p.claim, true)
	default:
		why := m.Message
		if m.Code == protocol.StatusOK {
			why = "the answer held no valid record"
		}
		s.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: cannot confirm with the other replicas that %q is free: %s",
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

func (s *Server) userGet(from LinkID, m *protocol.UserGet) {
	s.dir.Stats.Gets.Add(1)
	k := ring.KeyOf(m.Name)
	r := s.dirRing()
	replicas := r.Replicas(k, ring.Copies)
	at := slices.Index(replicas, ring.ID(s.ID()))
	// Only a replica answers: a supernode that held the record before the
	// ring changed may hold an old one.
	if at >= 0 {
		if rec, ok := s.dir.users.Get(m.Name, time.Now()); ok {
			s.Send(from, &protocol.UserReply{ID: m.ID, Rec: rec, Hops: m.Hops})
			return
		}
	}
	want := min(int(m.Down), len(replicas)-1) // the replica asked
	fwd := *m
	fwd.Hops++
	if at != want {
		s.forward(from, m.ID, m.Name, m.Hops, replicas[want], &fwd)
		return
	}
	// The replica asked lacks the record (a copy may not have reached it
	// yet after a change of the ring): it asks the next, under a new ID so
	// that the request may pass supernodes it passed before.
	if want == len(replicas)-1 {
		s.replyErr(from, m.ID, m.Hops, fmt.Errorf("%w: no user %q", protocol.ErrNotFound, m.Name))
		return
	}
	fwd.Down = uint8(want + 1)
	crand.Read(fwd.ID[:])
	s.forwardAs(from, m.ID, fwd.ID, m.Name, m.Hops, replicas[want+1], &fwd)
}

func (s *Server) userReply(m *protocol.UserReply) {
	d := s.dir
	d.mu.Lock()
	p := d.pending[m.ID]
	delete(d.pending, m.ID)
	d.mu.Unlock()
	switch {
	case p == nil:
		// Late, or not ours.
	case p.claim != nil:
		s.claimAnswered(p, m)
	case p.from != 0:
		r := *m
		r.ID = p.replyAs
		s.Send(p.from, &r)
	case m.Code == protocol.StatusOK || m.Code == protocol.StatusForbidden || m.Code == protocol.StatusBadRequest:
		// Our handover reached the owner, which has this record or a
		// better claim: ours is no longer needed.
		s.dropMoved(p.name)
	}
}

// userStore takes copies from another supernode: those of the names we hold a
// replica of. A record that does not verify means a bad supernode; a claim
// that loses to the one held (another key, an older sequence) is only news
// that did not reach the sender yet.
func (s *Server) userStore(l *transport.Link, m *protocol.UserStore) {
	r := s.dirRing()
	self := ring.ID(s.ID())
	now := time.Now()
	var recs []*protocol.UserRecord
	for i := range m.Recs {
		rec := &m.Recs[i]
		if !holds(r, self, rec.Name) || s.dir.users.Holds(rec) {
			continue
		}
		err := index.CheckRecord(rec, now)
		switch {
		case errors.Is(err, protocol.ErrBadSignature) || errors.Is(err, protocol.ErrMalformed):
			l.Log().Warn().Err(err).Msg("user_store with a bad record; closing link")
			l.Close(fmt.Errorf("%w: %v", protocol.ErrForbidden, err))
			return
		case err != nil:
			s.log.Debug().Err(err).Str("user", rec.Name).Msg("replica copy refused")
		default:
			recs = append(recs, rec)
		}
	}
	// Copies are written in batches, one fsync for many; they pass on once
	// written, so a copy is on disk at each replica that passed it on.
	err := s.dir.store.copies(recs, func(fresh []*protocol.UserRecord) {
		s.dir.Stats.Stored.Add(uint64(len(fresh)))
		s.copyToReplicas(s.dirRing(), fresh)
	})
	if err != nil {
		s.log.Debug().Err(err).Int("records", len(recs)).Msg("replica copies dropped")
	}
}

// holds reports whether self is one of the replicas of name on r.
func holds(r *ring.Ring, self ring.ID, name string) bool {
	return slices.Contains(r.Replicas(ring.KeyOf(name), ring.Copies), self)
}

// copyToReplicas passes records on to the other replicas we are linked to:
// each replica that took a new record hands it on the same way, so the copies
// spread even when a replica lacks the link to its successor, and stop where
// they are no news.
func (s *Server) copyToReplicas(r *ring.Ring, recs []*protocol.UserRecord) {
	self := ring.ID(s.ID())
	linked := s.linkedUsers()
	out := make(map[ring.ID][]protocol.UserRecord)
	for _, rec := range recs {
		for _, p := range r.Replicas(ring.KeyOf(rec.Name), ring.Copies) {
			if _, ok := linked[p]; ok && p != self {
				out[p] = append(out[p], *rec)
			}
		}
	}
	// A replica not linked yet gets them from a later sweep.
	for p, rs := range out {
		s.sendStore(linked[p], rs)
	}
}

// sendStore sends recs over a supernode link, in frames of the most allowed.
func (s *Server) sendStore(id LinkID, recs []protocol.UserRecord) {
	for len(recs) > 0 {
		n := min(len(recs), protocol.MaxUserRecords)
		s.Send(id, &protocol.UserStore{Recs: recs[:n]})
		recs = recs[n:]
	}
}

// sweepDirectory runs every gossip round: it forgets expired requests and
// records, and when the ring has changed it copies each record it holds to
// the other replicas, and hands the records it should no
// longer hold to their owner, dropping them once the owner has them. With
// force (every few rounds) it does the same with the ring unchanged: a
// replica may have taken itself for none when the copy came, because
// it learnt of the change later, and a copy or handover may have found no
// link. A copy the receiver holds already costs it no signature check.
func (s *Server) sweepDirectory(now time.Time, force bool) {
	d := s.dir
	r := s.dirRing()
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
	self := ring.ID(s.ID())
	restarted := s.ringRestarted(ids, self)
	if !changed && !force && !restarted {
		return
	}
	var mine []*protocol.UserRecord
	var moved []*protocol.UserRecord
	for _, rec := range d.users.Records(now, nil) {
		if holds(r, self, rec.Name) {
			mine = append(mine, rec)
		} else {
			moved = append(moved, rec)
		}
	}
	s.copyToReplicas(r, mine)
	// Records we should no longer hold are kept until their owner confirms
	// it has them (or they expire), and offered again every few rounds.
	for _, rec := range moved {
		var req protocol.QueryID
		crand.Read(req[:])
		s.forward(0, req, rec.Name, 0, r.Successor(ring.KeyOf(rec.Name)), &protocol.UserPut{ID: req, Rec: *rec})
	}
	d.Stats.Moved.Add(uint64(len(moved)))
}

// ringRestarted reports whether a supernode of the ring has restarted since
// the last sweep (its incarnation rose): it may lack the records put while it
// was down, and gets copies at once rather than at the next forced sweep.
func (s *Server) ringRestarted(ids []ring.ID, self ring.ID) bool {
	incs := make(map[ring.ID]uint64, len(ids))
	for _, id := range ids {
		if id != self {
			incs[id] = s.members.Incarnation(protocol.PeerID(id))
		}
	}
	d := s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	restarted := false
	for id, inc := range incs {
		if old, ok := d.incs[id]; ok && inc > old {
			restarted = true
			s.log.Info().Str("peer_id", protocol.PeerID(id).Short()).Uint64("incarnation", inc).Msg("supernode of the ring restarted; copying records to it")
		}
	}
	d.incs = incs
	return restarted
}

func (s *Server) dropMoved(name string) {
	self := ring.ID(s.ID())
	s.dir.store.drop(name, func() bool { return !holds(s.dirRing(), self, name) })
}

// neighbourGone answers the requests that went on over a supernode link that
// closed: their replies are lost, and the asker can try again at once rather
// than wait for its timeout.
func (s *Server) neighbourGone(id LinkID) {
	d := s.dir
	d.mu.Lock()
	var lost []*dirRequest
	for req, p := range d.pending {
		if p.via == id {
			lost = append(lost, p)
			delete(d.pending, req)
		}
	}
	d.mu.Unlock()
	for _, p := range lost {
		s.replyErr(p.from, p.replyAs, p.hops, fmt.Errorf("%w: the link toward the owner of %q closed", protocol.ErrUnavailable, p.name))
	}
}

// leafGone forgets a leaf's rate limiter.
func (d *directory) leafGone(id LinkID) {
	d.mu.Lock()
	delete(d.limits, id)
	d.mu.Unlock()
}

// DirectoryStats are the directory's counts.
func (s *Server) DirectoryStats() *DirStats { return &s.dir.Stats }

// DirectoryStore are the counts of the store that keeps the directory's
// records on disk.
func (s *Server) DirectoryStore() *DirStoreStats { return &s.dir.store.Stats }

// Incarnation is this start's incarnation, as the member entry carries it.
func (s *Server) Incarnation() uint64 { return s.cfg.Incarnation }

// UserRecords is how many username records this supernode holds.
func (s *Server) UserRecords() int { return s.dir.users.Len() }

// UserRecord is the record this supernode holds for name, if any.
func (s *Server) UserRecord(name string) (*protocol.UserRecord, bool) {
	return s.dir.users.Get(name, time.Now())
}
