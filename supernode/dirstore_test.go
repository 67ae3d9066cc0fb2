package supernode

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

// clock is a settable clock for the store.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }

func storeRecord(t testing.TB, id *protocol.Identity, name string, seq uint64, expires time.Time) *protocol.UserRecord {
	t.Helper()
	r := &protocol.UserRecord{Name: name, Seq: seq, Expires: expires.Unix(),
		Addrs: []string{"192.0.2.7:6346"}, Supernodes: []protocol.PeerID{id.ID}}
	r.Sign(id)
	return r
}

func storeIdentity(t testing.TB) *protocol.Identity {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func openStore(t testing.TB, dir string, inc uint64, c *clock) *dirStore {
	t.Helper()
	now := time.Now
	if c != nil {
		now = c.now
	}
	st, err := openDirStoreClock(dir, inc, zerolog.New(zerolog.NewTestWriter(t)), now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.close() })
	return st
}

// putWait puts rec and waits for the answer.
func putWait(t testing.TB, st *dirStore, rec *protocol.UserRecord, claim bool) (bool, error) {
	t.Helper()
	type res struct {
		changed bool
		err     error
	}
	ch := make(chan res, 1)
	st.put(rec, claim, func(changed bool, err error) { ch <- res{changed, err} })
	select {
	case r := <-ch:
		return r.changed, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not answer a put within 10 s")
		return false, nil
	}
}

// syncStore waits until the writer has written everything queued before
// it: a put is answered once the batch holding it is written, and batches
// are written in order. This one may not claim, so it changes nothing.
func syncStore(t testing.TB, st *dirStore) {
	t.Helper()
	ch := make(chan struct{})
	st.put(&protocol.UserRecord{Name: "sync"}, false, func(bool, error) { close(ch) })
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the store's writer is stuck")
	}
}

