// Package localapi is a peer daemon's control API, HTTP over the unix socket
// in its data directory, and the client the `peer` command talks to it with.
// Long operations (search, get) answer with newline-delimited JSON events.
// The server knows the daemon only as a Backend.
package localapi

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
	"syscall"
	"time"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
)

// ErrAlreadyRunning is a control socket another daemon answers on.
var ErrAlreadyRunning = errors.New("a peer daemon is already running for this data directory")

// SocketPath is the control socket of a data directory.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "peer.sock") }

// Backend is what the control API asks of the daemon.
type Backend interface {
	ID() protocol.PeerID
	Status() apitype.Status
	// Rescan rescans the share and says how many files it holds.
	Rescan(ctx context.Context) (files int, err error)
	Search(ctx context.Context, text string, cid protocol.ContentID, limit int, onHits func([]protocol.Hit)) (apitype.SearchResult, error)
	// Download downloads cid, refusing one already downloading.
	Download(ctx context.Context, cid protocol.ContentID, to apitype.Target, onProgress func(apitype.Progress)) (string, error)
	Connect(ctx context.Context, peer protocol.PeerID, sn *protocol.PeerID) (apitype.Attempt, error)
	Lookup(ctx context.Context, name string) (*apitype.LookupResult, error)
	Send(ctx context.Context, user, path string) (apitype.SendResult, error)
	Inbox() (apitype.InboxList, error)
	// InboxSave copies an arrival to a target; InboxRemove deletes arrivals.
	InboxSave(name string, to apitype.Target) (string, error)
	InboxRemove(names []string) error
}

// Server serves the control API on a unix socket.
type Server struct {
	b    Backend
	ln   net.Listener
	srv  *http.Server
	path string
	once sync.Once
}

// Listen opens the control socket at path. A socket left by a daemon that was
// killed is replaced; one a live daemon answers on is ErrAlreadyRunning.
func Listen(path string, b Backend) (*Server, error) {
	if _, err := os.Stat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w (%s)", ErrAlreadyRunning, path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	return &Server{b: b, ln: ln, path: path, srv: &http.Server{Handler: Handler(b), ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Handler is the control API over b, without a socket.
func Handler(b Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	mux.HandleFunc("POST /v1/rescan", func(w http.ResponseWriter, r *http.Request) {
		n, err := b.Rescan(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"files": n})
	})
	if m, ok := b.(interface{ Metrics() http.Handler }); ok {
		mux.Handle("GET /metrics", m.Metrics()) // Prometheus text
	}
	h := handlers{b}
	mux.HandleFunc("POST /v1/search", h.search)
	mux.HandleFunc("POST /v1/get", h.get)
	mux.HandleFunc("POST /v1/connect", h.connect)
	mux.HandleFunc("POST /v1/lookup", h.lookup)
	mux.HandleFunc("POST /v1/send", h.send)
	mux.HandleFunc("POST /v1/inbox/save", func(w http.ResponseWriter, r *http.Request) {
		var req apitype.InboxSaveRequest
		if !decode(w, r, &req) {
			return
		}
		path, err := b.InboxSave(req.Name, apitype.Target{Out: req.Output, Overwrite: req.Overwrite})
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, apitype.InboxSaved{Path: path})
	})
	mux.HandleFunc("POST /v1/inbox/rm", func(w http.ResponseWriter, r *http.Request) {
		var req apitype.InboxRemoveRequest
		if !decode(w, r, &req) {
			return
		}
		if len(req.Names) == 0 || len(req.Names) > maxInboxNames {
			writeErr(w, fmt.Errorf("%w: name 1 to %d files", protocol.ErrBadRequest, maxInboxNames))
			return
		}
		if err := b.InboxRemove(req.Names); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("GET /v1/inbox", func(w http.ResponseWriter, r *http.Request) {
		list, err := b.Inbox()
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, list)
	})
	return mux
}

// maxInboxNames bounds the files one removal names.
const maxInboxNames = 1000

// Serve answers requests until Close.
func (s *Server) Serve() {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = err // the listener was closed under us; Close reports nothing more
	}
}

