package supernode

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/index/indextest"
	"github.com/supernet-p2p/supernet/protocol"
)

// recOutbox records what the router sends, by link.
type recOutbox struct {
	mu  sync.Mutex
	got map[LinkID][]protocol.Message
}

func newRecOutbox() *recOutbox { return &recOutbox{got: map[LinkID][]protocol.Message{}} }

func (o *recOutbox) Send(to LinkID, m protocol.Message) {
	o.mu.Lock()
	o.got[to] = append(o.got[to], m)
	o.mu.Unlock()
}

// search runs a query from leaf and returns the names of the hits it got.
func (o *recOutbox) search(t *testing.T, r *Router, leaf LinkID, text string) []string {
	t.Helper()
	o.mu.Lock()
	o.got[leaf] = nil
	o.mu.Unlock()
	if err := r.Handle(leaf, &protocol.Query{ID: protocol.QueryID{byte(leaf)}, Text: text}); err != nil {
		t.Fatalf("query %q: %v", text, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var names []string
	for _, m := range o.got[leaf] {
		if h, ok := m.(*protocol.Hits); ok {
			for _, x := range h.Hits {
				names = append(names, x.Name)
			}
		}
	}
	return names
}

func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func records(ents []index.Entry) []protocol.FileRecord {
	fs := make([]protocol.FileRecord, len(ents))
	for i, e := range ents {
		fs[i] = protocol.FileRecord{ID: e.ContentID, Name: e.Name, Size: e.Size, Tags: e.Tags}
	}
	return fs
}

// wireFrames cuts fs into Publish messages as a leaf sends them, each as large as a
// frame allows, and returns them as the supernode's decoder gives them.
func wireFrames(t testing.TB, fs []protocol.FileRecord) []*protocol.Publish {
	t.Helper()
	var out []*protocol.Publish
	for len(fs) > 0 {
		n := min(len(fs), protocol.MaxFilesPerFrame)
		var frame []byte
		for {
			var err error
			frame, err = protocol.AppendFrame(nil, &protocol.Publish{Files: fs[:n]})
			if err == nil {
				break
			}
			if n /= 2; n == 0 {
				t.Fatal(err)
			}
		}
		m, err := protocol.ReadMessage(bytes.NewReader(frame), nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.(*protocol.Publish))
		fs = fs[n:]
	}
	return out
}

// TestHostileLeafPublishBounded: leaves that publish the most expensive records a
// leaf can send, up to and past their limits, at the default limits, cannot take the
// router's heap past those limits, while an honest leaf keeps publishing and its files
// keep being found.
func TestHostileLeafPublishBounded(t *testing.T) {
	tests := []struct {
		name    string
		leaves  int
		bound   func(RouterConfig) int64
		honest2 bool // whether the honest leaf can publish more during the attack
		oneAddr bool // the hostile leaves all come from one address
	}{
		// One leaf runs into its own budget; the index has room for others.
		{"one leaf", 1, func(c RouterConfig) int64 { return c.MaxIndexBytesPerLeaf }, true, false},
		// Enough leaves to fill the index run into its limit; honest files already
		// published are still found, and new ones are refused until room is made.
		{"leaves filling the index", 12, func(c RouterConfig) int64 { return c.MaxIndexBytes }, false, false},
		// As many leaves from one address run into the address's budget, and the
		// rest of the index stays open to everyone else.
		{"leaves of one address", 12, func(c RouterConfig) int64 { return c.MaxIndexBytesPerAddr }, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
			out := newRecOutbox()
			r := NewRouter(RouterConfig{Now: clock.Now}, out)
			cfg := r.Config()
			const honest = 1
			r.LeafUp(honest, LeafInfo{Peer: protocol.PeerID{1}, Addrs: []string{"198.51.100.1:4000"}})
			if err := r.Handle(honest, &protocol.Publish{Files: files("Hey Jude.mp3")}); err != nil {
				t.Fatal(err)
			}
			r.Tick()
			before := heapAlloc()
			peak := int64(0)
			for i := range tt.leaves {
				id := LinkID(100 + i)
				info := LeafInfo{Peer: protocol.PeerID{2, byte(i)}}
				if tt.oneAddr {
					info.Addrs = []string{fmt.Sprintf("192.0.2.66:%d", 1000+i)}
				}
				r.LeafUp(id, info)
				// Twice what the leaf's budget takes at the most a file can be
				// charged, and another frame after the refusal.
				n := int(2 * cfg.MaxIndexBytesPerLeaf / index.MaxCharge)
				frames := wireFrames(t, records(indextest.Hostile(int64(i), n)))
				frames = append(frames, wireFrames(t, records(indextest.Hostile(int64(1000+i), 10)))...)
				refused := 0
				for _, m := range frames {
					if err := r.Handle(id, m); err != nil {
						if !errors.Is(err, protocol.ErrOverloaded) {
							t.Fatalf("leaf %d: %v", i, err)
						}
						if refused == 0 {
							t.Logf("leaf %d refused: %v", i, err)
						}
						refused++
					}
				}
				if refused < 2 {
					t.Fatalf("leaf %d: %d of %d frames refused", i, refused, len(frames))
				}
				u := r.idx.SourceUsage(r.leaves[id].src)
				if u.Bytes > cfg.MaxIndexBytesPerLeaf || u.Files > cfg.MaxFilesPerLeaf {
					t.Fatalf("leaf %d holds %+v", i, u)
				}
				r.Tick()
				peak = max(peak, heapAlloc()-before)
			}
			bound := tt.bound(cfg)
			t.Logf("%d hostile leaves: heap grew by %.1f MiB at most, bound %.1f MiB; index counts %.1f MiB for %d files",
				tt.leaves, float64(peak)/(1<<20), float64(bound)/(1<<20), float64(r.idx.Usage().Bytes)/(1<<20), r.idx.Usage().Files)
			if peak > bound {
				t.Errorf("heap grew by %d bytes, bound %d", peak, bound)
			}

			if got := out.search(t, r, honest, "jude"); !slices.Equal(got, []string{"Hey Jude.mp3"}) {
				t.Fatalf("search for the honest file: %q", got)
			}
			// An honest share of typical size: a full index has room for a few files
			// of it at most.
			share := append(files("Hey Jude.mp3", "Let It Be.mp3"), records(indextest.Names(1, 300))...)
			err := r.Handle(honest, &protocol.Publish{Files: share[1:]})
			if tt.honest2 != (err == nil) {
				t.Fatalf("honest leaf's second publish: %v", err)
			}
			if err != nil {
				if !errors.Is(err, protocol.ErrOverloaded) {
					t.Fatal(err)
				}
				// The attackers leave; their room comes back.
				for i := range tt.leaves {
					r.LeafDown(LinkID(100 + i))
				}
				if err := r.Handle(honest, &protocol.Publish{Reset: true, Files: share}); err != nil {
					t.Fatalf("after the attackers left: %v", err)
				}
			}
			if got := out.search(t, r, honest, "let it be"); !slices.Equal(got, []string{"Let It Be.mp3"}) {
				t.Fatalf("search for the second honest file: %q", got)
			}
		})
	}
}

// TestPublishRefusals: each limit refuses a leaf with Overloaded; nothing more is
// indexed for it until it resets or unpublishes, and its earlier files stay.
func TestPublishRefusals(t *testing.T) {
	big := files("golf one.mp3", "golf two.mp3", "golf three.mp3", "golf four.mp3")
	perFile := index.Charge(index.Entry{ContentID: big[0].ID, Name: big[0].Name, Size: big[0].Size})
	tests := []struct {
		name string
		cfg  RouterConfig
	}{
		{"files per leaf", RouterConfig{MaxFilesPerLeaf: 2}},
		{"bytes per leaf", RouterConfig{MaxIndexBytesPerLeaf: 2*perFile + perFile/2}},
		{"bytes of the index", RouterConfig{MaxIndexBytes: 0}}, // set once leaf 1 has published
		{"publish rate", RouterConfig{MaxIndexBytesPerLeaf: 2*perFile + perFile/2, LeafPublishRate: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
			tt.cfg.Now = clock.Now
			out := newRecOutbox()
			r := NewRouter(tt.cfg, out)
			r.LeafUp(1, LeafInfo{Peer: protocol.PeerID{1}})
			r.LeafUp(2, LeafInfo{Peer: protocol.PeerID{2}})
			if err := r.Handle(2, &protocol.Publish{Files: files("hotel other leaf.mp3")}); err != nil {
				t.Fatal(err)
			}
			if tt.name == "bytes of the index" {
				r.idx.SetLimits(index.Limits{Bytes: r.idx.Usage().Bytes + 2*perFile + perFile/2})
			}
			if tt.name == "publish rate" {
				// The bucket holds the per-leaf budget: two files and a half.
				if err := r.Handle(1, &protocol.Publish{Files: big[:2]}); err != nil {
					t.Fatal(err)
				}
				// Half a file is left: the next file is taken, and the bucket goes
				// into debt.
				if err := r.Handle(1, &protocol.Publish{Reset: true, Files: big[:1]}); err != nil {
					t.Fatal(err)
				}
				r.Handle(1, &protocol.Publish{Reset: true})
			}
			err := r.Handle(1, &protocol.Publish{Files: big})
			if !errors.Is(err, protocol.ErrOverloaded) {
				t.Fatalf("publishing past the limit: %v", err)
			}
			t.Logf("refused: %v", err)
			n := r.idx.SourceUsage(r.leaves[1].src).Files
			switch {
			case tt.name == "publish rate":
				if n != 0 {
					t.Fatalf("%d files indexed, want none", n)
				}
			case tt.name == "bytes of the index":
				// The index counts each term once, so how many fit depends on which
				// words the first files brought.
				if n < 1 || n >= len(big) {
					t.Fatalf("%d files indexed, want some of %d", n, len(big))
				}
			case n != 2:
				t.Fatalf("%d files indexed, want 2", n)
			}
			if got := out.search(t, r, 2, "golf"); len(got) != n {
				t.Fatalf("search finds %q", got)
			}
			// Nothing more, even what would fit, until the leaf makes room.
			if err := r.Handle(1, &protocol.Publish{Files: files("india.mp3")}); !errors.Is(err, protocol.ErrOverloaded) {
				t.Fatalf("publish after the refusal: %v", err)
			}
			if tt.name == "publish rate" {
				clock.Advance(time.Duration(3*perFile) * time.Second)
				if err := r.Handle(1, &protocol.Publish{Reset: true, Files: big[:2]}); err != nil {
					t.Fatalf("publish after waiting: %v", err)
				}
			} else {
				if err := r.Handle(1, &protocol.Unpublish{IDs: []protocol.ContentID{big[0].ID}}); err != nil {
					t.Fatal(err)
				}
				if err := r.Handle(1, &protocol.Publish{Files: files("india.mp3")}); err != nil {
					t.Fatalf("publish after unpublishing: %v", err)
				}
			}
			if got := out.search(t, r, 2, "hotel"); len(got) != 1 {
				t.Fatalf("other leaf's file: %q", got)
			}
			if err := r.Handle(2, &protocol.Publish{Files: files("juliet.mp3")}); err != nil && tt.name != "bytes of the index" {
				t.Fatalf("other leaf: %v", err)
			}
		})
	}
}

// TestPublishAccounting: what each leaf is charged follows publish, duplicate
// publish, a file another leaf shares, unpublish, reset and LeafDown exactly: at every
// step it is the sum of index.Charge over the files it shares, each as its first
// publisher sent it.
func TestPublishAccounting(t *testing.T) {
	rec := func(name, cidName string) protocol.FileRecord {
		return protocol.FileRecord{ID: cidOf(cidName), Name: name, Size: 1}
	}
	x, y, z := rec("x ray.mp3", "x"), rec("yankee.mp3", "y"), rec("zulu zulu zulu zulu.flac", "z")
	xOther := rec("a different name for x", "x") // same content ID as x
	w, v := rec("whiskey.mp3", "w"), rec("victor.mp3", "v")
	type step struct {
		name string
		leaf LinkID
		m    protocol.Message // nil: LeafDown
		want map[LinkID][]protocol.FileRecord
	}
	steps := []step{
		{"publish", 1, &protocol.Publish{Files: []protocol.FileRecord{x, y, z}}, map[LinkID][]protocol.FileRecord{1: {x, y, z}}},
		{"publish again", 1, &protocol.Publish{Files: []protocol.FileRecord{x, x}}, map[LinkID][]protocol.FileRecord{1: {x, y, z}}},
		// The second leaf is charged for x as the first leaf published it.
		{"shared file", 2, &protocol.Publish{Files: []protocol.FileRecord{xOther, w}}, map[LinkID][]protocol.FileRecord{1: {x, y, z}, 2: {x, w}}},
		{"unpublish", 1, &protocol.Unpublish{IDs: []protocol.ContentID{y.ID, v.ID, w.ID}}, map[LinkID][]protocol.FileRecord{1: {x, z}, 2: {x, w}}},
		{"reset", 1, &protocol.Publish{Reset: true, Files: []protocol.FileRecord{v}}, map[LinkID][]protocol.FileRecord{1: {v}, 2: {x, w}}},
		{"reset to nothing", 2, &protocol.Publish{Reset: true}, map[LinkID][]protocol.FileRecord{1: {v}, 2: {}}},
		{"publish after reset", 2, &protocol.Publish{Files: []protocol.FileRecord{xOther, y}}, map[LinkID][]protocol.FileRecord{1: {v}, 2: {xOther, y}}},
		{"leaf down", 1, nil, map[LinkID][]protocol.FileRecord{2: {xOther, y}}},
		{"last leaf down", 2, nil, map[LinkID][]protocol.FileRecord{}},
	}
	r := NewRouter(RouterConfig{}, newRecOutbox())
	srcs := map[LinkID]index.SourceID{}
	for id := range LinkID(3) {
		if id > 0 {
			r.LeafUp(id, LeafInfo{Peer: protocol.PeerID{byte(id)}})
			srcs[id] = r.leaves[id].src
		}
	}
	for _, s := range steps {
		if s.m == nil {
			r.LeafDown(s.leaf)
		} else if err := r.Handle(s.leaf, s.m); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		total := 0
		for id, src := range srcs {
			var want index.Usage
			for _, f := range s.want[id] {
				want.Files++
				want.Bytes += index.Charge(index.Entry{ContentID: f.ID, Name: f.Name, Size: f.Size, Tags: f.Tags})
			}
			if got := r.idx.SourceUsage(src); got != want {
				t.Fatalf("%s: leaf %d holds %+v, want %+v", s.name, id, got, want)
			}
			total += want.Files
		}
		if got := r.idx.Usage().Files; got != total {
			t.Fatalf("%s: index holds %d files, want %d", s.name, got, total)
		}
	}
	if r.IndexedFiles() != 0 {
		t.Fatalf("%d files left", r.IndexedFiles())
	}
}

// TestPublishMemoryPerFile publishes typical files through the router as leaves send
// them and checks what each costs the heap, summary included, against 1 KiB.
// BenchmarkPublish1M measures the same at a million files.
func TestPublishMemoryPerFile(t *testing.T) {
	leaves, per := 40, 2500
	if publishRace || testing.Short() {
		leaves, per = 8, 2500
	}
	m := measurePublish(t, leaves, per)
	t.Log(m)
	if m.heapPerFile > 1024 {
		t.Errorf("%.0f bytes of heap per file, want at most 1024", m.heapPerFile)
	}
}

type publishMem struct {
	files                   int
	heapPerFile, rssPerFile float64
	peakRSSPerFile          float64 // -1 when the peak cannot be reset
	elapsed                 time.Duration
}

func (m publishMem) String() string {
	s := fmt.Sprintf("%d files: live heap %.0f B/file, RSS %.0f B/file", m.files, m.heapPerFile, m.rssPerFile)
	if m.peakRSSPerFile >= 0 {
		s += fmt.Sprintf(", peak RSS %.0f B/file", m.peakRSSPerFile)
	}
	return s + fmt.Sprintf(" (target 1024); publishing took %v", m.elapsed.Round(time.Millisecond))
}
