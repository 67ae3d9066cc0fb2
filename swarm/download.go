package swarm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
)

// seedRecord is a finished download this daemon keeps serving.
type seedRecord struct {
	path  string
	name  string
	meta  content.Meta
	mtime time.Time
}

// unchanged reports whether the file is still the one downloaded: same size and
// modification time. Anything else is not served, so peers are not sent data
// that fails verification.
func (r seedRecord) unchanged() bool {
	fi, err := os.Stat(r.path)
	return err == nil && fi.Size() == r.meta.Size && fi.ModTime().Equal(r.mtime)
}

// pieceBuf hands out a buffer for a piece being downloaded. A free list rather
// than a sync.Pool: the pool is emptied at every GC, and a fresh 256 KiB buffer
// costs a zeroing pass over memory.
func (m *Swarms) pieceBuf(n int64) []byte {
	select {
	case b := <-m.bufs:
		if int64(cap(b)) >= n {
			return b[:n]
		}
	default:
	}
	return make([]byte, n)
}

func (m *Swarms) recycle(b []byte) {
	select {
	case m.bufs <- b:
	default:
	}
}

// Target is where a download goes.
type Target struct {
	// Out is a file path, a folder (one that exists, or any path ending in
	// a separator, made if missing), or "" for the current folder. In a
	// folder the file takes the name the sources give it.
	Out string
	// Overwrite replaces a file already at the path. Without it, a named
	// file that exists fails the download before anything is fetched
	// (ErrExists), and in a folder the download takes a free name instead:
	// "song (1).mp3", "song (2).mp3", ... as the inbox names arrivals.
	Overwrite bool
}

// ErrExists is a download's target that is there already.
var ErrExists = errors.New("file exists")

// Get downloads a content ID to out (a file path, an existing directory, or ""
// for the current directory) and returns the final path. onProgress, if set, is
// called about five times a second and once at the end. While it runs the
// daemon uploads the pieces it has to the other peers of the swarm, and after it
// returns it keeps serving the file.
func (m *Swarms) Get(ctx context.Context, cid protocol.ContentID, out string, onProgress func(Progress)) (string, error) {
	return m.Download(ctx, cid, Target{Out: out}, onProgress)
}

// Download is Get to a Target.
func (m *Swarms) Download(ctx context.Context, cid protocol.ContentID, to Target, onProgress func(Progress)) (string, error) {
	m.wg.Add(1)
	defer m.wg.Done()
	if cid.IsZero() { // on the wire the zero ID means "no content ID"
		return "", fmt.Errorf("%w: %s", ErrNothingFound, cid)
	}
	sw, err := m.startDownload(cid, to)
	if err != nil {
		return "", err
	}
	// The swarm refuses a second download of cid while this one runs; status
	// lists this one's progress meanwhile.
	m.mu.Lock()
	m.downloads[cid] = &Progress{ContentID: cid.String(), State: "locating"}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.downloads, cid)
		m.mu.Unlock()
	}()
	var last Progress
	report := func(p Progress) {
		last = p
		m.mu.Lock()
		m.downloads[cid] = &p
		m.mu.Unlock()
		if onProgress != nil {
			onProgress(p)
		}
	}
	path, err := sw.download(ctx, report)
	sw.mu.Lock()
	p := sw.prog
	if err != nil {
		p.State, p.Error = "failed", err.Error()
	} else {
		p.State, p.Path = "done", path
	}
	p.Rate = last.Rate
	sw.mu.Unlock()
	report(p)
	return path, err
}

