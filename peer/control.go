package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// The control API is HTTP over the unix socket in the data directory. Long
// operations (search, get) answer with newline-delimited JSON events.

// Status is what `peer status` shows.
type Status struct {
	PeerID    string          `json:"peer_id"`
	Name      string          `json:"name,omitempty"`
	DataDir   string          `json:"data_dir"`
	ShareDir  string          `json:"share_dir,omitempty"`
	LocalAddr string          `json:"local_addr"`
	Supernode SupernodeStatus `json:"supernode"`
	// Supernodes are all the attachments, the primary (Supernode) first.
	Supernodes []SupernodeStatus `json:"supernodes,omitempty"`
	User       *UserStatus       `json:"user,omitempty"`
	Lead       LeadStatus        `json:"lead"`
	Shared     []SharedFile      `json:"shared"`
	SharedSize int64             `json:"shared_bytes"`
	Uploaded   int64             `json:"uploaded_bytes"`
	Downloaded int64             `json:"downloaded_bytes"`
	Downloads  []Progress        `json:"downloads,omitempty"`
	Swarms     []SwarmStatus     `json:"swarms,omitempty"`
	Links      []LinkStatus      `json:"links,omitempty"`
	Attempts   []Attempt         `json:"attempts,omitempty"`
}

// SharedFile is one file in the share, as status lists it.
type SharedFile struct {
	ContentID string         `json:"content_id"`
	Path      string         `json:"path"`
	Size      int64          `json:"size"`
	Tags      *protocol.Tags `json:"tags,omitempty"`
}

// HitJSON is a search hit on the control API.
type HitJSON struct {
	ContentID string         `json:"content_id"`
	Name      string         `json:"name"`
	Size      int64          `json:"size"`
	Tags      *protocol.Tags `json:"tags,omitempty"`
	Sources   []SourceJSON   `json:"sources"`
	Score     float32        `json:"score,omitempty"`
}

// SourceJSON is one source of a hit.
type SourceJSON struct {
	PeerID string   `json:"peer_id"`
	Name   string   `json:"name,omitempty"`
	Addrs  []string `json:"addrs"`
}

// ToJSON converts a wire hit.
func ToJSON(h protocol.Hit) HitJSON {
	j := HitJSON{ContentID: h.ID.String(), Name: h.Name, Size: h.Size, Score: h.Score}
	if !h.Tags.IsZero() {
		t := h.Tags
		j.Tags = &t
	}
	for _, s := range h.Sources {
		j.Sources = append(j.Sources, SourceJSON{PeerID: s.Peer.String(), Name: s.Name, Addrs: s.Addrs})
	}
	return j
}

// Status reports the daemon's state.
func (d *Daemon) Status() Status {
	st := Status{
		PeerID: d.ID().String(), Name: d.cfg.Name, DataDir: d.cfg.DataDir, ShareDir: d.cfg.ShareDir,
		LocalAddr: d.Addr().String(), Supernode: d.attach.snapshot(), Supernodes: d.attach.all(), User: d.user.snapshot(),
		Lead:     d.leadStatus(time.Now()),
		Uploaded: d.uploaded.Load(), Downloaded: d.downloaded.Load(),
	}
	if d.share != nil {
		for _, f := range d.share.Files() {
			sf := SharedFile{ContentID: f.ID.String(), Path: f.RelPath, Size: f.Meta.Size}
			if !f.Tags.IsZero() {
				t := f.Tags
				sf.Tags = &t
			}
			st.Shared = append(st.Shared, sf)
			st.SharedSize += f.Meta.Size
		}
	}
	d.mu.Lock()
	for _, p := range d.downloads {
		st.Downloads = append(st.Downloads, *p)
	}
	d.mu.Unlock()
	st.Swarms = d.swarmStatus()
	st.Links = d.conns.Links()
	st.Attempts = d.conns.Attempts()
	return st
}

