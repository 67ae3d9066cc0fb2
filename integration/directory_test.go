package integration

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/supernode"
	"github.com/supernet-p2p/supernet/transport"
)

// dirCluster starts n supernodes joined in a chain that link to their ring
// fingers from the member list, and waits until each lists all and is linked
// to its ring successor.
func dirCluster(t *testing.T, n, neighbours int, gossip time.Duration) ([]*supernode.Server, []func()) {
	t.Helper()
	var sns []*supernode.Server
	var stops []func()
	for i := range n {
		var join []*supernode.Server
		if i > 0 {
			join = append(join, sns[i-1])
		}
		s, stop := runSupernode(t, func(c *supernode.Config) {
			c.AltListen, c.ListenTCP = "-", "-"
			c.GossipInterval, c.MemberTimeout, c.Neighbours = raceSlowdown*gossip, raceSlowdown*6*gossip, neighbours
		}, join...)
		sns, stops = append(sns, s), append(stops, stop)
	}
	waitRing(t, sns, raceSlowdown*(time.Duration(n)*time.Second+10*time.Second))
	return sns, stops
}

// waitRing waits until every supernode lists exactly sns and is linked to
// its successor among them.
func waitRing(t *testing.T, sns []*supernode.Server, within time.Duration) {
	t.Helper()
	ids := make([]ring.ID, len(sns))
	for i, s := range sns {
		ids[i] = ring.ID(s.ID())
	}
	r := ring.New(ids)
	var lagging string
	defer func() {
		if t.Failed() && lagging != "" {
			t.Log("last supernode waited for:", lagging)
		}
	}()
	eventually(t, within, "every supernode to list the others and link its ring successor", func() bool {
		for _, s := range sns {
			if n := len(memberIDs(s)); n != len(sns) {
				lagging = fmt.Sprintf("%s lists %d of %d", s.ID().Short(), n, len(sns))
				return false
			}
			succ := protocol.PeerID(r.Fingers(ring.ID(s.ID()))[0])
			if !slices.Contains(s.Linked(), succ) {
				lagging = fmt.Sprintf("%s not linked to its successor %s", s.ID().Short(), succ.Short())
				return false
			}
		}
		lagging = ""
		return true
	})
}

// rawLeaf is a leaf connection that sends directory messages itself.
type rawLeaf struct {
	id      *protocol.Identity
	node    *transport.Node
	link    *transport.Link
	replies chan *protocol.UserReply
	errs    chan *protocol.Error // errors the supernode sent, the first 16
}

func dialRawLeaf(t testing.TB, sn *supernode.Server) *rawLeaf {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	n, err := transport.New(transport.Config{Identity: id, Conn: loopbackConn(t), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := n.Dial(context.Background(), sn.Addr().String(), sn.ID(), &protocol.Hello{Role: protocol.RoleLeaf, Name: "raw"})
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(nil); n.Close() })
	c := &rawLeaf{id: id, node: n, link: l, replies: make(chan *protocol.UserReply, 16), errs: make(chan *protocol.Error, 16)}
	go func() {
		defer close(c.replies)
		for {
			m, err := l.Recv()
			if err != nil {
				return
			}
			switch m := m.(type) {
			case *protocol.UserReply:
				c.replies <- m
			case *protocol.Error:
				select {
				case c.errs <- m:
				default:
				}
			}
		}
	}()
	return c
}

// ask sends the request build makes and returns its user_reply, skipping
// other messages. Like a daemon, it tries again under a new ID when no answer
// comes within 2 s or the ring is unavailable (a request lost on a link that
// closed under it), up to 4 times.
func (c *rawLeaf) ask(t testing.TB, build func(protocol.QueryID) protocol.Message) *protocol.UserReply {
	t.Helper()
	var r *protocol.UserReply
	for try := 0; try < 4; try++ {
		var id protocol.QueryID
		crand.Read(id[:])
		if err := c.link.Send(build(id)); err != nil {
			t.Fatal(err)
		}
		r = c.await(t, id, 2*time.Second)
		if r != nil && r.Code != protocol.StatusUnavailable {
			return r
		}
	}
	if r == nil {
		t.Fatal("no user_reply in 4 tries")
	}
	return r
}

// await returns the user_reply to id, or nil when none comes within d.
func (c *rawLeaf) await(t testing.TB, id protocol.QueryID, d time.Duration) *protocol.UserReply {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case r, ok := <-c.replies:
			if !ok {
				t.Fatalf("leaf link: %v", c.link.Err())
			}
			if r.ID == id {
				return r
			}
		case <-timeout:
			return nil
		}
	}
}

