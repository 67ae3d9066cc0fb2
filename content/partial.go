package content

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrBadPiece is wrapped by WritePiece when data does not hash to the piece's hash.
var ErrBadPiece = errors.New("piece hash mismatch")

const (
	partSuffix    = ".part"
	stateSuffix   = ".part.state"
	journalSuffix = ".part.log"
	stateVersion  = 1
	// The have-map is saved after this many newly verified pieces or this long, whichever
	// comes first: each save costs an fsync of the data and of the state, and a crash costs
	// at most this much re-downloading.
	flushPieces   = 32
	flushInterval = 2 * time.Second
)

// partialState is the .part.state file. The bitmap is a byte slice, whose allocation
// msgpack bounds by the input, so a corrupt state cannot ask for gigabytes.
type partialState struct {
	Version int                `msgpack:"v"`
	ID      protocol.ContentID `msgpack:"id"`
	Meta    Meta               `msgpack:"meta"`
	Have    []byte             `msgpack:"have"` // bit i (most significant first) = piece i verified
}

// partFile is what a Partial needs of its *os.File; tests substitute one that fails.
type partFile interface {
	io.WriterAt
	io.ReaderAt
	Sync() error
	Close() error
}

// Partial is a download in progress: the file being filled in at finalPath+".part" and its
// have-map of verified pieces at finalPath+".part.state". Only pieces that match their hash
// are written, and the have-map on disk never claims a piece whose data is not on disk, so
// after a crash OpenPartial resumes with every verified piece that was saved (all but at
// most the last flushPieces or flushInterval of them). Pieces verified since the last save
// are also appended to a journal (finalPath+".part.log") without syncing it: a killed
// process loses nothing, since the kernel still writes the journal and the data out, and
// after a power loss OpenPartial hashes the pieces the journal claims before it counts
// them. Safe for concurrent use; pieces may be written from many goroutines at once.
type Partial struct {
	final, part, state, journal string
	meta                        Meta
	id                          protocol.ContentID

	// ioMu is held shared by piece writes and exclusively by Finish and Close, so the file
	// is never closed under a write in flight.
	ioMu sync.RWMutex

	mu            sync.Mutex
	f             partFile
	jf            *os.File // the journal, open for appending
	have          []byte
	verified      int
	bytesVerified int64
	dirty         int // pieces verified since the last save
	lastFlush     time.Time
	flushing      bool  // a background save is running
	flushErr      error // why the last background save failed
	closed        bool
	finished      bool
	// replace lets Finish replace a file already at the final path.
	replace bool
}

// HasPartial reports whether a download into finalPath was started before and
// can resume: its state file exists.
func HasPartial(finalPath string) bool {
	_, err := os.Lstat(finalPath + stateSuffix)
	return err == nil
}

// ReplaceOnFinish makes Finish replace whatever file is at the final path by
// then, rather than refuse to.
func (p *Partial) ReplaceOnFinish() {
	p.mu.Lock()
	p.replace = true
	p.mu.Unlock()
}