// onDisk reads the names in the file, by opening it read-only.
func onDisk(t *testing.T, path string) map[string]bool {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := make(map[string]bool)
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error { out[string(k)] = true; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDirStoreSurvivesReopen: records put before a close are there after the
// store is opened again, first-key-wins still holds for them, and the
// incarnation rises with each open even when the clock says otherwise.
func TestDirStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	c := newClock(time.Now())
	alice, bob, mallory := storeIdentity(t), storeIdentity(t), storeIdentity(t)
	st := openStore(t, dir, 1000, c)
	if st.incarnation != 1000 {
		t.Fatalf("first incarnation %d, want 1000 (the one asked for)", st.incarnation)
	}
	exp := c.now().Add(time.Hour)
	for _, r := range []*protocol.UserRecord{storeRecord(t, alice, "alice", 1, exp), storeRecord(t, bob, "bob", 1, exp), storeRecord(t, alice, "alice", 2, exp)} {
		if ok, err := putWait(t, st, r, true); !ok || err != nil {
			t.Fatalf("put %s/%d: %v %v", r.Name, r.Seq, ok, err)
		}
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}

	// The clock stepped back: the incarnation asked for is lower than the last.
	st = openStore(t, dir, 10, c)
	if st.incarnation != 1001 {
		t.Fatalf("incarnation after a restart %d, want 1001 (above the last start's)", st.incarnation)
	}
	if got, ok := st.users.Get("alice", c.now()); !ok || got.Seq != 2 || got.Peer() != alice.ID {
		t.Fatalf("alice after reopen: %+v %v; want her second record", got, ok)
	}
	if _, ok := st.users.Get("bob", c.now()); !ok {
		t.Fatal("bob is gone after reopen")
	}
	if _, err := putWait(t, st, storeRecord(t, mallory, "bob", 99, exp), true); !errors.Is(err, index.ErrNameTaken) {
		t.Fatalf("another key claiming bob after reopen: %v, want taken", err)
	}
	if _, err := putWait(t, st, storeRecord(t, alice, "alice", 1, exp), true); !errors.Is(err, index.ErrStaleRecord) {
		t.Fatalf("alice's first record again after reopen: %v, want stale", err)
	}
	// A put that may not claim leaves a free name free.
	if _, err := putWait(t, st, storeRecord(t, mallory, "carol", 1, exp), false); !errors.Is(err, index.ErrNoClaim) {
		t.Fatalf("a put that may not claim took a free name: %v", err)
	}
	st.close()
	st = openStore(t, dir, 1_000_000, c)
	if st.incarnation != 1_000_000 {
		t.Fatalf("incarnation %d, want the higher one asked for", st.incarnation)
	}
	if n := st.users.Len(); n != 2 {
		t.Fatalf("%d records after the second reopen, want 2", n)
	}
	if st.Stats.Loaded.Load() != 2 {
		t.Fatalf("loaded %d", st.Stats.Loaded.Load())
	}
}

// TestDirStorePrunesDisk: records that expire are dropped from the file, by
// the writer's prune and by the load of a store that was down when they
// expired.
func TestDirStorePrunesDisk(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DirectoryFile)
	start := time.Now()
	c := newClock(start)
	st := openStore(t, dir, 1, c)
	id := storeIdentity(t)
	for i := 0; i < 50; i++ {
		life := time.Hour
		if i%2 == 1 {
			life = 3 * time.Hour
		}
		if _, err := putWait(t, st, storeRecord(t, id, fmt.Sprintf("u%d", i), 1, start.Add(life)), true); err != nil {
			t.Fatal(err)
		}
	}
	c.set(start.Add(2 * time.Hour))
	st.prune()
	syncStore(t, st)
	if n := st.users.Len(); n != 25 {
		t.Fatalf("%d records in memory after the prune, want 25", n)
	}
	st.close()
	if names := onDisk(t, path); len(names) != 25 || names["u0"] || !names["u1"] {
		t.Fatalf("%d records on disk after the prune (u0 %v, u1 %v), want the 25 live ones", len(names), names["u0"], names["u1"])
	}
	// Down while the rest expire: the load drops them from the file.
	c.set(start.Add(4 * time.Hour))
	st = openStore(t, dir, 2, c)
	if n := st.users.Len(); n != 0 {
		t.Fatalf("%d records loaded after all expired", n)
	}
	st.close()
	if names := onDisk(t, path); len(names) != 0 {
		t.Fatalf("%d expired records still on disk after the load", len(names))
	}
}