func (c *rawLeaf) put(t testing.TB, rec *protocol.UserRecord) *protocol.UserReply {
	return c.ask(t, func(id protocol.QueryID) protocol.Message { return &protocol.UserPut{ID: id, Rec: *rec} })
}

func (c *rawLeaf) get(t testing.TB, name string) *protocol.UserReply {
	return c.ask(t, func(id protocol.QueryID) protocol.Message { return &protocol.UserGet{ID: id, Name: name} })
}

func userRecord(id *protocol.Identity, name string, seq uint64, addr string) *protocol.UserRecord {
	r := &protocol.UserRecord{Name: name, Seq: seq, Expires: time.Now().Add(time.Hour).Unix(), Addrs: []string{addr}}
	r.Sign(id)
	return r
}

// holders are the supernodes holding a live record for name.
func holders(sns []*supernode.Server, name string) []*supernode.Server {
	var out []*supernode.Server
	for _, s := range sns {
		if _, ok := s.UserRecord(name); ok {
			out = append(out, s)
		}
	}
	return out
}

// replicasOf are the supernodes that should hold name among sns.
func replicasOf(sns []*supernode.Server, name string) map[protocol.PeerID]bool {
	ids := make([]ring.ID, len(sns))
	for i, s := range sns {
		ids[i] = ring.ID(s.ID())
	}
	out := make(map[protocol.PeerID]bool)
	for _, p := range ring.New(ids).Replicas(ring.KeyOf(name), ring.Copies) {
		out[protocol.PeerID(p)] = true
	}
	return out
}