// Close stops the server and removes the socket. Safe twice.
func (s *Server) Close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(ctx)
		s.srv.Close()
		s.ln.Close()
		os.Remove(s.path)
	})
}

// errorCode names an error for the CLI, which maps it back to a sentinel.
func errorCode(err error) (string, int) {
	switch {
	case errors.Is(err, apitype.ErrNoSupernode):
		return "no_supernode", http.StatusServiceUnavailable
	case errors.Is(err, apitype.ErrNothingFound), errors.Is(err, protocol.ErrNotFound):
		return "not_found", http.StatusNotFound
	case errors.Is(err, protocol.ErrBadContentID), errors.Is(err, protocol.ErrBadRequest):
		return "bad_request", http.StatusBadRequest
	case errors.Is(err, apitype.ErrDaemonClosed):
		return "closing", http.StatusServiceUnavailable
	case errors.Is(err, apitype.ErrExists):
		return "exists", http.StatusConflict
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, apitype.ErrDiskFull):
		return "disk_full", http.StatusInsufficientStorage
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
	Hits     []apitype.HitJSON     `json:"hits,omitempty"`
	Done     *apitype.SearchResult `json:"done,omitempty"`
	Progress *apitype.Progress     `json:"progress,omitempty"`
	Error    *errorJSON            `json:"error,omitempty"`
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

func (e *eventWriter) fail(err error) {
	code, _ := errorCode(err)
	e.send(event{Error: &errorJSON{Error: err.Error(), Code: code}})
}

// decode reads a request body of at most 64 KiB.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(v); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err))
		return false
	}
	return true
}

type handlers struct{ b Backend }

func (h handlers) search(w http.ResponseWriter, r *http.Request) {
	var req apitype.SearchRequest
	if !decode(w, r, &req) {
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
	res, err := h.b.Search(r.Context(), req.Query, cid, req.Limit, func(hits []protocol.Hit) {
		js := make([]apitype.HitJSON, len(hits))
		for i := range hits {
			js[i] = apitype.ToJSON(hits[i])
		}
		ev.send(event{Hits: js})
	})
	if err != nil {
		ev.fail(err)
		return
	}
	ev.send(event{Done: &res})
}

func (h handlers) get(w http.ResponseWriter, r *http.Request) {
	var req apitype.GetRequest
	if !decode(w, r, &req) {
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
		writeErr(w, fmt.Errorf("%w: %s", apitype.ErrNothingFound, cid))
		return
	}
	// The answer is a stream of events from the first one on, so a refusal
	// (already downloading, say) arrives as an error event.
	ev := newEventWriter(w)
	to := apitype.Target{Out: req.Output, Overwrite: req.Overwrite}
	if _, err := h.b.Download(r.Context(), cid, to, func(p apitype.Progress) { ev.send(event{Progress: &p}) }); err != nil {
		ev.fail(err)
	}
}

func (h handlers) connect(w http.ResponseWriter, r *http.Request) {
	var req apitype.ConnectRequest
	if !decode(w, r, &req) {
		return
	}
	p, err := protocol.ParsePeerID(req.PeerID)
	if err != nil {
		writeErr(w, fmt.Errorf("%w: peer ID: %v", protocol.ErrBadRequest, err))
		return
	}
	if p == h.b.ID() {
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
	att, err := h.b.Connect(r.Context(), p, sn)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, att)
}

func (h handlers) lookup(w http.ResponseWriter, r *http.Request) {
	var req apitype.LookupRequest
	if !decode(w, r, &req) {
		return
	}
	res, err := h.b.Lookup(r.Context(), req.Name)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h handlers) send(w http.ResponseWriter, r *http.Request) {
	var req apitype.SendRequest
	if !decode(w, r, &req) {
		return
	}
	if !filepath.IsAbs(req.Path) {
		writeErr(w, fmt.Errorf("%w: path %q is not absolute", protocol.ErrBadRequest, req.Path))
		return
	}
	res, err := h.b.Send(r.Context(), req.User, req.Path)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
