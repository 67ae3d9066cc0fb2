package supernode

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// chainNet makes n supernodes named A, B, ... each linked to the one before,
// as supernodes that join the previous one are, with lists swapped.
func chainNet(t *testing.T, n int, seed uint64) *coreNet {
	t.Helper()
	net := newCoreNet(t, seed)
	for i := range n {
		net.addNode(string(rune('A'+i)), "")
	}
	for i := 1; i < n; i++ {
		a, b := net.nodes[i-1], net.nodes[i]
		net.connect(a, b)
		a.memb.NeighbourUp(b.peer())
		b.memb.NeighbourUp(a.peer())
	}
	net.run()
	return net
}

// rounds runs gossip rounds a second apart, each followed by the links the
// nodes make, until done holds; it fails the test after max rounds. It
// returns the rounds it took.
func (net *coreNet) rounds(max, want int, what string, done func() bool) int {
	net.t.Helper()
	for r := 1; r <= max; r++ {
		net.clock.Advance(time.Second)
		net.gossip()
		net.linkMore(want)
		if done() {
			return r
		}
	}
	net.t.Fatalf("%s: not within %d rounds", what, max)
	return 0
}

// alive are the nodes not down.
func (net *coreNet) alive() []*coreNode {
	var out []*coreNode
	for _, n := range net.nodes {
		if !n.down {
			out = append(out, n)
		}
	}
	return out
}

func (net *coreNet) names(ns []*coreNode) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.name)
	}
	slices.Sort(out)
	return out
}

// links describes every node's neighbours, to compare runs.
func (net *coreNet) links() string {
	var b strings.Builder
	for _, n := range net.nodes {
		var ns []string
		for _, p := range n.Neighbours(0) {
			ns = append(ns, net.node(p).name)
		}
		slices.Sort(ns)
		fmt.Fprintf(&b, "%s:%s ", n.name, strings.Join(ns, ","))
	}
	return b.String()
}

// relinkScenario joins eight supernodes in a chain, lets them learn of each
// other and link to three or more each, then kills three and lets the
// survivors drop them and link to each other again. It returns the links
// after each phase and the rounds each took.
func relinkScenario(t *testing.T, seed uint64) (trace string) {
	net := chainNet(t, 8, seed)
	all := net.names(net.nodes)
	r := net.rounds(20, 3, "every supernode to list all 8 and have 3 neighbours", func() bool {
		for _, n := range net.nodes {
			if !slices.Equal(net.listed(n), all) || len(n.Neighbours(0)) < 3 {
				return false
			}
		}
		return true
	})
	trace = fmt.Sprintf("joined in %d rounds: %s\n", r, net.links())

	for _, i := range []int{1, 4, 6} {
		dead := net.nodes[i]
		dead.down = true
		for _, n := range net.nodes {
			net.disconnect(n, dead)
		}
	}
	survivors := net.names(net.alive())
	// A supernode is reported once its neighbours have heard nothing from
	// it for the member timeout (4 s), and taken as dead when it has not
	// answered the report for SuspectFor (12 s) more, not before.
	for range 15 {
		net.clock.Advance(time.Second)
		if died := net.gossip(); died > 0 {
			t.Fatalf("%d deaths seen within 15 s of the kill; the timeouts are 4 s and 12 s", died)
		}
	}
	r = net.rounds(10, 3, "the survivors to list exactly the 5 alive and have 3 neighbours again", func() bool {
		for _, n := range net.alive() {
			if !slices.Equal(net.listed(n), survivors) || len(n.Neighbours(0)) < 3 {
				return false
			}
		}
		return true
	})
	return trace + fmt.Sprintf("relinked in %d more rounds: %s\n", r, net.links())
}

// Supernodes joined in a chain learn of each other by gossip and link to
// more of each other from the list; when some die the survivors drop them
// from the list and link to others. The same seed gives the same links.
func TestMembershipGossipAndRelinkCore(t *testing.T) {
	first := relinkScenario(t, 3)
	t.Log(first)
	if again := relinkScenario(t, 3); again != first {
		t.Fatalf("the same seed gave other links:\n%s\nthen\n%s", first, again)
	}
}