// startDownload registers a new downloading swarm for cid.
func (m *Swarms) startDownload(cid protocol.ContentID, to Target) (*swarm, error) {
	out := to.Out
	// A named file that is there already fails before any source is asked,
	// by the rule the download applies once it knows the name.
	if _, named, err := namedPath(out); err != nil {
		return nil, err
	} else if named {
		if _, err := TargetPath(to, "", cid); errors.Is(err, ErrExists) {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if old := m.swarms[cid]; old != nil && old.ctx.Err() == nil {
		old.mu.Lock()
		shared, complete, path := old.shared, old.complete, old.path
		old.mu.Unlock()
		switch {
		case shared:
			return nil, fmt.Errorf("%w: %s is in this peer's share folder", protocol.ErrBadRequest, cid.Short())
		case !complete:
			return nil, fmt.Errorf("%w: %s is already downloading", protocol.ErrBadRequest, cid.Short())
		}
		if _, err := os.Stat(path); err == nil {
			// Downloaded before: only a request for another place downloads again.
			if p, err := outputPath(out, filepath.Base(path), cid); err == nil && p == path && !to.Overwrite {
				return nil, fmt.Errorf("%w: %s was downloaded to %s already", protocol.ErrBadRequest, cid.Short(), path)
			}
		}
		old.cancel()
	}
	if m.share != nil {
		if _, ok := m.share.Get(cid); ok {
			return nil, fmt.Errorf("%w: %s is in this peer's share folder", protocol.ErrBadRequest, cid.Short())
		}
	}
	sw := m.newSwarm(cid)
	sw.to = to
	m.swarms[cid] = sw
	m.wg.Add(1)
	go sw.chokeLoop()
	return sw, nil
}

func (sw *swarm) download(ctx context.Context, report func(Progress)) (string, error) {
	m := sw.m
	stop := context.AfterFunc(ctx, func() { sw.abort(context.Cause(ctx)) })
	defer stop()
	// Ask the overlay for the current sources even after a search: a keyword
	// search may have stopped at the first supernode that filled its limit, and
	// sources come and go. What the search found still counts if the lookup fails.
	hit, ok, lookupErr := sw.askTracker()
	if !ok && lookupErr != nil {
		sw.abort(nil)
		return "", fmt.Errorf("locating sources: %w", lookupErr)
	}
	n := sw.addKnown(hit.Sources)
	if n == 0 {
		sw.abort(nil)
		return "", fmt.Errorf("%w: %s", ErrNothingFound, sw.id)
	}
	sw.mu.Lock()
	sw.name = hit.Name
	sw.prog.Name, sw.prog.Size, sw.prog.State = hit.Name, hit.Size, "connecting"
	sw.mu.Unlock()

	m.wg.Add(1)
	go sw.track()
	tick := time.NewTicker(m.cfg.ProgressInterval)
	defer tick.Stop()
	var lastBytes int64
	var rate float64
	last := time.Now()
	for {
		select {
		case <-sw.finished:
		case <-sw.fail:
		case <-tick.C:
			sw.mu.Lock()
			now := time.Now()
			if dt := now.Sub(last).Seconds(); dt > 0 {
				rate = 0.5*rate + 0.5*float64(sw.verified-lastBytes)/dt
			}
			lastBytes, last = sw.verified, now
			p := sw.prog
			p.Rate = rate
			sw.mu.Unlock()
			report(p)
			continue
		}
		break
	}
	select {
	case <-sw.finished:
	default:
		sw.mu.Lock()
		err := sw.failErr
		sw.mu.Unlock()
		sw.abort(nil)
		return "", err
	}
	return sw.moveIntoPlace()
}

// moveIntoPlace moves a finished download into place and keeps serving it from there.
func (sw *swarm) moveIntoPlace() (string, error) {
	sw.ioMu.Lock()
	defer sw.ioMu.Unlock()
	sw.mu.Lock()
	part, path, name, meta := sw.part, sw.path, sw.name, sw.meta
	sw.mu.Unlock()
	if err := part.Finish(); err != nil {
		sw.abort(nil)
		return "", err
	}
	sw.mu.Lock()
	sw.fromFile, sw.part = path, nil
	sw.mu.Unlock()
	m := sw.m
	m.mu.Lock()
	rec := seedRecord{path: path, name: name, meta: meta}
	if fi, err := os.Stat(path); err == nil {
		rec.mtime = fi.ModTime()
	}
	m.seeding[sw.id] = rec
	m.mu.Unlock()
	m.log.Info().Str("content_id", sw.id.Short()).Str("path", path).Msg("download complete")
	return path, nil
}

// abort ends a download that did not finish: the partial file is saved to
// resume from, or removed when it holds no verified piece, and the peer
// stops offering the content.
func (sw *swarm) abort(cause error) {
	sw.mu.Lock()
	if cause != nil {
		sw.failLocked(cause)
	}
	complete := sw.complete
	sw.mu.Unlock()
	if complete {
		return
	}
	sw.cancel()
	sw.ioMu.Lock()
	sw.mu.Lock()
	part := sw.part
	sw.part = nil
	sw.mu.Unlock()
	if part != nil {
		if part.Verified() == 0 {
			part.Discard() // nothing to resume: leave no .part behind
		} else {
			part.Close()
		}
	}
	sw.ioMu.Unlock()
	m := sw.m
	m.mu.Lock()
	if m.swarms[sw.id] == sw {
		delete(m.swarms, sw.id)
	}
	m.mu.Unlock()
	if sw.published {
		m.republish()
	}
}

// askTracker looks the content ID up in the overlay and returns what is known
// of it now, from this lookup and earlier searches; ok is false when nothing is.
func (sw *swarm) askTracker() (protocol.Hit, bool, error) {
	return sw.m.cfg.Locate(sw.ctx, sw.id)
}

// addKnown adds sources to try and returns how many are known.
func (sw *swarm) addKnown(srcs []protocol.Source) int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for _, s := range srcs {
		if s.Peer == sw.m.ID() {
			continue
		}
		if k := sw.known[s.Peer]; k != nil {
			k.src = s
			continue
		}
		sw.known[s.Peer] = &knownPeer{src: s}
	}
	sw.prog.Sources = len(sw.known)
	return len(sw.known)
}

// track keeps the download connected: it joins known peers, asks the
// supernodes (the tracker) for more, quickly at first and then every
// TrackerInterval, and fails the download when no peer is left to ask or
// nothing has moved for StallTimeout.
func (sw *swarm) track() {
	m := sw.m
	defer m.wg.Done()
	interval := 250 * time.Millisecond
	nextLookup := time.Now().Add(interval)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		sw.connectKnown()
		select {
		case <-sw.finished:
			return
		case <-sw.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if now.After(nextLookup) {
			if hit, ok, err := sw.askTracker(); ok && err == nil {
				sw.addKnown(hit.Sources)
			}
			interval = min(2*interval, m.cfg.TrackerInterval)
			nextLookup = time.Now().Add(interval)
		}
		sw.mu.Lock()
		if err := sw.deadLocked(now); err != nil {
			sw.failLocked(err)
		}
		sw.mu.Unlock()
	}
}

// deadLocked says why the download cannot go on, if it cannot.
func (sw *swarm) deadLocked(now time.Time) error {
	if len(sw.sessions) == 0 {
		for p, k := range sw.known {
			if k.busy || (!sw.banned[p] && k.failures < maxJoinFailures) {
				return nil
			}
		}
		if !sw.hasMeta {
			return fmt.Errorf("no source could be reached (%d tried)", len(sw.known))
		}
		return fmt.Errorf("%d of %d pieces verified; no source could supply the rest (%d sources, %d banned for bad data); run the same command again to resume",
			sw.nhave, len(sw.avail), len(sw.known), len(sw.banned))
	}
	if now.Sub(sw.lastChange) > sw.m.cfg.StallTimeout {
		return fmt.Errorf("%w: %d of %d pieces verified and nothing new for %v from %d peers; run the same command again to resume",
			ErrStalled, sw.nhave, len(sw.avail), sw.m.cfg.StallTimeout, len(sw.sessions))
	}
	return nil
}

// maxJoinFailures is how often joining a peer may fail in a row before it is
// given up.
const maxJoinFailures = 3

// maxDialing bounds the joins of one download in progress at once, so that a
// swarm learnt of all at once is joined over a few rounds rather than in one
// burst of handshakes that starves the transfers already running.
const maxDialing = 8

// connectKnown starts joining known peers we have no session with.
func (sw *swarm) connectKnown() {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	now := time.Now()
	dialing := 0
	for _, k := range sw.known {
		if k.busy && !k.joined {
			dialing++
		}
	}
	for p, k := range sw.known {
		if len(sw.sessions)+dialing >= sw.m.cfg.MaxSwarmPeers || dialing >= maxDialing || sw.complete {
			return
		}
		if k.busy || sw.sessions[p] != nil || sw.banned[p] || k.failures >= maxJoinFailures || now.Before(k.retryAt) {
			continue
		}
		k.busy = true
		dialing++
		sw.m.wg.Add(1)
		go func() {
			defer sw.m.wg.Done()
			ok, delivered, err := sw.joinPeer(k.src)
			sw.mu.Lock()
			defer sw.mu.Unlock()
			k.busy, k.joined = false, false
			switch {
			case errors.Is(err, errPathChanged):
				// Straight back, over the better link.
			case ok && err == nil:
				k.retryAt = time.Now().Add(time.Second) // it closed the stream; do not hammer it
			case ok && sw.ctx.Err() == nil:
				k.retryAt = time.Now().Add(200 * time.Millisecond)
				// A session that worked and broke: the link may have died under
				// it (a relay lost, a NAT that forgot us, a peer moving to a new
				// relay allocation); a new setup may find another path. One that
				// brought data ends the run of failures before it.
				if delivered {
					k.failures = 0
				}
				k.failures++
				sw.log.Info().Err(err).Str("peer_id", p.Short()).Msg("swarm peer lost")
			case !ok:
				k.failures++
				k.retryAt = time.Now().Add(time.Duration(k.failures) * time.Second)
				if err != nil && sw.ctx.Err() == nil {
					sw.log.Debug().Err(err).Str("peer_id", p.Short()).Msg("cannot join peer")
				}
			}
		}()
	}
}

// outputPath picks where a download lands: out itself, or name inside out when
// out is a folder. Names from the network are reduced to a base name.
func outputPath(out, name string, cid protocol.ContentID) (string, error) {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	if name == "." || name == "/" || name == ".." || name == "" || strings.HasPrefix(name, ".") {
		name = cid.String()
	}
	if out == "" {
		out = "."
	}
	if isFolder(out) {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return "", fmt.Errorf("output folder: %w", err)
		}
		out = filepath.Join(out, name)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(filepath.Dir(abs)); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("output folder %s does not exist", filepath.Dir(abs))
	}
	return abs, nil
}

