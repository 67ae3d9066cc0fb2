package peer

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/attach"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// A search goes to one supernode, and is hedged: sent as well to another of
// the supernodes the peer is attached to when the first shows no sign of life.
// Each query in flight is watched through its connection's packet count:
//
//   - a supernode acknowledges the packet that carried the query within about
//     one QUIC probe timeout (a round trip, four times its deviation and the
//     25 ms acknowledgement delay), or its usual time to answer a ping when
//     that is longer (a loaded supernode); at least minAckWait, at most
//     maxAckWait. One that has not is dead or cut off, and the search is
//     hedged then;
//   - after that, the liveness pings draw an answer every ping interval (the
//     ProbeInterval, or longer when a busy supernode asked), so a supernode
//     that dies with the query in hand is silent for longer than that
//     interval plus that wait;
//   - and a supernode answers a query within its 1 s query timeout: one that
//     has not after hedgeBackstop is taken as stuck.
//
// A supernode that does not acknowledge a query is suspected: the leaf pings
// at its own interval for a while, so one that died is left in about
// SilentProbes intervals even when it had asked for slow pings, and the
// hedge sends the search on through the supernode attached in its place.
//
// When nothing fails, a search is hedged only when an acknowledgement takes
// longer than the wait (a stall of the peer or a supernode) or a supernode
// overruns its own query timeout by half. The hits of every query are merged:
// sources already reported are dropped. A complete answer ends the search,
// unless a query sent before the one answered is alive after all (its
// acknowledgement came late, and it is neither silent nor stuck): then the
// search waits for that one too, as it would have without the hedge, so a
// hedge on a loaded machine costs a query but changes no answer.
const (
	minAckWait    = 150 * time.Millisecond
	maxAckWait    = time.Second
	hedgeBackstop = 1500 * time.Millisecond
	hedgeCheck    = 25 * time.Millisecond
)

// sentQuery is one query of a search, to one supernode.
type sentQuery struct {
	id    protocol.QueryID
	via   *transport.Link
	at    time.Time
	wait  time.Duration // its supernode's usual time to answer a ping, when sent
	rx    uint64        // packets received on via when last looked at
	heard time.Time     // when rx last moved on (at, before it did)
	acked bool          // rx moved on since the query went
	late  bool          // overdue: the search was hedged
	alive bool          // acknowledged, and neither silent since nor stuck
	over  bool          // answered, refused, or its link lost
}

// search is one search in flight.
type search struct {
	query protocol.Query // what is asked; each query sent gets its own ID
	// text and cid are what was asked, to check and score the hits by.
	text string
	cid  protocol.ContentID

	mu     sync.Mutex
	sent   []*sentQuery
	closed bool // the caller has its answer: nothing more is sent
	hits   []protocol.Hit
	seen   map[sourceKey]bool // sources reported so far: several supernodes index one peer
	done   *protocol.QueryDone
	doneBy int // the index in sent of the query done answers
	err    error
	note   chan struct{}

	// att carries the queries; probe is its ping interval.
	att   *attach.Attachment
	probe time.Duration
}

type sourceKey struct {
	cid  protocol.ContentID
	peer protocol.PeerID
}

// add keeps the sources not reported before, and the hits left with any.
func (s *search) add(hits []protocol.Hit) {
	s.mu.Lock()
	if s.seen == nil {
		s.seen = make(map[sourceKey]bool)
	}
	for _, h := range hits {
		// Supernodes pass on what others found: a hit that does not answer
		// the query is dropped, and the score is ours, not the sender's.
		if !s.cid.IsZero() {
			if h.ID != s.cid {
				continue
			}
		} else {
			sc, ok := index.ScoreOf(s.text, h.Name, h.Tags)
			if !ok {
				continue
			}
			h.Score = float32(sc)
		}
		var fresh []protocol.Source
		for _, src := range h.Sources {
			k := sourceKey{h.ID, src.Peer}
			if !s.seen[k] {
				s.seen[k] = true
				fresh = append(fresh, src)
			}
		}
		if len(fresh) > 0 {
			h.Sources = fresh
			s.hits = append(s.hits, h)
		}
	}
	s.mu.Unlock()
	s.signal()
}

// legOver ends the query id with its QueryDone or its error. The search keeps
// the best answer: a complete one over a partial one, and of two alike the one
// that searched more supernodes.
func (s *search) legOver(id protocol.QueryID, m *protocol.QueryDone, err error) {
	s.mu.Lock()
	at := -1
	for i, g := range s.sent {
		if g.id == id {
			g.over, at = true, i
		}
	}
	ok := m != nil && m.Status == protocol.StatusOK
	switch {
	case m == nil:
		if err != nil {
			s.err = err
		}
	case s.done == nil,
		ok && s.done.Status != protocol.StatusOK,
		ok == (s.done.Status == protocol.StatusOK) && m.Supernodes > s.done.Supernodes:
		s.done, s.doneBy = m, at
	}
	s.mu.Unlock()
	s.signal()
}