// Discard closes a download that will not resume and removes its files: for
// one that verified nothing, whose files would only be litter.
func (p *Partial) Discard() error {
	err := p.Close()
	for _, f := range []string{p.part, p.state, p.journal} {
		if rerr := os.Remove(f); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// OpenPartial starts or resumes the download of meta into finalPath. An existing state
// for the same content resumes with its verified pieces. A state for other content, an
// unreadable state, or a .part with no state is an error rather than a silent overwrite:
// the caller (or the user) decides whether to delete it. finalPath itself is not looked
// at until Finish.
func OpenPartial(finalPath string, meta Meta) (p *Partial, err error) {
	if err := meta.Validate(); err != nil {
		return nil, fmt.Errorf("content: open download %s: %w", finalPath, err)
	}
	final, err := filepath.Abs(finalPath)
	if err != nil {
		return nil, err
	}
	n := meta.NumPieces()
	p = &Partial{
		final:   final,
		part:    final + partSuffix,
		state:   final + stateSuffix,
		journal: final + journalSuffix,
		meta:    meta,
		id:      meta.ID(),
		have:    make([]byte, (n+7)/8),
	}

	st, err := readState(p.state)
	_, partErr := os.Lstat(p.part)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if partErr == nil {
			return nil, fmt.Errorf("content: %s exists without its state file %s, so which of its pieces are good is unknown; "+
				"delete or move it to download again", p.part, p.state)
		}
		// The state goes first, so that a .part never exists without one.
		if err := p.saveState(true); err != nil {
			os.Remove(p.state)
			return nil, fmt.Errorf("content: start download %s: %w", p.final, err)
		}
		// A new download that cannot start (a full disk) leaves nothing.
		part, state := p.part, p.state
		defer func() {
			if err != nil {
				os.Remove(part)
				os.Remove(state)
			}
		}()
	case err != nil:
		return nil, fmt.Errorf("content: download state %s is unreadable (%v); delete it and %s to download again",
			p.state, err, p.part)
	case st.ID != p.id:
		return nil, fmt.Errorf("content: %s belongs to a download of other content (%s, not %s); "+
			"finish or delete it before downloading %s", p.state, st.ID, p.id, p.final)
	default:
		copy(p.have, st.Have)
	}

	// Whatever the state claims beyond the data on disk (all of it if the .part is gone,
	// the tail if someone cut it short) must be fetched again, and the state must say so
	// before the file is recreated or extended with zeros.
	var partSize int64
	if fi, err := os.Stat(p.part); err == nil {
		partSize = fi.Size()
	}
	if partSize < meta.Size {
		dropped := false
		for i := range n {
			if p.haveLocked(i) && int64(i)*meta.PieceSize+meta.PieceLen(i) > partSize {
				p.have[i/8] &^= 0x80 >> (i % 8)
				dropped = true
			}
		}
		if dropped {
			if err := p.saveState(true); err != nil {
				return nil, fmt.Errorf("content: open download %s: %w", p.final, err)
			}
		}
	}

	f, err := os.OpenFile(p.part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("content: open download %s: %w", p.part, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != meta.Size {
		// Reserve the space first: a disk that cannot hold the file says so now,
		// not half way through, and the file's blocks are allocated in one piece.
		if err = preallocate(f, meta.Size); err == nil {
			err = f.Truncate(meta.Size)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("content: open download %s: %w", p.part, err)
	}
	p.f = f
	if err := p.replayJournal(); err != nil {
		f.Close()
		return nil, fmt.Errorf("content: open download %s: %w", p.final, err)
	}
	for i := range n {
		if p.haveLocked(i) {
			p.verified++
			p.bytesVerified += meta.PieceLen(i)
		}
	}
	p.lastFlush = time.Now()
	return p, nil
}

// replayJournal takes back the pieces verified after the last saved have-map: each
// one the journal names is hashed again from the .part, since after a power loss the
// journal may have reached the disk before the data. The result is saved, and the
// journal starts empty.
func (p *Partial) replayJournal() error {
	n := p.meta.NumPieces()
	b, err := readCapped(p.journal, 4*int64(n)*4)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	found := false
	buf := make([]byte, p.meta.PieceSize)
	for len(b) >= 4 {
		i := int(binary.BigEndian.Uint32(b))
		b = b[4:]
		if i >= n || p.haveLocked(i) {
			continue
		}
		data := buf[:p.meta.PieceLen(i)]
		if _, err := p.f.ReadAt(data, int64(i)*p.meta.PieceSize); err != nil {
			continue
		}
		if sha256.Sum256(data) == p.meta.PieceHash(i) {
			p.have[i/8] |= 0x80 >> (i % 8)
			found = true
		}
	}
	if found {
		if err := p.f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", p.part, err)
		}
		if err := p.saveState(false); err != nil {
			return err
		}
	}
	jf, err := os.OpenFile(p.journal, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	p.jf = jf
	return nil
}

// readCapped reads at most max bytes of a file.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

func readState(path string) (partialState, error) {
	var st partialState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := msgpack.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("corrupt: %w", err)
	}
	if st.Version != stateVersion {
		return st, fmt.Errorf("state version %d, this program reads %d", st.Version, stateVersion)
	}
	if err := st.Meta.Validate(); err != nil {
		return st, err
	}
	if st.Meta.ID() != st.ID {
		return st, errors.New("corrupt: metadata does not match its content ID")
	}
	n := st.Meta.NumPieces()
	if len(st.Have) != (n+7)/8 || (n%8 != 0 && st.Have[len(st.Have)-1]&(0xff>>(n%8)) != 0) {
		return st, fmt.Errorf("corrupt: have-map does not fit %d pieces", n)
	}
	return st, nil
}

// saveState writes the have-map. Callers fsync the data first: the state must never claim
// a piece the disk may not hold.
func (p *Partial) saveState(syncDir bool) error { return p.saveStateOf(p.have, syncDir) }

func (p *Partial) saveStateOf(have []byte, syncDir bool) error {
	b, err := msgpack.Marshal(&partialState{Version: stateVersion, ID: p.id, Meta: p.meta, Have: have})
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(p.state, b, 0o600, syncDir); err != nil {
		return fmt.Errorf("save download state %s: %w", p.state, err)
	}
	return nil
}

// flushLocked makes every piece verified so far durable: data first, then the have-map.
func (p *Partial) flushLocked() error {
	if p.dirty == 0 {
		return nil
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("content: sync %s: %w", p.part, err)
	}
	if err := p.saveState(false); err != nil {
		return fmt.Errorf("content: %w", err)
	}
	p.dirty = 0
	p.lastFlush = time.Now()
	return nil
}

// ID is the content being downloaded.
func (p *Partial) ID() protocol.ContentID { return p.id }

// Meta is the metadata being downloaded to.
func (p *Partial) Meta() Meta { return p.meta }

func (p *Partial) haveLocked(i int) bool { return p.have[i/8]&(0x80>>(i%8)) != 0 }

// Have reports whether piece i is verified. Out of range is false.
func (p *Partial) Have(i int) bool {
	if i < 0 || i >= p.meta.NumPieces() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.haveLocked(i)
}

// Missing lists the pieces not yet verified, in order.
func (p *Partial) Missing() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.meta.NumPieces()
	out := make([]int, 0, n-p.verified)
	for i := range n {
		if !p.haveLocked(i) {
			out = append(out, i)
		}
	}
	return out
}

// Bitfield returns a copy of the have-map: bit i, most significant bit of each byte first
// (as BitTorrent orders it), is set when piece i is verified.
func (p *Partial) Bitfield() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.have...)
}

