package peer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
)

// blockSize is the most bytes asked for in one request; larger pieces are
// fetched in several blocks.
const blockSize = 256 << 10

// maxSources caps the sources one download talks to at once.
const maxSources = 8

// Progress is the state of one download, sent to the CLI as it changes.
type Progress struct {
	ContentID string  `json:"content_id"`
	Name      string  `json:"name,omitempty"`
	Path      string  `json:"path,omitempty"`
	State     string  `json:"state"` // locating, connecting, downloading, done, failed
	Size      int64   `json:"size"`
	Verified  int64   `json:"verified_bytes"`
	Pieces    int     `json:"pieces"`
	Have      int     `json:"pieces_verified"`
	Resumed   int     `json:"pieces_resumed,omitempty"`
	Sources   int     `json:"sources"`
	Active    int     `json:"active_sources"`
	BadPieces int     `json:"bad_pieces,omitempty"`
	Banned    int     `json:"banned_sources,omitempty"`
	Rate      float64 `json:"rate_bytes_per_sec"`
	Error     string  `json:"error,omitempty"`
}

const (
	pieceMissing = iota
	pieceAssigned
	pieceVerified
)

type download struct {
	d    *Daemon
	cid  protocol.ContentID
	out  string // requested output path or directory; "" for the daemon's cwd
	hint string // name from the search hit

	ctx    context.Context
	cancel context.CancelFunc

	metaOnce sync.Once
	metaErr  error
	metaDone chan struct{}
	meta     content.Meta
	part     *content.Partial

	mu       sync.Mutex
	state    []uint8
	queue    []int
	banned   map[protocol.PeerID]bool
	active   int
	prog     Progress
	complete chan struct{}
	requeued chan struct{} // closed and replaced whenever pieces return to the queue
	verifyCh chan verifyJob
	bufs     chan []byte // piece buffers, recycled once a piece is written
	wg       sync.WaitGroup
}

// A free list rather than a sync.Pool: the pool is emptied at every GC, and a
// fresh 256 KiB buffer costs a zeroing pass over memory.
func (dl *download) pieceBuf(n int64) []byte {
	select {
	case b := <-dl.bufs:
		return b[:n]
	default:
		return make([]byte, n, dl.meta.PieceSize)
	}
}

func (dl *download) recycle(b []byte) {
	if int64(cap(b)) == dl.meta.PieceSize {
		select {
		case dl.bufs <- b:
		default:
		}
	}
}

type verifyJob struct {
	w      *worker
	piece  int
	data   []byte
	sum    [32]byte
	hashed bool // sum is the SHA-256 of data, taken as it arrived
}

// Get downloads a content ID to out (a file path, an existing directory, or ""
// for the current directory) and returns the final path. onProgress, if set, is
// called about five times a second and once at the end.
func (d *Daemon) Get(ctx context.Context, cid protocol.ContentID, out string, onProgress func(Progress)) (string, error) {
	d.wg.Add(1)
	defer d.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()

	dl := &download{
		d: d, cid: cid, out: out, ctx: ctx, cancel: cancel,
		metaDone: make(chan struct{}),
		banned:   make(map[protocol.PeerID]bool),
		complete: make(chan struct{}),
		requeued: make(chan struct{}),
		bufs:     make(chan []byte, 64),
		prog:     Progress{ContentID: cid.String(), State: "locating"},
	}
	report := func() {
		if onProgress != nil {
			onProgress(dl.snapshot())
		}
	}
	path, err := dl.run(report)
	dl.mu.Lock()
	if err != nil {
		dl.prog.State, dl.prog.Error = "failed", err.Error()
	} else {
		dl.prog.State, dl.prog.Path = "done", path
	}
	dl.mu.Unlock()
	report()
	return path, err
}

func (dl *download) snapshot() Progress {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.prog
}

