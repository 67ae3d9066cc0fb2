package webui

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
)

type fakeBackend struct {
	dir  string
	sent []string // user:name:content
}

// InboxOpen lists note.txt and evil.html, as the daemon's inbox would.
func (f *fakeBackend) InboxOpen(name string) (*os.File, error) {
	if name != "note.txt" && name != "evil.html" {
		return nil, fmt.Errorf("%w: no such file in the inbox", protocol.ErrNotFound)
	}
	return os.Open(filepath.Join(f.dir, name))
}

func (f *fakeBackend) Send(_ context.Context, user, path string) (apitype.SendResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return apitype.SendResult{}, err
	}
	f.sent = append(f.sent, user+":"+filepath.Base(path)+":"+string(b))
	return apitype.SendResult{User: user, StoredAs: filepath.Base(path), Path: "direct"}, nil
}

func start(t *testing.T) (*Server, *fakeBackend, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"note.txt": "hello", "evil.html": "<script>alert(1)</script>", "secret.txt": "not listed"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fb := &fakeBackend{dir: dir}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api "+r.URL.Path) })
	token := filepath.Join(t.TempDir(), "web.token")
	s, err := New(Config{Listen: "127.0.0.1:0", API: api, Backend: fb, TokenFile: token,
		UploadDir: filepath.Join(t.TempDir(), "up"), MaxUpload: 1 << 20, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	b, err := os.ReadFile(token)
	if err != nil || !strings.Contains(s.URL(), strings.TrimSpace(string(b))) {
		t.Fatalf("token file %q, %v; URL %s", b, err, s.URL())
	}
	if fi, _ := os.Stat(token); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode().Perm())
	}
	return s, fb, "http://" + s.Addr().String()
}

func do(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestGuard(t *testing.T) {
	s, _, base := start(t)
	stranger := &http.Client{}
	if code, body, _ := do(t, stranger, "GET", base+"/", nil, nil); code != 401 || !strings.Contains(body, "peer web") {
		t.Errorf("without the token: %d %q", code, body)
	}
	if code, _, _ := do(t, stranger, "GET", base+"/v1/status", nil, nil); code != 401 {
		t.Errorf("the API without the token: %d", code)
	}
	if code, _, _ := do(t, stranger, "GET", base+"/?token=wrong", nil, nil); code != 401 {
		t.Errorf("a wrong token: %d", code)
	}
	jar, _ := cookiejar.New(nil)
	me := &http.Client{Jar: jar}
	code, body, _ := do(t, me, "GET", s.URL(), nil, nil)
	if code != 200 || !strings.Contains(body, "<title>supernet peer</title>") {
		t.Fatalf("with the token: %d %.100q", code, body)
	}
	if code, body, _ := do(t, me, "GET", base+"/v1/status", nil, nil); code != 200 || body != "api /v1/status" {
		t.Errorf("the API with the cookie: %d %q", code, body)
	}
	if code, _, _ := do(t, me, "GET", base+"/app.js", nil, nil); code != 200 {
		t.Errorf("assets: %d", code)
	}
	// DNS rebinding: a name that resolves here, but is not this host.
	if code, _, _ := do(t, me, "GET", base+"/v1/status", nil, map[string]string{"Host": "evil.example:" + port(s)}); code != 403 {
		t.Errorf("a foreign Host: %d", code)
	}
	if code, _, _ := do(t, me, "POST", base+"/v1/get", strings.NewReader("{}"), map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Errorf("a cross-origin POST: %d", code)
	}
	if code, _, _ := do(t, stranger, "GET", base+"/v1/status", nil, map[string]string{"Authorization": "Bearer " + strings.TrimPrefix(s.URL()[strings.Index(s.URL(), "token=")+6:], "")}); code != 200 {
		t.Errorf("a bearer token: %d", code)
	}
}

func port(s *Server) string {
	a := s.Addr().String()
	return a[strings.LastIndex(a, ":")+1:]
}

func TestInboxFiles(t *testing.T) {
	s, _, base := start(t)
	jar, _ := cookiejar.New(nil)
	me := &http.Client{Jar: jar}
	do(t, me, "GET", s.URL(), nil, nil)
	code, body, h := do(t, me, "GET", base+"/web/inbox/note.txt", nil, nil)
	if code != 200 || body != "hello" || !strings.HasPrefix(h.Get("Content-Disposition"), "inline") || !strings.Contains(h.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("note.txt: %d %q %v", code, body, h)
	}
	if _, _, h := do(t, me, "GET", base+"/web/inbox/note.txt?save", nil, nil); !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") {
		t.Errorf("save: %v", h)
	}
	// A page a stranger sent is never shown as one.
	code, _, h = do(t, me, "GET", base+"/web/inbox/evil.html", nil, nil)
	if code != 200 || h.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") {
		t.Errorf("evil.html: %d %v", code, h)
	}
	for _, name := range []string{"secret.txt", "..%2Fweb.token", "%2Fetc%2Fpasswd"} {
		if code, _, _ := do(t, me, "GET", base+"/web/inbox/"+name, nil, nil); code != 404 {
			t.Errorf("%s: %d, want 404", name, code)
		}
	}
}

func TestSend(t *testing.T) {
	s, fb, base := start(t)
	jar, _ := cookiejar.New(nil)
	me := &http.Client{Jar: jar}
	do(t, me, "GET", s.URL(), nil, nil)
	form := func(user, name string, size int) (io.Reader, string) {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		w.WriteField("user", user)
		fw, _ := w.CreateFormFile("file", name)
		fw.Write(bytes.Repeat([]byte("x"), size))
		w.Close()
		return &buf, w.FormDataContentType()
	}
	body, ct := form("bob", "letter.txt", 5)
	if code, out, _ := do(t, me, "POST", base+"/web/send", body, map[string]string{"Content-Type": ct}); code != 200 || !strings.Contains(out, `"stored_as":"letter.txt"`) {
		t.Fatalf("send: %d %s", code, out)
	}
	if len(fb.sent) != 1 || fb.sent[0] != "bob:letter.txt:xxxxx" {
		t.Errorf("sent %q", fb.sent)
	}
	body, ct = form("bob", "big.bin", 2<<20)
	if code, _, _ := do(t, me, "POST", base+"/web/send", body, map[string]string{"Content-Type": ct}); code != 400 {
		t.Errorf("a file over the limit: %d", code)
	}
	body, ct = form("bob", "../../.bashrc", 3)
	if code, _, _ := do(t, me, "POST", base+"/web/send", body, map[string]string{"Content-Type": ct}); code != 400 {
		t.Errorf("a hidden name: %d", code)
	}
	// Nothing is left in the upload folder.
	if left, _ := os.ReadDir(s.cfg.UploadDir); len(left) > 0 {
		t.Errorf("upload folder keeps %d entries", len(left))
	}
}

func TestNotLoopback(t *testing.T) {
	if _, err := New(Config{Listen: "0.0.0.0:0"}); err != ErrNotLoopback {
		t.Errorf("0.0.0.0: %v", err)
	}
}