// Errors of ReadAt: the piece is not verified yet, or the range is not in the file.
var (
	ErrNotVerified = errors.New("piece not verified")
	ErrOutOfRange  = errors.New("outside the file")
)

// ReadAt fills buf from piece i, starting off bytes into it. Only verified pieces
// can be read, so a peer that uploads while it downloads never passes on bytes
// it has not checked.
func (p *Partial) ReadAt(i int, off int64, buf []byte) error {
	if i < 0 || i >= p.meta.NumPieces() || off < 0 || off+int64(len(buf)) > p.meta.PieceLen(i) {
		return fmt.Errorf("content: read piece %d at %d+%d: %w", i, off, len(buf), ErrOutOfRange)
	}
	p.ioMu.RLock()
	defer p.ioMu.RUnlock()
	p.mu.Lock()
	closed, have, f := p.closed, p.haveLocked(i), p.f
	p.mu.Unlock()
	if closed {
		return fmt.Errorf("content: read piece %d of %s: %w", i, p.final, os.ErrClosed)
	}
	if !have {
		return fmt.Errorf("content: read piece %d of %s: %w", i, p.final, ErrNotVerified)
	}
	if _, err := f.ReadAt(buf, int64(i)*p.meta.PieceSize+off); err != nil {
		return fmt.Errorf("content: read piece %d of %s: %w", i, p.part, err)
	}
	return nil
}