// Hits takes hits to the query id.
func (s *search) Hits(_ protocol.QueryID, hits []protocol.Hit) { s.add(hits) }

// Over ends the query id (see legOver).
func (s *search) Over(id protocol.QueryID, m *protocol.QueryDone, err error) { s.legOver(id, m, err) }

func (s *search) signal() {
	select {
	case s.note <- struct{}{}:
	default:
	}
}

// state is where a search stands.
type state struct {
	hits     []protocol.Hit // new since the last look
	done     *protocol.QueryDone
	err      error
	inFlight int
	live     int // in flight, and on time or alive
	before   int // in flight, alive, and sent before the query done answers
	queries  int
}

func (s *search) take() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := state{hits: s.hits, done: s.done, err: s.err, queries: len(s.sent)}
	s.hits = nil
	for i, g := range s.sent {
		if g.over {
			continue
		}
		st.inFlight++
		if !g.late || g.alive {
			st.live++
		}
		if g.alive && s.done != nil && i < s.doneBy {
			st.before++
		}
	}
	return st
}

// Search sends a query to the supernode and calls onHits as hits stream in. A
// query by content ID sets cid and leaves text empty.
func (d *Daemon) Search(ctx context.Context, text string, cid protocol.ContentID, limit int, onHits func([]protocol.Hit)) (apitype.SearchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.SearchTimeout)
	defer cancel()
	q := &search{
		query: protocol.Query{Text: text, CID: cid, Limit: uint16(min(max(limit, 0), 65535))},
		text:  text, cid: cid, note: make(chan struct{}, 1),
		att: d.attach, probe: d.attach.ProbeEvery(),
	}
	if text == "" && cid.IsZero() {
		return apitype.SearchResult{}, fmt.Errorf("%w: empty query", protocol.ErrBadRequest)
	}
	if len(text) > protocol.MaxQueryLen {
		return apitype.SearchResult{}, fmt.Errorf("%w: query longer than %d bytes", protocol.ErrBadRequest, protocol.MaxQueryLen)
	}
	// A peer that has just started may still be attaching: give it a moment.
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := d.attach.WaitAttached(wctx)
	wcancel()
	if err != nil {
		st := d.attach.Snapshot()
		if st.LastError != "" {
			return apitype.SearchResult{}, fmt.Errorf("%w: %s", ErrNoSupernode, st.LastError)
		}
		return apitype.SearchResult{}, ErrNoSupernode
	}
	defer q.forget()
	if err := q.send(false); err != nil {
		return apitype.SearchResult{}, fmt.Errorf("%w: %v", ErrNoSupernode, err)
	}
	tick := time.NewTicker(hedgeCheck)
	defer tick.Stop()
	for {
		select {
		case <-q.note:
		case <-tick.C:
			q.hedge(time.Now())
		case <-ctx.Done():
			st := q.take()
			d.deliver(st.hits, onHits)
			return apitype.SearchResult{Partial: true, Status: protocol.StatusTimeout, Queries: st.queries}, nil
		}
		st := q.take()
		d.deliver(st.hits, onHits)
		if res, final, err := st.result(); final {
			return res, err
		}
	}
}

// result is the search's outcome, once it is final. A complete answer is
// final unless a query sent before it is alive; a partial one once no other
// query is on time or alive. Without any answer, an overdue query may still
// bring one.
func (st state) result() (apitype.SearchResult, bool, error) {
	switch {
	case st.done != nil && st.done.Status == protocol.StatusOK && st.before == 0,
		st.done != nil && st.done.Status != protocol.StatusOK && st.live == 0:
		return apitype.SearchResult{Supernodes: int(st.done.Supernodes), Status: st.done.Status,
			Partial: st.done.Status != protocol.StatusOK, Queries: st.queries}, true, nil
	case st.inFlight == 0 && st.err != nil:
		return apitype.SearchResult{Queries: st.queries}, true, st.err
	case st.inFlight == 0:
		return apitype.SearchResult{Queries: st.queries}, true, ErrNoSupernode
	}
	return apitype.SearchResult{}, false, nil
}

