package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/index/indextest"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/dial"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
	"github.com/supernet-p2p/supernet/transport"
)

// Any key claims the supernode role: fresh keys with no chain, another
// network's chain or an expired one dial the supernode as supernodes, from
// eight dialers at once, for the whole attack. None is linked.
func TestHostileUnadmittedSupernodes(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	var tries, refused, limited atomic.Int64
	a.during(8*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					n, id := newAttackerNode(t, ip)
					var ch protocol.Chain
					if w%2 == 1 { // an expired chain of the right network is no better
						ch = protocol.Admit(testNetKey, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, time.Now().Add(-time.Hour))
					}
					l, _, err := n.Dial(ctx, a.sn1Addr, a.sn1ID, &protocol.Hello{Role: protocol.RoleSupernode, Chain: ch})
					tries.Add(1)
					switch {
					case err == nil:
						l.Close(nil)
						t.Errorf("an unadmitted key was linked")
					case errors.Is(err, protocol.ErrForbidden):
						refused.Add(1)
					case errors.Is(err, transport.ErrRefused):
						limited.Add(1)
					}
					n.Close()
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("%d supernode dials without a valid chain: %d hellos refused as forbidden, %d refused by the handshake limits before TLS (the rest were cut by the end of the attack)",
		tries.Load(), refused.Load(), limited.Load())
	if refused.Load() == 0 {
		t.Fatal("no hello was refused")
	}
}

// A neighbour the operator admitted turns hostile: it claims to hold every
// file, never answers a query, and floods versions of its summary, many to
// a frame. Searches are held to the round timeout until the supernode
// stops asking it; its floods are dropped at their rates, and only one
// version a frame is checked.
func TestHostileSilentNeighbour(t *testing.T) {
	a := newArena(t)
	id, chain := a.rogueSupernode("silent")
	n, _ := a.attackerNodeWith(a.attackerAddr(), id)
	var queries atomic.Int64
	a.during(10*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		l, _, err := n.Dial(ctx, a.sn1Addr, a.sn1ID, &protocol.Hello{Role: protocol.RoleSupernode, Chain: chain})
		if err != nil {
			t.Errorf("the admitted rogue could not link: %v", err)
			return
		}
		defer l.Close(nil)
		go func() {
			for {
				m, err := l.Recv()
				if err != nil {
					return
				}
				if _, ok := m.(*protocol.Query); ok {
					queries.Add(1) // and never answered
				}
			}
		}()
		go claimEverything(ctx, l, a.sn1ID, id, chain, n.Addr().String(), "hostile", "test")
		time.Sleep(time.Second)
		// Flood: frames of 64 versions of its summary, each signed, as fast
		// as the link takes them.
		inc := uint64(time.Now().UnixMilli()) + 1
		filter := append([]byte{1, 10, 7}, bytes.Repeat([]byte{0xff}, 128)...)
		for i := uint64(0); ctx.Err() == nil; i++ {
			m := &protocol.Summaries{}
			for v := range uint64(64) {
				ver := 64*i + v + 1
				filter[3+ver%128] ^= 1
				sig := ed25519.Sign(id.Key, protocol.SummarySigned(id.ID, inc, ver, filter))
				m.Updates = append(m.Updates, protocol.SummaryUpdate{Origin: id.ID, Inc: inc, Ver: ver, Filter: bytes.Clone(filter), Sig: sig})
			}
			if l.Send(m) != nil {
				break
			}
			time.Sleep(time.Millisecond) // let the queue drain: a full one closes the link
		}
	})
	st := a.searches
	slow := 0
	for _, d := range st.took {
		if d > supernode.DefaultRouterConfig().RoundTimeout*9/10 {
			slow++
		}
	}
	t.Logf("the silent neighbour got %d queries; %d of %d searches waited for its round to time out, the rest did not", queries.Load(), slow, len(st.took))
	if q := queries.Load(); q > int64(supernode.DefaultRouterConfig().SlowAfter) {
		t.Errorf("the silent neighbour got %d queries: it was not held off after %d", q, supernode.DefaultRouterConfig().SlowAfter)
	}
	if queries.Load() == 0 {
		t.Fatal("the rogue got no query: it was not tested")
	}
}

