package compare

import (
	"crypto/sha256"
	"maps"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
)

// dht is a circular DHT with shortcuts, as Chord builds one, holding a
// keyword index: every word of every shared file name is hashed onto the
// ring of peer IDs, and the first Copies live peers at or after it keep its
// postings (file, source). A query goes to the owner of its first word in
// O(log N) hops over finger tables, and the owner answers with the files
// whose names have every word.
//
// Upkeep is Chord's: every Stabilize each peer stabilises with its
// successor, checks its predecessor and fixes one finger by a lookup. A
// finger that left stays in the table until fixed or found dead: a message
// to it is lost, and the sender tries the next best finger after a timeout.
// Successor pointers are taken as right (a peer's successor list covers
// the departures within a stabilisation round).
type dht struct {
	Copies int
	// Stabilize is how often each peer runs Chord's upkeep.
	Stabilize time.Duration

	e      *env
	nodes  []NodeID
	ids    []ring.ID             // all peers' ring positions, sorted
	at     []int                 // ids[i] belongs to peer at[i]
	pos    []int                 // peer -> its index in ids
	store  []map[int32][]posting // peer -> word -> postings
	fing   [][]finger            // peer -> its distinct fingers
	fixAt  []int                 // peer -> the finger it fixes next
	wordID map[string]int32
	asker  map[protocol.QueryID]int // where a query's answer goes: the address a lookup carries
}

type posting struct{ file, src int32 }

// finger is a shortcut: peer, believed the first at or after self + 2^bit.
type finger struct {
	peer int
	bit  uint8
}

// A lookup waits rpcTimeouts round trips for a finger that left before it
// tries another: the timeout of an implementation that tracks each
// finger's round trip. (Stabilize defaults to 30 s, the mean period of the
// Chord paper's experiments.)
const rpcTimeouts = 3

// chordRPC weighs what one Chord request or reply does: a ring ID, an
// address and a header.
var chordRPC = &protocol.Ping{Pad: make([]byte, 48)}

func (*dht) Name() string { return "dht" }

func (d *dht) build(e *env) {
	d.e = e
	n := len(e.wd.holds)
	type idp struct {
		id ring.ID
		p  int
	}
	all := make([]idp, n)
	for p := range all {
		id := peerID(p)
		all[p] = idp{sha256.Sum256(id[:]), p}
	}
	slices.SortFunc(all, func(a, b idp) int { return compareID(a.id, b.id) })
	d.pos = make([]int, n)
	for i, x := range all {
		d.ids = append(d.ids, x.id)
		d.at = append(d.at, x.p)
		d.pos[x.p] = i
	}
	d.store = make([]map[int32][]posting, n)
	d.fing = make([][]finger, n)
	d.fixAt = make([]int, n)
	for p := 0; p < n; p++ {
		d.nodes = append(d.nodes, e.net.add(dhtPeer{d, p}, peerUplink))
		d.store[p] = map[int32][]posting{}
		if !e.online[p] {
			e.net.kill(d.nodes[p])
		}
	}
	d.asker = map[protocol.QueryID]int{}
	d.wordID = make(map[string]int32, len(e.wd.byWord))
	for w := range e.wd.byWord {
		d.wordID[word(w)] = int32(w)
	}
	for p := range d.fing {
		if e.online[p] {
			d.fing[p] = d.liveFingers(p)
		}
	}
	e.everyPeer(d.Stabilize, d.stabilize)
	for p, files := range e.wd.holds {
		if !e.online[p] {
			continue
		}
		for _, f := range files {
			for _, w := range e.wd.words[f] {
				for _, r := range d.replicas(d.key(int32(w))) {
					d.store[r][int32(w)] = append(d.store[r][int32(w)], posting{f, int32(p)})
				}
			}
		}
	}
}

func compareID(a, b ring.ID) int { return slices.Compare(a[:], b[:]) }

func (d *dht) key(w int32) ring.ID { return keyOf(word(int(w))) }

func keyOf(term string) ring.ID { return ring.KeyOf("word " + term) }

// succ is the first online peer at or after k, going round, or -1.
func (d *dht) succ(k ring.ID) int {
	var buf [1]int
	if p := d.onlineFrom(buf[:0], k, 1); len(p) > 0 {
		return p[0]
	}
	return -1
}

// replicas are the first Copies online peers at or after k.
func (d *dht) replicas(k ring.ID) []int { return d.onlineFrom(nil, k, d.Copies) }

