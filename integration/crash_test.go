package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
)

// crashLab sizes: six supernodes, 24 peers attached to three each, and a
// third of the supernodes (30%, rounded up) killed with SIGKILL at once.
const (
	crashSupernodes = 6
	crashPeers      = 24
	crashKill       = 2
	// crashSearches are started in the first 2 s after the kill, one every
	// crashSearchEvery, each from a peer whose primary supernode died when
	// there is one.
	crashSearches    = 20
	crashSearchEvery = 100 * time.Millisecond
	// crashBound is how long re-homing may take before the test fails: a
	// correctness bound (the leaf never comes back), not the timing goal.
	crashBound = 30 * time.Second
)

// crashSample is what one round measured.
type crashSample struct {
	orphans   int
	detect    []time.Duration // per orphan and dead supernode: until it was no longer attached
	rehome    []time.Duration // per orphan: until it was on Attach live supernodes again
	searches  []crashSearch
	baseline  []crashSearch // before the kill
	notHedged int           // baseline searches sent to one supernode only
}

type crashSearch struct {
	at, took     time.Duration // start after the kill, and how long it took
	found        bool
	partial      bool
	queries      int
	primaryDead  bool
	err          string
	holderOrphan bool
}

// TestCrashFailover runs the real binaries at their defaults: supernodes
// admitted and joined the way an operator runs them, peers as `peer up`.
// Once every peer is on three supernodes, two of the six are killed with
// SIGKILL, so they send nothing. The test reports, over every round, how long
// the orphaned peers took to notice (from `peer status`, polled every 50 ms)
// and to be back on three live supernodes (the attach time the daemon reports),
// and how the searches started in the first 2 s after the kill did. It fails
// only if an orphan is not back within crashBound, or a search after the
// failover does not find its file: the timing goals are reported, not
// asserted. SUPERNET_CRASH_ROUNDS sets the rounds (default 1); each is a fresh
// overlay.
func TestCrashFailover(t *testing.T) {
	// Its timings are reported, not asserted, and its bound is generous:
	// it may share the machine with another test.
	t.Parallel()
	rounds := 1
	if s := os.Getenv("SUPERNET_CRASH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("SUPERNET_CRASH_ROUNDS=%q: want 1 to 100", s)
		}
		rounds = n
	}
	var all []crashSample
	for r := range rounds {
		ok := t.Run(fmt.Sprintf("round%d", r+1), func(t *testing.T) {
			all = append(all, crashRound(t, uint64(r+1)))
		})
		if !ok {
			break
		}
	}
	if len(all) == 0 {
		return
	}
	var detect, rehome, took, baseTook []time.Duration
	orphans, within, found, fast, queries, primaryDead, primaryDeadFound, baseQueries, notHedged := 0, 0, 0, 0, 0, 0, 0, 0, 0
	var searches []crashSearch
	for _, s := range all {
		orphans += s.orphans
		detect = append(detect, s.detect...)
		rehome = append(rehome, s.rehome...)
		searches = append(searches, s.searches...)
		notHedged += s.notHedged
		for _, b := range s.baseline {
			baseQueries += b.queries
			baseTook = append(baseTook, b.took)
		}
	}
	baseline := 0
	for _, s := range all {
		baseline += len(s.baseline)
	}
	for _, d := range rehome {
		if d <= 5*time.Second {
			within++
		}
	}
	for _, s := range searches {
		queries += s.queries
		if s.primaryDead {
			primaryDead++
		}
		if s.found {
			found++
			took = append(took, s.took)
			if s.primaryDead {
				primaryDeadFound++
			}
			if s.took <= 1500*time.Millisecond {
				fast++
			}
		}
	}
	t.Logf("%d rounds: %d supernodes, %d peers, %d killed with SIGKILL; %d orphaned peers",
		len(all), crashSupernodes, crashPeers, crashKill, orphans)
	t.Logf("noticed a dead supernode (%d samples, status polled every 50 ms): p50 %v, p99 %v, max %v (goal: within 2 s)",
		len(detect), pct(detect, 0.5), pct(detect, 0.99), pct(detect, 1))
	t.Logf("back on 3 live supernodes (%d samples): p50 %v, p99 %v, max %v; %d of %d within 5 s (goal: p99 within 5 s)",
		len(rehome), pct(rehome, 0.5), pct(rehome, 0.99), pct(rehome, 1), within, len(rehome))
	t.Logf("searches started in the first 2 s: %d of %d found their file (%d of %d from peers whose primary died), %d of %d within 1.5 s (goal); time p50 %v, p99 %v, max %v; %.2f queries per search",
		found, len(searches), primaryDeadFound, primaryDead, fast, len(searches), pct(took, 0.5), pct(took, 0.99), pct(took, 1), float64(queries)/float64(max(1, len(searches))))
	t.Logf("before the kill (nothing failing): %d searches, %.3f queries per search, %d sent to one supernode only; time p50 %v, max %v",
		baseline, float64(baseQueries)/float64(max(1, baseline)), notHedged, pct(baseTook, 0.5), pct(baseTook, 1))
	for _, s := range searches {
		if !s.found {
			t.Logf("search at +%v (primary dead %v, holder orphaned %v) did not find its file in %v: partial %v, %d queries, %s",
				s.at.Round(time.Millisecond), s.primaryDead, s.holderOrphan, s.took.Round(time.Millisecond), s.partial, s.queries, s.err)
		}
	}
}