// Every member entry is signed by its supernode and carries a chain to the
// network key. A list with an entry that fails either comes from a bad
// supernode: its link is closed and the entry is not listed. An entry whose
// chain has only expired is skipped without blame.
func TestMembershipRefusesEntriesWithoutChain(t *testing.T) {
	otherNet := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	cases := []struct {
		name  string
		entry func(net *coreNet, x *protocol.Identity) *protocol.MemberRecord
		bad   bool
	}{
		{"no chain", func(net *coreNet, x *protocol.Identity) *protocol.MemberRecord {
			return signedEntry(x, nil)
		}, true},
		{"chain from another network", func(net *coreNet, x *protocol.Identity) *protocol.MemberRecord {
			return signedEntry(x, protocol.Admit(otherNet, x.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, net.clock.Now().Add(time.Hour)))
		}, true},
		{"chain for another key", func(net *coreNet, x *protocol.Identity) *protocol.MemberRecord {
			return signedEntry(x, net.admit(seededIdentity(t, "someone else")))
		}, true},
		{"altered after signing", func(net *coreNet, x *protocol.Identity) *protocol.MemberRecord {
			r := signedEntry(x, net.admit(x))
			r.Leaves++
			return r
		}, true},
		{"expired chain", func(net *coreNet, x *protocol.Identity) *protocol.MemberRecord {
			return signedEntry(x, testAdmit(x, net.clock.Now().Add(-time.Hour)))
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			net := chainNet(t, 2, 1)
			a, b := net.nodes[0], net.nodes[1]
			net.gossip()
			x := seededIdentity(t, "x")
			nodeOut{a}.Send(b.peer(), &protocol.Members{Members: []protocol.MemberRecord{*c.entry(net, x)}})
			net.run()
			if b.members.Alive(x.ID) {
				t.Fatal("the entry is listed")
			}
			err := b.closed[a.peer()]
			if c.bad != (err != nil) || c.bad && !errors.Is(err, protocol.ErrForbidden) {
				t.Fatalf("B closed the link with %v; want it closed: %v", err, c.bad)
			}
		})
	}
	// The same entry with a valid chain is taken.
	net := chainNet(t, 2, 1)
	a, b := net.nodes[0], net.nodes[1]
	x := seededIdentity(t, "x")
	nodeOut{a}.Send(b.peer(), &protocol.Members{Members: []protocol.MemberRecord{*signedEntry(x, net.admit(x))}})
	net.run()
	if !b.members.Alive(x.ID) || len(b.closed) > 0 {
		t.Fatalf("a valid entry: listed %v, closed %v", b.members.Alive(x.ID), b.closed)
	}
}

func signedEntry(id *protocol.Identity, ch protocol.Chain) *protocol.MemberRecord {
	r := &protocol.MemberRecord{Addrs: []string{"192.0.2.99:6346"}, Beat: 1, Incarnation: 1, Chain: ch}
	r.Sign(id)
	return r
}

// A supernode not admitted yet (a promoted one waiting for its certificate)
// issues no entry: the others would refuse it.
func TestMembershipNoEntryWithoutChain(t *testing.T) {
	net := chainNet(t, 2, 1)
	a, b := net.nodes[0], net.nodes[1]
	b.chain = nil
	net.clock.Advance(time.Second)
	net.gossip()
	if !a.members.Alive(a.peer()) || a.members.Alive(b.peer()) || b.members.Alive(b.peer()) {
		t.Fatalf("A lists %v, B lists %v; want only A", net.listed(a), net.listed(b))
	}
	if len(a.closed)+len(b.closed) > 0 {
		t.Fatal("a link was closed")
	}
}

