package peer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/swarm"
	"github.com/supernet-p2p/supernet/transport"
)

// Inbox policies: who may hand this peer files.
const (
	InboxAnyone   = "anyone"   // every peer
	InboxAccepted = "accepted" // the peers and users in Config.AcceptFrom
	InboxNobody   = "nobody"
)

// inboxIndex lists what arrived, in the inbox folder.
const inboxIndex = ".inbox.json"

// InboxLimits bound what deliveries in progress may hold, so that senders who
// announce large files and then stall cannot keep the disk, or the inbox,
// from honest senders. A delivery claims the bytes it announced and has not
// yet sent; the disk behind a claim is reserved a step at a time as the bytes
// arrive. Zero fields take their defaults.
type InboxLimits struct {
	// Deliveries caps deliveries in progress from all senders together
	// (default 16).
	Deliveries int
	// SenderDeliveries caps one sender's deliveries in progress, by peer ID
	// (default 4).
	SenderDeliveries int
	// SenderBytes caps the bytes one sender has announced and not yet sent
	// (default Config.InboxMaxBytes, so one file of the largest size fits).
	SenderBytes int64
	// FreeShare is the share of the inbox file system's free space that all
	// deliveries in progress may claim together (default 0.5). A file larger
	// than that share is refused as if the disk were full.
	FreeShare float64
	// StallTimeout aborts a delivery whose sender sends nothing for this long
	// (default 30 s).
	StallTimeout time.Duration
	// MinRate aborts a delivery that averages fewer bytes per second than this
	// over a StallTimeout (default 16 KiB/s).
	MinRate int64
	// StallHoldoff refuses new deliveries from a sender for this long after
	// one of its deliveries was aborted for stalling, so that it cannot hold
	// its claims by announcing again at once (default 4 StallTimeouts).
	StallHoldoff time.Duration
}

func (lim InboxLimits) withDefaults(maxBytes int64) InboxLimits {
	if lim.Deliveries <= 0 {
		lim.Deliveries = 16
	}
	if lim.SenderDeliveries <= 0 {
		lim.SenderDeliveries = 4
	}
	lim.SenderDeliveries = min(lim.SenderDeliveries, lim.Deliveries)
	if lim.SenderBytes <= 0 {
		lim.SenderBytes = maxBytes
	}
	if lim.FreeShare <= 0 {
		lim.FreeShare = 0.5
	}
	lim.FreeShare = min(lim.FreeShare, 1)
	if lim.StallTimeout <= 0 {
		lim.StallTimeout = 30 * time.Second
	}
	if lim.MinRate <= 0 {
		lim.MinRate = 16 << 10
	}
	if lim.StallHoldoff <= 0 {
		lim.StallHoldoff = 4 * lim.StallTimeout
	}
	return lim
}

// inboxStep is how far ahead of the bytes received the disk is reserved: a
// stalled delivery holds at most this much disk until its deadline, and a
// fast one makes one reservation per step (about eight a second at a
// gigabit).
const inboxStep = 16 << 20

// inbox keeps what other peers delivered.
type inbox struct {
	d    *Daemon
	dir  string
	lim  InboxLimits
	load *inboxLoad
	// free is the free space of dir's file system.
	free func() (int64, error)
	// refusals share one sampler, so a sender opening stream after stream
	// cannot flood the log.
	refusals zerolog.Sampler
	mu       sync.Mutex // serialises naming and the index
}

func newInbox(d *Daemon) *inbox {
	dir := d.inboxDir()
	lim := d.cfg.InboxLimits.withDefaults(d.cfg.InboxMaxBytes)
	ib := &inbox{d: d, dir: dir, lim: lim, load: newInboxLoad(lim),
		free:     func() (int64, error) { return content.FreeSpace(dir) },
		refusals: &zerolog.BurstSampler{Burst: 10, Period: time.Second}}
	ib.sweep()
	return ib
}

// incomingPrefix names the files of deliveries in progress.
const incomingPrefix = ".incoming-"

// sweep removes what deliveries in progress left when the daemon last
// stopped without ending them (a crash, a power cut): nothing is in progress
// before the daemon starts, and those files may hold reserved disk.
func (ib *inbox) sweep() {
	entries, err := os.ReadDir(ib.dir)
	if err != nil {
		return // no inbox yet
	}
	n := 0
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), incomingPrefix) {
			if err := os.Remove(filepath.Join(ib.dir, e.Name())); err == nil {
				n++
			}
		}
	}
	if n > 0 {
		ib.d.log.Info().Int("files", n).Msg("removed unfinished deliveries from the inbox")
	}
}