// Done reports whether every piece is verified.
func (p *Partial) Done() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verified == p.meta.NumPieces()
}

// Verified is the number of verified pieces.
func (p *Partial) Verified() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verified
}

// BytesVerified is the total length of the verified pieces.
func (p *Partial) BytesVerified() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytesVerified
}

// WritePiece checks data against piece i's hash and, if it matches, writes it and marks
// the piece verified. A mismatch (or a wrong length) wraps ErrBadPiece and writes nothing.
// A piece already verified is accepted and not written again. A failed write (a full disk,
// say) is returned wrapped, with the os error intact for errors.Is, and leaves every
// verified piece as it was.
func (p *Partial) WritePiece(i int, data []byte) error {
	return p.writePiece(i, data, sha256.Sum256)
}

// WritePieceHashed is WritePiece for a caller that hashed data with SHA-256 as it
// arrived (while the bytes were still in cache) and passes the digest; the digest
// is checked against the piece hash exactly as WritePiece checks its own.
func (p *Partial) WritePieceHashed(i int, data []byte, sum [32]byte) error {
	return p.writePiece(i, data, func([]byte) [32]byte { return sum })
}

func (p *Partial) writePiece(i int, data []byte, hash func([]byte) [32]byte) error {
	n := p.meta.NumPieces()
	if i < 0 || i >= n {
		return fmt.Errorf("content: piece %d out of range [0, %d)", i, n)
	}
	if int64(len(data)) != p.meta.PieceLen(i) {
		return fmt.Errorf("%w: piece %d is %d bytes, want %d", ErrBadPiece, i, len(data), p.meta.PieceLen(i))
	}
	// Hash outside any lock: it is the expensive part and pieces arrive in parallel.
	if hash(data) != p.meta.PieceHash(i) {
		return fmt.Errorf("%w: piece %d of %s", ErrBadPiece, i, p.id.Short())
	}

	p.ioMu.RLock()
	defer p.ioMu.RUnlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("content: write piece %d: download %w", i, os.ErrClosed)
	}
	if p.haveLocked(i) {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()

	if _, err := p.f.WriteAt(data, int64(i)*p.meta.PieceSize); err != nil {
		return fmt.Errorf("content: write piece %d to %s: %w", i, p.part, err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.haveLocked(i) { // another goroutine wrote the same piece meanwhile
		return nil
	}
	p.have[i/8] |= 0x80 >> (i % 8)
	p.verified++
	p.bytesVerified += int64(len(data))
	p.dirty++
	p.appendJournal(i)
	if err := p.flushErr; err != nil {
		p.flushErr = nil
		return fmt.Errorf("piece %d is written but saving which pieces are: %w", i, err)
	}
	if (p.dirty >= flushPieces || time.Since(p.lastFlush) >= flushInterval) && !p.flushing {
		// Save in the background: an fsync takes long, and pieces keep coming.
		p.flushing = true
		go p.flushBackground()
	}
	return nil
}

// appendJournal records a verified piece until the next save of the have-map. A
// failed append only narrows what a crash keeps, so it is not an error of the write.
func (p *Partial) appendJournal(i int) {
	if p.jf == nil {
		return
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(i))
	if _, err := p.jf.Write(b[:]); err != nil {
		p.jf.Close()
		p.jf = nil
	}
}

// flushBackground saves a snapshot of the have-map taken before the data is synced,
// so the state on disk never claims a piece whose bytes the sync did not cover.
func (p *Partial) flushBackground() {
	p.ioMu.RLock()
	defer p.ioMu.RUnlock()
	p.mu.Lock()
	if p.closed {
		p.flushing = false
		p.mu.Unlock()
		return
	}
	have := slices.Clone(p.have)
	dirty := p.dirty
	p.dirty, p.lastFlush = 0, time.Now()
	p.mu.Unlock()
	err := p.f.Sync()
	if err != nil {
		err = fmt.Errorf("content: sync %s: %w", p.part, err)
	} else if err = p.saveStateOf(have, false); err != nil {
		err = fmt.Errorf("content: %w", err)
	}
	p.mu.Lock()
	p.flushing = false
	if err != nil {
		p.flushErr = err
		p.dirty += dirty
	}
	p.mu.Unlock()
}

// Flush makes every piece verified so far survive a crash. WritePiece does this on its own
// every so often; call it to bound the loss more tightly.
func (p *Partial) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	return p.flushLocked()
}

// Finish completes a download whose pieces are all verified: it syncs the data, moves
// the .part to the final path and removes the state. If the final path already holds a
// file with the same content, that file is kept; a different file there is never
// overwritten (the error wraps fs.ErrExist and the complete .part stays for the caller to
// move). After Finish, successful or not, the Partial is closed; a complete download can
// be reopened and finished again.
func (p *Partial) Finish() error {
	p.ioMu.Lock()
	defer p.ioMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return nil
	}
	if p.closed {
		return fmt.Errorf("content: finish %s: download %w", p.final, os.ErrClosed)
	}
	if n := p.meta.NumPieces(); p.verified != n {
		return fmt.Errorf("content: finish %s: %d of %d pieces still missing", p.final, n-p.verified, n)
	}
	// Save the complete have-map first, so a failure below still resumes as complete.
	p.dirty++
	err := p.flushLocked()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.closeJournal(err == nil)
	p.closed = true
	if err != nil {
		return err
	}

	// A hard link refuses to replace an existing file, atomically.
	renamed := false
	var linkErr error
	if p.replace {
		if err := os.Rename(p.part, p.final); err != nil {
			return fmt.Errorf("content: finish %s: %w", p.final, err)
		}
		renamed = true
	} else {
		linkErr = os.Link(p.part, p.final)
	}
	if linkErr != nil && !errors.Is(linkErr, fs.ErrExist) {
		// This filesystem has no hard links; check, then rename (a small race remains).
		if _, err := os.Lstat(p.final); errors.Is(err, fs.ErrNotExist) {
			if err := os.Rename(p.part, p.final); err != nil {
				return fmt.Errorf("content: finish %s: %w", p.final, err)
			}
			linkErr, renamed = nil, true
		}
	}
	if linkErr != nil {
		if same, err := sameContent(p.final, &p.meta); err != nil || !same {
			return fmt.Errorf("content: finish: %w: %s is a different file; the complete download is in %s",
				fs.ErrExist, p.final, p.part)
		}
	}
	if !renamed {
		if err := os.Remove(p.part); err != nil {
			return fmt.Errorf("content: finish %s: %w", p.final, err)
		}
	}
	if err := os.Remove(p.state); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content: finish %s: %w", p.final, err)
	}
	p.finished = true
	return syncPath(filepath.Dir(p.final))
}

// sameContent reports whether the file at path is the content m describes.
func sameContent(path string, m *Meta) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != m.Size {
		return false, err
	}
	got, err := HashReader(f, m.Size, m.PieceSize)
	if err != nil {
		return false, err
	}
	return got.ID() == m.ID(), nil
}

// Close saves the have-map and closes the file; the download can be reopened later. It
// is safe to call twice and after Finish.
func (p *Partial) Close() error {
	p.ioMu.Lock()
	defer p.ioMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.flushLocked()
	p.closeJournal(err == nil)
	return errors.Join(err, p.f.Close())
}

// closeJournal closes the journal, and removes it when the saved have-map holds
// everything it records.
func (p *Partial) closeJournal(saved bool) {
	if p.jf != nil {
		p.jf.Close()
		p.jf = nil
	}
	if saved {
		os.Remove(p.journal)
	}
}