// Leaves get the list when the supernodes it names change, at once in a
// round that saw a supernode die, and otherwise every LeafMembersEvery
// rounds: not every round, though every round changes the beats.
func TestMembershipListsToLeaves(t *testing.T) {
	net := chainNet(t, 3, 1)
	a := net.nodes[0]
	l := net.addLeaf(a, "l")
	lists := func() int {
		n := 0
		for _, m := range l.inbox {
			if _, ok := m.(*protocol.Members); ok {
				n++
			}
		}
		return n
	}
	// Until A lists all three, each change reaches the leaf.
	for r := 1; len(net.listed(a)) < 3; r++ {
		net.clock.Advance(time.Second)
		before := lists()
		net.gossip()
		if r == 1 && lists() != before+1 {
			t.Fatalf("the first round sent the leaf %d lists, want 1", lists()-before)
		}
		if r == 10 {
			t.Fatalf("A lists %v after 10 rounds", net.listed(a))
		}
	}
	// A learned the last entry from a neighbour's list: its next round
	// passes it on.
	net.clock.Advance(time.Second)
	net.gossip()
	if last := l.inbox[len(l.inbox)-1].(*protocol.Members); len(last.Members) != 3 {
		t.Fatalf("the leaf's last list has %d entries, want 3", len(last.Members))
	}
	// With the ring settled, the next list waits LeafMembersEvery rounds.
	settled := lists()
	quiet := 0
	for lists() == settled {
		net.clock.Advance(time.Second)
		net.gossip()
		if quiet++; quiet > LeafMembersEvery {
			t.Fatalf("no list to the leaf in %d settled rounds", quiet)
		}
	}
	if quiet < LeafMembersEvery-1 || lists() != settled+1 {
		t.Fatalf("a list to the leaf after %d settled rounds (%d lists), want one after about %d", quiet, lists()-settled, LeafMembersEvery)
	}
	dead := net.nodes[2]
	dead.down = true
	net.disconnect(net.nodes[1], dead)
	for r := 1; ; r++ {
		net.clock.Advance(time.Second)
		// The round in which A takes C as dead tells the leaf.
		before := lists()
		net.gossip()
		if !a.members.Alive(dead.peer()) {
			if lists() != before+1 {
				t.Fatalf("the round A saw C die sent the leaf %d lists, want 1", lists()-before)
			}
			if last := l.inbox[len(l.inbox)-1].(*protocol.Members); len(last.Members) != 2 {
				t.Fatalf("the list after the death has %d entries, want 2", len(last.Members))
			}
			return
		}
		if r == 25 {
			t.Fatal("A did not see C die within 25 rounds")
		}
	}
}

// settledNet is n supernodes joined in a chain that have listed each other
// and linked to three or more each.
func settledNet(t *testing.T, n int) *coreNet {
	t.Helper()
	net := chainNet(t, n, 1)
	net.rounds(30, 3, "the supernodes to list each other", func() bool {
		for _, x := range net.nodes {
			if len(net.listed(x)) < n || len(x.Neighbours(0)) < 3 {
				return false
			}
		}
		return true
	})
	return net
}

// With nothing changing, supernodes pass on no entries, only a word to each
// neighbour a round; each entry goes again at the refresh interval, over
// each link once or twice.
func TestMembershipPassesOnChangesOnly(t *testing.T) {
	net := settledNet(t, 8)
	steps := func(n int, d time.Duration) {
		for range n {
			net.clock.Advance(d)
			net.gossip()
		}
	}
	steps(10, time.Second)
	links := 0
	for _, n := range net.nodes {
		links += len(n.Neighbours(0))
	}
	links /= 2
	before, sent := net.entries, net.delivered
	steps(120, time.Second)
	if got := net.entries - before; got != 0 {
		t.Fatalf("%d entries passed on in 120 quiet rounds, want none", got)
	}
	if got, want := net.delivered-sent, 120*2*links; got != want {
		t.Fatalf("%d messages in 120 quiet rounds, want %d: one per link each way", got, want)
	}
	// Past the refresh interval every supernode issues its entry again, and
	// it goes down the ring's tree: to each other supernode once, not over
	// every link.
	before, tree := net.entries, net.treeEntries
	beats := net.beats()
	steps(30*60-120+30, time.Second)
	if got := net.entries - before; got != 0 {
		t.Fatalf("%d entries flooded for the refresh, want none", got)
	}
	if got, want := net.treeEntries-tree, len(net.nodes)*(len(net.nodes)-1); got != want {
		t.Fatalf("%d tree entries for the refresh of %d supernodes over %d links, want %d", got, len(net.nodes), links, want)
	}
	net.refreshedSince(beats)
}

