// Package webui is the peer daemon's web page for the local user: search,
// downloads with live progress, the inbox, sending to a user, and status.
// It serves embedded assets and the daemon's control API on a loopback TCP
// address, to a browser that shows the token the daemon wrote in its data
// directory (mode 600), which only the local user can read. It is not for
// remote use: the Host header must name a loopback address.
package webui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
)

//go:embed assets
var assets embed.FS

// Backend is what the page asks of the daemon beyond the control API.
type Backend interface {
	// InboxOpen opens an arrival the inbox lists; a name it does not list
	// is protocol.ErrNotFound.
	InboxOpen(name string) (*os.File, error)
	Send(ctx context.Context, user, path string) (apitype.SendResult, error)
}

// Config is the web server's.
type Config struct {
	// Listen is the TCP address, loopback (default 127.0.0.1:7654). When
	// it is taken, a free port on the same host is used instead.
	Listen string
	// API is the daemon's control API, served under /v1/ and, for its
	// metrics, at /metrics.
	API     http.Handler
	Backend Backend
	// TokenFile is where the token is written, mode 600, for `peer web`.
	TokenFile string
	// UploadDir holds files the page sends while they go out.
	UploadDir string
	// MaxUpload bounds a file sent from the page.
	MaxUpload int64
	Log       zerolog.Logger
}

// Server is the running page.
type Server struct {
	cfg   Config
	ln    net.Listener
	srv   *http.Server
	token string
	once  sync.Once
}

// defaultMaxUpload bounds a file sent from the page unless MaxUpload says.
const defaultMaxUpload = 4 << 30

// cookieName holds the token once the browser has shown it.
const cookieName = "supernet_session"

// ErrNotLoopback refuses a listen address off this host.
var ErrNotLoopback = errors.New("web UI: the address must be loopback (127.0.0.1 or ::1): the page is for the local user")

// New listens and writes a new token.
func New(cfg Config) (*Server, error) {
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("web UI: %w", err)
	}
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return nil, ErrNotLoopback
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		// Another daemon of this user may hold the usual port.
		ln2, err2 := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err2 != nil {
			return nil, fmt.Errorf("web UI: %w", err)
		}
		cfg.Log.Info().Err(err).Str("listen", ln2.Addr().String()).Msg("web UI port taken; using another")
		ln = ln2
	}
	if cfg.UploadDir != "" {
		os.RemoveAll(cfg.UploadDir) // what a crash left of files being sent
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = defaultMaxUpload
	}
	var b [24]byte
	rand.Read(b[:])
	s := &Server{cfg: cfg, ln: ln, token: base64.RawURLEncoding.EncodeToString(b[:])}
	if cfg.TokenFile != "" {
		if err := renameio.WriteFile(cfg.TokenFile, []byte(s.token+"\n"), 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("web UI token: %w", err)
		}
	}
	s.srv = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 32 << 10}
	return s, nil
}

// Addr is where the page is served.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL opens the page and hands the browser the token.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() + "/?token=" + s.token }

// Serve answers until Close.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the server; safe twice.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.srv.Close()
		s.ln.Close()
		if s.cfg.TokenFile != "" {
			os.Remove(s.cfg.TokenFile)
		}
	})
	return nil
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(assets, "assets")
	mux.Handle("/", http.FileServerFS(sub))
	mux.Handle("/v1/", s.cfg.API)
	mux.Handle("GET /metrics", s.cfg.API) // the daemon's, as on its control socket
	mux.HandleFunc("GET /web/inbox/{name}", s.inboxFile)
	mux.HandleFunc("POST /web/send", s.send)
	return s.guard(mux)
}