// pct is the p-th percentile of d, rounded to the millisecond; p = 1 is the
// maximum.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return percentile(d, p).Round(time.Millisecond)
}

// crashPeer is one `peer up` of a round.
type crashPeer struct {
	d      daemon
	c      *localapi.Client
	id     string
	file   string // the one file it shares
	orphan bool
	lost   []string // the killed supernodes it was attached to
}

func crashRound(t *testing.T, seed uint64) crashSample {
	l := newLab(t)
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	targets := make([]string, crashSupernodes)
	procs := make([]*process, crashSupernodes)
	for i := range targets {
		var join []string
		if i > 0 {
			join = []string{targets[rng.IntN(i)]}
		}
		targets[i], _, procs[i] = l.supernodeWith(fmt.Sprintf("sn%d", i), nil, join...)
	}
	peers := make([]*crashPeer, crashPeers)
	for i := range peers {
		name := fmt.Sprintf("p%02d", i)
		share := filepath.Join(l.root, name+"-share")
		file := fmt.Sprintf("crash%02d.mp3", i)
		if err := os.MkdirAll(share, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(share, file), randomBytes(seed<<8|uint64(i), 4096), 0o644); err != nil {
			t.Fatal(err)
		}
		// Each peer on a loopback address of its own, as on its own host;
		// each knows one supernode, and the member list gives it the rest.
		d := l.daemon(name, share, targets[i%crashSupernodes], "--listen", fmt.Sprintf("127.3.%d.%d:0", seed%250, i+1))
		peers[i] = &crashPeer{d: d, c: localapi.NewClient(d.dataDir), file: file}
	}
	status := func(p *crashPeer) (apitype.Status, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return p.c.Status(ctx)
	}
	pollUntil(t, 60*time.Second, "every peer on 3 supernodes, with all 6 listed", func() (bool, string) {
		for _, p := range peers {
			st, err := status(p)
			if err != nil {
				return false, p.d.name + ": " + err.Error()
			}
			p.id = st.PeerID
			if len(st.Supernodes) != 3 || st.Supernode.Listed != crashSupernodes {
				return false, fmt.Sprintf("%s: %d supernodes, %d listed", p.d.name, len(st.Supernodes), st.Supernode.Listed)
			}
		}
		return true, ""
	})
	search := func(from *crashPeer, holder *crashPeer) crashSearch {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		start := time.Now()
		var hits []apitype.HitJSON
		res, err := from.c.Search(ctx, apitype.SearchRequest{Query: strings.TrimSuffix(holder.file, ".mp3")}, func(h []apitype.HitJSON) {
			hits = append(hits, h...)
		})
		s := crashSearch{took: time.Since(start), partial: res.Partial, queries: res.Queries}
		if err != nil {
			s.err = err.Error()
		}
		for _, h := range hits {
			for _, src := range h.Sources {
				if h.Name == holder.file && src.PeerID == holder.id {
					s.found = true
				}
			}
		}
		return s
	}
	// Every peer finds another's file before the kill: summaries have
	// spread, so what fails after it is the failover's doing.
	var out crashSample
	for i, p := range peers {
		holder := peers[(i+1)%crashPeers]
		pollUntil(t, 20*time.Second, p.d.name+" finding "+holder.file, func() (bool, string) {
			s := search(p, holder)
			return s.found, fmt.Sprintf("%+v", s)
		})
	}
	for i, p := range peers {
		s := search(p, peers[(i+7)%crashPeers])
		if !s.found {
			t.Fatalf("%s did not find %s before the kill: %+v", p.d.name, peers[(i+7)%crashPeers].file, s)
		}
		out.baseline = append(out.baseline, s)
		if s.queries == 1 {
			out.notHedged++
		}
	}

	victims := rng.Perm(crashSupernodes)[:crashKill]
	dead := map[string]bool{}
	for _, v := range victims {
		dead[strings.SplitN(targets[v], "@", 2)[0]] = true
	}
	primaryDead := map[*crashPeer]bool{}
	for _, p := range peers {
		st, err := status(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, sn := range st.Supernodes {
			if dead[sn.PeerID] {
				p.lost = append(p.lost, sn.PeerID)
			}
		}
		p.orphan = len(p.lost) > 0
		primaryDead[p] = dead[st.Supernode.PeerID]
		if p.orphan {
			out.orphans++
		}
	}
	// Searchers: peers whose primary died first, then other orphans, then the rest.
	searchers := slices.Clone(peers)
	rng.Shuffle(len(searchers), func(i, j int) { searchers[i], searchers[j] = searchers[j], searchers[i] })
	rank := func(p *crashPeer) int {
		switch {
		case primaryDead[p]:
			return 0
		case p.orphan:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(searchers, func(a, b *crashPeer) int { return rank(a) - rank(b) })

	killed := time.Now()
	for _, v := range victims {
		procs[v].mayExit = true
		if err := procs[v].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("killing sn%d: %v", v, err)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k := range crashSearches {
		from := searchers[k%len(searchers)]
		holder := peers[rng.IntN(crashPeers)]
		for holder == from {
			holder = peers[rng.IntN(crashPeers)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(killed.Add(time.Duration(k) * crashSearchEvery)))
			at := time.Since(killed)
			s := search(from, holder)
			s.at, s.primaryDead, s.holderOrphan = at, primaryDead[from], holder.orphan
			mu.Lock()
			out.searches = append(out.searches, s)
			mu.Unlock()
		}()
	}
	var failed []string
	for _, p := range peers {
		if !p.orphan {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			gone := map[string]bool{}
			var last string
			for time.Since(killed) < crashBound {
				st, err := status(p)
				now := time.Since(killed)
				if err != nil {
					last = err.Error()
					time.Sleep(50 * time.Millisecond)
					continue
				}
				attached := map[string]bool{}
				live, newest := 0, time.Time{}
				for _, sn := range st.Supernodes {
					attached[sn.PeerID] = true
					if sn.Connected && !dead[sn.PeerID] {
						live++
						if sn.Since.After(newest) {
							newest = sn.Since
						}
					}
				}
				mu.Lock()
				for _, id := range p.lost {
					if !attached[id] && !gone[id] {
						gone[id] = true
						out.detect = append(out.detect, now)
					}
				}
				mu.Unlock()
				if live == 3 {
					mu.Lock()
					out.rehome = append(out.rehome, max(newest.Sub(killed), 0))
					mu.Unlock()
					return
				}
				last = fmt.Sprintf("%d live supernodes: %+v", live, st.Supernodes)
				time.Sleep(50 * time.Millisecond)
			}
			mu.Lock()
			failed = append(failed, fmt.Sprintf("%s not back on 3 live supernodes after %v: %s", p.d.name, crashBound, last))
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, f := range failed {
		t.Error(f)
	}
	// After the failover every search finds its file.
	for i, p := range peers {
		holder := peers[(i+5)%crashPeers]
		pollUntil(t, 15*time.Second, p.d.name+" finding "+holder.file+" after the kill", func() (bool, string) {
			s := search(p, holder)
			return s.found, fmt.Sprintf("%+v", s)
		})
	}
	t.Logf("killed %v: %d of %d peers orphaned; noticed p50 %v, max %v; back p50 %v, max %v",
		victims, out.orphans, crashPeers, pct(out.detect, 0.5), pct(out.detect, 1), pct(out.rehome, 0.5), pct(out.rehome, 1))
	return out
}