// beats is the beat every node holds of every node, by their names.
func (net *coreNet) beats() map[[2]string]uint64 {
	out := map[[2]string]uint64{}
	for _, n := range net.alive() {
		for _, o := range net.alive() {
			if _, beat, ok := n.members.Held(o.peer()); ok {
				out[[2]string{n.name, o.name}] = beat
			}
		}
	}
	return out
}

// refreshedSince fails the test unless every live node holds a later entry
// of every live node than in before.
func (net *coreNet) refreshedSince(before map[[2]string]uint64) {
	net.t.Helper()
	now := net.beats()
	for _, n := range net.alive() {
		for _, o := range net.alive() {
			k := [2]string{n.name, o.name}
			if now[k] <= before[k] {
				net.t.Fatalf("%s holds beat %d of %s, not later than %d", n.name, now[k], o.name, before[k])
			}
		}
	}
}

// In a larger overlay a refresh still reaches every supernode once. Where
// the tree cannot reach (a neighbour on the arc speaks no member_tree, or a
// supernode's successor is not linked), the entry floods from there, and
// still every supernode gets it.
func TestMembershipRefreshTree(t *testing.T) {
	for _, gap := range []string{"", "old neighbour", "successor unlinked"} {
		t.Run(cmp.Or(gap, "complete"), func(t *testing.T) {
			const n = 24
			net := chainNet(t, n, 3)
			net.rounds(60, 4, "the supernodes to list each other", func() bool {
				for _, x := range net.nodes {
					if len(net.listed(x)) < n || len(x.Neighbours(0)) < 4 {
						return false
					}
				}
				return true
			})
			// Up to a few seconds before the refreshes are due.
			for range 30*60 - 10 {
				net.clock.Advance(time.Second)
				net.gossip()
			}
			x := net.nodes[5]
			switch gap {
			case "old neighbour":
				// One of x's links speaks v10, on which member_tree is unknown.
				net.mu.Lock()
				for p := range x.nbrs {
					x.nbrs[p], net.node(p).nbrs[x.peer()] = protocol.VersionMemberTree-1, protocol.VersionMemberTree-1
					break
				}
				net.mu.Unlock()
			case "successor unlinked":
				// Just before the refreshes, x loses the link to its successor,
				// which it reports gone only after the member timeout.
				var succ *coreNode
				dist := func(o *coreNode) uint64 { return protocol.IDPrefix(o.peer()) - protocol.IDPrefix(x.peer()) }
				for _, o := range net.nodes {
					if o != x && (succ == nil || dist(o) < dist(succ)) {
						succ = o
					}
				}
				net.disconnect(x, succ)
			}
			before, tree := net.entries, net.treeEntries
			beats := net.beats()
			for range 60 {
				net.clock.Advance(time.Second)
				net.gossip()
			}
			net.refreshedSince(beats)
			flooded, treed := net.entries-before, net.treeEntries-tree
			t.Logf("%d entries down the tree, %d flooded", treed, flooded)
			if gap == "" && (flooded != 0 || treed != n*(n-1)) {
				t.Fatalf("%d tree entries and %d flooded, want %d and none", treed, flooded, n*(n-1))
			}
			if gap != "" && flooded == 0 {
				t.Fatal("nothing flooded around the gap")
			}
		})
	}
}