// send sends the search's query, under a new ID, to an attached supernode
// it has not gone to yet (any attached one when that finds none and hedge
// is false). A first query goes to the nearest supernode not silent for a
// while; a hedge, to the one heard from last: supernodes often fail
// together, and one that died a moment ago has been silent since. Each query
// gets its own ID: a supernode drops an ID it has seen.
func (q *search) send(hedge bool) error {
	a := q.att
	q.mu.Lock()
	used := make(map[*transport.Link]bool, len(q.sent))
	for _, g := range q.sent {
		used[g.via] = true
	}
	q.mu.Unlock()
	l, wait := a.Pick(used, hedge)
	if l == nil && !hedge {
		l, wait = a.Pick(nil, false)
	}
	if l == nil {
		return ErrNoSupernode
	}
	m := q.query
	crand.Read(m.ID[:])
	now := time.Now()
	g := &sentQuery{id: m.ID, via: l, at: now, wait: wait, rx: l.PacketsReceived(), heard: now}
	a.AddLeg(m.ID, q, l)
	q.mu.Lock()
	closed := q.closed
	if !closed {
		q.sent = append(q.sent, g)
	}
	n := len(q.sent)
	q.mu.Unlock()
	if closed {
		a.TakeLeg(m.ID, l)
		return ErrNoSupernode
	}
	if err := l.Send(&m); err != nil {
		a.TakeLeg(m.ID, l)
		q.legOver(m.ID, nil, err)
		return err
	}
	if n > 1 {
		l.Log().Debug().Str("query", m.Text).Bool("hedge", hedge).Msg("search sent through another supernode")
	}
	return nil
}

// hedge marks queries in flight late when they are overdue and alive while
// acknowledged and neither silent nor stuck (see the rules above), and sends
// the search to another supernode when none is on time.
func (q *search) hedge(now time.Time) {
	probe := q.probe
	q.mu.Lock()
	onTime, inFlight := 0, 0
	var unacked []*transport.Link
	for _, g := range q.sent {
		if g.over {
			continue
		}
		inFlight++
		if n := g.via.PacketsReceived(); n != g.rx {
			g.rx, g.heard, g.acked = n, now, true
		}
		wait := min(max(ackWait(g.via), g.wait), maxAckWait)
		silent := probe > 0 && g.acked && now.Sub(g.heard) >= probe+wait
		stuck := now.Sub(g.at) >= hedgeBackstop
		noAck := !g.acked && now.Sub(g.at) >= wait
		if noAck && !g.late {
			unacked = append(unacked, g.via)
		}
		g.late = g.late || noAck || silent || stuck
		g.alive = g.acked && !silent && !stuck
		if !g.late {
			onTime++
		}
	}
	q.mu.Unlock()
	for _, l := range unacked {
		q.att.Suspect(l)
	}
	if onTime == 0 && inFlight > 0 {
		q.send(true) // none when every attached supernode has had it
	}
}

// ackWait is how long a supernode may take to acknowledge a packet: about one
// QUIC probe timeout on its connection.
func ackWait(l *transport.Link) time.Duration {
	srtt, dev := l.RTT()
	pto := srtt + max(4*dev, time.Millisecond) + 25*time.Millisecond
	return min(max(pto, minAckWait), maxAckWait)
}

// Lost ends the query id, whose link l was lost; a search with nothing
// else in flight goes on through another supernode.
func (q *search) Lost(id protocol.QueryID, l *transport.Link) {
	q.mu.Lock()
	others := 0
	for _, g := range q.sent {
		if g.id != id && !g.over && (!g.late || g.alive) {
			others++
		}
	}
	q.mu.Unlock()
	if others == 0 && q.send(false) == nil {
		l.Log().Info().Str("query", q.query.Text).Msg("search sent again through another supernode")
		q.legOver(id, nil, nil)
		return
	}
	q.legOver(id, nil, fmt.Errorf("%w: supernode connection lost: %v", ErrNoSupernode, l.Err()))
}

// forget drops the search's queries from the table of those in flight.
func (q *search) forget() {
	q.mu.Lock()
	q.closed = true
	ids := make([]protocol.QueryID, 0, len(q.sent))
	for _, g := range q.sent {
		ids = append(ids, g.id)
	}
	q.mu.Unlock()
	q.att.ForgetLegs(ids)
}

func (d *Daemon) deliver(h []protocol.Hit, onHits func([]protocol.Hit)) {
	if len(h) == 0 {
		return
	}
	d.srcs.add(h)
	if onHits != nil {
		onHits(h)
	}
}

// locate asks the overlay for the sources of id and returns what is known of
// it now, from this lookup and earlier searches; ok is false when nothing is.
func (d *Daemon) locate(ctx context.Context, id protocol.ContentID) (protocol.Hit, bool, error) {
	_, err := d.Search(ctx, "", id, 0, nil)
	hit, ok := d.srcs.get(id)
	return hit, ok, err
}