// onlineFrom appends the first n online peers at or after k, going round
// once at most.
func (d *dht) onlineFrom(out []int, k ring.ID, n int) []int {
	i, _ := slices.BinarySearchFunc(d.ids, k, compareID)
	for j := 0; j < len(d.ids) && len(out) < n; j++ {
		if p := d.at[(i+j)%len(d.ids)]; d.e.online[p] {
			out = append(out, p)
		}
	}
	return out
}

// liveFingers are the peer's shortcuts as a fresh table has them: the
// first online peer at or after self + 2^i, each peer once.
func (d *dht) liveFingers(p int) []finger {
	self := d.ids[d.pos[p]]
	var out []finger
	for i := range 256 {
		f := d.succ(addBit(self, i))
		if f >= 0 && f != p && (len(out) == 0 || out[len(out)-1].peer != f) {
			out = append(out, finger{f, uint8(i)})
		}
	}
	return out
}

// stabilize is Chord's periodic upkeep of peer p.
func (d *dht) stabilize(p int) {
	e := d.e
	// stabilize: ask the successor for its predecessor, then notify it;
	// check_predecessor: a ping and its answer.
	if s := d.replicasAfter(p); len(s) > 0 {
		e.net.charge(d.nodes[p], d.nodes[s[0]], tagLiveness, chordRPC)
		e.net.charge(d.nodes[s[0]], d.nodes[p], tagLiveness, chordRPC)
		e.net.charge(d.nodes[p], d.nodes[s[0]], tagLiveness, chordRPC)
	}
	if pr := d.predecessor(p); pr >= 0 {
		e.net.charge(d.nodes[p], d.nodes[pr], tagLiveness, chordRPC)
		e.net.charge(d.nodes[pr], d.nodes[p], tagLiveness, chordRPC)
	}
	// fix_fingers: one finger, by an iterative lookup of its target.
	if fs := d.fing[p]; len(fs) > 0 {
		i := d.fixAt[p] % len(fs)
		d.fixAt[p]++
		target := addBit(d.ids[d.pos[p]], int(fs[i].bit))
		if f := d.lookupCost(p, target, tagLiveness); f >= 0 && f != p {
			fs[i].peer = f
		}
	}
}

// predecessor is the first online peer before p, or -1.
func (d *dht) predecessor(p int) int {
	for j := 1; j < len(d.ids); j++ {
		if q := d.at[(d.pos[p]-j+len(d.ids))%len(d.ids)]; d.e.online[q] {
			return q
		}
	}
	return -1
}

// lookupCost charges an iterative lookup of k from p: a request and a reply
// per hop over the current fingers, and a lost request for each finger that
// left, which the asked node then drops. It returns k's owner (-1: none
// online).
func (d *dht) lookupCost(p int, k ring.ID, tag int) int {
	e := d.e
	owner := d.succ(k)
	at := p
	for hops := 0; hops < 64; hops++ {
		next, last := d.next(at, k, owner)
		if next == at {
			return owner
		}
		if !e.online[next] {
			e.net.charge(d.nodes[p], d.nodes[next], tag, chordRPC)
			d.dropFinger(at, next)
			continue
		}
		e.net.charge(d.nodes[p], d.nodes[next], tag, chordRPC)
		e.net.charge(d.nodes[next], d.nodes[p], tag, chordRPC)
		if last {
			return owner
		}
		at = next
	}
	return owner
}

// dropFinger takes a finger found dead out of p's table.
func (d *dht) dropFinger(p, f int) {
	d.fing[p] = slices.DeleteFunc(d.fing[p], func(x finger) bool { return x.peer == f })
}

// addBit is id + 2^bit, modulo 2^256.
func addBit(id ring.ID, bit int) ring.ID {
	i := len(id) - 1 - bit/8
	carry := uint16(1) << (bit % 8)
	for ; i >= 0 && carry > 0; i-- {
		s := uint16(id[i]) + carry
		id[i], carry = byte(s), s>>8
	}
	return id
}

// between reports whether x lies in (a, b] going round.
func between(a, x, b ring.ID) bool {
	ax, ab := compareID(a, x), compareID(a, b)
	switch {
	case ab < 0:
		return ax < 0 && compareID(x, b) <= 0
	case ab > 0:
		return ax < 0 || compareID(x, b) <= 0
	}
	return true
}

