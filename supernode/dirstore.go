package supernode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

// DirectoryFile is the file in a supernode's data directory that keeps its
// share of the username directory and its incarnation.
const DirectoryFile = "directory.db"

// Bounds of the directory's store.
const (
	// maxDirQueued bounds the records waiting to be written: a put beyond
	// it is refused (overloaded), a replica copy beyond it dropped (the
	// sender copies again at its next sweep). About 12 MB at most.
	maxDirQueued = 8192
	// maxDirBatch is how many records one transaction writes at most: one
	// fsync covers them all.
	maxDirBatch = 1024
	// maxStoredRecord bounds a stored value: the largest record that
	// passes protocol.UserRecord.Check is well below it.
	maxStoredRecord = 4096
	// dirStoreVersion is the layout of the file; another one is refused.
	dirStoreVersion = 1
	// dirLockWait is how long opening waits for another process that holds
	// the file.
	dirLockWait = 2 * time.Second
)

var (
	bucketUsers    = []byte("users") // name -> crc32c(body) 4 bytes big-endian, body (msgpack record)
	bucketMeta     = []byte("meta")
	keyVersion     = []byte("version")     // uint64 big-endian
	keyIncarnation = []byte("incarnation") // uint64 big-endian: the last start's
	keyRing        = []byte("ring")        // present once the supernode has been on a ring with others
	crcTable       = crc32.MakeTable(crc32.Castagnoli)
)

// ErrDirectoryCorrupt is a directory file that cannot be read back whole.
var ErrDirectoryCorrupt = errors.New("username directory file is damaged")

// dirStore keeps the directory share both in memory (index.Users, what
// lookups read) and, with a data directory, in a bbolt file. Every change
// goes through one writer goroutine that decides it against the share,
// writes a batch of them in one transaction (one fsync), and only then
// makes them visible and answers: a put is on disk before it is
// acknowledged, and a write that fails changes nothing.
type dirStore struct {
	users       *index.Users
	db          *bolt.DB // nil: memory only
	now         func() time.Time
	path        string
	incarnation uint64
	log         zerolog.Logger
	opened      time.Time
	// ringBefore: an earlier start of this store was on a ring with other
	// supernodes; ringNow: this one has been.
	ringBefore      bool
	ringNow, marked atomic.Bool

	ops    chan *dirOp
	queued atomic.Int64 // records in ops
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	// failWrite, when set, fails transactions (tests).
	failWrite func() error

	Stats DirStoreStats
}

// DirStoreStats count the store's work.
type DirStoreStats struct {
	Commits, Written, Deleted, WriteErrors, Loaded, Refused atomic.Uint64
}

type dirOpKind uint8

const (
	opPut    dirOpKind = iota // one record, answered
	opCopies                  // replica copies, the fresh ones reported
	opDrop                    // forget a name if cond still holds
	opPrune                   // forget what expired
	opMark                    // note in the file that we have been on a ring with others
)

type dirOp struct {
	kind  dirOpKind
	recs  []*protocol.UserRecord // verified by the caller (CheckRecord)
	claim bool                   // opPut: may claim a free name
	name  string
	cond  func() bool
	// put is called for opPut, copied for opCopies, from the writer.
	put    func(changed bool, err error)
	copied func(fresh []*protocol.UserRecord)
}

func (op *dirOp) size() int64 { return int64(max(1, len(op.recs))) }

// openDirStore opens the directory file in dataDir, or keeps the share in
// memory only when dataDir is empty (in-process supernodes: promoted ones
// run on a new identity each start, so nothing they held would be theirs
// to serve again). It sets the incarnation: above the last start's and at
// least incarnation (the start time in ms by default), and stores it before
// returning, so it rises across restarts even if the clock steps back.
func openDirStore(dataDir string, incarnation uint64, log zerolog.Logger) (*dirStore, error) {
	return openDirStoreClock(dataDir, incarnation, log, time.Now)
}