func (d *Daemon) inboxDir() string {
	if d.cfg.InboxDir != "" {
		return d.cfg.InboxDir
	}
	return filepath.Join(d.cfg.DataDir, "inbox")
}

// Inbox lists the files that arrived, oldest first.
func (d *Daemon) Inbox() ([]apitype.InboxEntry, error) {
	d.inbox.mu.Lock()
	defer d.inbox.mu.Unlock()
	return d.inbox.readIndex()
}

func (ib *inbox) readIndex() ([]apitype.InboxEntry, error) {
	b, err := os.ReadFile(filepath.Join(ib.dir, inboxIndex))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []apitype.InboxEntry
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("inbox index %s: %w", filepath.Join(ib.dir, inboxIndex), err)
	}
	return out, nil
}

// allowed reports whether the peer on l may deliver to us. A username in
// AcceptFrom counts only when the directory maps it to that very peer.
func (d *Daemon) allowed(ctx context.Context, from protocol.PeerID, user string) error {
	switch d.cfg.InboxPolicy {
	case InboxAnyone:
		return nil
	case InboxNobody:
		return fmt.Errorf("%w: this peer takes no deliveries", protocol.ErrForbidden)
	}
	if slices.Contains(d.cfg.AcceptFrom, from.String()) {
		return nil
	}
	if user != "" && slices.Contains(d.cfg.AcceptFrom, user) {
		res, err := d.Lookup(ctx, user)
		if err == nil && res.PeerID == from.String() {
			return nil
		}
	}
	return fmt.Errorf("%w: deliveries only from accepted senders", protocol.ErrForbidden)
}

// serveDeliver takes a delivery on stream s, whose first frame was m. The
// delivery is checked against the policy and the limits before a file is
// made; the disk is then reserved a step ahead of the bytes, and a sender
// that stalls is cut off at its deadline. Whatever ends a delivery early
// removes its file and gives its claim back.
func (d *Daemon) serveDeliver(l *transport.Link, s transport.LinkStream, br *bufio.Reader, m *protocol.Deliver) error {
	ib := d.inbox
	refuse := func(err error) error {
		s.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
		protocol.WriteMessage(s, protocol.ErrorMessage(publicError(err)))
		s.CancelRead(1)
		lg := l.Log().Sample(ib.refusals)
		lg.Info().Err(err).Str("file", m.Name).Int64("bytes", m.Size).Msg("delivery refused")
		return err
	}
	if m.Size > d.cfg.InboxMaxBytes {
		return refuse(fmt.Errorf("%w: %d bytes, the inbox takes at most %d", protocol.ErrForbidden, m.Size, d.cfg.InboxMaxBytes))
	}
	c, err := ib.load.enter(l.Peer)
	if err != nil {
		return refuse(err)
	}
	defer c.release() // after the file is gone (defers run last first)
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.SearchTimeout)
	err = d.allowed(ctx, l.Peer, m.From)
	cancel()
	if err != nil {
		return refuse(err)
	}
	if err := os.MkdirAll(ib.dir, 0o700); err != nil {
		return refuse(&localError{public: errInboxInternal, detail: err})
	}
	if err := c.admit(m.Size, ib.free); err != nil {
		return refuse(err)
	}
	tmp, err := os.CreateTemp(ib.dir, incomingPrefix+"*")
	if err != nil {
		return refuse(&localError{public: errInboxInternal, detail: err})
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := &inboxWriter{f: tmp, c: c, size: m.Size}
	// The first step is reserved before any byte moves: a full disk refuses
	// here, not gigabytes later.
	if err := w.reserve(min(m.Size, 1)); err != nil {
		return refuse(err)
	}
	h := sha256.New()
	r := &paceReader{s: s, r: io.LimitReader(br, m.Size), stall: ib.lim.StallTimeout, minRate: ib.lim.MinRate, since: time.Now()}
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if errors.Is(err, protocol.ErrTimeout) {
		c.abort()
	}
	if err == nil && n < m.Size {
		err = fmt.Errorf("%w: the sender stopped after %d of %d bytes", protocol.ErrBadRequest, n, m.Size)
	}
	if err == nil && !slices.Equal(h.Sum(nil), m.SHA256) {
		err = fmt.Errorf("%w: the bytes do not match their SHA-256", protocol.ErrBadRequest)
	}
	if err == nil {
		if err = tmp.Sync(); err == nil {
			err = tmp.Close()
		}
		if err != nil {
			err = diskError(err)
		}
	}
	if err != nil {
		return refuse(err)
	}
	name, err := ib.store(tmp.Name(), apitype.InboxEntry{Size: m.Size, SHA256: fmt.Sprintf("%x", m.SHA256),
		FromPeer: l.Peer.String(), FromUser: m.From, At: time.Now().UTC()}, m.Name)
	if err != nil {
		return refuse(&localError{public: errInboxInternal, detail: err})
	}
	done = true
	l.Log().Info().Str("file", name).Int64("bytes", m.Size).Str("from_user", m.From).Msg("delivery stored in the inbox")
	return protocol.WriteMessage(s, &protocol.Delivered{Name: name})
}