// next is where p passes a message for k, whose owner is owner: the owner
// when its successor owns k, else the finger closest before k, which may
// have left since p last fixed it.
func (d *dht) next(p int, k ring.ID, owner int) (int, bool) {
	self := d.ids[d.pos[p]]
	if owner == p {
		return p, true
	}
	best := -1
	for _, f := range d.fing[p] {
		if f.peer == owner || !between(self, d.ids[d.pos[f.peer]], k) {
			continue
		}
		if best < 0 || between(d.ids[d.pos[best]], d.ids[d.pos[f.peer]], k) {
			best = f.peer
		}
	}
	if best < 0 {
		return owner, true
	}
	return best, false
}

// up: the peer takes over the keys it now holds a copy of from the peers
// that held them, then publishes its own words.
func (d *dht) up(p int) {
	e := d.e
	e.net.revive(d.nodes[p])
	// Join: a lookup of its own ID through a peer it knows, then the
	// successor's table copied as its first fingers.
	if s := d.replicasAfter(p); len(s) > 0 {
		d.lookupCost(s[0], d.ids[d.pos[p]], tagUpkeep)
		e.net.charge(d.nodes[p], d.nodes[s[0]], tagUpkeep, chordRPC)
		e.net.charge(d.nodes[s[0]], d.nodes[p], tagUpkeep, &protocol.Ping{Pad: make([]byte, 48*len(d.fing[s[0]]))})
	}
	d.fing[p] = d.liveFingers(p)
	d.fixAt[p] = 0
	// Its successors hand over the words whose replicas now include p.
	for _, s := range d.replicasAfter(p) {
		var give []int32
		for w := range d.store[s] {
			if slices.Contains(d.replicas(d.key(w)), p) {
				give = append(give, w)
			}
		}
		slices.Sort(give) // sends in an order that does not hang on the map's
		for _, w := range give {
			d.sendPostings(s, p, tagUpkeep, w, d.store[s][w])
		}
	}
	byWord := map[int32][]posting{}
	for _, f := range e.wd.holds[p] {
		for _, w := range e.wd.words[f] {
			byWord[int32(w)] = append(byWord[int32(w)], posting{f, int32(p)})
		}
	}
	for _, w := range slices.Sorted(maps.Keys(byWord)) {
		d.route(p, d.key(w), tagUpkeep, d.postingsMsg(w, byWord[w], putMark))
	}
}

// replicasAfter are the Copies online peers after p.
func (d *dht) replicasAfter(p int) []int {
	var out []int
	for j := 1; j < len(d.ids) && len(out) < d.Copies; j++ {
		if q := d.at[(d.pos[p]+j)%len(d.ids)]; d.e.online[q] {
			out = append(out, q)
		}
	}
	return out
}

// down: the peer's copies are gone; for each word it held, a live holder
// sends the peer that is now a replica and lacks it a copy.
func (d *dht) down(p int) {
	e := d.e
	e.net.kill(d.nodes[p])
	d.fing[p] = nil
	held := d.store[p]
	d.store[p] = map[int32][]posting{}
	for _, w := range slices.Sorted(maps.Keys(held)) {
		reps := d.replicas(d.key(w))
		var from = -1
		for _, r := range reps {
			if _, ok := d.store[r][w]; ok {
				from = r
				break
			}
		}
		if from < 0 {
			continue // every copy was lost
		}
		for _, r := range reps {
			if _, ok := d.store[r][w]; !ok {
				d.sendPostings(from, r, tagUpkeep, w, d.store[from][w])
			}
		}
	}
}

// Postings travel as hits frames (a file record with its sources is what a
// keyword posting is), under an ID that names the word and says what to do:
// a put goes to the word's owner, which copies it to the other replicas; a
// copy is only stored.
func (d *dht) postingsMsg(w int32, ps []posting, mark byte) *protocol.Hits {
	var id protocol.QueryID
	id[0], id[1], id[2], id[3], id[15] = byte(w>>24), byte(w>>16), byte(w>>8), byte(w), mark
	m := &protocol.Hits{ID: id}
	for _, p := range ps {
		if n := len(m.Hits); n > 0 && m.Hits[n-1].ID == d.e.wd.cids[p.file] && len(m.Hits[n-1].Sources) < protocol.MaxSourcesPerHit {
			m.Hits[n-1].Sources = append(m.Hits[n-1].Sources, source(int(p.src)))
			continue
		}
		m.Hits = append(m.Hits, protocol.Hit{FileRecord: d.e.record(p.file), Sources: []protocol.Source{source(int(p.src))}})
	}
	return m
}

const putMark, copyMark = 0xd0, 0xd1