// openDirStoreClock is openDirStore with the clock that decides expiry.
func openDirStoreClock(dataDir string, incarnation uint64, log zerolog.Logger, now func() time.Time) (*dirStore, error) {
	st := &dirStore{
		users: index.NewUsers(maxUserRecords), incarnation: incarnation, log: log, now: now, opened: now(),
		ops: make(chan *dirOp, maxDirQueued), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if dataDir != "" {
		st.path = filepath.Join(dataDir, DirectoryFile)
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("username directory: %w", err)
		}
		start := time.Now()
		if err := st.open(); err != nil {
			if st.db != nil {
				st.db.Close()
			}
			return nil, err
		}
		log.Info().Int("user_records", st.users.Len()).Uint64("incarnation", st.incarnation).
			Dur("took", time.Since(start)).Str("path", st.path).Msg("username directory loaded")
	}
	go st.run()
	return st, nil
}

// open opens the file, stores the new incarnation and loads the records.
// bbolt panics on some damaged pages, and a page that points outside the
// file faults: both end as an error naming the file.
func (st *dirStore) open() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s: %v (move it aside to start with an empty share; the other replicas and the owners' puts fill it again)",
				ErrDirectoryCorrupt, st.path, p)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err := bolt.Open(st.path, 0o600, &bolt.Options{Timeout: dirLockWait, FreelistType: bolt.FreelistMapType})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return fmt.Errorf("username directory %s: another process holds it (a supernode already running on this data directory?)", st.path)
	case err != nil:
		return fmt.Errorf("%w: %s: %v (move it aside to start with an empty share)", ErrDirectoryCorrupt, st.path, err)
	}
	st.db = db
	if err := db.Update(st.initMeta); err != nil {
		return err
	}
	return st.load()
}

// initMeta checks the layout version, or sets it in a new file, and stores
// the incarnation of this start.
func (st *dirStore) initMeta(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if tx.Bucket(bucketUsers) != nil {
			return fmt.Errorf("%w: %s has records but no layout version", ErrDirectoryCorrupt, st.path)
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keyVersion, binary.BigEndian.AppendUint64(nil, dirStoreVersion)); err != nil {
			return err
		}
	}
	v := meta.Get(keyVersion)
	if len(v) != 8 {
		return fmt.Errorf("%w: %s has no layout version", ErrDirectoryCorrupt, st.path)
	}
	if n := binary.BigEndian.Uint64(v); n != dirStoreVersion {
		return fmt.Errorf("username directory %s has layout version %d; this supernode reads version %d", st.path, n, dirStoreVersion)
	}
	if last := meta.Get(keyIncarnation); len(last) == 8 {
		st.incarnation = max(st.incarnation, binary.BigEndian.Uint64(last)+1)
	} else if last != nil {
		return fmt.Errorf("%w: %s: incarnation of %d bytes", ErrDirectoryCorrupt, st.path, len(last))
	}
	if err := meta.Put(keyIncarnation, binary.BigEndian.AppendUint64(nil, st.incarnation)); err != nil {
		return err
	}
	st.ringBefore = meta.Get(keyRing) != nil
	_, err := tx.CreateBucketIfNotExists(bucketUsers)
	return err
}

// load reads every record back. A record that does not read back (checksum,
// encoding, bounds, a name other than its key) fails the start: serving on
// without it would let another key claim the name. Records expired while the
// supernode was down are deleted.
func (st *dirStore) load() error {
	now := st.now()
	var expired [][]byte
	err := st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			r, err := decodeStored(k, v)
			if err != nil {
				return fmt.Errorf("%w: %s: record %q: %v (move the file aside to start with an empty share)", ErrDirectoryCorrupt, st.path, k, err)
			}
			if r.Expired(now) {
				expired = append(expired, append([]byte(nil), k...))
				return nil
			}
			st.users.Restore(r)
			st.Stats.Loaded.Add(1)
			return nil
		})
	})
	if err != nil || len(expired) == 0 {
		return err
	}
	return st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		st.Stats.Deleted.Add(uint64(len(expired)))
		return nil
	})
}

func encodeStored(r *protocol.UserRecord) ([]byte, error) {
	body, err := msgpack.Marshal(r)
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), crc32.Checksum(body, crcTable)), body...), nil
}