// goneReport is by's signed report of x gone, naming the entry of x that n
// holds.
func goneReport(t *testing.T, n *coreNode, x protocol.PeerID, by *protocol.Identity) *protocol.MemberGone {
	t.Helper()
	inc, beat, ok := n.members.Held(x)
	if !ok {
		t.Fatalf("%s holds no live entry for %s", n.name, x.Short())
	}
	r := &protocol.MemberGone{Peer: x, Incarnation: inc, Beat: beat}
	r.Sign(by)
	return r
}

// A supernode reported gone while alive hears of the report and issues a
// later entry in time: no one drops it.
func TestMembershipAliveSupernodeAnswersReport(t *testing.T) {
	net := settledNet(t, 6)
	a, b := net.nodes[0], net.nodes[3]
	nodeOut{a}.Send(a.Neighbours(0)[0], &protocol.Members{Gone: []protocol.MemberGone{*goneReport(t, a, b.peer(), a.id)}})
	net.run()
	net.rounds(10, 3, "B to answer the false report", func() bool {
		for _, n := range net.nodes {
			if len(net.listed(n)) != 6 {
				t.Fatalf("%s dropped B: %v", n.name, net.listed(n))
			}
			if n.members.GoneReport(b.peer()) != nil {
				return false
			}
		}
		return true
	})
	for _, n := range net.nodes {
		if len(n.closed) > 0 {
			t.Fatalf("%s closed links: %v", n.name, n.closed)
		}
	}
}

// A supernode whose link to a neighbour drops and comes back within the
// member timeout reports nothing; one that stays away is reported by its
// neighbours, and every supernode drops it once it left the report
// unanswered for SuspectFor.
func TestMembershipReportsLostNeighbour(t *testing.T) {
	net := settledNet(t, 8)
	a := net.nodes[0]
	b := net.node(a.Neighbours(0)[0])
	net.disconnect(a, b)
	for range 2 {
		net.clock.Advance(time.Second)
		net.gossip()
	}
	net.connect(a, b)
	a.memb.NeighbourUp(b.peer())
	b.memb.NeighbourUp(a.peer())
	net.run()
	before := net.entries
	for range 10 {
		net.clock.Advance(time.Second)
		net.gossip()
	}
	if got := net.entries - before; got != 0 {
		t.Fatalf("%d entries or reports after a link came back in 2 s, want none", got)
	}
	dead := net.nodes[5]
	dead.down = true
	for _, n := range net.nodes {
		net.disconnect(n, dead)
	}
	r := 1
	for ; r <= 25; r++ {
		net.clock.Advance(time.Second)
		net.gossip()
		if !slices.ContainsFunc(net.alive(), func(n *coreNode) bool { return n.members.Alive(dead.peer()) }) {
			break
		}
		if r == 4 && slices.ContainsFunc(net.alive(), func(n *coreNode) bool { return n.members.GoneReport(dead.peer()) == nil }) {
			t.Fatal("a supernode had no report of the dead one after 4 s of its silence and a round")
		}
	}
	// 4 s of silence, a round per hop, and 12 s unanswered.
	if r < 16 || r > 19 {
		t.Fatalf("the dead supernode was dropped everywhere after %d rounds, want 16 to 19", r)
	}
}