func storedWord(id protocol.QueryID) (w int32, mark byte) {
	return int32(id[0])<<24 | int32(id[1])<<16 | int32(id[2])<<8 | int32(id[3]), id[15]
}

func (d *dht) sendPostings(from, to, tag int, w int32, ps []posting) {
	for len(ps) > 0 {
		n := min(len(ps), protocol.MaxHitsPerFrame)
		d.e.net.send(d.nodes[from], d.nodes[to], tag, d.postingsMsg(w, ps[:n], copyMark))
		ps = ps[n:]
	}
}

// route passes m one hop toward the owner of k, or handles it at p when p
// owns k. A finger that left is found dead when the send times out; p drops
// it and tries again.
func (d *dht) route(p int, k ring.ID, tag int, m protocol.Message) {
	next, _ := d.next(p, k, d.succ(k))
	if next == p {
		d.handle(p, tag, m)
		return
	}
	e := d.e
	e.net.send(d.nodes[p], d.nodes[next], tag, m)
	if !e.online[next] {
		d.dropFinger(p, next)
		e.net.after(rpcTimeouts*d.rtt(p, next), func() {
			if e.online[p] {
				d.route(p, k, tag, m)
			}
		})
	}
}

// rtt is the modelled round trip between two peers, a second on a network
// without a model.
func (d *dht) rtt(a, b int) time.Duration {
	if r := modelRTT(d.e.net, d.nodes[a], d.nodes[b]); r > 0 {
		return r
	}
	return time.Second
}

func (d *dht) ask(qi int, q *protocol.Query, from int) {
	d.asker[q.ID] = from
	d.e.net.after(d.e.wd.w.QueryTimeout+time.Second, func() { delete(d.asker, q.ID) })
	d.route(from, keyOf(index.Tokenize(q.Text)[0]), qi, q)
}

// handle runs what reaches the owner of its key, or passes it on.
func (d *dht) handle(p, tag int, m protocol.Message) {
	e := d.e
	switch m := m.(type) {
	case *protocol.Query:
		terms := index.Tokenize(m.Text)
		k := keyOf(terms[0])
		if d.succ(k) != p {
			d.route(p, k, tag, m)
			return
		}
		asker, ok := d.asker[m.ID]
		w, known := d.wordID[terms[0]]
		if !ok || !known {
			return // no file has the word
		}
		var match []posting
		ts := e.wd.termsOf(m.Text)
		for _, ps := range d.store[p][w] {
			if e.wd.matches(ps.file, ts) {
				match = append(match, ps)
			}
		}
		slices.SortFunc(match, func(a, b posting) int { return int(a.file - b.file) })
		if len(match) > 0 {
			hits := d.postingsMsg(w, match, 0).Hits
			hits = hits[:min(len(hits), int(m.Limit), protocol.MaxHitsPerFrame)]
			e.net.send(d.nodes[p], d.nodes[asker], tag, &protocol.Hits{ID: m.ID, Hits: hits})
		}
	case *protocol.Hits:
		w, mark := storedWord(m.ID)
		if mark != putMark && mark != copyMark {
			e.takeHits(tag, p, m)
			return
		}
		reps := d.replicas(d.key(w))
		if mark == putMark && reps[0] != p {
			d.route(p, d.key(w), tag, m)
			return
		}
		for _, h := range m.Hits {
			f := e.byCID[h.ID]
			for _, s := range h.Sources {
				ps := posting{f, int32(peerOf(s.Peer))}
				if !slices.Contains(d.store[p][w], ps) {
					d.store[p][w] = append(d.store[p][w], ps)
				}
			}
		}
		if mark == putMark {
			// The owner copies what it was given to the other replicas.
			c := *m
			c.ID[15] = copyMark
			for _, r := range reps[1:] {
				e.net.send(d.nodes[p], d.nodes[r], tag, &c)
			}
		}
	}
}

func (d *dht) fail(f failure) {
	if f == supernodesDie {
		d.e.killShare(d)
	}
}

func (*dht) has(f failure) bool { return f == supernodesDie }

func (d *dht) state() []int {
	out := make([]int, len(d.store))
	for p, st := range d.store {
		for _, ps := range st {
			out[p] += len(ps)
		}
		out[p] += len(d.fing[p])
	}
	return out
}

type dhtPeer struct {
	d *dht
	p int
}

func (dp dhtPeer) receive(_ NodeID, tag int, m protocol.Message) { dp.d.handle(dp.p, tag, m) }