type controlServer struct {
	ln   net.Listener
	srv  *http.Server
	path string
	once sync.Once
}

func listenControl(path string, d *Daemon) (*controlServer, error) {
	if _, err := os.Stat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w (%s)", ErrAlreadyRunning, path)
		}
		os.Remove(path) // left by a daemon that was killed
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	c := &controlServer{ln: ln, path: path, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Status())
	})
	mux.HandleFunc("POST /v1/rescan", func(w http.ResponseWriter, r *http.Request) {
		if err := d.Rescan(r.Context()); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"files": len(d.share.Files())})
	})
	mux.HandleFunc("POST /v1/search", d.handleSearch)
	mux.HandleFunc("POST /v1/get", d.handleGet)
	mux.HandleFunc("POST /v1/connect", d.handleConnect)
	mux.HandleFunc("POST /v1/lookup", d.handleLookup)
	mux.HandleFunc("POST /v1/send", d.handleSend)
	mux.HandleFunc("GET /v1/inbox", func(w http.ResponseWriter, r *http.Request) {
		list, err := d.Inbox()
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, InboxList{Dir: d.inbox.dir, Files: list})
	})
	return c, nil
}

func (c *controlServer) serve() {
	if err := c.srv.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = err // the listener was closed under us; close() reports nothing more
	}
}

func (c *controlServer) close() {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.srv.Shutdown(ctx)
		c.srv.Close()
		c.ln.Close()
		os.Remove(c.path)
	})
}

// errorCode names an error for the CLI, which maps it back to a sentinel.
func errorCode(err error) (string, int) {
	switch {
	case errors.Is(err, ErrNoSupernode):
		return "no_supernode", http.StatusServiceUnavailable
	case errors.Is(err, ErrNothingFound), errors.Is(err, protocol.ErrNotFound):
		return "not_found", http.StatusNotFound
	case errors.Is(err, protocol.ErrBadContentID), errors.Is(err, protocol.ErrBadRequest):
		return "bad_request", http.StatusBadRequest
	case errors.Is(err, ErrDaemonClosed):
		return "closing", http.StatusServiceUnavailable
	case errors.Is(err, protocol.ErrForbidden):
		return "forbidden", http.StatusForbidden
	}
	return "error", http.StatusInternalServerError
}

type errorJSON struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeErr(w http.ResponseWriter, err error) {
	code, status := errorCode(err)
	writeJSON(w, status, errorJSON{Error: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// event is one line of a streamed answer.
type event struct {
	Hits     []HitJSON     `json:"hits,omitempty"`
	Done     *SearchResult `json:"done,omitempty"`
	Progress *Progress     `json:"progress,omitempty"`
	Error    *errorJSON    `json:"error,omitempty"`
}

type eventWriter struct {
	mu sync.Mutex
	w  http.ResponseWriter
	rc *http.ResponseController
	en *json.Encoder
}

func newEventWriter(w http.ResponseWriter) *eventWriter {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &eventWriter{w: w, rc: http.NewResponseController(w), en: json.NewEncoder(w)}
}

func (e *eventWriter) send(ev event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.en.Encode(ev)
	e.rc.Flush()
}

// SearchRequest is the body of POST /v1/search.
type SearchRequest struct {
	Query     string `json:"query,omitempty"`
	ContentID string `json:"content_id,omitempty"`
	Limit     int    `json:"limit,omitempty"`
}

func (d *Daemon) handleSearch(w http.ResponseWriter, r *http.Request) {
	var req SearchRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err))
		return
	}
	var cid protocol.ContentID
	if req.ContentID != "" {
		var err error
		if cid, err = protocol.ParseContentID(req.ContentID); err != nil {
			writeErr(w, err)
			return
		}
	}
	ev := newEventWriter(w)
	res, err := d.Search(r.Context(), req.Query, cid, req.Limit, func(h []protocol.Hit) {
		js := make([]HitJSON, len(h))
		for i := range h {
			js[i] = ToJSON(h[i])
		}
		ev.send(event{Hits: js})
	})
	if err != nil {
		code, _ := errorCode(err)
		ev.send(event{Error: &errorJSON{Error: err.Error(), Code: code}})
		return
	}
	ev.send(event{Done: &res})
}

