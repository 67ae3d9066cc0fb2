package peer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// membersFile caches, in the data directory, the supernodes the last
// supernode listed, one peerid@host:port per line, for the next start when the
// configured ones are gone.
const membersFile = "supernodes.cache"

// maxCachedSupernodes bounds the cache and the targets taken from it.
const maxCachedSupernodes = 64

// takeMembers keeps the verified entries of a member list from our supernode
// as attach targets, and writes them to the cache. A bad entry is skipped:
// the supernode checked it, so it is the supernode's fault, not the entry's
// owner's, and the rest of the list is still good.
func (a *attachment) takeMembers(m *protocol.Members) {
	var targets []string
	for i := range m.Members {
		r := &m.Members[i]
		if r.Verify() != nil || r.Peer() == a.d.ID() || !transport.Dialable(r.Addrs[0]) {
			continue
		}
		targets = append(targets, r.Peer().String()+"@"+r.Addrs[0])
		if len(targets) == maxCachedSupernodes {
			break
		}
	}
	if len(targets) == 0 {
		return
	}
	slices.Sort(targets)
	a.mu.Lock()
	same := slices.Equal(targets, a.listed)
	a.listed = targets
	a.mu.Unlock()
	if same || a.d.cfg.DataDir == "" {
		return
	}
	if err := content.WriteFileAtomic(filepath.Join(a.d.cfg.DataDir, membersFile), []byte(strings.Join(targets, "\n")+"\n"), 0o600, false); err != nil {
		a.d.log.Warn().Err(err).Msg("cannot cache the supernode list")
	}
}

// loadMembers reads the cached supernode list; lines that do not parse are
// dropped, so a damaged cache costs only its damaged lines.
func loadMembers(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, membersFile))
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		at := strings.IndexByte(line, '@')
		if at < 0 || len(out) == maxCachedSupernodes {
			continue
		}
		if _, err := protocol.ParsePeerID(line[:at]); err == nil {
			out = append(out, line)
		}
	}
	return out
}

// targets are the supernodes to try: the configured ones first, then those
// the overlay listed, each once.
func (a *attachment) targets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.d.cfg.Supernodes)
	for _, t := range a.listed {
		if !slices.ContainsFunc(out, func(c string) bool { return c == t || strings.HasSuffix(t, "@"+c) }) {
			out = append(out, t)
		}
	}
	return out
}