func (dl *download) run(report func()) (string, error) {
	d := dl.d
	if dl.cid.IsZero() { // on the wire the zero ID means "no content ID"
		return "", fmt.Errorf("%w: %s", ErrNothingFound, dl.cid)
	}
	// Ask the overlay for the current sources even after a search: a keyword search
	// may have stopped at the first supernode that filled its limit, and sources
	// come and go. What the search found still counts if the lookup fails.
	_, lookupErr := d.Search(dl.ctx, "", dl.cid, 0, nil)
	hit, ok := d.srcs.get(dl.cid)
	if !ok && lookupErr != nil {
		return "", fmt.Errorf("locating sources: %w", lookupErr)
	}
	var sources []protocol.Source
	for _, s := range hit.Sources {
		if s.Peer != d.ID() {
			sources = append(sources, s)
		}
	}
	if len(sources) == 0 {
		return "", fmt.Errorf("%w: %s", ErrNothingFound, dl.cid)
	}
	dl.hint = hit.Name
	dl.mu.Lock()
	dl.prog.Name, dl.prog.Size, dl.prog.Sources, dl.prog.State = hit.Name, hit.Size, len(sources), "connecting"
	dl.mu.Unlock()

	workersDone := make(chan struct{})
	go func() {
		dl.runSources(sources)
		close(workersDone)
	}()
	tick := time.NewTicker(d.cfg.ProgressInterval)
	defer tick.Stop()
	var lastBytes int64
	last := time.Now()
	for {
		select {
		case <-dl.complete:
		case <-workersDone:
		case <-tick.C:
			dl.mu.Lock()
			now := time.Now()
			if dt := now.Sub(last).Seconds(); dt > 0 {
				dl.prog.Rate = 0.5*dl.prog.Rate + 0.5*float64(dl.prog.Verified-lastBytes)/dt
			}
			lastBytes, last = dl.prog.Verified, now
			dl.mu.Unlock()
			report()
			continue
		}
		break
	}
	dl.cancel()
	<-workersDone
	dl.wg.Wait()
	if dl.part == nil {
		if dl.metaErr != nil {
			return "", dl.metaErr
		}
		return "", dl.failure(sources)
	}
	defer dl.part.Close()
	if !dl.part.Done() {
		if err := dl.d.ctx.Err(); err != nil {
			return "", ErrDaemonClosed
		}
		return "", dl.failure(sources)
	}
	if err := dl.part.Finish(); err != nil {
		return "", err
	}
	dl.d.log.Info().Str("content_id", dl.cid.Short()).Str("path", dl.prog.Path).Msg("download complete")
	return dl.prog.Path, nil
}

func (dl *download) failure(sources []protocol.Source) error {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.part != nil {
		return fmt.Errorf("%d of %d pieces verified; no source could supply the rest (%d sources, %d banned for bad data); run the same command again to resume",
			dl.prog.Have, dl.prog.Pieces, len(sources), len(dl.banned))
	}
	return fmt.Errorf("no source could be reached (%d tried)", len(sources))
}

// runSources runs up to maxSources workers; when one ends, the next untried
// source takes its place.
func (dl *download) runSources(sources []protocol.Source) {
	sem := make(chan struct{}, maxSources)
	var wg sync.WaitGroup
	for _, s := range sources {
		select {
		case sem <- struct{}{}:
		case <-dl.ctx.Done():
		}
		if dl.ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w := &worker{dl: dl, src: s}
			if err := w.run(); err != nil && dl.ctx.Err() == nil {
				dl.d.log.Info().Err(err).Str("peer_id", s.Peer.Short()).Str("content_id", dl.cid.Short()).Msg("source dropped")
			}
		}()
	}
	wg.Wait()
}

// setMeta adopts the first valid metadata and opens the partial file.
func (dl *download) setMeta(m content.Meta, name string) error {
	dl.metaOnce.Do(func() {
		defer close(dl.metaDone)
		if name == "" {
			name = dl.hint
		}
		path, err := outputPath(dl.out, name, dl.cid)
		if err != nil {
			dl.metaErr = err
			dl.cancel()
			return
		}
		p, err := content.OpenPartial(path, m)
		if err != nil {
			dl.metaErr = err
			dl.cancel()
			return
		}
		n := m.NumPieces()
		dl.mu.Lock()
		dl.meta, dl.part = m, p
		dl.state = make([]uint8, n)
		for i := 0; i < n; i++ {
			if p.Have(i) {
				dl.state[i] = pieceVerified
				dl.prog.Have++
				dl.prog.Resumed++
				dl.prog.Verified += m.PieceLen(i)
			} else {
				dl.queue = append(dl.queue, i)
			}
		}
		dl.prog.Path, dl.prog.Size, dl.prog.Pieces, dl.prog.State = path, m.Size, n, "downloading"
		done := dl.prog.Have == n
		dl.mu.Unlock()
		dl.verifyCh = make(chan verifyJob, 8)
		for i := 0; i < min(runtime.NumCPU(), 4); i++ {
			dl.wg.Add(1)
			go dl.verifier()
		}
		if done {
			close(dl.complete)
		}
	})
	return dl.metaErr
}