// isFolder reports whether out names a folder: one that exists, or a path
// ending in a separator ("music/"), which is made if missing.
func isFolder(out string) bool {
	if strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator)) {
		return true
	}
	fi, err := os.Stat(out)
	return err == nil && fi.IsDir()
}

// namedPath is the absolute path out names when it names a file rather than
// a folder; named is false for a folder.
func namedPath(out string) (path string, named bool, err error) {
	if out == "" || isFolder(out) {
		return "", false, nil
	}
	path, err = filepath.Abs(out)
	return path, err == nil, err
}

// TargetPath is where a file called name goes to, by to's rules: a
// download started before resumes at its path; a file there already is
// replaced with Overwrite, refused when named, and else passed over for
// the first free "name (N).ext". cid names a file whose name is unusable.
func TargetPath(to Target, name string, cid protocol.ContentID) (path string, err error) {
	path, err = outputPath(to.Out, name, cid)
	if err != nil || to.Overwrite || content.HasPartial(path) {
		return path, err
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if _, named, _ := namedPath(to.Out); named {
		return "", existsErr(path)
	}
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	for i := 1; i <= maxRenames; i++ {
		p := fmt.Sprintf("%s (%d)%s", base, i, ext)
		if content.HasPartial(p) {
			continue // another download's; it may be of other content
		}
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s and %d other names like it", ErrExists, path, maxRenames)
}

// maxRenames bounds the free names tried beside a file that exists.
const maxRenames = 999

func existsErr(path string) error {
	return fmt.Errorf("%w: %s is there already; pass --overwrite to replace it, or -o another path", ErrExists, path)
}

// Files lists what this peer offers beyond its share folder: downloads
// with verified pieces, and finished downloads.
func (m *Swarms) Files() []protocol.FileRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []protocol.FileRecord
	seen := make(map[protocol.ContentID]bool)
	for id, sw := range m.swarms {
		sw.mu.Lock()
		if !sw.shared && sw.hasMeta && sw.nhave > 0 && sw.ctx.Err() == nil {
			out = append(out, protocol.FileRecord{ID: id, Name: publishName(sw.name, id), Size: sw.meta.Size})
			seen[id] = true
		}
		sw.mu.Unlock()
	}
	for id, s := range m.seeding {
		if !seen[id] && s.unchanged() {
			out = append(out, protocol.FileRecord{ID: id, Name: publishName(s.name, id), Size: s.meta.Size})
		}
	}
	return out
}

// Prune stops serving finished downloads whose files were moved,
// changed or deleted since, and reports whether there were any.
func (m *Swarms) Prune() bool {
	m.mu.Lock()
	var gone []*swarm
	pruned := false
	for id, s := range m.seeding {
		if s.unchanged() {
			continue
		}
		pruned = true
		if sw, _ := m.dropSeedLocked(id); sw != nil {
			gone = append(gone, sw)
		}
	}
	m.mu.Unlock()
	for _, sw := range gone {
		sw.log.Info().Msg("no longer serving a finished download: its file changed or is gone")
		sw.cancel()
	}
	return pruned
}

func publishName(name string, id protocol.ContentID) string {
	if name == "" {
		return id.String()
	}
	return filepath.Base(name)
}
