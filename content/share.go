package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrNotShared is returned by Share.ReadAt for content the share does not hold (any more).
var ErrNotShared = errors.New("content not shared")

const (
	// cacheVersion changes whenever cacheFile changes shape or meaning; a cache of another
	// version is ignored and rebuilt.
	cacheVersion = 1
	// maxOpenFiles bounds the read handles kept for serving uploads.
	maxOpenFiles = 32
	// racyWindow: a file modified this close to when it was hashed may have been written
	// again within the same mtime tick, so its cache entry is not trusted (git's "racy
	// clean" problem).
	racyWindow = 2 * time.Second
)

// File is one shared file.
type File struct {
	ID      protocol.ContentID
	Path    string // absolute; for a symlink, the file it points to
	RelPath string // slash-separated, relative to the share folder
	Name    string // base name of RelPath
	Meta    Meta
	Tags    protocol.Tags
	ModTime time.Time
}

// Share is a shared folder: what it holds, by content ID, and reads of it for uploads.
// It is safe for concurrent use; Scan may run while ReadAt serves.
type Share struct {
	dir       string // absolute, symlinks resolved
	cachePath string // "" for no cache
	log       zerolog.Logger
	// hashFn is HashFile; tests count calls through it.
	hashFn func(ctx context.Context, path string) (Meta, error)

	scanMu sync.Mutex // one Scan at a time

	mu         sync.RWMutex
	closed     bool
	known      map[string]cacheEntry // by RelPath: everything we hold hashes for
	cacheStale bool                  // the cache on disk differs from known
	files      map[string]*record    // by RelPath: what the last Scan published
	byID       map[protocol.ContentID]*record

	handles handleCache
}

type record struct {
	rel   string
	path  string
	id    protocol.ContentID
	entry cacheEntry
}

func (r *record) file() File {
	return File{
		ID:      r.id,
		Path:    r.path,
		RelPath: r.rel,
		Name:    path.Base(r.rel),
		Meta:    r.entry.Meta,
		Tags:    r.entry.Tags,
		ModTime: time.Unix(0, r.entry.ModTime),
	}
}

// cacheFile is the hash cache on disk. Its maps and byte slices are the only variable-length
// parts, and msgpack bounds their allocation by the input, so a corrupt cache cannot ask for
// gigabytes.
type cacheFile struct {
	Version int                   `msgpack:"v"`
	Root    string                `msgpack:"r"` // the share folder the paths are relative to
	Files   map[string]cacheEntry `msgpack:"f"`
}

type cacheEntry struct {
	Size     int64         `msgpack:"s"`
	ModTime  int64         `msgpack:"m"` // ns since the epoch
	Inode    uint64        `msgpack:"i"`
	HashedAt int64         `msgpack:"a"` // ns since the epoch
	Meta     Meta          `msgpack:"h"`
	Tags     protocol.Tags `msgpack:"t"`
}

// matches reports whether fi is the file this entry was hashed from.
func (e *cacheEntry) matches(fi fs.FileInfo) bool {
	return e.Size == fi.Size() && e.ModTime == fi.ModTime().UnixNano() && e.Inode == inode(fi) &&
		e.ModTime < e.HashedAt-int64(racyWindow)
}

// OpenShare opens the folder dir for sharing, with its hash cache at cachePath ("" for
// none). The cache may be missing or corrupt; that only costs re-hashing. Nothing is
// shared until the first Scan.
func OpenShare(dir, cachePath string, log zerolog.Logger) (*Share, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("content: open share: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("content: open share: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("content: open share: %s is not a directory", abs)
	}
	s := &Share{
		dir:     abs,
		log:     log.With().Str("share", abs).Logger(),
		hashFn:  hashFile,
		known:   map[string]cacheEntry{},
		files:   map[string]*record{},
		byID:    map[protocol.ContentID]*record{},
		handles: handleCache{max: maxOpenFiles, m: map[string]*handle{}},
	}
	if cachePath != "" {
		if s.cachePath, err = resolvePath(cachePath); err != nil {
			return nil, fmt.Errorf("content: open share: cache path: %w", err)
		}
		s.loadCache()
	}
	return s, nil
}

// resolvePath makes p absolute with its directory's symlinks resolved, so that it compares
// equal to the same file met while walking the share.
func resolvePath(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if d, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		p = filepath.Join(d, filepath.Base(p))
	}
	return p, nil
}