// outputPath picks where a download lands: out itself, or name inside out when
// out is a directory. Names from the network are reduced to a base name.
func outputPath(out, name string, cid protocol.ContentID) (string, error) {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	if name == "." || name == "/" || name == ".." || name == "" || strings.HasPrefix(name, ".") {
		name = cid.String()
	}
	if out == "" {
		out = "."
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
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

// next hands a worker the next piece to fetch, or -1. When nothing is left in
// the queue, a piece another source is still fetching is shared (endgame), so a
// slow source cannot hold up the end.
func (dl *download) next(w *worker) int {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	for len(dl.queue) > 0 {
		i := dl.queue[0]
		dl.queue = dl.queue[1:]
		if dl.state[i] == pieceMissing {
			dl.state[i] = pieceAssigned
			return i
		}
	}
	for i, st := range dl.state {
		if st == pieceAssigned && !w.has(i) {
			return i
		}
	}
	return -1
}

// release returns a worker's unfinished pieces to the queue.
func (dl *download) release(pieces []int) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	back := false
	for _, i := range pieces {
		if dl.state[i] == pieceAssigned {
			dl.state[i] = pieceMissing
			dl.queue = append([]int{i}, dl.queue...)
			back = true
		}
	}
	if back {
		close(dl.requeued)
		dl.requeued = make(chan struct{})
	}
}

func (dl *download) requeuedChan() <-chan struct{} {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.requeued
}

func (dl *download) verifier() {
	defer dl.wg.Done()
	for {
		select {
		case j := <-dl.verifyCh:
			dl.verify(j)
		case <-dl.ctx.Done():
			return
		}
	}
}

func (dl *download) verify(j verifyJob) {
	defer dl.recycle(j.data)
	dl.mu.Lock()
	already := dl.state[j.piece] == pieceVerified
	dl.mu.Unlock()
	if already {
		j.w.pieceDone(j.piece)
		return
	}
	var err error
	if j.hashed {
		err = dl.part.WritePieceHashed(j.piece, j.data, j.sum)
	} else {
		err = dl.part.WritePiece(j.piece, j.data)
	}
	j.w.pieceDone(j.piece)
	if errors.Is(err, content.ErrBadPiece) {
		dl.mu.Lock()
		dl.prog.BadPieces++
		if !dl.banned[j.w.src.Peer] {
			dl.banned[j.w.src.Peer] = true
			dl.prog.Banned++
		}
		dl.mu.Unlock()
		dl.release([]int{j.piece})
		j.w.fail(fmt.Errorf("piece %d failed verification: source banned for this content", j.piece))
		return
	}
	if err != nil {
		dl.d.log.Error().Err(err).Str("content_id", dl.cid.Short()).Msg("writing piece")
		dl.mu.Lock()
		dl.metaErr = err
		dl.mu.Unlock()
		dl.cancel()
		return
	}
	dl.mu.Lock()
	if dl.state[j.piece] == pieceVerified {
		// Another copy of this piece (endgame, or one a dropped source had in
		// flight) was written first; count it once.
		dl.mu.Unlock()
		return
	}
	dl.state[j.piece] = pieceVerified
	dl.prog.Have++
	dl.prog.Verified += int64(len(j.data))
	done := dl.prog.Have == len(dl.state)
	dl.mu.Unlock()
	dl.d.downloaded.Add(int64(len(j.data)))
	if done {
		close(dl.complete)
	}
}

// worker fetches pieces from one source over one QUIC stream, keeping a window of
// block requests in flight.
type worker struct {
	dl  *download
	src protocol.Source

	mu     sync.Mutex
	stream *quic.Stream
	err    error
	owned  map[int]bool // pieces requested from this source and not yet verified
	failed chan struct{}
}

func (w *worker) has(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.owned[i]
}

func (w *worker) pieceDone(i int) {
	w.mu.Lock()
	delete(w.owned, i)
	w.mu.Unlock()
}

func (w *worker) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
		close(w.failed)
	}
	st := w.stream
	w.mu.Unlock()
	if st != nil {
		// The link may be shared with other downloads: end only this stream.
		st.CancelRead(1)
		st.CancelWrite(1)
	}
}