// A neighbour the operator admitted gossips member entries it made for keys
// of its own, without chains or with another network's, so they would own
// ring positions. The supernode closes the link each time, and usernames
// still resolve to their owners.
func TestHostileRingInjection(t *testing.T) {
	a := newArena(t)
	id, chain := a.rogueSupernode("injector")
	ip := a.attackerAddr()
	var closed atomic.Int64
	a.during(8*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		n, _ := a.attackerNodeWith(ip, id)
		for ctx.Err() == nil {
			l, _, err := n.Dial(ctx, a.sn1Addr, a.sn1ID, &protocol.Hello{Role: protocol.RoleSupernode, Chain: chain})
			if err != nil {
				continue
			}
			var fakes []protocol.MemberRecord
			for range 64 {
				k, _ := protocol.GenerateIdentity()
				m := protocol.MemberRecord{Addrs: []string{ip + ":9"}, Beat: uint64(time.Now().UnixMilli())}
				m.Sign(k)
				fakes = append(fakes, m)
			}
			l.Send(&protocol.Members{Members: fakes})
			select {
			case <-l.Done():
				closed.Add(1)
			case <-ctx.Done():
				l.Close(nil)
			case <-time.After(5 * time.Second):
				t.Error("the link that gossiped unadmitted entries stayed open")
				l.Close(nil)
			}
		}
	})
	t.Logf("the injector's link was closed %d times", closed.Load())
	if closed.Load() == 0 {
		t.Fatal("the link was never closed")
	}
	r := a.l.peer(a.holder1.dataDir, "lookup", "asker", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, a.peerID(a.asker)) {
		t.Fatalf("lookup of asker after the attack: %s", r)
	}
}

// An admitted neighbour reports every supernode it hears of gone, at once
// and over and over, and now and then sends a forged report. The supernode
// takes a few of its reports, the reported answer them in time, and searches
// through sn1 keep finding the file behind sn2; each forged report closes
// the rogue's link.
func TestHostileLyingReports(t *testing.T) {
	a := newArena(t)
	id, chain := a.rogueSupernode("liar")
	n, _ := a.attackerNodeWith(a.attackerAddr(), id)
	var reports, closed atomic.Int64
	a.during(20*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		for ctx.Err() == nil {
			l, _, err := n.Dial(ctx, a.sn1Addr, a.sn1ID, &protocol.Hello{Role: protocol.RoleSupernode, Chain: chain})
			if err != nil {
				continue
			}
			// Its own entry first: reports count only from a live supernode.
			self := protocol.MemberRecord{Addrs: []string{n.Addr().String()}, Beat: uint64(time.Now().UnixMilli()), Incarnation: 1, Chain: chain}
			self.Sign(id)
			l.Send(&protocol.Members{Members: []protocol.MemberRecord{self}})
			var mu sync.Mutex
			heard := map[protocol.PeerID]protocol.MemberRecord{}
			go func() {
				for {
					m, err := l.Recv()
					if err != nil {
						return
					}
					if ms, ok := m.(*protocol.Members); ok {
						mu.Lock()
						for _, r := range ms.Members {
							if r.Peer() != id.ID {
								heard[r.Peer()] = r // the latest: a report must name it
							}
						}
						mu.Unlock()
					}
				}
			}()
			for i := 0; ctx.Err() == nil; i++ {
				lies := &protocol.Members{}
				mu.Lock()
				for p, r := range heard {
					g := protocol.MemberGone{Peer: p, Incarnation: r.Incarnation, Beat: r.Beat}
					g.Sign(id)
					if i%50 == 49 {
						g.Beat++ // no longer what it signed
					}
					lies.Gone = append(lies.Gone, g)
				}
				mu.Unlock()
				if len(lies.Gone) > 0 {
					reports.Add(int64(len(lies.Gone)))
					if l.Send(lies) != nil {
						break
					}
				}
				if i%50 == 49 {
					select {
					case <-l.Done():
						closed.Add(1)
					case <-ctx.Done():
					case <-time.After(5 * time.Second):
						t.Error("the link that sent a forged report stayed open")
					}
					break
				}
				select {
				case <-time.After(20 * time.Millisecond):
				case <-ctx.Done():
				}
			}
			l.Close(nil)
		}
	})
	t.Logf("%d reports of supernodes gone sent; the link was closed %d times for a forged one", reports.Load(), closed.Load())
	if reports.Load() == 0 || closed.Load() == 0 {
		t.Fatal("the rogue sent no report, or no forged one closed its link: it was not tested")
	}
}

