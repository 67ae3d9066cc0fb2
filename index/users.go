package index

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// Errors of the username directory.
var (
	ErrNameTaken   = errors.New("username taken by another key")
	ErrStaleRecord = errors.New("record older than the one held")
	ErrExpired     = errors.New("record expired")
	ErrUsersFull   = errors.New("username directory full")
	// ErrNoClaim is a claim of a free name by a batch put that may not
	// claim: the name was held when the put was taken in, and is free now.
	ErrNoClaim = errors.New("the name is free, and this put may not claim it")
)

// Users is one supernode's share of the username directory. A name belongs to
// the first key that claimed it, for as long as that key keeps its record from
// expiring; only a record signed by the same key with a higher sequence
// number replaces it. Records are verified before they are kept, so a store
// holds nothing its owner did not sign.
//
// Changes are made one at a time by Put, Prune and Drop, or in a Batch that
// a store writes to disk before it commits the batch here: readers then see
// only what is on disk.
type Users struct {
	wmu  sync.Mutex // one writer at a time: a batch, or Put, Prune, Drop
	mu   sync.Mutex // recs, for readers; writers hold wmu too
	recs map[string]*protocol.UserRecord
	max  int
}

// NewUsers makes a directory share that holds at most max records.
func NewUsers(max int) *Users {
	return &Users{recs: make(map[string]*protocol.UserRecord), max: max}
}

// CheckRecord verifies r, and that it is live at now and does not claim to
// live longer than a record may: what a record must pass before a Batch
// takes it.
func CheckRecord(r *protocol.UserRecord, now time.Time) error {
	if err := r.Verify(); err != nil {
		return err
	}
	if r.Expired(now) {
		return fmt.Errorf("%w: record for %q", ErrExpired, r.Name)
	}
	if limit := now.Add(protocol.MaxUserRecordTTL).Unix(); r.Expires > limit {
		return fmt.Errorf("%w: record for %q expires %d s ahead (at most %d)",
			protocol.ErrBadRequest, r.Name, r.Expires-now.Unix(), int64(protocol.MaxUserRecordTTL/time.Second))
	}
	return nil
}

// Put stores r if it is a valid claim or update at now. It reports whether
// the store changed: putting the record already held is no change, so copies
// passed between replicas settle.
func (u *Users) Put(r *protocol.UserRecord, now time.Time) (bool, error) {
	if u.Holds(r) {
		// Replicas pass every record on again when the ring changes:
		// spare the signature check for the copy already held.
		return false, nil
	}
	if err := CheckRecord(r, now); err != nil {
		return false, err
	}
	b := u.Begin(now)
	changed, err := b.Put(r, true)
	b.Commit()
	return changed, err
}

// Holds reports whether r is the record held, by name, key, sequence and
// signature. A record with the same signature and other content is forged;
// keeping what is held is right for it too.
func (u *Users) Holds(r *protocol.UserRecord) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.recs[r.Name]
	return old != nil && old.Seq == r.Seq && bytes.Equal(old.Key, r.Key) && bytes.Equal(old.Sig, r.Sig)
}

// Get returns the live record for name.
func (u *Users) Get(name string, now time.Time) (*protocol.UserRecord, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := u.recs[name]
	if r == nil || r.Expired(now) {
		return nil, false
	}
	return r.Clone(), true
}

// Prune drops the records expired at now and reports how many.
func (u *Users) Prune(now time.Time) int {
	b := u.Begin(now)
	n := b.Prune()
	b.Commit()
	return n
}

// Len is the number of records held, expired ones not yet pruned included.
func (u *Users) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.recs)
}

// Records returns copies of the live records for which keep reports true: what
// a supernode hands over when the ring moves names to another.
func (u *Users) Records(now time.Time, keep func(name string) bool) []*protocol.UserRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []*protocol.UserRecord
	for name, r := range u.recs {
		if !r.Expired(now) && (keep == nil || keep(name)) {
			out = append(out, r.Clone())
		}
	}
	return out
}

// Drop forgets name, once its records have moved to the supernodes that own it now.
func (u *Users) Drop(name string) {
	b := u.Begin(time.Time{})
	b.Drop(name)
	b.Commit()
}

// Restore puts back a record read from disk, as it was: it was checked when
// it was first stored. It is for filling an empty directory at start, before
// anyone else uses it.
func (u *Users) Restore(r *protocol.UserRecord) {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.recs[r.Name] = r.Clone()
}