// A supernode that reports many others gone is taken at its word for about
// as many as it could have links, then ignored; the others answer the
// reports in time and are never dropped, and a report with a bad signature
// closes the link it came on.
func TestMembershipLyingReporterIsBounded(t *testing.T) {
	const n = 48
	net := chainNet(t, n, 1)
	net.rounds(60, 3, "the supernodes to list each other", func() bool {
		for _, x := range net.nodes {
			if len(net.listed(x)) < n {
				return false
			}
		}
		return true
	})
	liar, victim := net.nodes[0], net.nodes[1]
	var lies []protocol.MemberGone
	for _, x := range net.nodes[2:] {
		lies = append(lies, *goneReport(t, victim, x.peer(), liar.id))
	}
	nodeOut{liar}.Send(victim.peer(), &protocol.Members{Gone: lies})
	net.run()
	suspected := 0
	for _, x := range net.nodes {
		if victim.members.GoneReport(x.peer()) != nil {
			suspected++
		}
	}
	if suspected != reportBurst {
		t.Fatalf("the victim took %d reports on one reporter's word, want %d", suspected, reportBurst)
	}
	// The reported answer before they would be taken as dead, and no one
	// drops them meanwhile.
	for r := range 2 * int(SuspectFor(4*time.Second)/time.Second) {
		net.clock.Advance(time.Second)
		net.gossip()
		for _, x := range net.nodes {
			if len(net.listed(x)) != n {
				t.Fatalf("after %d s %s lists %d of %d", r+1, x.name, len(net.listed(x)), n)
			}
		}
	}
	for _, x := range net.nodes {
		if victim.members.GoneReport(x.peer()) != nil {
			t.Fatalf("%s is still suspected after it could answer", x.name)
		}
	}
	forged := *goneReport(t, victim, net.nodes[2].peer(), liar.id)
	forged.Beat++
	nodeOut{liar}.Send(victim.peer(), &protocol.Members{Gone: []protocol.MemberGone{forged}})
	net.run()
	if err := victim.closed[liar.peer()]; !errors.Is(err, protocol.ErrForbidden) {
		t.Fatalf("a forged report: the link closed with %v, want forbidden", err)
	}
	if !victim.members.Alive(net.nodes[2].peer()) {
		t.Fatal("a forged report was taken")
	}
}

// A neighbour that sends an entry held back in a members message, as one
// flooding around a gap in the tree does, gets it passed on over every link
// once per beat, however often it sends it: once flooded, or never, if it
// came down the tree.
func TestMembershipHeldEntryFloodsOnce(t *testing.T) {
	net := settledNet(t, 8)
	a, b := net.nodes[0], net.nodes[1]
	if !slices.Contains(a.Neighbours(0), b.peer()) {
		net.connect(a, b)
	}
	links := 0
	for _, n := range net.nodes {
		links += len(n.Neighbours(0))
	}
	x := net.nodes[5]
	replay := func(what string, want func(got int) bool) {
		t.Helper()
		inc, beat, ok := b.members.Held(x.peer())
		if !ok {
			t.Fatal("b does not hold x")
		}
		held := b.members.Entry(x.peer(), inc, beat)
		for round := range 3 {
			before := net.entries
			nodeOut{a}.Send(b.peer(), &protocol.Members{Members: []protocol.MemberRecord{*held}})
			net.run()
			for range 3 {
				net.clock.Advance(time.Second)
				net.gossip()
			}
			got := net.entries - before - 1 // the replay itself
			t.Logf("%s, replay %d: %d entries passed on", what, round, got)
			if round == 0 && !want(got) || round > 0 && got != 0 {
				t.Fatalf("%s: replay %d passed on %d entries over %d directed links", what, round, got, links)
			}
		}
	}
	for range 10 {
		net.clock.Advance(time.Second)
		net.gossip()
	}
	replay("flooded when new", func(got int) bool { return got == 0 })
	for range 30 * 60 {
		net.clock.Advance(time.Second)
		net.gossip()
	}
	replay("refreshed down the tree", func(got int) bool { return got >= len(net.nodes)-1 && got <= links })
}