// TestDirStoreCorruptFileRefused: a file that is not a directory, a cut one,
// one with a damaged record, one with damaged pages and one of another
// layout each fail the open with an error naming the file; none opens as an
// empty directory.
func TestDirStoreCorruptFileRefused(t *testing.T) {
	// A good file with records to damage.
	good := t.TempDir()
	st := openStore(t, good, 1, nil)
	id := storeIdentity(t)
	exp := time.Now().Add(time.Hour)
	for i := 0; i < 400; i++ {
		if _, err := putWait(t, st, storeRecord(t, id, fmt.Sprintf("user%03d", i), 1, exp), true); err != nil {
			t.Fatal(err)
		}
	}
	st.close()
	file, err := os.ReadFile(filepath.Join(good, DirectoryFile))
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()

	flipRecord := bytes.Clone(file)
	at := bytes.Index(flipRecord, []byte("192.0.2.7:6346"))
	if at < 0 {
		t.Fatal("no record found in the file")
	}
	flipRecord[at+3] ^= 0x01 // "192.1.2.7": a valid record, but not what was written
	garbagePages := bytes.Clone(file)
	for i := 2 * page; i < min(len(garbagePages), 6*page); i++ {
		garbagePages[i] = byte(i*7 + 13)
	}
	otherLayout := t.TempDir()
	db, err := bolt.Open(filepath.Join(otherLayout, DirectoryFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket(bucketMeta)
		return b.Put(keyVersion, []byte{0, 0, 0, 0, 0, 0, 0, 9})
	})
	db.Close()
	otherFile, _ := os.ReadFile(filepath.Join(otherLayout, DirectoryFile))

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not a database", bytes.Repeat([]byte("not a bbolt file\n"), 1000), "damaged"},
		{"cut short", file[:page+100], "damaged"},
		{"a record altered", flipRecord, "checksum"},
		{"pages overwritten", garbagePages, "damaged"},
		{"another layout", otherFile, "layout version 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, DirectoryFile)
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := openDirStore(dir, 1, zerolog.New(zerolog.NewTestWriter(t)))
			if err == nil {
				n := st.users.Len()
				st.close()
				t.Fatalf("a damaged file opened, with %d records", n)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want it to name %s and say %q", err, path, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}

// TestDirStoreLocked: a second supernode on the same data directory is told
// the file is in use, rather than waiting for ever.
func TestDirStoreLocked(t *testing.T) {
	dir := t.TempDir()
	openStore(t, dir, 1, nil)
	st, err := openDirStore(dir, 1, zerolog.Nop())
	if err == nil {
		st.close()
		t.Fatal("a second store opened the same file")
	}
	if !strings.Contains(err.Error(), "another process holds it") {
		t.Fatalf("error %q", err)
	}
}

// TestDirStoreWriteFailureLosesNothing: a transaction that fails refuses its
// puts (unavailable), changes nothing in memory or on disk, and the store
// takes puts again once writing works.
func TestDirStoreWriteFailureLosesNothing(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, 1, nil)
	alice, bob := storeIdentity(t), storeIdentity(t)
	exp := time.Now().Add(time.Hour)
	if _, err := putWait(t, st, storeRecord(t, alice, "alice", 1, exp), true); err != nil {
		t.Fatal(err)
	}
	var failing atomic.Bool
	failing.Store(true)
	st.failWrite = func() error {
		if failing.Load() {
			return errors.New("no space left on device (injected)")
		}
		return nil
	}
	for _, r := range []*protocol.UserRecord{storeRecord(t, alice, "alice", 2, exp), storeRecord(t, bob, "bob", 1, exp)} {
		_, err := putWait(t, st, r, true)
		if protocol.StatusOf(err) != protocol.StatusUnavailable {
			t.Fatalf("put %s/%d while writes fail: %v, want unavailable", r.Name, r.Seq, err)
		}
	}
	// The same record again is no change, and still refused: the earlier
	// put of it in the batch was not written.
	if got, _ := st.users.Get("alice", time.Now()); got.Seq != 1 {
		t.Fatalf("alice's record in memory is seq %d after a failed write, want 1", got.Seq)
	}
	if _, ok := st.users.Get("bob", time.Now()); ok {
		t.Fatal("bob is in memory though his record was not written")
	}
	if st.Stats.WriteErrors.Load() == 0 {
		t.Fatal("no write error counted")
	}
	failing.Store(false)
	if ok, err := putWait(t, st, storeRecord(t, bob, "bob", 1, exp), true); !ok || err != nil {
		t.Fatalf("put once writes work: %v %v", ok, err)
	}
	st.close()
	st = openStore(t, dir, 2, nil)
	if got, ok := st.users.Get("alice", time.Now()); !ok || got.Seq != 1 {
		t.Fatalf("alice after reopen: %+v %v", got, ok)
	}
	if _, ok := st.users.Get("bob", time.Now()); !ok {
		t.Fatal("bob, put once writes worked, is gone after reopen")
	}
}

// TestDirStoreFullDisk fills a small tmpfs: the put that finds no space is
// refused (unavailable), every record acknowledged before it is still served
// and still in the file after a reopen. It needs root to mount the tmpfs.
func TestDirStoreFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	st, err := openDirStore(dir, 1, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	id := storeIdentity(t)
	exp := time.Now().Add(time.Hour)
	// Put until three puts were refused: once the file cannot grow, a put
	// may still fit in pages a failed one freed.
	var stored []string
	var refused []error
	for i := 0; i < 5000 && len(refused) < 3; i++ {
		name := fmt.Sprintf("user%04d", i)
		if _, err := putWait(t, st, storeRecord(t, id, name, 1, exp), true); err != nil {
			refused = append(refused, err)
			continue
		}
		stored = append(stored, name)
	}
	if len(refused) == 0 {
		t.Fatal("5000 records fit in a 256 KiB tmpfs")
	}
	for _, err := range refused {
		if protocol.StatusOf(err) != protocol.StatusUnavailable || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("put on a full disk: %v, want unavailable, saying why", err)
		}
	}
	t.Logf("%d records stored before the disk was full; then: %v", len(stored), refused[0])
	for _, name := range stored {
		if _, ok := st.users.Get(name, time.Now()); !ok {
			t.Fatalf("%s, acknowledged before the disk filled, is not served", name)
		}
	}
	if err := st.close(); err != nil {
		t.Logf("close on a full disk: %v", err)
	}
	st, err = openDirStore(dir, 2, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		// The incarnation may not fit either: that too is an error, not an empty directory.
		t.Logf("reopen on the full disk: %v", err)
		return
	}
	defer st.close()
	for _, name := range stored {
		if _, ok := st.users.Get(name, time.Now()); !ok {
			t.Fatalf("%s, acknowledged before the disk filled, is gone after reopen", name)
		}
	}
}

// TestDirStoreConcurrentPutsOneOwner: many keys claim one name at once
// through the writer; exactly one wins, and it is the one the file keeps.
func TestDirStoreConcurrentPutsOneOwner(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, 1, nil)
	exp := time.Now().Add(time.Hour)
	const n = 32
	var wg sync.WaitGroup
	var won atomic.Int32
	var winner atomic.Pointer[protocol.PeerID]
	for i := 0; i < n; i++ {
		id := storeIdentity(t)
		rec := storeRecord(t, id, "bob", 1, exp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.put(rec, true, func(changed bool, err error) {
				if err == nil && changed {
					won.Add(1)
					p := id.ID
					winner.Store(&p)
				} else if !errors.Is(err, index.ErrNameTaken) {
					t.Errorf("a losing claim: %v, want taken", err)
				}
			})
		}()
	}
	wg.Wait()
	syncStore(t, st)
	if won.Load() != 1 {
		t.Fatalf("%d keys won the name", won.Load())
	}
	st.close()
	st = openStore(t, dir, 2, nil)
	if got, ok := st.users.Get("bob", time.Now()); !ok || got.Peer() != *winner.Load() {
		t.Fatal("the file keeps another key than the one that won")
	}
}