// Batch is a set of changes to a directory share, each decided against the
// share and the changes staged before it, and made visible together by
// Commit. While a batch is open no other change can be made, so what it
// decided still holds when it commits.
type Batch struct {
	u      *Users
	now    time.Time
	staged map[string]*protocol.UserRecord // nil: dropped
	order  []string                        // names in the order first staged
	grown  int                             // names added, less names dropped
	done   bool
}

// Begin opens a batch at now. It waits for the batch open before it, if any,
// to commit or abort.
func (u *Users) Begin(now time.Time) *Batch {
	u.wmu.Lock()
	return &Batch{u: u, now: now, staged: make(map[string]*protocol.UserRecord)}
}

// held is the record for name as the batch sees it.
func (b *Batch) held(name string) *protocol.UserRecord {
	if r, ok := b.staged[name]; ok {
		return r
	}
	// Only a writer changes recs, and the batch is the writer.
	return b.u.recs[name]
}

func (b *Batch) stage(name string, r *protocol.UserRecord) {
	had := b.held(name) != nil
	if _, ok := b.staged[name]; !ok {
		b.order = append(b.order, name)
	}
	b.staged[name] = r
	switch {
	case had && r == nil:
		b.grown--
	case !had && r != nil:
		b.grown++
	}
}

// Put stages r, which the caller has passed through CheckRecord, if it is a
// valid claim or update. With claim false, a name that is free (no record,
// or an expired one) is not taken: ErrNoClaim. It reports whether r was
// staged.
func (b *Batch) Put(r *protocol.UserRecord, claim bool) (bool, error) {
	old := b.held(r.Name)
	if old != nil && old.Expired(b.now) {
		b.stage(r.Name, nil)
		old = nil
	}
	switch {
	case old == nil:
		if !claim {
			return false, fmt.Errorf("%w: %q", ErrNoClaim, r.Name)
		}
		if len(b.u.recs)+b.grown >= b.u.max && b.Prune() == 0 {
			return false, fmt.Errorf("%w: %d records", ErrUsersFull, len(b.u.recs)+b.grown)
		}
	case !bytes.Equal(old.Key, r.Key):
		return false, fmt.Errorf("%w: %q belongs to %s", ErrNameTaken, r.Name, old.Peer().Short())
	case r.Seq < old.Seq, r.Seq == old.Seq && !bytes.Equal(r.Sig, old.Sig):
		// One key signing two records with one number: keep the first seen.
		return false, fmt.Errorf("%w: %q has sequence %d, got %d", ErrStaleRecord, r.Name, old.Seq, r.Seq)
	case r.Seq == old.Seq:
		return false, nil
	}
	b.stage(r.Name, r.Clone())
	return true, nil
}

// Drop stages forgetting name.
func (b *Batch) Drop(name string) {
	if b.held(name) != nil {
		b.stage(name, nil)
	}
}

// Prune stages dropping every record expired at the batch's time, and
// reports how many.
func (b *Batch) Prune() int {
	n := 0
	for name, r := range b.u.recs {
		if _, ok := b.staged[name]; !ok && r.Expired(b.now) {
			b.stage(name, nil)
			n++
		}
	}
	for name, r := range b.staged {
		if r != nil && r.Expired(b.now) {
			b.stage(name, nil)
			n++
		}
	}
	return n
}

// Changes calls fn for each name the batch changes, in the order first
// staged, with the record it will hold, or nil when it drops the name.
func (b *Batch) Changes(fn func(name string, r *protocol.UserRecord)) {
	for _, name := range b.order {
		fn(name, b.staged[name])
	}
}

// Len is the number of names the batch changes.
func (b *Batch) Len() int { return len(b.order) }

// Commit makes the batch's changes visible and ends it.
func (b *Batch) Commit() {
	if b.done {
		return
	}
	b.done = true
	b.u.mu.Lock()
	for _, name := range b.order {
		if r := b.staged[name]; r != nil {
			b.u.recs[name] = r
		} else {
			delete(b.u.recs, name)
		}
	}
	b.u.mu.Unlock()
	b.u.wmu.Unlock()
}

// Abort ends the batch without changing anything.
func (b *Batch) Abort() {
	if b.done {
		return
	}
	b.done = true
	b.u.wmu.Unlock()
}
