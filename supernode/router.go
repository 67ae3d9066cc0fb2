package supernode

import (
	"crypto/ed25519"
	"io"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

// LinkID names one connection of a supernode: to a leaf or to another supernode.
// The router speaks only in LinkIDs, so it runs the same over QUIC or over an
// in-memory network.
type LinkID uint64

// Outbox delivers the router's messages. Send must not block, and must not call
// Tick, NeighbourUp or NeighbourDown (it may be called from inside Tick); a message
// to a link that is gone or congested may be dropped (the router's timeouts cover it).
type Outbox interface {
	Send(to LinkID, m protocol.Message)
}

// LeafInfo is what a supernode knows of an attached peer.
type LeafInfo struct {
	Peer  protocol.PeerID
	Name  string
	Addrs []string // the observed address first, then the ones the leaf announced
	// NAT is the leaf's NAT type as this supernode established it.
	NAT protocol.NATType
}

// RouterConfig tunes routing. Zero values take the defaults.
type RouterConfig struct {
	// HopLimit is the most supernode-to-supernode steps a query may take (default 4).
	HopLimit uint8
	// QueryTimeout is how long a supernode waits for its neighbours' QueryDone
	// before it reports what it has (default 750 ms: with the tick that checks
	// it, a search ends within 1 s however slow one branch is; supernodes
	// further out wait a share of it, enough for round trips of about 150 ms).
	QueryTimeout time.Duration
	// MaxResults caps the hits one supernode returns for one query (default 200).
	MaxResults int
	// SummaryBits is the size of every summary level; all supernodes of an overlay
	// should use the same (default 1<<20 bits, 128 KiB). Only multi-hop
	// routing uses these levels.
	SummaryBits int
	// MultiHop routes queries the older way, hop by hop through the
	// neighbours whose attenuated summaries may match, instead of in one hop
	// (which needs an Outbox that is a DirectOutbox).
	MultiHop bool
	// Ring is the member list's view of the live supernodes, ourselves
	// left out or not. With it, and an Outbox that is a DirectOutbox,
	// queries go by the keyword ring: the keys of each supernode's index
	// are kept by the supernodes that follow them on the ring, and a query
	// asks those keepers which supernodes to ask. OneHop routes by one-hop
	// summaries instead: every supernode holds a filter of every other's
	// index.
	Ring   func() *RingView
	OneHop bool
	// SummaryEvery is the least time between two versions of our one-hop
	// summary, or two sendings of our changed keys to their keepers
	// (default 5 s): changes in between go out together.
	SummaryEvery time.Duration
	// SummaryFP is the false positive rate one-hop summaries are sized for
	// (default 0.01).
	SummaryFP float64
	// DirectFirstRound is how many supernodes a query is sent to first
	// (default 1); each round after asks twice as many as the one before.
	// RoundTimeout is how long a round waits for its answers (default
	// 400 ms: a round trip across a continent and back twice), and
	// DirectTimeout how long the whole query may take (default 3 s).
	DirectFirstRound int
	RoundTimeout     time.Duration
	DirectTimeout    time.Duration
	// EnoughSources ends a keyword query once every file it found has this
	// many sources (default 5: the search shows what there is, and a
	// download looks its sources up by content ID), EnoughSourcesByID a
	// lookup by content ID (default 50, what a swarm starts with).
	EnoughSources     int
	EnoughSourcesByID int
	// Incarnation numbers this start of the supernode; one-hop summary
	// versions restart with it (default: the clock in milliseconds).
	Incarnation uint64
	// Sign signs our one-hop summaries with our identity; MemberKey is the
	// key of a live member supernode, or nil, and the owner calls
	// SupernodeGone when a member dies. Without MemberKey updates
	// are taken unchecked and from any origin, which only a simulation may
	// do; without Sign they carry a blank signature.
	Sign      func([]byte) []byte
	MemberKey func(protocol.PeerID) ed25519.PublicKey
	// PeerRTT estimates the round-trip time to a supernode, 0 if unknown:
	// the nearest candidates are asked first (optional).
	PeerRTT func(protocol.PeerID) time.Duration
	// Intern, when set, is asked for the filter of each version taken, and
	// may return one that build made before, for another router of the
	// same process: a simulation of many routers keeps one copy.
	Intern func(origin protocol.PeerID, inc, ver uint64, build func() *index.Bloom) *index.Bloom
	// MaxFilesPerLeaf caps the files one leaf may publish (default 5,000: users of
	// file-sharing networks share from none to a few thousand files).
	MaxFilesPerLeaf int
	// MaxIndexBytesPerLeaf caps what one leaf's files may cost the index, each
	// charged as index.Charge says (default 8 MiB: 5,000 files with typical names
	// and tags, or about 300 of the largest records a leaf can send).
	MaxIndexBytesPerLeaf int64
	// MaxIndexBytes caps the memory the whole index holds, by its own count, which
	// is above what the heap shows (index.Index.Usage; default 64 MiB, about
	// 175,000 typical files).
	MaxIndexBytes int64
	// LeafPublishRate bounds how fast one leaf may publish, in bytes of charge per
	// second, with a burst of MaxIndexBytesPerLeaf, so that a leaf's whole share
	// goes in at once but one that resets and republishes cannot keep the index
	// busy (default 256 KiB/s, about 180 typical files a second).
	LeafPublishRate float64
	// MaxIndexBytesPerAddr caps what all the leaves from one IPv4 address or
	// IPv6 /64 may cost the index together (default 16 MiB, two leaves'
	// worth): one host with many keys cannot fill the whole index and lock
	// every other leaf out of publishing.
	MaxIndexBytesPerAddr int64
	// SeenTTL is how long a query ID is remembered for duplicate suppression (default 60 s).
	SeenTTL time.Duration
	// LeafPings is the rate of pings all the leaves together are asked to keep
	// under: each Pong to a leaf names the interval that spreads them to it,
	// at most MaxPingEvery (default 30 a second, so leaves ping at their
	// own pace, 500 ms, up to 15 of them; MaxPingEvery defaults to 15 s, the
	// idle timeout, a quarter of a leaf link's, which keeps their links
	// alive). The rate bounds what liveness costs a supernode whatever its
	// leaves: a crash is noticed in three intervals, 8 s at 80 leaves, and
	// searches do not wait for that, since they are hedged on the
	// acknowledgement.
	// Each ping costs the supernode a packet in and one out, and after a
	// restart the leaves come back as their pings meet its stateless
	// resets: a slower pace spreads that storm over one interval.
	LeafPings    float64
	MaxPingEvery time.Duration
	// LeafQueryRate and LeafQueryBurst bound the queries one leaf may send, so a
	// single leaf cannot flood the overlay (defaults 20/s, burst 50).
	LeafQueryRate  float64
	LeafQueryBurst int
	// ID is this supernode's peer ID, named in hits and signals so a peer's
	// connection requests come back here.
	ID protocol.PeerID
	// Relay mints TURN credentials on a relay chosen for peer, or returns nil
	// when no relay is known; with ipv6, on a relay that offers IPv6
	// relayed addresses, for peer to ask one of.
	Relay func(peer protocol.PeerID, ipv6 bool) *protocol.RelayCreds
	// RTT estimates a link's round-trip time, for the punch start time (optional).
	RTT func(LinkID) time.Duration
	// RelayAddr reports whether an address is on a relay this supernode
	// knows: a leaf's relayed address in a signal must be (optional; without
	// it such addresses pass).
	RelayAddr func(addr string) bool
	// LeafQueryEnded, when set, is told how long each leaf query took, from
	// its arrival to the QueryDone sent back, and how many supernodes
	// searched it. It runs under the router's lock: it must be quick and
	// must not call the router.
	LeafQueryEnded func(took time.Duration, supernodes uint32)
	// Limits on what one neighbour supernode may send, so a hostile or broken
	// neighbour costs bounded work: queries (default 200/s, burst 400; over
	// it they are answered "overloaded" without a search), summary levels
	// (default 8/s, burst 32; over it they are dropped) and signals (default
	// 100/s, burst 200). LeafSignalRate bounds a leaf's signals (default
	// 10/s, burst 20), each of which may mint relay credentials.
	NeighbourQueryRate    float64
	NeighbourQueryBurst   int
	NeighbourSummaryRate  float64
	NeighbourSummaryBurst int
	NeighbourSignalRate   float64
	NeighbourSignalBurst  int
	LeafSignalRate        float64
	LeafSignalBurst       int
	// SlowAfter is how many queries in a row a neighbour may leave
	// unanswered until the timeout before it gets none for SlowHoldoff
	// (defaults 4 and 30 s): a neighbour that never answers would otherwise
	// hold every search to the timeout.
	SlowAfter   int
	SlowHoldoff time.Duration
	Now         func() time.Time
	// Rand is where the query IDs the router chooses come from (default
	// crypto/rand): a seeded reader makes a simulation repeatable.
	Rand io.Reader
	Log  zerolog.Logger
}

// Counters are cumulative message counts, for status and for tests that check
// where queries went.
type Counters struct {
	QueriesFromLeaves    atomic.Uint64
	QueriesFromNeighbors atomic.Uint64 // including duplicates
	DuplicateQueries     atomic.Uint64
	QueriesForwarded     atomic.Uint64 // query messages sent to neighbours
	QueriesPruned        atomic.Uint64 // neighbour sends skipped because a summary ruled them out
	HitsSent             atomic.Uint64
	QueryTimeouts        atomic.Uint64
	QueriesRefused       atomic.Uint64 // leaf queries over the leaf's rate
	SummariesSent        atomic.Uint64
	// What neighbours and leaves sent beyond their limits, and hits dropped
	// because they did not match the query they came back for.
	NeighbourQueriesRefused atomic.Uint64
	SummariesDropped        atomic.Uint64
	SignalsDropped          atomic.Uint64
	HitsDropped             atomic.Uint64
	SlowNeighbours          atomic.Uint64 // times a neighbour was held off for not answering
	// One-hop summaries: our versions issued, frames of updates sent, other
	// supernodes' versions taken, and wants answered with diffs rather than
	// the whole filter.
	SummaryVersions atomic.Uint64
	SummaryFrames   atomic.Uint64
	SummariesTaken  atomic.Uint64
	SummaryRepairs  atomic.Uint64
	// Keyword ring: batches of keys sent or passed on, lookups sent, and
	// times all our keys went to their keepers again.
	TermBatches  atomic.Uint64
	TermLookups  atomic.Uint64
	KeyRefreshes atomic.Uint64
}

type leaf struct {
	id   LinkID
	src  index.SourceID
	info LeafInfo
	// refused is set when a publish of this leaf went over a limit: nothing more
	// is indexed for it until a Reset or an Unpublish that removes a file, so a
	// leaf over its limits does not get some of its later files in and not
	// others. Under ixMu.
	refused   bool
	publishes *rate.Limiter // bytes of charge; under ixMu
	block     netip.Prefix  // the address block the leaf is seen from (invalid if unknown)
	queries   *rate.Limiter
	signals   *rate.Limiter
}

type neighbour struct {
	id       LinkID
	peer     protocol.PeerID
	summary  index.Summary // as received; nil levels until the first Summary
	received bool
	sent     []*index.Bloom // what we last sent it, per level

	queries, summaries, signals *rate.Limiter
	missed                      int       // queries in a row it left to the timeout
	heldUntil                   time.Time // it gets no queries until then
}

type pending struct {
	origin   LinkID
	originID protocol.QueryID
	text     string // the query, to score and check the hits that come back
	cid      protocol.ContentID
	waiting  map[LinkID]bool
	searched uint32
	hits     int
	limit    int
	deadline time.Time
	status   protocol.Status
	direct   *direct // one-hop routing state; nil for a query routed hop by hop
	// arrived is when a leaf's query came; zero for a neighbour's.
	arrived time.Time
}

// Router is a supernode's brain: the index of its leaves' content, the summaries
// of its neighbours, and the queries in flight. It is safe for concurrent use.
type Router struct {
	cfg RouterConfig
	out Outbox
	log zerolog.Logger
	rnd randSource

	// tickMu serialises Tick from its computing to its sending. Tick runs on the
	// ticker and inside NeighbourUp/NeighbourDown; two overlapping Ticks could
	// otherwise send a neighbour its summary levels older-last, leaving it with a
	// stale level that we believe it has replaced.
	tickMu sync.Mutex
	ownGen uint64 // index generation r.own was built from; only Tick uses it, under tickMu

	ixMu    sync.RWMutex // guards idx, sources and blocks
	idx     *index.Index
	sources map[index.SourceID]*leaf
	blocks  map[netip.Prefix]map[*leaf]struct{} // leaves by address block

	mu         sync.Mutex // guards everything below
	leaves     map[LinkID]*leaf
	neighbours map[LinkID]*neighbour
	queries    map[protocol.QueryID]*pending
	seen       map[protocol.QueryID]time.Time
	seenOrder  []protocol.QueryID
	nextSrc    index.SourceID
	leafByPeer map[protocol.PeerID]LinkID
	nbrByPeer  map[protocol.PeerID]LinkID
	signals    map[signalKey]time.Time
	own        *index.Bloom
	dirty      bool // neighbours' summaries changed since the last Tick
	oh         oneHop
	kr         termRing
	slow       map[protocol.PeerID]*slowness // supernodes asked direct queries

	Stats Counters

	// asked and askedBefore are the longest ping interval asked of a leaf
	// in this period of QuietWindow and in the one before (nanoseconds).
	asked, askedBefore atomic.Int64
}

// NewRouter makes a router that sends through out.
func NewRouter(cfg RouterConfig, out Outbox) *Router {
	cfg.defaults()
	idx := index.New()
	idx.SetLimits(index.Limits{SourceFiles: cfg.MaxFilesPerLeaf, SourceBytes: cfg.MaxIndexBytesPerLeaf, Bytes: cfg.MaxIndexBytes})
	return &Router{
		cfg:        cfg,
		out:        out,
		log:        cfg.Log,
		rnd:        randSource{r: cfg.Rand},
		idx:        idx,
		sources:    make(map[index.SourceID]*leaf),
		blocks:     make(map[netip.Prefix]map[*leaf]struct{}),
		leaves:     make(map[LinkID]*leaf),
		neighbours: make(map[LinkID]*neighbour),
		queries:    make(map[protocol.QueryID]*pending),
		seen:       make(map[protocol.QueryID]time.Time),
		leafByPeer: make(map[protocol.PeerID]LinkID),
		nbrByPeer:  make(map[protocol.PeerID]LinkID),
		signals:    make(map[signalKey]time.Time),
		ownGen:     ^uint64(0),
		oh:         newOneHop(cfg.Incarnation),
		kr:         newTermRing(),
		slow:       make(map[protocol.PeerID]*slowness),
	}
}

// Config is the router's configuration with defaults filled in.
func (r *Router) Config() RouterConfig { return r.cfg }

// LeafUp registers a leaf on link id.
func (r *Router) LeafUp(id LinkID, info LeafInfo) {
	r.mu.Lock()
	r.nextSrc++
	l := &leaf{id: id, src: r.nextSrc, info: info,
		publishes: rate.NewLimiter(rate.Limit(r.cfg.LeafPublishRate), int(min(r.cfg.MaxIndexBytesPerLeaf, math.MaxInt32))),
		queries:   rate.NewLimiter(rate.Limit(r.cfg.LeafQueryRate), r.cfg.LeafQueryBurst),
		signals:   rate.NewLimiter(rate.Limit(r.cfg.LeafSignalRate), r.cfg.LeafSignalBurst)}
	r.leaves[id] = l
	r.leafByPeer[info.Peer] = id
	r.mu.Unlock()
	r.ixMu.Lock()
	r.sources[l.src] = l
	if len(info.Addrs) > 0 {
		if b, ok := addrBlock(info.Addrs[0]); ok {
			l.block = b
			if r.blocks[b] == nil {
				r.blocks[b] = make(map[*leaf]struct{})
			}
			r.blocks[b][l] = struct{}{}
		}
	}
	r.ixMu.Unlock()
}

// LeafDown forgets a leaf and everything it shared.
func (r *Router) LeafDown(id LinkID) {
	r.mu.Lock()
	l := r.leaves[id]
	delete(r.leaves, id)
	if l != nil && r.leafByPeer[l.info.Peer] == id {
		delete(r.leafByPeer, l.info.Peer)
	}
	for qid, p := range r.queries {
		if p.origin == id {
			delete(r.queries, qid)
		}
	}
	r.mu.Unlock()
	if l == nil {
		return
	}
	r.ixMu.Lock()
	r.idx.RemoveSource(l.src)
	delete(r.sources, l.src)
	if bl := r.blocks[l.block]; bl != nil {
		delete(bl, l)
		if len(bl) == 0 {
			delete(r.blocks, l.block)
		}
	}
	r.ixMu.Unlock()
}

// NeighbourUp registers a link to another supernode and sends it our summary.
func (r *Router) NeighbourUp(id LinkID, peer protocol.PeerID) {
	r.mu.Lock()
	c := &r.cfg
	r.neighbours[id] = &neighbour{id: id, peer: peer,
		queries:   rate.NewLimiter(rate.Limit(c.NeighbourQueryRate), c.NeighbourQueryBurst),
		summaries: rate.NewLimiter(rate.Limit(c.NeighbourSummaryRate), c.NeighbourSummaryBurst),
		signals:   rate.NewLimiter(rate.Limit(c.NeighbourSignalRate), c.NeighbourSignalBurst)}
	r.nbrByPeer[peer] = id
	if s := r.slow[peer]; s != nil {
		s.lostUntil = time.Time{}
	}
	r.dirty = true
	if r.oneHopOn() {
		r.announceLocked(id)
	}
	r.mu.Unlock()
	r.Tick()
}

// NeighbourDown forgets a supernode link; queries waiting on it finish without it.
func (r *Router) NeighbourDown(id LinkID) {
	r.mu.Lock()
	var msgs []outMsg
	if n := r.neighbours[id]; n != nil && r.nbrByPeer[n.peer] == id {
		delete(r.nbrByPeer, n.peer)
	}
	if n := r.neighbours[id]; n != nil {
		if _, other := r.nbrByPeer[n.peer]; !other {
			r.slowOfLocked(n.peer).lostUntil = r.cfg.Now().Add(lostFor)
			if r.keyRingOn() {
				r.keeperLostLocked(n.peer)
			}
		}
		msgs = r.directGoneLocked(n.peer)
	}
	delete(r.neighbours, id)
	delete(r.oh.queued, id)
	delete(r.oh.wants, id)
	r.dirty = true
	var done []protocol.QueryID
	for qid, p := range r.queries {
		if p.waiting[id] {
			delete(p.waiting, id)
			if len(p.waiting) == 0 {
				done = append(done, qid)
			}
		}
	}
	slices.SortFunc(done, cmpQueryID)
	msgs = append(msgs, r.finishLocked(done)...)
	r.mu.Unlock()
	r.flush(msgs)
	r.Tick()
}

// PingEvery is the interval that keeps the leaves' pings together under
// LeafPings a second, at most MaxPingEvery.
func (r *Router) PingEvery() time.Duration {
	every := time.Duration(float64(r.Leaves()) / r.cfg.LeafPings * float64(time.Second))
	return min(every, r.cfg.MaxPingEvery)
}

// askPing is the interval to ask of a pinging leaf now; it is remembered
// for AskedEvery.
func (r *Router) askPing() time.Duration {
	every := r.PingEvery()
	for {
		cur := r.asked.Load()
		if int64(every) <= cur || r.asked.CompareAndSwap(cur, int64(every)) {
			return every
		}
	}
}

// AskedEvery is the longest ping interval asked of a leaf lately (over one
// to two calls of NextAskPeriod): a leaf may still keep it until its next
// ping brings a shorter one.
func (r *Router) AskedEvery() time.Duration {
	return time.Duration(max(r.asked.Load(), r.askedBefore.Load()))
}

// NextAskPeriod starts a new period for AskedEvery.
func (r *Router) NextAskPeriod() { r.askedBefore.Store(r.asked.Swap(0)) }

// Leaves and Neighbours count the links of each kind.
func (r *Router) Leaves() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.leaves)
}