// Two daemons register usernames on different supernodes of 8, each finds the
// other by name, with its peer ID, addresses, NAT type and supernodes, and the
// record sits on exactly the name's three replicas.
func TestUsernameRegisterAndLookup(t *testing.T) {
	sns, _ := dirCluster(t, 8, 4, 100*time.Millisecond)
	alice := startPeer(t, sns[0], "alice", nil, func(c *peer.Config) { c.Username = "alice" })
	bob := startPeer(t, sns[5], "bob", nil, func(c *peer.Config) { c.Username = "bob" })
	for _, d := range []*peer.Daemon{alice, bob} {
		eventually(t, raceSlowdown*10*time.Second, "both usernames registered", func() bool {
			u := d.Status().User
			return u != nil && u.Registered
		})
	}
	got, err := bob.Lookup(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.PeerID != alice.ID().String() {
		t.Fatalf("alice resolves to %s, want %s", got.PeerID, alice.ID())
	}
	if len(got.Addrs) == 0 || len(got.Supernodes) == 0 || got.NAT == "" {
		t.Fatalf("alice's record lacks addresses, supernodes or NAT: %+v", got)
	}
	if !slices.Contains(got.Supernodes, sns[0].ID().String()) {
		t.Errorf("alice's supernodes %v do not include the one she attached to first", got.Supernodes)
	}
	t.Logf("bob found alice in %d hops, %.1f ms: %v, NAT %s", got.Hops, got.Elapsed*1000, got.Addrs, got.NAT)
	back, err := alice.Lookup(context.Background(), "bob")
	if err != nil || back.PeerID != bob.ID().String() {
		t.Fatalf("alice looking up bob: %+v, %v", back, err)
	}
	if _, err := alice.Lookup(context.Background(), "nobody"); !errors.Is(err, peer.ErrNoSuchUser) {
		t.Fatalf("looking up a name nobody holds: %v, want ErrNoSuchUser", err)
	}
	want := replicasOf(sns, "alice")
	eventually(t, raceSlowdown*5*time.Second, "alice's record on exactly its 3 replicas", func() bool {
		h := holders(sns, "alice")
		if len(h) != ring.Copies {
			return false
		}
		for _, s := range h {
			if !want[s.ID()] {
				return false
			}
		}
		return true
	})
}

// A second key can neither claim nor update a name: not through its own
// supernode, not through any other, and not by a supernode handing the
// replicas a record. Every supernode that holds the name keeps the owner's key.
func TestUsernameHijackRefusedEverywhere(t *testing.T) {
	sns, _ := dirCluster(t, 8, 4, 100*time.Millisecond)
	alice := startPeer(t, sns[1], "alice", nil, func(c *peer.Config) { c.Username = "alice" })
	eventually(t, raceSlowdown*10*time.Second, "alice registered", func() bool {
		u := alice.Status().User
		return u != nil && u.Registered
	})
	// A daemon with another key asks for the same name.
	mallory := startPeer(t, sns[6], "mallory", nil, func(c *peer.Config) { c.Username = "alice" })
	eventually(t, raceSlowdown*10*time.Second, "mallory's claim refused", func() bool {
		u := mallory.Status().User
		return u != nil && !u.Registered && strings.Contains(u.LastError, "forbidden")
	})
	// The same by hand, through every supernode, with sequence numbers
	// above alice's.
	key, _ := protocol.GenerateIdentity()
	for i, s := range sns {
		c := dialRawLeaf(t, s)
		r := c.put(t, userRecord(key, "alice", uint64(time.Now().UnixNano())<<1+uint64(i), "192.0.2.66:1"))
		if r.Code != protocol.StatusForbidden {
			t.Errorf("hijack through supernode %d: %s %q, want forbidden", i, r.Code, r.Message)
		}
	}
	// A record of alice's altered after signing does not verify.
	own, _ := sns[0].UserRecord("alice")
	if own == nil {
		own, _ = holders(sns, "alice")[0].UserRecord("alice")
	}
	forged := own.Clone()
	forged.Addrs, forged.Seq = []string{"192.0.2.66:1"}, forged.Seq+1
	if r := dialRawLeaf(t, sns[3]).put(t, forged); r.Code != protocol.StatusBadRequest {
		t.Errorf("altered record: %s %q, want bad request", r.Code, r.Message)
	}
	// A supernode link that hands the replicas mallory's validly signed claim
	// gets nothing stored; one that hands them an altered record is closed.
	id, _ := protocol.GenerateIdentity()
	rogue, err := transport.New(transport.Config{Identity: id, Conn: loopbackConn(t), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	for _, s := range holders(sns, "alice") {
		l, _, err := rogue.Dial(context.Background(), s.Addr().String(), s.ID(), &protocol.Hello{Role: protocol.RoleSupernode, Chain: testAdmit(id)})
		if err != nil {
			t.Fatal(err)
		}
		claim := userRecord(key, "alice", uint64(time.Now().UnixNano())<<2, "192.0.2.66:2")
		l.Send(&protocol.UserStore{Recs: []protocol.UserRecord{*claim}})
		l.Send(&protocol.UserStore{Recs: []protocol.UserRecord{*forged}})
		select {
		case <-l.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("supernode %s kept a link that sent an altered record", s.ID().Short())
		}
		l.Close(nil)
	}
	for _, s := range sns {
		if r, ok := s.UserRecord("alice"); ok && !bytes.Equal(r.Key, own.Key) {
			t.Errorf("supernode %s holds alice under key %s", s.ID().Short(), r.Peer().Short())
		}
	}
	for i, s := range sns {
		r := dialRawLeaf(t, s).get(t, "alice")
		if r.Code != protocol.StatusOK || r.Rec.Peer() != alice.ID() {
			t.Errorf("lookup through supernode %d: %s %q", i, r.Code, r.Message)
		}
	}
}

// When supernodes join, records move to the names' new replicas; when some
// die, the survivors copy them on, so every name still resolves.
func TestUserRecordsMoveOnJoinAndLeave(t *testing.T) {
	// Mostly waiting on gossip rounds: it shares the machine with another
	// such test.
	t.Parallel()
	const names = 40
	sns, stops := dirCluster(t, 6, 4, 100*time.Millisecond)
	c := dialRawLeaf(t, sns[0])
	for i := range names {
		key, _ := protocol.GenerateIdentity()
		if r := c.put(t, userRecord(key, fmt.Sprintf("user%d", i), 1, "192.0.2.1:1")); r.Code != protocol.StatusOK {
			t.Fatalf("put user%d: %s %q", i, r.Code, r.Message)
		}
	}
	var lastBad string
	defer func() {
		if t.Failed() {
			t.Log("last mismatch:", lastBad)
		}
	}()
	onReplicas := func(sns []*supernode.Server) func() bool {
		return func() bool {
			for i := range names {
				name := fmt.Sprintf("user%d", i)
				want := replicasOf(sns, name)
				got := 0
				for _, s := range holders(sns, name) {
					if !want[s.ID()] {
						lastBad = fmt.Sprintf("%s held by %s, not a replica", name, s.ID().Short())
						return false // a holder that should have handed it on
					}
					got++
				}
				if got != len(want) {
					lastBad = fmt.Sprintf("%s on %d of its %d replicas", name, got, len(want))
					return false
				}
			}
			return true
		}
	}
	eventually(t, raceSlowdown*5*time.Second, "every record on exactly its replicas", onReplicas(sns))
	for range 4 {
		s, stop := runSupernode(t, func(c *supernode.Config) {
			c.AltListen, c.ListenTCP = "-", "-"
			c.GossipInterval, c.MemberTimeout, c.Neighbours = raceSlowdown*100*time.Millisecond, raceSlowdown*600*time.Millisecond, 4
		}, sns[rand.N(len(sns))])
		sns, stops = append(sns, s), append(stops, stop)
	}
	waitRing(t, sns, raceSlowdown*15*time.Second)
	start := time.Now()
	eventually(t, raceSlowdown*10*time.Second, "records moved to the replicas after 4 joins", onReplicas(sns))
	t.Logf("records settled %v after the joined ring did", time.Since(start).Round(10*time.Millisecond))
	// Kill three, then every name must resolve from a survivor. No two of
	// them are neighbours on the ring, so no name loses all three copies at
	// once (when that happens, the name is gone until its owner puts it
	// again, and these records have no daemon behind them).
	ids := make([]ring.ID, len(sns))
	for i, s := range sns {
		ids[i] = ring.ID(s.ID())
	}
	order := ring.New(ids).IDs()
	kill := map[ring.ID]bool{order[1]: true, order[4]: true, order[7]: true}
	var alive []*supernode.Server
	for i, s := range sns {
		if kill[ring.ID(s.ID())] {
			stops[i]()
			continue
		}
		alive = append(alive, s)
	}
	waitRing(t, alive, raceSlowdown*15*time.Second)
	start = time.Now()
	eventually(t, raceSlowdown*10*time.Second, "records on the survivors' replicas", onReplicas(alive))
	t.Logf("records settled %v after the shrunk ring did", time.Since(start).Round(10*time.Millisecond))
	q := dialRawLeaf(t, alive[len(alive)-1])
	for i := range names {
		if r := q.get(t, fmt.Sprintf("user%d", i)); r.Code != protocol.StatusOK {
			t.Errorf("user%d after the deaths: %s %q", i, r.Code, r.Message)
		}
	}
}

// Lookups travel the ring's shortcuts: this reports their hop count and
// latency for rings of 8 and 32 supernodes (and 128 with
// SUPERNET_DIR_SIZES=8,32,128), each over real QUIC links on loopback.
func TestDirectoryLookupHops(t *testing.T) {
	sizes := []int{8, 32}
	if raceSlowdown > 1 {
		sizes = []int{8} // 32 gossiping supernodes are too many for the race detector on 2 cores
	}
	if env := os.Getenv("SUPERNET_DIR_SIZES"); env != "" {
		sizes = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 256 {
				t.Fatalf("SUPERNET_DIR_SIZES: bad size %q", f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			// Slower gossip for larger rings: every supernode checks every
			// entry's signature once a round.
			gossip := time.Duration(max(100, 16*n)) * time.Millisecond
			sns, _ := dirCluster(t, n, 8, gossip)
			const names, lookups = 50, 200
			w := dialRawLeaf(t, sns[0])
			for i := range names {
				key, _ := protocol.GenerateIdentity()
				if r := w.put(t, userRecord(key, fmt.Sprintf("name%d", i), 1, "192.0.2.1:1")); r.Code != protocol.StatusOK {
					t.Fatalf("put name%d: %s %q", i, r.Code, r.Message)
				}
			}
			leaves := make([]*rawLeaf, min(n, 16))
			for i := range leaves {
				leaves[i] = dialRawLeaf(t, sns[i*n/len(leaves)])
			}
			var hops []int
			var lat []time.Duration
			for i := range lookups {
				c := leaves[i%len(leaves)]
				start := time.Now()
				r := c.get(t, fmt.Sprintf("name%d", rand.N(names)))
				lat = append(lat, time.Since(start))
				if r.Code != protocol.StatusOK {
					t.Fatalf("lookup %d: %s %q", i, r.Code, r.Message)
				}
				hops = append(hops, int(r.Hops))
			}
			sum := 0
			for _, h := range hops {
				sum += h
			}
			slices.Sort(lat)
			t.Logf("%d supernodes: %d lookups, hops mean %.2f max %d; latency p50 %v p99 %v",
				n, lookups, float64(sum)/float64(lookups), slices.Max(hops),
				percentile(lat, 0.50).Round(10*time.Microsecond), percentile(lat, 0.99).Round(10*time.Microsecond))
		})
	}
}