// refuseWriteTimeout bounds the write of a refusal: a sender that reads
// nothing must not hold the stream open.
const refuseWriteTimeout = 5 * time.Second

var errInboxInternal = fmt.Errorf("%w: the inbox cannot store the file", protocol.ErrInternal)

// diskError is what the sender is told of a failed write: a full disk is
// unavailable, anything else internal; the system error stays in the log.
func diskError(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return &localError{public: fmt.Errorf("%w: the inbox's disk is full", protocol.ErrUnavailable), detail: err}
	}
	return &localError{public: errInboxInternal, detail: err}
}

// inboxWriter writes a delivery to its temporary file, reserving the disk a
// step ahead of the bytes: a disk that fills meanwhile fails the delivery at
// a step's start, and a stalled sender holds at most a step of disk.
type inboxWriter struct {
	f                        *os.File
	c                        *inboxClaim
	size, written, allocated int64
}

// reserve makes sure the disk is reserved up to end.
func (w *inboxWriter) reserve(end int64) error {
	if end <= w.allocated {
		return nil
	}
	next := min(w.size, max(end, w.allocated+inboxStep))
	if err := content.Preallocate(w.f, next); err != nil {
		w.c.noRoom()
		return &localError{public: fmt.Errorf("%w: the inbox has no room for %d bytes", protocol.ErrUnavailable, w.size), detail: err}
	}
	w.allocated = next
	w.c.progress(w.written, w.allocated)
	return nil
}

func (w *inboxWriter) Write(b []byte) (int, error) {
	if err := w.reserve(w.written + int64(len(b))); err != nil {
		return 0, err
	}
	n, err := w.f.Write(b)
	w.written += int64(n)
	w.c.progress(w.written, w.allocated)
	if err != nil {
		return n, diskError(err)
	}
	return n, nil
}

// paceReader reads a delivery's bytes and fails with ErrTimeout when the
// sender stalls: nothing for stall, or fewer than minRate bytes a second on
// average over a window of at least stall.
type paceReader struct {
	s       transport.LinkStream
	r       io.Reader
	stall   time.Duration
	minRate int64
	since   time.Time // the window's start
	got     int64     // bytes in the window
}

func (p *paceReader) Read(b []byte) (int, error) {
	p.s.SetReadDeadline(time.Now().Add(p.stall))
	n, err := p.r.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, fmt.Errorf("%w: the sender sent nothing for %s", protocol.ErrTimeout, p.stall)
	}
	p.got += int64(n)
	if now := time.Now(); now.Sub(p.since) >= p.stall {
		if want := int64(float64(p.minRate) * now.Sub(p.since).Seconds()); p.got < want {
			return n, fmt.Errorf("%w: the sender sent %d bytes in %s, fewer than %d a second",
				protocol.ErrTimeout, p.got, now.Sub(p.since).Round(time.Millisecond), p.minRate)
		}
		p.since, p.got = now, 0
	}
	return n, err
}