// errPathChanged ends a stream whose link was replaced by a better one, once
// everything requested on it has arrived.
var errPathChanged = errors.New("moving to a better path")

type inflight struct {
	piece  int
	buf    []byte
	left   int64     // bytes still to arrive
	h      hash.Hash // SHA-256 of the bytes so far, while they arrive in order
	hashed int64
}

// hashChunk is how much block data is read, and hashed, at a time: small enough
// that the bytes are still in cache when they are hashed.
const hashChunk = 32 << 10

func (w *worker) run() error {
	dl := w.dl
	w.owned = make(map[int]bool)
	w.failed = make(chan struct{})
	dl.mu.Lock()
	if dl.banned[w.src.Peer] {
		dl.mu.Unlock()
		return errors.New("banned")
	}
	dl.mu.Unlock()
	counted := false
	defer func() {
		if counted {
			dl.mu.Lock()
			dl.active--
			dl.prog.Active = dl.active
			dl.mu.Unlock()
		}
		w.mu.Lock()
		var left []int
		for i := range w.owned {
			left = append(left, i)
		}
		w.mu.Unlock()
		dl.release(left)
	}()
	// A link replaced by a direct one sends us round again on the new one, and
	// so does a link that died under a source that was delivering (a relay
	// lost, a NAT that forgot us): a new setup may find another path. The
	// bounds only guard against a link that keeps flapping.
	redials := 0
	for range 16 {
		pl, err := dl.d.conns.acquire(dl.ctx, w.src)
		if err != nil {
			return err
		}
		err = w.runOn(pl, &counted)
		dl.d.conns.release(pl)
		if errors.Is(err, errPathChanged) {
			pl.link.Log().Info().Str("content_id", dl.cid.String()).Msg("download moving to a direct link")
			continue
		}
		select {
		case <-pl.link.Done():
			if counted && redials < 2 && dl.ctx.Err() == nil {
				redials++
				pl.link.Log().Info().Err(err).Str("content_id", dl.cid.String()).Msg("link to source lost; setting up another")
				continue
			}
		default:
		}
		return err
	}
	return errors.New("link to source kept changing")
}