func decodeStored(k, v []byte) (*protocol.UserRecord, error) {
	if len(v) < 4 || len(v) > maxStoredRecord {
		return nil, fmt.Errorf("stored value of %d bytes", len(v))
	}
	v = bytes.Clone(v) // v is the file's memory map, valid only in the transaction
	body := v[4:]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(v) {
		return nil, errors.New("checksum mismatch")
	}
	r := new(protocol.UserRecord)
	if err := msgpack.Unmarshal(body, r); err != nil {
		return nil, err
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	if r.Name != string(k) {
		return nil, fmt.Errorf("holds the record of %q", r.Name)
	}
	return r, nil
}

// get, holds and records read the share in memory, as it is on disk.
func (st *dirStore) get(name string, now time.Time) (*protocol.UserRecord, bool) {
	return st.users.Get(name, now)
}

func (st *dirStore) holds(rec *protocol.UserRecord) bool { return st.users.Holds(rec) }

func (st *dirStore) records(now time.Time) []*protocol.UserRecord { return st.users.Records(now, nil) }

// errDirClosed answers what comes in while the supernode stops.
var errDirClosed = fmt.Errorf("%w: the supernode is stopping", protocol.ErrUnavailable)

// enqueue hands op to the writer, or refuses it when too much waits.
func (st *dirStore) enqueue(op *dirOp) error {
	n := op.size()
	if st.queued.Add(n) > maxDirQueued {
		st.queued.Add(-n)
		st.Stats.Refused.Add(1)
		return fmt.Errorf("%w: %d username records wait to be written", protocol.ErrOverloaded, maxDirQueued)
	}
	select {
	case <-st.stop:
		st.queued.Add(-n)
		return errDirClosed
	default:
	}
	select {
	case st.ops <- op:
		return nil
	default:
		// The channel holds maxDirQueued ops and each counts at least 1.
		st.queued.Add(-n)
		return fmt.Errorf("%w: the directory's write queue is full", protocol.ErrOverloaded)
	}
}

// put stores rec (verified by the caller) and calls done once it is on disk,
// or refused. With claim false it does not take a free name.
func (st *dirStore) put(rec *protocol.UserRecord, claim bool, done func(changed bool, err error)) {
	op := &dirOp{kind: opPut, recs: []*protocol.UserRecord{rec}, claim: claim, put: done}
	if err := st.enqueue(op); err != nil {
		done(false, err)
	}
}

// copies stores replica copies (verified by the caller) and calls done with
// the ones that were news, once they are on disk. Copies that find the
// queue full are dropped: their sender copies again at its next sweep.
func (st *dirStore) copies(recs []*protocol.UserRecord, done func(fresh []*protocol.UserRecord)) error {
	if len(recs) == 0 {
		return nil
	}
	return st.enqueue(&dirOp{kind: opCopies, recs: recs, claim: true, copied: done})
}

// drop forgets name if cond still reports true when the writer gets to it.
func (st *dirStore) drop(name string, cond func() bool) {
	st.enqueue(&dirOp{kind: opDrop, name: name, cond: cond})
}

// prune forgets the records expired by the time the writer gets to it, on
// disk too.
func (st *dirStore) prune() {
	st.enqueue(&dirOp{kind: opPrune})
}

// onRing notes that the ring has other supernodes than us, in the file too.
func (st *dirStore) onRing() {
	st.ringNow.Store(true)
	if !st.ringBefore && st.db != nil && st.marked.CompareAndSwap(false, true) {
		if st.enqueue(&dirOp{kind: opMark}) != nil {
			st.marked.Store(false)
		}
	}
}

// dirAloneSettle is how long a supernode that should be on a ring with
// others (it was before a restart, or it joins some), and knows none yet,
// refuses claims of names it holds no record of: the records it lacks are
// on the others, which it cannot ask yet. Its Join links come up at once,
// and the others redial it within their idle timeout (15 s by default); a
// minute covers both with room, and a supernode still alone then is taken
// to be alone.
const dirAloneSettle = time.Minute

// aloneMayClaim reports whether a supernode that knows no other may let a
// key claim a name it holds no record of; joins reports whether it is
// configured to join others.
func (st *dirStore) aloneMayClaim(joins bool) bool {
	return !st.ringBefore && !joins || st.ringNow.Load() || st.now().Sub(st.opened) >= dirAloneSettle
}

// close stops the writer once what is queued is written, and closes the file.
func (st *dirStore) close() error {
	var err error
	st.once.Do(func() {
		close(st.stop)
		<-st.done
		if st.db != nil {
			err = st.db.Close()
		}
	})
	return err
}

// run is the writer.
func (st *dirStore) run() {
	defer close(st.done)
	for {
		var op *dirOp
		select {
		case op = <-st.ops:
		case <-st.stop:
			// Write what was taken in: its senders may still be waiting.
			for {
				select {
				case op = <-st.ops:
					st.apply(st.gather(op))
				default:
					return
				}
			}
		}
		st.apply(st.gather(op))
	}
}

// gather takes op and whatever else waits, up to maxDirBatch records.
func (st *dirStore) gather(op *dirOp) []*dirOp {
	batch := []*dirOp{op}
	n := op.size()
	for n < maxDirBatch {
		select {
		case next := <-st.ops:
			batch = append(batch, next)
			n += next.size()
		default:
			return batch
		}
	}
	return batch
}

// opResult is what an op came to, reported once the batch is written.
type opResult struct {
	changed bool
	err     error
	fresh   []*protocol.UserRecord
}

// apply decides a batch of ops, writes their changes in one transaction,
// and only when that succeeded makes them visible. A failed write changes
// nothing and refuses every put of the batch, those that would have been no
// change included: they were decided against what is not on disk.
func (st *dirStore) apply(ops []*dirOp) {
	var n int64
	conds := make([]bool, len(ops))
	mark := false
	for i, op := range ops {
		n += op.size()
		mark = mark || op.kind == opMark
		if op.kind == opDrop {
			conds[i] = op.cond == nil || op.cond() // outside the batch: cond may take other locks
		}
	}
	defer st.queued.Add(-n)
	b := st.users.Begin(st.now())
	res := make([]opResult, len(ops))
	for i, op := range ops {
		switch op.kind {
		case opPut:
			res[i].changed, res[i].err = b.Put(op.recs[0], op.claim)
		case opCopies:
			for _, r := range op.recs {
				if ok, err := b.Put(r, true); ok {
					res[i].fresh = append(res[i].fresh, r)
				} else if err != nil {
					st.log.Debug().Err(err).Str("user", r.Name).Msg("replica copy refused")
				}
			}
		case opDrop:
			if conds[i] {
				b.Drop(op.name)
			}
		case opPrune:
			b.Prune()
		}
	}
	if err := st.write(b, mark); err != nil {
		b.Abort()
		st.Stats.WriteErrors.Add(1)
		st.log.Error().Err(err).Int("changes", b.Len()).Msg("username directory write failed; the changes are refused")
		werr := fmt.Errorf("%w: the username directory cannot be written: %v", protocol.ErrUnavailable, err)
		for i := range res {
			if res[i].err == nil {
				res[i] = opResult{err: werr}
			}
		}
		if mark {
			st.marked.Store(false)
		}
	} else {
		b.Commit()
	}
	for i, op := range ops {
		switch {
		case op.put != nil:
			op.put(res[i].changed, res[i].err)
		case op.copied != nil && len(res[i].fresh) > 0:
			op.copied(res[i].fresh)
		}
	}
}

// write puts a batch's changes in the file, in one transaction, with the
// mark that we have been on a ring with others.
func (st *dirStore) write(b *index.Batch, mark bool) error {
	if st.db == nil || b.Len() == 0 && !mark {
		return nil
	}
	var written, deleted uint64
	err := st.db.Update(func(tx *bolt.Tx) error {
		if st.failWrite != nil {
			if err := st.failWrite(); err != nil {
				return err
			}
		}
		if mark {
			if err := tx.Bucket(bucketMeta).Put(keyRing, []byte{1}); err != nil {
				return err
			}
		}
		bk := tx.Bucket(bucketUsers)
		var err error
		b.Changes(func(name string, r *protocol.UserRecord) {
			if err != nil {
				return
			}
			if r == nil {
				err = bk.Delete([]byte(name))
				deleted++
				return
			}
			var v []byte
			if v, err = encodeStored(r); err == nil {
				err = bk.Put([]byte(name), v)
				written++
			}
		})
		return err
	})
	if err == nil {
		st.Stats.Commits.Add(1)
		st.Stats.Written.Add(written)
		st.Stats.Deleted.Add(deleted)
	}
	return err
}

// fileSize is the size of the directory file in bytes (0 in memory).
func (st *dirStore) fileSize() int64 {
	if st.path == "" {
		return 0
	}
	fi, err := os.Stat(st.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