// store moves the finished file in under a name no other file has, and
// records it in the index.
func (ib *inbox) store(tmp string, e apitype.InboxEntry, want string) (string, error) {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	ext := filepath.Ext(want)
	stem := strings.TrimSuffix(want, ext)
	if strings.HasPrefix(stem, ".") {
		stem = "_" + stem // never hidden, never the index
	}
	for i := 0; i < 1000; i++ {
		name := stem + ext
		if i > 0 {
			name = fmt.Sprintf("%s (%d)%s", stem, i, ext)
		}
		// A hard link fails where the name exists, so nothing is replaced.
		err := os.Link(tmp, filepath.Join(ib.dir, name))
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		os.Remove(tmp)
		e.Name = name
		list, err := ib.readIndex()
		if err != nil {
			return "", err
		}
		b, err := json.MarshalIndent(append(list, e), "", "  ")
		if err != nil {
			return "", err
		}
		return name, content.WriteFileAtomic(filepath.Join(ib.dir, inboxIndex), b, 0o600, true)
	}
	return "", fmt.Errorf("no free name for %q", want)
}

// Send hands the file at path to the user's inbox: it looks the user up,
// connects to the user's peer (directly or through a relay, as the
// supernodes plan it) and streams the file, checked against its SHA-256 at
// the other end.
func (d *Daemon) Send(ctx context.Context, user, path string) (apitype.SendResult, error) {
	start := time.Now()
	f, name, size, sum, err := openForSend(path)
	if err != nil {
		return apitype.SendResult{}, err
	}
	defer f.Close()
	_, rec, err := d.lookup(ctx, user)
	if err != nil {
		return apitype.SendResult{}, err
	}
	if rec.Peer() == d.ID() {
		return apitype.SendResult{}, fmt.Errorf("%w: %s is this peer", protocol.ErrBadRequest, user)
	}
	src := protocol.Source{Peer: rec.Peer(), Addrs: rec.Addrs, NAT: rec.NAT}
	if len(rec.Supernodes) > 0 {
		sn := rec.Supernodes[0]
		src.SN = &sn
	}
	stored, via, err := d.deliverFile(ctx, src, user, f, name, size, sum)
	if err != nil {
		return apitype.SendResult{}, err
	}
	return apitype.SendResult{User: user, PeerID: rec.Peer().String(), StoredAs: stored, Size: size,
		Path: via, Seconds: time.Since(start).Seconds()}, nil
}