// In an overlay larger than a leaf's list, a leaf of v11 gets its sample
// without the chains, most of each entry; an older leaf, which checks them,
// still gets them. The signatures check either way.
func TestMembershipBareSampleToNewLeaves(t *testing.T) {
	const n = LeafList + 2
	net := settledNet(t, n)
	a := net.nodes[0]
	newer, older := net.addLeaf(a, "new"), net.addLeaf(a, "old")
	net.mu.Lock()
	a.leaves[older.id.ID] = protocol.VersionMemberTree - 1
	net.mu.Unlock()
	dead := net.nodes[n-1]
	dead.down = true
	for _, o := range net.nodes {
		net.disconnect(o, dead)
	}
	for r := 0; a.members.Alive(dead.peer()); r++ {
		if r == 30 {
			t.Fatal("A did not see the dead supernode die within 30 rounds")
		}
		net.clock.Advance(time.Second)
		net.gossip()
	}
	last := func(l *coreLeaf) *protocol.Members {
		for i := len(l.inbox) - 1; i >= 0; i-- {
			if m, ok := l.inbox[i].(*protocol.Members); ok {
				return m
			}
		}
		t.Fatalf("leaf %s got no list", l.id.ID.Short())
		return nil
	}
	for _, c := range []struct {
		l      *coreLeaf
		chains bool
	}{{newer, false}, {older, true}} {
		m := last(c.l)
		if int(m.Of) != n-1 || len(m.Members) != LeafList {
			t.Fatalf("a sample of %d entries of %d, want %d of %d", len(m.Members), m.Of, LeafList, n-1)
		}
		for i := range m.Members {
			r := &m.Members[i]
			if err := r.Verify(); err != nil {
				t.Fatal(err)
			}
			if has := len(r.Chain) > 0; has != c.chains {
				t.Fatalf("an entry to a leaf of v%d has a chain: %v", a.leaves[c.l.id.ID], has)
			}
		}
	}
}

// Two supernodes of one overlay that link swap digests and no entries: each
// holds what the other does. A neighbour that asks for entries again and
// again gets about a whole list every wantEvery, no more.
func TestMembershipNewLinkSwapsDigests(t *testing.T) {
	net := settledNet(t, 8)
	var a, b *coreNode
	for _, x := range net.nodes {
		for _, y := range net.nodes {
			if x != y && a == nil && !slices.Contains(x.Neighbours(0), y.peer()) {
				a, b = x, y
			}
		}
	}
	if a == nil {
		t.Fatal("every pair is linked")
	}
	before, digests := net.entries, a.got[protocol.TypeMemberDigest]+b.got[protocol.TypeMemberDigest]
	net.connect(a, b)
	a.memb.NeighbourUp(b.peer())
	b.memb.NeighbourUp(a.peer())
	net.run()
	if got := a.got[protocol.TypeMemberDigest] + b.got[protocol.TypeMemberDigest] - digests; got != 2 {
		t.Fatalf("%d digests for a new link, want one each way", got)
	}
	if got := net.entries - before; got != 0 {
		t.Fatalf("%d entries for a new link between supernodes that hold the same list", got)
	}

	var all protocol.KeyList
	for _, x := range net.nodes {
		all = append(all, protocol.IDPrefix(x.peer()))
	}
	before = net.entries
	const asks = 3000
	for range asks {
		nodeOut{a}.Send(b.peer(), &protocol.MemberWant{Peers: all})
	}
	net.run()
	got := net.entries - before
	t.Logf("%d asks for %d entries each: %d entries sent", asks, len(all), got)
	if got > maxMembersHeld+len(all) || got < len(all) {
		t.Fatalf("%d entries for %d asks of %d, want at most %d", got, asks, len(all), maxMembersHeld+len(all))
	}

	// Digests that claim a later entry of everyone, again and again, are
	// each a pass over the list: a few are answered, then one a minute.
	lie := &protocol.MemberDigest{}
	for _, p := range all {
		lie.Entries = append(lie.Entries, protocol.DigestEntry{Peer: p, Incarnation: 1 << 40, Beat: 1 << 62})
	}
	wants := a.got[protocol.TypeMemberWant]
	for range 100 {
		nodeOut{a}.Send(b.peer(), lie)
	}
	net.run()
	if got := a.got[protocol.TypeMemberWant] - wants; got < 1 || got > 1+maxMembersHeld/protocol.MaxDigest {
		t.Fatalf("%d of 100 lying digests answered, want 1 to %d", got, 1+maxMembersHeld/protocol.MaxDigest)
	}
}
