package supernode

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// refusal is a reason a supernode turned a connection away, as /metrics
// names it.
type refusal uint8

const (
	refLeavesFull     refusal = iota // MaxLeaves attached
	refMemory                        // the heap is near its limit
	refLeavesPerAddr                 // MaxLeavesPerAddr from the leaf's address block
	refNeighboursFull                // MaxNeighbours linked
	refNotAdmitted                   // a supernode or relay without a valid admission
	refNoRelaySecret                 // a relay, when we have no secret to mint its credentials
	refWrongRole                     // a role a supernode does not serve
	nRefusals
)

var refusalNames = [nRefusals]string{"leaves_full", "memory", "leaves_per_address", "neighbours_full",
	"not_admitted", "no_relay_secret", "wrong_role"}

// refusals count connections turned away, by reason.
type refusals [nRefusals]atomic.Uint64

func (r *refusals) add(why refusal) { r[why].Add(1) }

// queryBuckets span a search answered from the local index (well under 5 ms)
// to one that waited out every timeout (QueryTimeout is 3 s).
var queryBuckets = prometheus.ExponentialBuckets(0.005, 2, 12)

// newQueryHistogram is the histogram of leaf queries' durations.
func newQueryHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "supernet", Subsystem: "supernode", Name: "leaf_query_duration_seconds",
		Help:    "Time from a leaf's query arriving to the supernode's QueryDone, searches across supernodes included.",
		Buckets: queryBuckets,
	})
}

// Collector is the supernode's metrics for Prometheus: gauges of what it
// holds and the counters it keeps anyway, read when scraped, and the leaf
// query histogram. Register it once.
func (s *Server) Collector() prometheus.Collector { return &collector{s: s, descs: newDescs()} }

type descs struct {
	leaves, neighbours, members, files, records, relays, links, handshakes *prometheus.Desc
	queriesIn, queriesOut, pruned, dup, timeouts, hits                     *prometheus.Desc
	ring, dir, dirStore, refused, gossip, incarnation, natChecks, proofs   *prometheus.Desc
}

func newDescs() *descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("supernet_supernode_"+name, help, labels, nil)
	}
	return &descs{
		leaves:      d("leaves", "Peers attached as leaves."),
		neighbours:  d("neighbours", "Supernodes linked as neighbours."),
		members:     d("members", "Live supernodes in the member list, this one included."),
		files:       d("indexed_files", "Distinct content IDs the leaves share."),
		records:     d("directory_records", "Username records this supernode keeps for the directory."),
		relays:      d("relays", "Relays this supernode knows and may hand out."),
		links:       d("connections", "Incoming QUIC connections open, handshakes included."),
		handshakes:  d("handshakes", "Incoming QUIC handshakes in flight."),
		queriesIn:   d("queries_received_total", "Queries received, by who sent them (supernode: duplicates included).", "from"),
		queriesOut:  d("queries_sent_total", "Query messages sent to other supernodes, hop by hop or straight to the holders."),
		pruned:      d("queries_pruned_total", "Sends to a neighbour skipped because its summary ruled the query out."),
		dup:         d("queries_duplicate_total", "Queries from supernodes seen before and dropped."),
		timeouts:    d("query_timeouts_total", "Rounds of a search that ended with supernodes still unanswered."),
		hits:        d("hits_sent_total", "Search hits sent."),
		ring:        d("keyword_ring_total", "Keyword ring work: key batches sent or passed on, lookups sent, refreshes of all keys.", "kind"),
		dir:         d("directory_ops_total", "Username directory operations.", "op"),
		dirStore:    d("directory_store_total", "Username store work on disk.", "op"),
		refused:     d("refused_total", "Things turned away or dropped for going over a limit, by reason.", "reason"),
		gossip:      d("gossip_rounds_total", "Member gossip rounds run."),
		natChecks:   d("nat_checks_total", "Leaf NAT reports checked, each with a dial back."),
		proofs:      d("address_proofs_total", "Leaves' proofs of an address in their other IP family, by result.", "result"),
		incarnation: d("incarnation", "This supernode's incarnation: it grows at each restart."),
	}
}

