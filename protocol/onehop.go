package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// VersionOneHop is the first version with one-hop summaries: every
// supernode keeps a Bloom filter of every other's index, and sends a query
// straight to those whose filters hold all its terms.
const VersionOneHop uint16 = 8

// Bounds of the one-hop summaries.
const (
	MaxSummaryUpdates = 4096      // updates in one summaries message
	MaxSummaryWants   = 4096      // origins in one summary_want message
	MaxSummaryFilter  = 1<<20 + 3 // a Bloom filter of index.MaxBloomBits, encoded
)

// SummaryUpdate is one version of a supernode's one-hop summary: a Bloom
// filter of the keywords and content IDs its leaves share. The origin
// numbers its versions and signs each; other supernodes pass them on
// unchanged. An update carries the whole filter, or the change from
// version Base (an index.Bloom diff), or neither: an announcement that the
// sender holds version Ver, which a supernode holding an older one asks for
// with SummaryWant.
type SummaryUpdate struct {
	Origin PeerID `msgpack:"o"`
	Inc    uint64 `msgpack:"i,omitempty"` // the origin's incarnation: versions restart with it
	Ver    uint64 `msgpack:"v"`
	Base   uint64 `msgpack:"b,omitempty"`
	Filter []byte `msgpack:"f,omitempty"`
	Diff   []byte `msgpack:"d,omitempty"`
	// Leaves is how many leaves the origin had when it issued the version,
	// for picking the least loaded of equal candidates.
	Leaves uint32 `msgpack:"l,omitempty"`
	// Sig is the origin's signature over SummarySigned; empty in an
	// announcement.
	Sig []byte `msgpack:"s,omitempty"`
}

// Announce reports whether u carries no filter, only its version.
func (u *SummaryUpdate) Announce() bool { return u.Filter == nil && u.Diff == nil }

func (u *SummaryUpdate) wireCheck() error {
	if u.Origin.IsZero() || u.Ver == 0 {
		return invalid("summary update without an origin or a version")
	}
	return nil
}

func (u *SummaryUpdate) check() error {
	if err := u.wireCheck(); err != nil {
		return err
	}
	switch {
	case u.Filter != nil && u.Diff != nil:
		return invalid("summary update with both a filter and a diff")
	case u.Filter != nil && u.Base != 0:
		return invalid("whole summary filter with a base version")
	case u.Diff != nil && (u.Base == 0 || u.Base >= u.Ver):
		return invalid("summary diff from version %d to %d", u.Base, u.Ver)
	case len(u.Filter) > MaxSummaryFilter || len(u.Diff) > MaxSummaryFilter:
		return invalid("summary of %d+%d bytes (max %d)", len(u.Filter), len(u.Diff), MaxSummaryFilter)
	case !u.Announce() && len(u.Sig) != ed25519.SignatureSize:
		return invalid("summary signature of %d bytes (want %d)", len(u.Sig), ed25519.SignatureSize)
	case u.Announce() && len(u.Sig) != 0:
		return invalid("signed summary announcement")
	}
	return nil
}

const summaryDomain = "supernet one-hop summary v1\x00"

// SummarySigned is what the origin of a summary signs: who it is, which
// version of which incarnation, and the hash of the whole filter's encoding.
// A diff is checked by the filter it yields.
func SummarySigned(origin PeerID, inc, ver uint64, filter []byte) []byte {
	h := sha256.Sum256(filter)
	b := append([]byte(summaryDomain), origin[:]...)
	b = binary.BigEndian.AppendUint64(b, inc)
	b = binary.BigEndian.AppendUint64(b, ver)
	return append(b, h[:]...)
}

// VerifySummary checks sig, made by key, over version ver of the filter.
// The key must be origin's.
func VerifySummary(key ed25519.PublicKey, origin PeerID, inc, ver uint64, filter, sig []byte) error {
	if PeerIDFromPublicKey(key) != origin {
		return fmt.Errorf("%w: summary of %s checked with another's key", ErrBadSignature, origin.Short())
	}
	if !ed25519.Verify(key, SummarySigned(origin, inc, ver, filter), sig) {
		return fmt.Errorf("%w: summary version %d of %s", ErrBadSignature, ver, origin.Short())
	}
	return nil
}

// Summaries carries one-hop summary updates between linked supernodes (v8).
type Summaries struct {
	Updates []SummaryUpdate `msgpack:"u"`
}

// SummaryWant asks a linked supernode for the current summary of each
// origin (v8): one it announced newer than ours, or one whose diff we could
// not apply. Have (v9) is the version of each origin the asker holds, 0 for
// none: the diffs from it are enough when the answerer still has them.
type SummaryWant struct {
	Origins PeerList    `msgpack:"o"`
	Have    VersionList `msgpack:"h,omitempty"`
}

// PeerList is a list of peer IDs, capped at MaxSummaryWants when decoded.
type PeerList []PeerID

// VersionList is a list of summary versions, capped at MaxSummaryWants when
// decoded.
type VersionList []uint64

func (*Summaries) Type() MsgType   { return TypeSummaries }
func (*SummaryWant) Type() MsgType { return TypeSummaryWant }

func (m *Summaries) validate() error {
	if len(m.Updates) > MaxSummaryUpdates {
		return invalid("%d summary updates (max %d)", len(m.Updates), MaxSummaryUpdates)
	}
	for i := range m.Updates {
		if err := m.Updates[i].check(); err != nil {
			return err
		}
	}
	return nil
}

func (m *SummaryWant) validate() error {
	if len(m.Origins) > MaxSummaryWants {
		return invalid("%d summaries wanted (max %d)", len(m.Origins), MaxSummaryWants)
	}
	if len(m.Have) != 0 && len(m.Have) != len(m.Origins) {
		return invalid("%d versions held for %d summaries wanted", len(m.Have), len(m.Origins))
	}
	for _, p := range m.Origins {
		if p.IsZero() {
			return invalid("summary wanted of the zero peer")
		}
	}
	return nil
}