// TestDirStoreRememberRing: a store that was on a ring with others says so
// after a restart, so that until it knows the ring again (or a while has
// passed) it lets no key claim a name it holds no record of; a store that
// never was, and joins nobody, may.
func TestDirStoreRememberRing(t *testing.T) {
	dir := t.TempDir()
	c := newClock(time.Now())
	st := openStore(t, dir, 1, c)
	if !st.aloneMayClaim(false) || st.aloneMayClaim(true) {
		t.Fatal("a new store alone: claims only when it joins nobody")
	}
	st.onRing()
	syncStore(t, st)
	if !st.aloneMayClaim(true) {
		t.Fatal("claims refused though the store knows the ring")
	}
	st.close()
	st = openStore(t, dir, 2, c)
	if st.aloneMayClaim(false) {
		t.Fatal("a restarted store that was on a ring lets keys claim before it knows the ring again")
	}
	c.set(c.now().Add(dirAloneSettle))
	if !st.aloneMayClaim(false) {
		t.Fatal("still no claims after the settle time")
	}
	// In memory nothing is remembered.
	mem := openStore(t, "", 1, nil)
	mem.onRing()
	if mem.ringBefore || !mem.aloneMayClaim(true) {
		t.Fatal("a memory store that saw the ring")
	}
}