type collector struct {
	s     *Server
	descs *descs
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
	c.s.queryTook.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s, d := c.s, c.descs
	gauge := func(desc *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...)
	}
	count := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	st := &s.router.Stats
	ns := s.node.Stats()
	gauge(d.leaves, s.router.Leaves())
	gauge(d.neighbours, s.router.Neighbours())
	gauge(d.members, len(s.members.Live()))
	gauge(d.files, s.router.IndexedFiles())
	gauge(d.records, s.store.users.Len())
	gauge(d.relays, len(s.Relays()))
	gauge(d.links, ns.Conns)
	gauge(d.handshakes, ns.Handshakes)
	gauge(d.incarnation, int(s.cfg.Incarnation))
	count(d.queriesIn, st.QueriesFromLeaves.Load(), "leaf")
	count(d.queriesIn, st.QueriesFromNeighbors.Load(), "supernode")
	count(d.queriesOut, st.QueriesForwarded.Load())
	count(d.pruned, st.QueriesPruned.Load())
	count(d.dup, st.DuplicateQueries.Load())
	count(d.timeouts, st.QueryTimeouts.Load())
	count(d.hits, st.HitsSent.Load())
	count(d.ring, st.TermBatches.Load(), "batch")
	count(d.ring, st.TermLookups.Load(), "lookup")
	count(d.ring, st.KeyRefreshes.Load(), "refresh")
	ds := &s.dir.Stats
	for _, op := range []struct {
		name string
		v    *atomic.Uint64
	}{{"put", &ds.Puts}, {"get", &ds.Gets}, {"forwarded", &ds.Forwarded}, {"stored", &ds.Stored}, {"moved", &ds.Moved}, {"confirm", &ds.Confirms}} {
		count(d.dir, op.v.Load(), op.name)
	}
	ss := &s.store.Stats
	for _, op := range []struct {
		name string
		v    *atomic.Uint64
	}{{"commit", &ss.Commits}, {"written", &ss.Written}, {"deleted", &ss.Deleted}, {"write_error", &ss.WriteErrors}, {"loaded", &ss.Loaded}} {
		count(d.dirStore, op.v.Load(), op.name)
	}
	for why := range nRefusals {
		count(d.refused, s.refused[why].Load(), refusalNames[why])
	}
	for _, r := range []struct {
		name string
		v    uint64
	}{
		{"leaf_query_rate", st.QueriesRefused.Load()},
		{"neighbour_query_rate", st.NeighbourQueriesRefused.Load()},
		{"summary_rate", st.SummariesDropped.Load()},
		{"signal_rate", st.SignalsDropped.Load()},
		{"hit_mismatch", st.HitsDropped.Load()},
		{"slow_neighbour", st.SlowNeighbours.Load()},
		{"directory", ds.Refused.Load()},
		{"directory_store", ss.Refused.Load()},
		{"handshakes_in_flight", ns.RefusedHandshakes},
		{"source_handshakes", ns.RefusedSourceHandshakes},
		{"source_connections", ns.RefusedSourceConns},
		{"slow_frame", ns.SlowFrames},
		{"stun_rate", ns.STUNDropped},
		{"nat_report_superseded", s.nat.superseded.Load()},
	} {
		count(d.refused, r.v, r.name)
	}
	count(d.gossip, s.GossipRounds())
	count(d.natChecks, s.nat.checks.Load())
	count(d.proofs, s.nat.proofsTaken.Load(), "taken")
	count(d.proofs, s.nat.proofsRefused.Load(), "refused")
	ch <- s.queryTook
}

// observeLeafQuery is the router's LeafQueryEnded hook.
func (s *Server) observeLeafQuery(took time.Duration, _ uint32) {
	s.queryTook.Observe(took.Seconds())
}

// Healthy says why the supernode is not serving, or nil: for a health check.
func (s *Server) Healthy() error {
	switch {
	case s.ctx.Err() != nil:
		return errors.New("shutting down")
	case !s.serving.Load():
		return errors.New("not serving yet")
	case s.SteppedDown():
		return errors.New("stepped down: its leaves moved to other supernodes")
	}
	return nil
}
