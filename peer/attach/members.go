package attach

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/transport"
)

// membersFile caches, in the data directory, the supernodes the last
// supernode listed, one peerid@host:port per line, for the next start when the
// configured ones are gone.
const membersFile = "supernodes.cache"

// maxCachedSupernodes bounds the cache and the targets taken from it.
const maxCachedSupernodes = 64

// listedSN is a supernode from the member list: where to attach when the
// configured ones are gone, and how full it is.
type listedSN struct {
	target string  // peerid@host:port
	load   float64 // leaves over capacity, 0 when unknown (from the cache)
}

// takeMembers keeps the verified entries of a member list from our supernode
// as attach targets, and writes them to the cache. A bad entry is skipped:
// the supernode checked it, so it is the supernode's fault, not the entry's
// owner's, and the rest of the list is still good.
func (a *Attachment) takeMembers(m *protocol.Members) {
	var listed []listedSN
	var ids []ring.ID
	incs := make(map[ring.ID]uint64)
	network, now := a.cfg.Network(), time.Now()
	for i := range m.Members {
		r := &m.Members[i]
		// A sample may leave the chains out (v11): the welcome shows one
		// when we attach, and a sample makes no ring.
		if r.Verify() != nil || !(m.Of > 0 && len(r.Chain) == 0) && !a.admitted(network, r, now) {
			continue
		}
		ids = append(ids, ring.ID(r.Peer()))
		incs[ring.ID(r.Peer())] = r.Incarnation
		// Every entry counts for the ring; only so many are kept as targets.
		if len(listed) == maxCachedSupernodes || r.Peer() == a.cfg.Self || a.cfg.IsOurs(r.Peer()) || !transport.Dialable(r.Addrs[0]) {
			continue
		}
		load := 1.0
		if r.Cap > 0 {
			load = float64(r.Leaves) / float64(r.Cap)
		}
		listed = append(listed, listedSN{target: r.Peer().String() + "@" + r.Addrs[0], load: load})
	}
	if len(listed) == 0 {
		return
	}
	// A sample of a larger overlay is no ring: the username directory
	// needs every supernode.
	if m.Of == 0 {
		a.cfg.MembersChanged(ids, incs)
	}
	slices.SortFunc(listed, func(x, y listedSN) int { return strings.Compare(x.target, y.target) })
	a.mu.Lock()
	same := slices.EqualFunc(listed, a.listed, func(x, y listedSN) bool { return x.target == y.target })
	a.listed = listed
	a.mu.Unlock()
	if same || a.cfg.DataDir == "" {
		return
	}
	var lines []string
	for _, l := range listed {
		lines = append(lines, l.target)
	}
	if err := content.WriteFileAtomic(filepath.Join(a.cfg.DataDir, membersFile), []byte(strings.Join(lines, "\n")+"\n"), 0o600, false); err != nil {
		a.log.Warn().Err(err).Msg("cannot cache the supernode list")
	}
}

// loadMembers reads the cached supernode list; lines that do not parse are
// dropped, so a damaged cache costs only its damaged lines.
func loadMembers(dir string) []listedSN {
	b, err := os.ReadFile(filepath.Join(dir, membersFile))
	if err != nil {
		return nil
	}
	var out []listedSN
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		at := strings.IndexByte(line, '@')
		if at < 0 || len(out) == maxCachedSupernodes {
			continue
		}
		if _, err := protocol.ParsePeerID(line[:at]); err == nil {
			out = append(out, listedSN{target: line})
		}
	}
	return out
}

// targets are the supernodes to try, each once: the configured ones first,
// then those the overlay listed, the least loaded first (in random order
// among equals, so orphaned leaves spread out), and last the configured ones
// the list no longer names, which are likely dead.
func (a *Attachment) targets() []string {
	a.mu.Lock()
	listed := slices.Clone(a.listed)
	var out []string
	if a.prefer != "" && time.Now().Before(a.preferUntil) {
		out = append(out, a.prefer)
	}
	a.mu.Unlock()
	rand.Shuffle(len(listed), func(i, j int) { listed[i], listed[j] = listed[j], listed[i] })
	// Tenths of capacity: finer differences are noise between gossip rounds.
	slices.SortStableFunc(listed, func(x, y listedSN) int { return int(x.load*10) - int(y.load*10) })
	var gone []string
	for _, c := range a.cfg.Supernodes {
		if len(listed) > 0 && !slices.ContainsFunc(listed, func(l listedSN) bool { return sameTarget(c, l.target) }) {
			gone = append(gone, c)
			continue
		}
		out = append(out, c)
	}
	for _, l := range listed {
		if !slices.ContainsFunc(a.cfg.Supernodes, func(c string) bool { return sameTarget(c, l.target) }) {
			out = append(out, l.target)
		}
	}
	return append(out, gone...)
}

// sameTarget reports whether a configured target (host:port, or
// peerid@host:port) names the listed one (peerid@host:port).
func sameTarget(configured, listed string) bool {
	return configured == listed || strings.HasSuffix(listed, "@"+configured)
}

// maxKnownChains bounds the chains a leaf remembers having checked.
const maxKnownChains = 1024

// admitted checks that a member entry's chain admits it as a supernode. A
// chain checked before for the same supernode is not checked again: the
// lists repeat every entry each time, and only the entry's own signature
// changes.
func (a *Attachment) admitted(network protocol.NetworkID, r *protocol.MemberRecord, now time.Time) bool {
	id := r.Peer()
	a.mu.Lock()
	known, ok := a.chains[id]
	a.mu.Unlock()
	if ok && known.Equal(r.Chain) {
		return now.Before(known.Expires().Add(protocol.CertSkew))
	}
	if r.Chain.Verify(network, id, protocol.CertSupernode, now) != nil {
		return false
	}
	a.mu.Lock()
	if len(a.chains) >= maxKnownChains {
		clear(a.chains)
	}
	a.chains[id] = r.Chain.Clone()
	a.mu.Unlock()
	return true
}