// guard admits requests from the local user's browser alone: to this very
// host name (no DNS rebinding), with the token in the cookie, and for
// changes from this page's origin.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.ownHost(r.Host) {
			http.Error(w, "web UI: wrong host", http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/" && r.URL.Query().Has("token") {
			if !s.tokenOK(r.URL.Query().Get("token")) {
				http.Error(w, "web UI: this link's token is stale; run `peer web` for the current one", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther) // the token leaves the address bar
			return
		}
		c, err := r.Cookie(cookieName)
		if err != nil || !s.tokenOK(c.Value) {
			if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok || !s.tokenOK(bearer) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintln(w, "This page belongs to the peer daemon's user. Open the link `peer web` prints.")
				return
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
				http.Error(w, "web UI: cross-origin request", http.StatusForbidden)
				return
			}
		}
		if r.URL.Path == "/" || strings.HasSuffix(r.URL.Path, ".html") {
			h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; media-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) tokenOK(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// ownHost reports whether host is how a browser on this machine names the
// listener: a loopback address or localhost, on its port.
func (s *Server) ownHost(host string) bool {
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		return false
	}
	_, own, _ := net.SplitHostPort(s.ln.Addr().String())
	if port != own {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// inline are the types an arrival may be shown as in the browser; others
// are saved. Nothing a stranger sent runs script here: the answer is
// sandboxed.
var inline = map[string]bool{"text/plain": true, "application/pdf": true, "image/png": true, "image/jpeg": true,
	"image/gif": true, "image/webp": true, "audio/mpeg": true, "audio/ogg": true, "audio/flac": true, "audio/mp4": true,
	"audio/wav": true, "video/mp4": true, "video/webm": true}

func (s *Server) inboxFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f, err := s.cfg.Backend.InboxOpen(name)
	switch {
	case errors.Is(err, protocol.ErrNotFound):
		http.Error(w, "no such file in the inbox", http.StatusNotFound)
		return
	case errors.Is(err, os.ErrNotExist):
		http.Error(w, "cannot open it: "+err.Error(), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ctype, _, _ := mime.ParseMediaType(mime.TypeByExtension(filepath.Ext(name)))
	disp := "attachment"
	if inline[ctype] && !r.URL.Query().Has("save") {
		disp = "inline"
	}
	if ctype == "" || !inline[ctype] {
		ctype = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": name}))
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// send takes a file from the page and hands it to the user's inbox. The
// file waits in UploadDir under its own name, which the receiver sees.
func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUpload+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		http.Error(w, "want a form with a user and a file", http.StatusBadRequest)
		return
	}
	var user, path string
	defer func() {
		if path != "" {
			os.RemoveAll(filepath.Dir(path))
		}
	}()
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			http.Error(w, "reading the form: "+err.Error(), http.StatusBadRequest)
			return
		}
		switch p.FormName() {
		case "user":
			b, _ := io.ReadAll(io.LimitReader(p, 256))
			user = strings.TrimSpace(string(b))
		case "file":
			if path != "" {
				http.Error(w, "one file at a time", http.StatusBadRequest)
				return
			}
			if path, err = s.keep(p); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
	}
	if user == "" || path == "" {
		http.Error(w, "want a user and a file", http.StatusBadRequest)
		return
	}
	res, err := s.cfg.Backend.Send(r.Context(), user, path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"user":%q,"stored_as":%q,"path":%q}`+"\n", res.User, res.StoredAs, res.Path)
}

// keep writes an uploaded part to a folder of its own, under its base name.
func (s *Server) keep(p *multipart.Part) (string, error) {
	name := filepath.Base(strings.ReplaceAll(p.FileName(), "\\", "/"))
	if name == "." || name == "/" || name == "" || strings.HasPrefix(name, ".") {
		return "", errors.New("the file needs a name")
	}
	if err := os.MkdirAll(s.cfg.UploadDir, 0o700); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(s.cfg.UploadDir, "send")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	_, err = io.Copy(f, io.LimitReader(p, s.cfg.MaxUpload+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if fi, serr := os.Stat(path); err == nil && serr == nil && fi.Size() > s.cfg.MaxUpload {
		err = fmt.Errorf("the file is larger than %d bytes", s.cfg.MaxUpload)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return path, nil
}