// openForSend opens the file at path and hashes it, before any peer is
// asked, so the stream carries the bytes without a pause.
func openForSend(path string) (f *os.File, name string, size int64, sum []byte, err error) {
	f, err = os.Open(path)
	if err != nil {
		return nil, "", 0, nil, err
	}
	fail := func(err error) (*os.File, string, int64, []byte, error) {
		f.Close()
		return nil, "", 0, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%s is not a regular file", path))
	}
	name = filepath.Base(path)
	if err := protocol.CheckFileName(name); err != nil {
		return fail(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, name, fi.Size(), h.Sum(nil), nil
}

// deliverFile streams size bytes of f, whose SHA-256 is sum, to the peer at src
// (user names it in errors), and returns the name the file was stored under
// and the path it took.
func (d *Daemon) deliverFile(ctx context.Context, src protocol.Source, user string, f *os.File, name string, size int64, sum []byte) (stored, path string, err error) {
	lease, err := d.conns.Acquire(ctx, src)
	if err != nil {
		return "", "", fmt.Errorf("connecting to %s: %w", user, err)
	}
	defer lease.Release()
	link := lease.Link()
	if !protocol.Supports(link.Version, protocol.TypeDeliver) {
		return "", "", fmt.Errorf("%w: %s's peer speaks protocol v%d, deliveries need v%d",
			protocol.ErrUnsupportedVersion, user, link.Version, protocol.VersionUsers)
	}
	s, err := link.OpenStream(ctx)
	if err != nil {
		return "", "", err
	}
	stop := context.AfterFunc(ctx, func() { s.CancelRead(0); s.CancelWrite(0) })
	defer stop()
	// The answer can come early (a refusal): read it while writing, and stop
	// writing when it says no.
	type reply struct {
		name string
		err  error
	}
	answer := make(chan reply, 1)
	go func() {
		var r reply
		m, err := link.NewStreamReader(s, 4096).ReadMessage(nil)
		switch m := m.(type) {
		case *protocol.Delivered:
			r.name = m.Name
		case *protocol.Error:
			err = m.AsError()
		case nil:
		default:
			err = fmt.Errorf("%w: %s answered a delivery with %s", protocol.ErrBadRequest, user, m.Type())
		}
		if err != nil {
			s.CancelWrite(0)
		}
		r.err = err
		answer <- r
	}()
	w := bufio.NewWriterSize(s, 64<<10)
	werr := protocol.WriteMessage(w, &protocol.Deliver{Name: name, Size: size, SHA256: sum, From: d.cfg.Username})
	if werr == nil {
		var n int64
		n, werr = io.Copy(w, io.LimitReader(f, size))
		if werr == nil && n < size {
			werr = fmt.Errorf("%s shrank while being sent", f.Name())
		}
	}
	if werr == nil {
		werr = w.Flush()
	}
	if werr != nil {
		s.CancelWrite(0)
	} else {
		s.Close()
	}
	var r reply
	select {
	case r = <-answer:
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	if r.err != nil {
		return "", "", fmt.Errorf("%s refused or lost the delivery: %w", user, r.err)
	}
	if werr != nil {
		return "", "", werr
	}
	return r.name, lease.Path(), nil
}

// errNoSuchArrival is a name the inbox index does not list.
var errNoSuchArrival = fmt.Errorf("%w: no such file in the inbox", protocol.ErrNotFound)

// arrivalLocked is the index entry of name, which must be listed: only
// names the index holds are touched, never a path a caller made up.
func (ib *inbox) arrivalLocked(list []apitype.InboxEntry, name string) (int, error) {
	i := slices.IndexFunc(list, func(e apitype.InboxEntry) bool { return e.Name == name })
	if i < 0 || name != filepath.Base(name) {
		return -1, fmt.Errorf("%w: %q (`peer inbox` lists them)", errNoSuchArrival, name)
	}
	return i, nil
}

// InboxOpen opens an arrival the index lists, for reading.
func (d *Daemon) InboxOpen(name string) (*os.File, error) {
	f, _, err := d.inbox.open(name)
	return f, err
}

// open opens the arrival called name, which the index must list, and
// returns its entry.
func (ib *inbox) open(name string) (*os.File, apitype.InboxEntry, error) {
	ib.mu.Lock()
	list, err := ib.readIndex()
	i := -1
	if err == nil {
		i, err = ib.arrivalLocked(list, name)
	}
	ib.mu.Unlock()
	if err != nil {
		return nil, apitype.InboxEntry{}, err
	}
	f, err := os.Open(filepath.Join(ib.dir, name))
	return f, list[i], err
}

// InboxRemove deletes the named arrivals, files and index entries; a name
// not listed fails the call before anything is deleted.
func (d *Daemon) InboxRemove(names []string) error {
	ib := d.inbox
	ib.mu.Lock()
	defer ib.mu.Unlock()
	list, err := ib.readIndex()
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, err := ib.arrivalLocked(list, n); err != nil {
			return err
		}
	}
	for _, n := range names {
		i, err := ib.arrivalLocked(list, n)
		if err != nil {
			continue // named twice
		}
		if err := os.Remove(filepath.Join(ib.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		list = slices.Delete(list, i, i+1)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return content.WriteFileAtomic(filepath.Join(ib.dir, inboxIndex), b, 0o600, true)
}

// InboxSave copies an arrival out of the inbox to a target, by the rules of
// a download's (swarm.Target), checks the copy against the SHA-256 the
// sender announced, and returns where it went. The arrival stays listed.
func (d *Daemon) InboxSave(name string, to apitype.Target) (string, error) {
	src, e, err := d.inbox.open(name)
	if err != nil {
		return "", err
	}
	defer src.Close()
	path, err := swarm.TargetPath(to, name, protocol.ContentID{})
	if err != nil {
		return "", err
	}
	dst, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithPermissions(0o644))
	if err != nil {
		return "", err
	}
	defer dst.Cleanup()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(dst, h), src); err != nil {
		return "", fmt.Errorf("copy %s: %w", name, err)
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != e.SHA256 {
		return "", fmt.Errorf("%s in the inbox is not what arrived (SHA-256 %s, not %s): it changed since", name, got, e.SHA256)
	}
	if err := dst.CloseAtomicallyReplace(); err != nil {
		return "", err
	}
	return path, nil
}