// A link claims the relay role without the relay secret or a certificate,
// to report relays of its own choosing. It is refused every time.
func TestHostileRelayHijack(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	var tries, refused atomic.Int64
	a.during(6*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		for ctx.Err() == nil {
			n, _ := newAttackerNode(t, ip)
			ua, _ := net.ResolveUDPAddr("udp", a.sn1Addr)
			l, _, err := n.DialHello(ctx, ua, a.sn1ID, protocol.RoleRelay, protocol.RelayHello([]byte("a guess at the secret, long enough"), nil))
			tries.Add(1)
			switch {
			case err == nil:
				l.Close(nil)
				t.Error("a relay without the secret was taken")
			case errors.Is(err, protocol.ErrForbidden):
				refused.Add(1)
			}
			n.Close()
		}
	})
	t.Logf("%d relay hellos without the secret, %d refused as forbidden", tries.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Fatal("no relay hello was refused")
	}
}

// One host attaches a thousand fresh keys as leaves. It gets the per-address
// share of the leaf slots, no more, and a new honest peer still attaches and
// finds what it looks for.
func TestHostileLeafSlots(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	var accepted, overloaded atomic.Int64
	var held []*transport.Node
	a.during(30*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		for i := 0; i < 1000 && ctx.Err() == nil; i++ {
			n, _ := newAttackerNode(t, ip)
			l, _, err := n.Dial(ctx, a.sn1Addr, a.sn1ID, &protocol.Hello{Role: protocol.RoleLeaf})
			switch {
			case err == nil:
				accepted.Add(1)
				held = append(held, n)
				go func() {
					for {
						if _, err := l.Recv(); err != nil {
							return
						}
					}
				}()
				continue
			case errors.Is(err, protocol.ErrOverloaded), errors.Is(err, transport.ErrRefused):
				overloaded.Add(1)
			}
			n.Close()
		}
	})
	defer func() {
		for _, n := range held {
			n.Close()
		}
	}()
	t.Logf("1000 keys from one address: %d attached, %d refused (overloaded, or by the connection limits before TLS)", accepted.Load(), overloaded.Load())
	if accepted.Load() > 32 {
		t.Errorf("%d leaves from one address, over the per-address cap of 32", accepted.Load())
	}
	late := a.l.daemon("latecomer", "", a.sn1Target, "--listen", peerListen(), "--attach", "1")
	a.l.waitAttached(late)
	var n int
	pollUntil(t, 10*time.Second, "the latecomer to find a file", func() (bool, string) {
		r := a.l.peer(late.dataDir, "search", "--json", "hostile test one")
		n = strings.Count(r.stdout, `"content_id"`)
		return n > 0, r.String()
	})
}

