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
	"time"

	"github.com/quic-go/quic-go"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
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

// InboxEntry is one file that arrived.
type InboxEntry struct {
	Name     string    `json:"name"` // as stored in the inbox folder
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	FromPeer string    `json:"from_peer"`
	FromUser string    `json:"from_user,omitempty"` // as the sender named itself; checked when the policy needed it
	At       time.Time `json:"at"`
}

// SendResult is a finished delivery.
type SendResult struct {
	User     string  `json:"user"`
	PeerID   string  `json:"peer_id"`
	StoredAs string  `json:"stored_as"`
	Size     int64   `json:"size"`
	Path     string  `json:"path"`    // direct or relayed
	Seconds  float64 `json:"seconds"` // from lookup to stored
}

// inbox keeps what other peers delivered.
type inbox struct {
	d   *Daemon
	dir string
	mu  sync.Mutex // serialises naming and the index
}

func (d *Daemon) inboxDir() string {
	if d.cfg.InboxDir != "" {
		return d.cfg.InboxDir
	}
	return filepath.Join(d.cfg.DataDir, "inbox")
}

// Inbox lists the files that arrived, oldest first.
func (d *Daemon) Inbox() ([]InboxEntry, error) {
	d.inbox.mu.Lock()
	defer d.inbox.mu.Unlock()
	return d.inbox.readIndex()
}

func (ib *inbox) readIndex() ([]InboxEntry, error) {
	b, err := os.ReadFile(filepath.Join(ib.dir, inboxIndex))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []InboxEntry
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

// serveDeliver takes a delivery on stream s, whose first frame was m.
func (d *Daemon) serveDeliver(l *transport.Link, s *quic.Stream, br *bufio.Reader, m *protocol.Deliver) error {
	refuse := func(err error) error {
		protocol.WriteMessage(s, protocol.ErrorMessage(err))
		s.CancelRead(1)
		l.Log().Info().Err(err).Str("file", m.Name).Msg("delivery refused")
		return err
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.SearchTimeout)
	err := d.allowed(ctx, l.Peer, m.From)
	cancel()
	if err != nil {
		return refuse(err)
	}
	if m.Size > d.cfg.InboxMaxBytes {
		return refuse(fmt.Errorf("%w: %d bytes, the inbox takes at most %d", protocol.ErrForbidden, m.Size, d.cfg.InboxMaxBytes))
	}
	ib := d.inbox
	if err := os.MkdirAll(ib.dir, 0o700); err != nil {
		return refuse(fmt.Errorf("%w: inbox: %v", protocol.ErrInternal, err))
	}
	tmp, err := os.CreateTemp(ib.dir, ".incoming-*")
	if err != nil {
		return refuse(fmt.Errorf("%w: inbox: %v", protocol.ErrInternal, err))
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Reserve the space first: a full disk is refused before any byte moves.
	if err := content.Preallocate(tmp, m.Size); err != nil {
		return refuse(fmt.Errorf("%w: %v", protocol.ErrUnavailable, err))
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(br, m.Size))
	if err == nil && n < m.Size {
		err = fmt.Errorf("%w: the sender stopped after %d of %d bytes", protocol.ErrBadRequest, n, m.Size)
	}
	if err == nil && !slices.Equal(h.Sum(nil), m.SHA256) {
		err = fmt.Errorf("%w: the bytes do not match their SHA-256", protocol.ErrBadRequest)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		return refuse(err)
	}
	name, err := ib.store(tmp.Name(), InboxEntry{Size: m.Size, SHA256: fmt.Sprintf("%x", m.SHA256),
		FromPeer: l.Peer.String(), FromUser: m.From, At: time.Now().UTC()}, m.Name)
	if err != nil {
		return refuse(fmt.Errorf("%w: inbox: %v", protocol.ErrInternal, err))
	}
	done = true
	l.Log().Info().Str("file", name).Int64("bytes", m.Size).Str("from_user", m.From).Msg("delivery stored in the inbox")
	return protocol.WriteMessage(s, &protocol.Delivered{Name: name})
}

// store moves the finished file in under a name no other file has, and
// records it in the index.
func (ib *inbox) store(tmp string, e InboxEntry, want string) (string, error) {
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
func (d *Daemon) Send(ctx context.Context, user, path string) (SendResult, error) {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return SendResult{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return SendResult{}, err
	}
	if !fi.Mode().IsRegular() {
		return SendResult{}, fmt.Errorf("%s is not a regular file", path)
	}
	name := filepath.Base(path)
	if err := protocol.CheckFileName(name); err != nil {
		return SendResult{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return SendResult{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return SendResult{}, err
	}
	who, err := d.Lookup(ctx, user)
	if err != nil {
		return SendResult{}, err
	}
	rec := who.rec
	if rec.Peer() == d.ID() {
		return SendResult{}, fmt.Errorf("%w: %s is this peer", protocol.ErrBadRequest, user)
	}
	src := protocol.Source{Peer: rec.Peer(), Addrs: rec.Addrs, NAT: rec.NAT}
	if len(rec.Supernodes) > 0 {
		sn := rec.Supernodes[0]
		src.SN = &sn
	}
	pl, err := d.conns.acquire(ctx, src)
	if err != nil {
		return SendResult{}, fmt.Errorf("connecting to %s: %w", user, err)
	}
	defer d.conns.release(pl)
	if pl.link.Version < protocol.VersionUsers {
		return SendResult{}, fmt.Errorf("%w: %s's peer speaks protocol v%d, deliveries need v%d",
			protocol.ErrUnsupportedVersion, user, pl.link.Version, protocol.VersionUsers)
	}
	s, err := pl.link.Conn().OpenStreamSync(ctx)
	if err != nil {
		return SendResult{}, err
	}
	stop := context.AfterFunc(ctx, func() { s.CancelRead(0); s.CancelWrite(0) })
	defer stop()
	// The answer can come early (a refusal): read it while writing.
	answer := make(chan error, 1)
	var stored string
	go func() {
		m, err := protocol.ReadMessage(bufio.NewReader(s), nil)
		switch m := m.(type) {
		case *protocol.Delivered:
			stored = m.Name
		case *protocol.Error:
			err = m.AsError()
		case nil:
		default:
			err = fmt.Errorf("%w: %s answered a delivery with %s", protocol.ErrBadRequest, user, m.Type())
		}
		answer <- err
	}()
	w := bufio.NewWriterSize(s, 64<<10)
	werr := protocol.WriteMessage(w, &protocol.Deliver{Name: name, Size: fi.Size(), SHA256: h.Sum(nil), From: d.cfg.Username})
	if werr == nil {
		var n int64
		n, werr = io.Copy(w, io.LimitReader(f, fi.Size()))
		if werr == nil && n < fi.Size() {
			werr = fmt.Errorf("%s shrank while being sent", path)
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
	select {
	case err = <-answer:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return SendResult{}, fmt.Errorf("%s refused or lost the delivery: %w", user, err)
	}
	if werr != nil {
		return SendResult{}, werr
	}
	return SendResult{User: user, PeerID: rec.Peer().String(), StoredAs: stored, Size: fi.Size(),
		Path: pl.path, Seconds: time.Since(start).Seconds()}, nil
}