func (r *Router) Neighbours() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.neighbours)
}

// IndexedFiles is the number of distinct content IDs in the local index.
func (r *Router) IndexedFiles() int {
	r.ixMu.RLock()
	defer r.ixMu.RUnlock()
	return r.idx.Len()
}

// outMsg is a message for link to, or, with peer set, for that supernode
// directly.
type outMsg struct {
	to   LinkID
	peer protocol.PeerID
	m    protocol.Message
}

func (r *Router) flush(msgs []outMsg) {
	for _, o := range msgs {
		if !o.peer.IsZero() {
			r.out.(DirectOutbox).SendDirect(o.peer, o.m)
			continue
		}
		r.out.Send(o.to, o.m)
	}
}

// Handle processes one message from link from. The error, if any, is the
// caller's to report to the link; the router has already dropped the message.
func (r *Router) Handle(from LinkID, m protocol.Message) error {
	switch m := m.(type) {
	case *protocol.Publish:
		return r.publish(from, m)
	case *protocol.Unpublish:
		return r.unpublish(from, m)
	case *protocol.Query:
		return r.query(from, m)
	case *protocol.Hits:
		r.hits(from, m)
	case *protocol.QueryDone:
		r.queryDone(from, m)
	case *protocol.Summary:
		return r.summary(from, m)
	case *protocol.Summaries:
		return r.summaries(from, m)
	case *protocol.SummaryWant:
		return r.summaryWant(from, m)
	case *protocol.TermPuts:
		return r.termPuts(from, m)
	case *protocol.TermLookup:
		return r.termLookup(from, m)
	case *protocol.TermHolders:
		r.termHolders(from, m)
	case *protocol.Signal:
		return r.signal(from, m)
	case *protocol.Ping:
		r.out.Send(from, &protocol.Pong{Seq: m.Seq, Every: uint32(r.askPing().Milliseconds())})
	case *protocol.Pong, *protocol.Error:
	default:
		return unexpected(m)
	}
	return nil
}