func (s *Share) loadCache() {
	b, err := os.ReadFile(s.cachePath)
	if errors.Is(err, fs.ErrNotExist) {
		s.cacheStale = true
		return
	}
	if err != nil {
		s.log.Warn().Err(err).Str("path", s.cachePath).Msg("hash cache unreadable; files will be re-hashed")
		s.cacheStale = true
		return
	}
	var c cacheFile
	if err := msgpack.Unmarshal(b, &c); err != nil {
		s.log.Warn().Err(err).Str("path", s.cachePath).Msg("hash cache corrupt; files will be re-hashed")
		s.cacheStale = true
		return
	}
	if c.Version != cacheVersion || c.Root != s.dir {
		s.log.Info().Int("version", c.Version).Str("root", c.Root).Str("path", s.cachePath).
			Msg("hash cache is for another version or folder; files will be re-hashed")
		s.cacheStale = true
		return
	}
	for rel, e := range c.Files {
		if e.Meta.Validate() != nil || e.Meta.Size != e.Size {
			s.cacheStale = true
			continue
		}
		s.known[rel] = e
	}
	s.log.Debug().Int("files", len(s.known)).Msg("hash cache loaded")
}

// Scan brings the share up to date with the folder. It skips hidden files and folders,
// non-regular files, symlinks that lead outside the folder or to folders, our own
// downloads in progress (*.part) and the cache file; it re-hashes only files whose size,
// mtime or inode changed since they were last hashed. added and removed count published
// (path, content) pairs, so a file whose content changed counts once in each. A file that
// cannot be read is logged and skipped; only an unreadable share folder or ctx ends the
// scan with an error, and then the published set is left as it was.
func (s *Share) Scan(ctx context.Context) (added, removed int, err error) {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()

	s.mu.RLock()
	closed, known, published := s.closed, s.known, s.files
	s.mu.RUnlock()
	if closed {
		return 0, 0, fmt.Errorf("content: scan: %w", os.ErrClosed)
	}

	start := time.Now()
	next := make(map[string]*record, len(published))
	hashed := 0
	walkErr := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == s.dir {
				return err
			}
			s.log.Warn().Err(err).Str("path", p).Msg("skipping unreadable path")
			return nil // WalkDir already skips a folder it could not read
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == s.dir {
			return nil
		}
		if s.skip(p, d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		target := p
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := filepath.EvalSymlinks(p)
			if err != nil || !within(s.dir, t) || s.skip(t, filepath.Base(t)) {
				s.log.Debug().Str("path", p).Msg("skipping symlink that is broken or leads outside the share")
				return nil
			}
			target = t
		case !d.Type().IsRegular():
			return nil
		}
		fi, err := os.Stat(target)
		if err != nil {
			s.log.Warn().Err(err).Str("path", p).Msg("skipping unreadable file")
			return nil
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if e, ok := known[rel]; ok && e.matches(fi) {
			next[rel] = &record{rel: rel, path: target, id: e.Meta.ID(), entry: e}
			return nil
		}
		e, err := s.index(ctx, target, fi)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Warn().Err(err).Str("path", p).Msg("skipping file")
			return nil
		}
		hashed++
		next[rel] = &record{rel: rel, path: target, id: e.Meta.ID(), entry: e}
		return nil
	})

	nextKnown := make(map[string]cacheEntry, len(next))
	if walkErr != nil {
		// Keep what was hashed so far, so a restart does not redo it.
		if hashed > 0 && ctx.Err() != nil {
			for rel, e := range known {
				nextKnown[rel] = e
			}
			for rel, r := range next {
				nextKnown[rel] = r.entry
			}
			s.commitCache(nextKnown, true)
		}
		return 0, 0, fmt.Errorf("content: scan %s: %w", s.dir, walkErr)
	}

	for rel, r := range next {
		nextKnown[rel] = r.entry
		if old, ok := published[rel]; !ok || old.id != r.id {
			added++
		}
	}
	var dropped []string // paths whose open handles may now be to the wrong file
	for rel, old := range published {
		r, ok := next[rel]
		if !ok || r.id != old.id {
			removed++
		}
		if !ok || r.path != old.path || r.entry.Inode != old.entry.Inode {
			dropped = append(dropped, old.path)
		}
	}
	forgot := len(nextKnown) != len(known) // vanished files leave the cache too
	byID := make(map[protocol.ContentID]*record, len(next))
	for _, r := range next {
		// Identical files share an ID; serve the one with the smallest path, so the choice
		// is stable across scans.
		if o, ok := byID[r.id]; !ok || r.rel < o.rel {
			byID[r.id] = r
		}
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, 0, fmt.Errorf("content: scan: %w", os.ErrClosed)
	}
	s.files, s.byID = next, byID
	s.mu.Unlock()
	for _, p := range dropped {
		s.handles.drop(p)
	}
	s.commitCache(nextKnown, hashed > 0 || forgot)

	s.log.Info().Int("files", len(next)).Int("hashed", hashed).Int("added", added).Int("removed", removed).
		Dur("took", time.Since(start)).Msg("share scanned")
	return added, removed, nil
}