// TestDirStoreQueueBounded: while the disk is stuck, what waits to be
// written stops at maxDirQueued records: further puts are refused at once
// (overloaded) and further copies dropped, the heap stays bounded, and once
// the disk moves again an honest put is stored.
func TestDirStoreQueueBounded(t *testing.T) {
	st := openStore(t, t.TempDir(), 1, nil)
	id := storeIdentity(t)
	exp := time.Now().Add(time.Hour)
	stuck, unstick := make(chan struct{}), make(chan struct{})
	var once sync.Once
	st.failWrite = func() error {
		once.Do(func() { close(stuck) })
		<-unstick
		return nil
	}
	released := false
	defer func() {
		if !released {
			close(unstick)
		}
	}()
	// One put holds the writer in its transaction.
	first := make(chan error, 1)
	st.put(storeRecord(t, id, "first", 1, exp), true, func(_ bool, err error) { first <- err })
	<-stuck

	// A flood: 64-record copy frames, as a neighbour would send, then puts.
	frame := make([]*protocol.UserRecord, protocol.MaxUserRecords)
	for i := range frame {
		frame[i] = storeRecord(t, id, fmt.Sprintf("flood%02d", i), 1, exp)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	accepted, dropped := 0, 0
	for i := 0; i < 1000; i++ {
		if st.copies(frame, func([]*protocol.UserRecord) {}) == nil {
			accepted++
		} else {
			dropped++
		}
	}
	var overloaded atomic.Int32
	for i := 0; i < 1000; i++ {
		st.put(frame[0], true, func(_ bool, err error) {
			if protocol.StatusOf(err) == protocol.StatusOverloaded {
				overloaded.Add(1)
			}
		})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if q := st.queued.Load(); q > maxDirQueued {
		t.Fatalf("%d records queued, more than %d", q, maxDirQueued)
	}
	if accepted*protocol.MaxUserRecords > maxDirQueued || dropped == 0 || overloaded.Load() == 0 {
		t.Fatalf("%d frames taken, %d dropped, %d puts refused: the queue is not bounded at %d records",
			accepted, dropped, overloaded.Load(), maxDirQueued)
	}
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("stuck disk: %d copy frames queued, %d dropped, %d puts refused overloaded; heap grew %d KiB", accepted, dropped, overloaded.Load(), growth/1024)
	if growth > 4<<20 {
		t.Fatalf("heap grew %d bytes with the writer stuck", growth)
	}
	close(unstick)
	released = true
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The writer works through the queue in batches of maxDirBatch.
	for deadline := time.Now().Add(10 * time.Second); st.queued.Load() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d records still queued 10 s after the disk moved", st.queued.Load())
		}
	}
	if ok, err := putWait(t, st, storeRecord(t, storeIdentity(t), "honest", 1, exp), true); !ok || err != nil {
		t.Fatalf("an honest put after the flood: %v %v", ok, err)
	}
}

// TestDirStoreLargestRecordFits: the largest record a put may carry is
// stored and read back: the bound checked at load is above it.
func TestDirStoreLargestRecordFits(t *testing.T) {
	id := storeIdentity(t)
	r := &protocol.UserRecord{Name: strings.Repeat("n", protocol.MaxUsernameLen), Seq: ^uint64(0), Expires: 1 << 62, NAT: protocol.NATUDPBlocked}
	for i := 0; i < protocol.MaxUserSNs; i++ {
		r.Supernodes = append(r.Supernodes, id.ID)
	}
	for i := 0; i < protocol.MaxAddrs; i++ {
		a := fmt.Sprintf("%d.example:%d", i, 6346)
		r.Addrs = append(r.Addrs, strings.Repeat("h", protocol.MaxAddrLen-len(a))+a)
	}
	r.Sign(id)
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	v, err := encodeStored(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) > maxStoredRecord {
		t.Fatalf("the largest record takes %d bytes stored, above the %d checked at load", len(v), maxStoredRecord)
	}
	got, err := decodeStored([]byte(r.Name), v)
	if err != nil || got.Verify() != nil {
		t.Fatalf("read back: %v", err)
	}
	t.Logf("largest record: %d bytes stored", len(v))
}
