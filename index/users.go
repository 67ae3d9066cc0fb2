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
)

// Users is one supernode's share of the username directory. A name belongs to
// the first key that claimed it, for as long as that key keeps its record from
// expiring; only a record signed by the same key with a higher sequence
// number replaces it. Records are verified before they are kept, so a store
// holds nothing its owner did not sign.
type Users struct {
	mu   sync.Mutex
	recs map[string]*protocol.UserRecord
	max  int
}

// NewUsers makes a directory share that holds at most max records.
func NewUsers(max int) *Users {
	return &Users{recs: make(map[string]*protocol.UserRecord), max: max}
}

// Put stores r if it is a valid claim or update at now. It reports whether
// the store changed: putting the record already held is no change, so copies
// passed between replicas settle.
func (u *Users) Put(r *protocol.UserRecord, now time.Time) (bool, error) {
	if u.holds(r) {
		// Replicas pass every record on again when the ring changes:
		// spare the signature check for the copy already held.
		return false, nil
	}
	if err := r.Verify(); err != nil {
		return false, err
	}
	if r.Expired(now) {
		return false, fmt.Errorf("%w: record for %q", ErrExpired, r.Name)
	}
	if limit := now.Add(protocol.MaxUserRecordTTL).Unix(); r.Expires > limit {
		return false, fmt.Errorf("%w: record for %q expires %d s ahead (at most %d)",
			protocol.ErrBadRequest, r.Name, r.Expires-now.Unix(), int64(protocol.MaxUserRecordTTL/time.Second))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.recs[r.Name]
	if old != nil && old.Expired(now) {
		delete(u.recs, r.Name)
		old = nil
	}
	switch {
	case old == nil:
		if len(u.recs) >= u.max && u.pruneLocked(now) == 0 {
			return false, fmt.Errorf("%w: %d records", ErrUsersFull, len(u.recs))
		}
	case !bytes.Equal(old.Key, r.Key):
		return false, fmt.Errorf("%w: %q belongs to %s", ErrNameTaken, r.Name, old.Peer().Short())
	case r.Seq < old.Seq, r.Seq == old.Seq && !bytes.Equal(r.Sig, old.Sig):
		// One key signing two records with one number: keep the first seen.
		return false, fmt.Errorf("%w: %q has sequence %d, got %d", ErrStaleRecord, r.Name, old.Seq, r.Seq)
	case r.Seq == old.Seq:
		return false, nil
	}
	u.recs[r.Name] = r.Clone()
	return true, nil
}

// holds reports whether r is the record held, by name, key, sequence and
// signature. A record with the same signature and other content is forged;
// keeping what is held is right for it too.
func (u *Users) holds(r *protocol.UserRecord) bool {
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
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.pruneLocked(now)
}

func (u *Users) pruneLocked(now time.Time) int {
	n := 0
	for name, r := range u.recs {
		if r.Expired(now) {
			delete(u.recs, name)
			n++
		}
	}
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
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.recs, name)
}