// runOn fetches over one stream of pl's link.
func (w *worker) runOn(pl *peerLink, counted *bool) error {
	dl := w.dl
	l := pl.link
	s, err := l.Conn().OpenStreamSync(dl.ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(dl.ctx, func() { s.CancelRead(0); s.CancelWrite(0) })
	defer stop()
	w.mu.Lock()
	w.stream = s
	failed := w.err != nil
	w.mu.Unlock()
	if failed {
		s.CancelWrite(1)
		return w.err
	}
	defer s.CancelRead(0)
	defer s.Close()
	// Small on purpose: block data bypasses the buffer and goes straight from the
	// stream into its piece buffer.
	br := bufio.NewReaderSize(s, 4<<10)
	if err := protocol.WriteMessage(s, &protocol.GetMeta{ID: dl.cid}); err != nil {
		return err
	}
	m, err := protocol.ReadMessage(br, nil)
	if err != nil {
		return fmt.Errorf("waiting for metadata: %w", err)
	}
	var pm *protocol.Meta
	switch m := m.(type) {
	case *protocol.Meta:
		pm = m
	case *protocol.Error:
		return m.AsError()
	default:
		return fmt.Errorf("%w: got %s instead of meta", protocol.ErrBadRequest, m.Type())
	}
	meta := content.Meta{Size: pm.Size, PieceSize: pm.PieceSize, Hashes: pm.Hashes}
	if err := meta.Validate(); err != nil {
		return fmt.Errorf("source sent invalid metadata: %w", err)
	}
	if meta.ID() != dl.cid {
		dl.mu.Lock()
		dl.banned[w.src.Peer] = true
		dl.prog.Banned++
		dl.mu.Unlock()
		return errors.New("source sent metadata of other content: banned")
	}
	if err := dl.setMeta(meta, pm.Name); err != nil {
		return err
	}
	if !*counted {
		*counted = true
		dl.mu.Lock()
		dl.active++
		dl.prog.Active = dl.active
		dl.mu.Unlock()
	}
	return w.fetch(s, br, pl.better)
}

func (w *worker) fetch(s *quic.Stream, br *bufio.Reader, better <-chan struct{}) error {
	dl := w.dl
	depth := dl.d.cfg.Pipeline
	pending := make(map[int]*inflight)
	outstanding := 0 // blocks requested and not yet received
	var reqBuf []byte
	rbuf := make([]byte, 4096)
	exhausted := false
	moving := false
	for {
		if !moving {
			select {
			case <-better:
				// Stop asking here; what is in flight still arrives on this stream.
				moving, exhausted = true, true
			default:
			}
		}
		if moving && outstanding == 0 {
			return errPathChanged
		}
		// Fill the request window.
		requeued := dl.requeuedChan()
		reqBuf = reqBuf[:0]
		for !exhausted && outstanding < depth {
			i := dl.next(w)
			if i < 0 {
				exhausted = true
				break
			}
			plen := dl.meta.PieceLen(i)
			w.mu.Lock()
			w.owned[i] = true
			w.mu.Unlock()
			pending[i] = &inflight{piece: i, buf: dl.pieceBuf(plen), left: plen, h: sha256.New()}
			for off := int64(0); off < plen; off += blockSize {
				n := min(blockSize, plen-off)
				var err error
				reqBuf, err = protocol.AppendFrame(reqBuf, &protocol.Request{Piece: uint32(i), Offset: uint32(off), Length: uint32(n)})
				if err != nil {
					return err
				}
				outstanding++
			}
		}
		if len(reqBuf) > 0 {
			if _, err := s.Write(reqBuf); err != nil {
				return w.cause(err)
			}
		}
		if outstanding == 0 {
			// Nothing to ask this source for now; stay until the download
			// completes or another source's pieces come back to the queue.
			select {
			case <-dl.complete:
				return nil
			case <-w.failed:
				return w.err
			case <-dl.ctx.Done():
				return nil
			case <-requeued:
				exhausted = false
				continue
			case <-better:
				return errPathChanged
			}
		}
		t, n, err := protocol.ReadHeader(br)
		if err != nil {
			return w.cause(err)
		}
		if t != protocol.TypeBlock {
			body, err := protocol.ReadBody(br, t, n, rbuf)
			if err != nil {
				return w.cause(err)
			}
			m, err := protocol.Decode(t, body)
			if err != nil {
				return err
			}
			if e, ok := m.(*protocol.Error); ok {
				return e.AsError()
			}
			return fmt.Errorf("%w: %s on a transfer stream", protocol.ErrBadRequest, m.Type())
		}
		// Read the block's data straight into its piece buffer.
		hdr, _ := br.Peek(min(n, 11))
		piece, off, hn, err := protocol.ParseBlockHeader(hdr)
		if err != nil {
			return err
		}
		br.Discard(hn)
		size := int64(n - hn)
		p := pending[int(piece)]
		if p == nil || int64(off)+size > int64(len(p.buf)) {
			return fmt.Errorf("%w: unrequested block piece %d offset %d", protocol.ErrBadRequest, piece, off)
		}
		for pos, end := int64(off), int64(off)+size; pos < end; {
			c := min(end-pos, hashChunk)
			if _, err := io.ReadFull(br, p.buf[pos:pos+c]); err != nil {
				return w.cause(err)
			}
			if pos == p.hashed {
				p.h.Write(p.buf[pos : pos+c])
				p.hashed += c
			}
			pos += c
		}
		p.left -= size
		outstanding--
		if p.left <= 0 {
			delete(pending, p.piece)
			job := verifyJob{w: w, piece: p.piece, data: p.buf}
			if p.hashed == int64(len(p.buf)) {
				p.h.Sum(job.sum[:0])
				job.hashed = true
			}
			select {
			case dl.verifyCh <- job:
			case <-dl.ctx.Done():
				return nil
			case <-w.failed:
				return w.err
			}
		}
	}
}

// cause prefers the reason a worker was failed over the I/O error it caused.
func (w *worker) cause(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return err
}