// GetRequest is the body of POST /v1/get.
type GetRequest struct {
	ContentID string `json:"content_id"`
	Output    string `json:"output,omitempty"`
}

func (d *Daemon) handleGet(w http.ResponseWriter, r *http.Request) {
	var req GetRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err))
		return
	}
	cid, err := protocol.ParseContentID(req.ContentID)
	if err != nil {
		writeErr(w, err)
		return
	}
	if cid.IsZero() {
		// A query with the zero ID means "no content ID" on the wire, so the
		// lookup would fail as an empty query; no file hashes to zero anyway.
		writeErr(w, fmt.Errorf("%w: %s", ErrNothingFound, cid))
		return
	}
	d.mu.Lock()
	if _, busy := d.downloads[cid]; busy {
		d.mu.Unlock()
		writeErr(w, fmt.Errorf("%w: %s is already downloading", protocol.ErrBadRequest, cid.Short()))
		return
	}
	d.downloads[cid] = &Progress{ContentID: cid.String(), State: "locating"}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.downloads, cid)
		d.mu.Unlock()
	}()
	ev := newEventWriter(w)
	_, err = d.Get(r.Context(), cid, req.Output, func(p Progress) {
		d.mu.Lock()
		if _, ok := d.downloads[cid]; ok {
			cp := p
			d.downloads[cid] = &cp
		}
		d.mu.Unlock()
		ev.send(event{Progress: &p})
	})
	if err != nil {
		code, _ := errorCode(err)
		ev.send(event{Error: &errorJSON{Error: err.Error(), Code: code}})
	}
}

// ConnectRequest is the body of POST /v1/connect.
type ConnectRequest struct {
	PeerID    string `json:"peer_id"`
	Supernode string `json:"supernode,omitempty"` // the peer's supernode, if known
}

func (d *Daemon) handleConnect(w http.ResponseWriter, r *http.Request) {
	var req ConnectRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err))
		return
	}
	p, err := protocol.ParsePeerID(req.PeerID)
	if err != nil {
		writeErr(w, fmt.Errorf("%w: peer ID: %v", protocol.ErrBadRequest, err))
		return
	}
	if p == d.ID() {
		writeErr(w, fmt.Errorf("%w: that is this peer's own ID", protocol.ErrBadRequest))
		return
	}
	var sn *protocol.PeerID
	if req.Supernode != "" {
		s, err := protocol.ParsePeerID(req.Supernode)
		if err != nil {
			writeErr(w, fmt.Errorf("%w: supernode ID: %v", protocol.ErrBadRequest, err))
			return
		}
		sn = &s
	}
	att, err := d.Connect(r.Context(), p, sn)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, att)
}

// LookupRequest is the body of POST /v1/lookup.
type LookupRequest struct {
	Name string `json:"name"`
}

func (d *Daemon) handleLookup(w http.ResponseWriter, r *http.Request) {
	var req LookupRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err))
		return
	}
	res, err := d.Lookup(r.Context(), req.Name)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// SendRequest is the body of POST /v1/send.
type SendRequest struct {
	User string `json:"user"`
	Path string `json:"path"` // absolute: the daemon's working folder is not the caller's
}

// InboxList is what GET /v1/inbox returns.
type InboxList struct {
	Dir   string       `json:"dir"`
	Files []InboxEntry `json:"files"`
}

func (d *Daemon) handleSend(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err))
		return
	}
	if !filepath.IsAbs(req.Path) {
		writeErr(w, fmt.Errorf("%w: path %q is not absolute", protocol.ErrBadRequest, req.Path))
		return
	}
	res, err := d.Send(r.Context(), req.User, req.Path)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