// One host attaches leaves up to its per-address cap and publishes records
// as large as the wire allows, each word new to the index, as fast as it
// can. It runs into the per-leaf and per-address budgets; the supernode stays
// within its memory, honest files stay found, and an honest peer that comes
// later publishes and is found too.
func TestHostilePublishFlood(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	var published, refused atomic.Int64
	// The attack ends once every leaf has sent its records and the
	// supernode has refused some, or after a minute: on a loaded machine
	// the leaves take long to get past the handshake caps.
	overloaded := make(chan struct{})
	var once sync.Once
	a.during(time.Minute, []*process{a.sn1}, func(ctx context.Context) {
		var wg sync.WaitGroup
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, _ := newAttackerNode(t, ip)
				defer n.Close()
				// Dials beyond the per-address handshake cap are refused
				// before TLS: try again, as an attacker would.
				var l *transport.Link
				var err error
				for l == nil && ctx.Err() == nil {
					if l, _, err = n.Dial(ctx, a.sn1Addr, a.sn1ID, &protocol.Hello{Role: protocol.RoleLeaf}); err != nil {
						if !errors.Is(err, transport.ErrRefused) && ctx.Err() == nil {
							t.Errorf("leaf %d: %v", i, err)
							return
						}
						select {
						case <-overloaded:
							return // the others reached the limits
						case <-time.After(50 * time.Millisecond):
						}
					}
				}
				if l == nil {
					return
				}
				go func() {
					for {
						m, err := l.Recv()
						if err != nil {
							return
						}
						if e, ok := m.(*protocol.Error); ok && e.Code == protocol.StatusOverloaded {
							refused.Add(1)
							once.Do(func() { close(overloaded) })
						}
					}
				}()
				recs := indextest.Hostile(int64(i), 2000)
				// 200 maximal records make a frame of about 400 KiB.
				for j := 0; j < len(recs) && ctx.Err() == nil; j += 200 {
					var fs []protocol.FileRecord
					for _, e := range recs[j:min(j+200, len(recs))] {
						fs = append(fs, protocol.FileRecord{ID: e.ContentID, Name: e.Name, Size: e.Size, Tags: e.Tags})
					}
					if err := l.Send(&protocol.Publish{Files: fs}); err != nil {
						if !errors.Is(err, transport.ErrQueueFull) && ctx.Err() == nil && !isClosed(l) {
							t.Errorf("leaf %d publish: %v", i, err)
						}
						return
					}
					published.Add(int64(len(fs)))
				}
				select {
				case <-ctx.Done():
				case <-overloaded:
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("32 leaves of one host sent %d maximal records; %d publish frames refused as overloaded", published.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Fatal("nothing was refused: the attack did not reach a limit")
	}
	share := a.l.root + "/late-share"
	mustWrite(t, share+"/hostile test late.mp3", randomBytes(77, 4096))
	late := a.l.daemon("latecomer", share, a.sn1Target, "--listen", peerListen(), "--attach", "1")
	a.l.waitAttached(late)
	pollUntil(t, 10*time.Second, "the latecomer's file to be found", func() (bool, string) {
		r := a.l.peer(a.asker.dataDir, "search", "--json", "hostile test late")
		return strings.Contains(r.stdout, "hostile test late.mp3"), r.String()
	})
}

// A leaf claims addresses of other hosts, in its hello and in a NAT report,
// whose proofs of its address in the other IP family are one made up and
// one another peer ID got at the supernode. It publishes a file. Those who
// find the file are given only the address the supernode saw it at, the
// mapping it reported on that host, and its LAN addresses (private
// ranges), which a peer dials only from behind the claimer's own public
// address: the asker, elsewhere, would dial none but those on the seen host.
func TestHostileClaimedAddresses(t *testing.T) {
	a := newArena(t)
	ip := a.attackerAddr()
	claimed := []string{"10.1.2.3:6346", "203.0.113.77:80", "192.0.2.1:53"}
	var seen string
	a.during(4*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		n, _ := a.attackerNode(ip)
		l, _, err := n.Dial(ctx, a.sn1Addr, a.sn1ID, &protocol.Hello{Role: protocol.RoleLeaf, Addrs: claimed})
		if err != nil {
			t.Errorf("leaf dial: %v", err)
			return
		}
		seen = n.Addr().String()
		go func() {
			for {
				if _, err := l.Recv(); err != nil {
					return
				}
			}
		}()
		forged := protocol.AddrProof{Addr: "[2001:db8:66::1]:80"}
		crand.Read(forged.Token[:])
		other, _ := a.attackerNode(ip)
		snUDP, _ := net.ResolveUDPAddr("udp", a.sn1Addr)
		stolen, err := other.ProveAddr(ctx, snUDP)
		if err != nil {
			t.Errorf("the other node's proof: %v", err)
		}
		l.Send(&protocol.NATReport{Mapping: protocol.NATEndpointDependent, Reflexive: []string{"198.51.100.9:9", ip + ":7"},
			Proofs: []protocol.AddrProof{forged, stolen}})
		l.Send(&protocol.Publish{Files: []protocol.FileRecord{{ID: protocol.ContentID{0x42}, Name: "claimed addresses file.mp3", Size: 1}}})
		<-ctx.Done()
	})
	var sources []apitype.SourceJSON
	pollUntil(t, 10*time.Second, "the claimer's file found", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sources = nil
		localapi.NewClient(a.asker.dataDir).Search(ctx, apitype.SearchRequest{Query: "claimed addresses"}, func(h []apitype.HitJSON) {
			for _, x := range h {
				sources = append(sources, x.Sources...)
			}
		})
		return len(sources) > 0, fmt.Sprint(sources)
	})
	var st statusJSON
	if r := a.l.peer(a.asker.dataDir, "status", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("asker status: %s", r)
	}
	for _, s := range sources {
		for _, addr := range s.Addrs {
			if addr != seen && addr != ip+":7" && !transport.LANCandidate(addr) {
				t.Errorf("the claimer's source lists %s; only %s (where the supernode saw it), %s:7 (its reported mapping) and LAN addresses may be served", addr, seen, ip)
			}
		}
		for _, addr := range dial.Candidates(s.Addrs, st.Supernode.Observed) {
			if host, _, _ := net.SplitHostPort(addr); host != ip {
				t.Errorf("the asker, seen at %s, would dial %s", st.Supernode.Observed, addr)
			}
		}
	}
	t.Logf("served addresses: %v (claimed %v)", sources[0].Addrs, claimed)
}

// A neighbour the operator admitted answers every query with hits it made
// up: a matching file with a score of 1e30, and files that do not match at
// all. The asker sees the matching one ranked by its own score, and never
// the others.
func TestHostileForgedHits(t *testing.T) {
	a := newArena(t)
	id, chain := a.rogueSupernode("forger")
	n, _ := a.attackerNodeWith(a.attackerAddr(), id)
	var answered atomic.Int64
	a.during(6*time.Second, []*process{a.sn1}, func(ctx context.Context) {
		l, _, err := n.Dial(ctx, a.sn1Addr, a.sn1ID, &protocol.Hello{Role: protocol.RoleSupernode, Chain: chain})
		if err != nil {
			t.Errorf("the admitted rogue could not link: %v", err)
			return
		}
		defer l.Close(nil)
		go claimEverything(ctx, l, a.sn1ID, id, chain, n.Addr().String(), "hostile", "test")
		src := []protocol.Source{{Peer: protocol.PeerID{0x66}, Addrs: []string{"127.66.0.1:1"}}}
		go func() {
			for {
				m, err := l.Recv()
				if err != nil {
					return
				}
				q, ok := m.(*protocol.Query)
				if !ok {
					continue
				}
				l.Send(&protocol.Hits{ID: q.ID, Hits: []protocol.Hit{
					{FileRecord: protocol.FileRecord{ID: protocol.ContentID{0x61}, Name: "hostile test forged with a long name.mp3"}, Sources: src, Score: 1e30},
					{FileRecord: protocol.FileRecord{ID: protocol.ContentID{0x62}, Name: "totally different.exe"}, Sources: src, Score: 3e38},
				}})
				l.Send(&protocol.QueryDone{ID: q.ID, Supernodes: 1})
				answered.Add(1)
			}
		}()
		<-ctx.Done()
	})
	if answered.Load() == 0 {
		t.Fatal("the forger got no query")
	}
	forgedSeen := 0
	for _, hits := range a.searches.hits {
		var best apitype.HitJSON
		for _, h := range hits {
			if strings.Contains(h.Name, "different") {
				t.Fatalf("a hit that does not match the query reached the asker: %+v", h)
			}
			if h.Score > 1.5 {
				t.Fatalf("hit %q scored %v: the sender's score, not ours", h.Name, h.Score)
			}
			if strings.Contains(h.Name, "forged") {
				forgedSeen++
			}
			if h.Score > best.Score {
				best = h
			}
		}
		if strings.Contains(best.Name, "forged") {
			t.Fatalf("the forged hit ranked first: %+v", hits)
		}
	}
	t.Logf("the forger answered %d queries; its matching hit reached the asker %d times, never first, with our score", answered.Load(), forgedSeen)
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := mkdirWrite(path, b); err != nil {
		t.Fatal(err)
	}
}

func isClosed(l *transport.Link) bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}