// commitCache makes known the cache and saves it if it changed or the disk copy is stale.
// A failed save is logged, not returned: the share works without a cache.
func (s *Share) commitCache(known map[string]cacheEntry, changed bool) {
	s.mu.Lock()
	s.known = known
	save := (changed || s.cacheStale) && s.cachePath != "" && !s.closed
	s.mu.Unlock()
	if !save {
		return
	}
	err := s.saveCache(known)
	s.mu.Lock()
	s.cacheStale = err != nil
	s.mu.Unlock()
	if err != nil {
		s.log.Warn().Err(err).Str("path", s.cachePath).Msg("could not save hash cache")
	}
}

func (s *Share) saveCache(known map[string]cacheEntry) error {
	b, err := msgpack.Marshal(&cacheFile{Version: cacheVersion, Root: s.dir, Files: known})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.cachePath), 0o700); err != nil {
		return err
	}
	return WriteFileAtomic(s.cachePath, b, 0o600, true)
}

// index hashes and tags one file. fi is its stat before hashing; a file that changes while
// it is hashed is left for the next scan rather than published with wrong hashes.
func (s *Share) index(ctx context.Context, p string, fi fs.FileInfo) (cacheEntry, error) {
	s.log.Debug().Str("path", p).Int64("size", fi.Size()).Msg("hashing")
	m, err := s.hashFn(ctx, p)
	if err != nil {
		return cacheEntry{}, err
	}
	after, err := os.Stat(p)
	if err != nil {
		return cacheEntry{}, err
	}
	if after.Size() != fi.Size() || !after.ModTime().Equal(fi.ModTime()) || inode(after) != inode(fi) ||
		m.Size != fi.Size() {
		return cacheEntry{}, fmt.Errorf("content: %s changed while it was hashed; will retry on the next scan", p)
	}
	e := cacheEntry{
		Size:     fi.Size(),
		ModTime:  fi.ModTime().UnixNano(),
		Inode:    inode(fi),
		HashedAt: time.Now().UnixNano(),
		Meta:     m,
	}
	if isAudio(p) {
		if t, err := ReadTags(p); err == nil {
			e.Tags = t
		} else {
			s.log.Debug().Err(err).Str("path", p).Msg("no usable tags")
		}
	}
	return e, nil
}

// skip reports whether a path met while walking is not to be shared.
func (s *Share) skip(p, name string) bool {
	return strings.HasPrefix(name, ".") ||
		strings.HasSuffix(name, partSuffix) || strings.HasSuffix(name, stateSuffix) ||
		strings.HasSuffix(name, journalSuffix) ||
		p == s.cachePath
}

// within reports whether p is root or below it.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && !filepath.IsAbs(rel) && rel != ".." &&
		!strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// Files returns the published files, sorted by RelPath. Files with identical content appear
// once each, with the same ID.
func (s *Share) Files() []File {
	s.mu.RLock()
	out := make([]File, 0, len(s.files))
	for _, r := range s.files {
		out = append(out, r.file())
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].RelPath < out[j].RelPath })
	return out
}

// Get returns the file with content id; of identical files, the one with the smallest
// RelPath.
func (s *Share) Get(id protocol.ContentID) (File, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.byID[id]
	if !ok {
		return File{}, false
	}
	return r.file(), true
}

// ReadAt reads the content id at off, for serving pieces. Like io.ReaderAt it returns
// io.EOF at or past the end; it never reads beyond the size the content was published
// with. A file replaced since the last Scan is not served (ErrNotShared); a file rewritten
// in place may serve new bytes, which the downloader's piece check rejects.
func (s *Share) ReadAt(id protocol.ContentID, p []byte, off int64) (int, error) {
	s.mu.RLock()
	closed, r := s.closed, s.byID[id]
	s.mu.RUnlock()
	switch {
	case closed:
		return 0, fmt.Errorf("content: read: %w", os.ErrClosed)
	case r == nil:
		return 0, fmt.Errorf("%w: %s", ErrNotShared, id.Short())
	case off < 0:
		return 0, fmt.Errorf("content: read %s: negative offset %d", id.Short(), off)
	case off >= r.entry.Size:
		return 0, io.EOF
	}
	want := len(p)
	if left := r.entry.Size - off; int64(len(p)) > left {
		p = p[:left]
	}
	h, err := s.handles.acquire(r.path, &r.entry)
	if err != nil {
		return 0, err
	}
	defer s.handles.release(h)
	n, err := h.f.ReadAt(p, off)
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

// Close releases the open files. It is safe to call twice; ReadAt and Scan fail after it.
func (s *Share) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.handles.close()
	return nil
}
