package localapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
)

// fakeBackend answers the control API from fixed values and records what it
// was asked.
type fakeBackend struct {
	id       protocol.PeerID
	hits     [][]protocol.Hit
	searched string
	// mu guards getErr and progress: the client has its answer from the
	// stream before the handler's Get has returned.
	mu       sync.Mutex
	getErr   error
	progress []apitype.Progress
	connects int
	sends    int
}

func (f *fakeBackend) ID() protocol.PeerID { return f.id }
func (f *fakeBackend) Status() apitype.Status {
	return apitype.Status{PeerID: f.id.String(), Name: "fake"}
}
func (f *fakeBackend) Rescan(context.Context) (int, error) { return 3, nil }
func (f *fakeBackend) Search(_ context.Context, text string, _ protocol.ContentID, _ int, onHits func([]protocol.Hit)) (apitype.SearchResult, error) {
	f.searched = text
	if text == "down" {
		return apitype.SearchResult{}, fmt.Errorf("%w: every supernode is gone", apitype.ErrNoSupernode)
	}
	for _, h := range f.hits {
		onHits(h)
	}
	return apitype.SearchResult{Supernodes: 2, Queries: 1}, nil
}
func (f *fakeBackend) Download(_ context.Context, cid protocol.ContentID, _ apitype.Target, onProgress func(apitype.Progress)) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.progress {
		onProgress(p)
	}
	return "/x", f.getErr
}
func (f *fakeBackend) Connect(context.Context, protocol.PeerID, *protocol.PeerID) (apitype.Attempt, error) {
	f.connects++
	return apitype.Attempt{Plan: "punch", Path: apitype.PathDirect}, nil
}
func (f *fakeBackend) Lookup(_ context.Context, name string) (*apitype.LookupResult, error) {
	if name == "nobody" {
		return nil, apitype.ErrNoSuchUser
	}
	return &apitype.LookupResult{Name: name, Hops: 1}, nil
}
func (f *fakeBackend) Send(context.Context, string, string) (apitype.SendResult, error) {
	f.sends++
	return apitype.SendResult{StoredAs: "a.txt"}, nil
}
func (f *fakeBackend) InboxSave(name string, _ apitype.Target) (string, error) {
	if name != "a.txt" {
		return "", fmt.Errorf("%w: no such file in the inbox", protocol.ErrNotFound)
	}
	return "/saved/a.txt", nil
}
func (f *fakeBackend) InboxRemove([]string) error { return nil }
func (f *fakeBackend) Inbox() (apitype.InboxList, error) {
	return apitype.InboxList{Dir: "/inbox", Files: []apitype.InboxEntry{{Name: "a.txt"}}}, nil
}

// serve runs the API over b on a socket in a fresh data directory and
// returns a client for it.
func serve(t *testing.T, b Backend) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "la") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv, err := Listen(SocketPath(dir), b)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve() }()
	t.Cleanup(func() { srv.Close(); <-done })
	return NewClient(dir)
}

func TestClientAgainstServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := &fakeBackend{id: protocol.PeerID{7},
		hits: [][]protocol.Hit{{{FileRecord: protocol.FileRecord{ID: protocol.ContentID{1}, Name: "a"}}}, {{FileRecord: protocol.FileRecord{ID: protocol.ContentID{2}, Name: "b"}}}}}
	c := serve(t, b)

	st, err := c.Status(ctx)
	if err != nil || st.Name != "fake" || st.PeerID != b.id.String() {
		t.Fatalf("status %+v, %v", st, err)
	}
	var got []string
	res, err := c.Search(ctx, apitype.SearchRequest{Query: "hey jude"}, func(h []apitype.HitJSON) {
		for _, x := range h {
			got = append(got, x.Name)
		}
	})
	if err != nil || res.Supernodes != 2 || fmt.Sprint(got) != "[a b]" || b.searched != "hey jude" {
		t.Fatalf("search: %+v %v %v (asked %q)", res, got, err, b.searched)
	}
	if _, err := c.Search(ctx, apitype.SearchRequest{Query: "down"}, nil); !errors.Is(err, apitype.ErrNoSupernode) {
		t.Fatalf("search with no supernode: %v", err)
	}
	if err := c.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "nobody"); !errors.Is(err, apitype.ErrNothingFound) {
		t.Fatalf("lookup of nobody: %v, want not found", err)
	}
	list, err := c.Inbox(ctx)
	if err != nil || list.Dir != "/inbox" || len(list.Files) != 1 {
		t.Fatalf("inbox %+v, %v", list, err)
	}
}

func TestGetStreamsProgressAndErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cid := protocol.ContentID{9}
	b := &fakeBackend{progress: []apitype.Progress{{State: "connecting"}, {State: "downloading", Have: 1}, {State: "done"}}}
	c := serve(t, b)
	var states []string
	last, err := c.Get(ctx, apitype.GetRequest{ContentID: cid.String()}, func(p apitype.Progress) { states = append(states, p.State) })
	if err != nil || last.State != "done" || fmt.Sprint(states) != "[connecting downloading done]" {
		t.Fatalf("get: %+v %v %v", last, states, err)
	}
	// A refusal from the backend (already downloading) reaches the CLI as
	// the sentinel it wraps.
	b.mu.Lock()
	b.progress, b.getErr = nil, fmt.Errorf("%w: %s is already downloading", protocol.ErrBadRequest, cid.Short())
	b.mu.Unlock()
	if _, err := c.Get(ctx, apitype.GetRequest{ContentID: cid.String()}, nil); !errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("second get: %v, want bad request", err)
	}
	if _, err := c.Get(ctx, apitype.GetRequest{ContentID: protocol.ContentID{}.String()}, nil); !errors.Is(err, apitype.ErrNothingFound) {
		t.Fatalf("get of the zero ID: %v", err)
	}
	if _, err := c.Get(ctx, apitype.GetRequest{ContentID: "zz"}, nil); !errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("get of a bad ID: %v", err)
	}
}

func TestRequestChecks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := &fakeBackend{id: protocol.PeerID{7}}
	c := serve(t, b)
	if _, err := c.Connect(ctx, apitype.ConnectRequest{PeerID: b.id.String()}); !errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("connect to self: %v", err)
	}
	if _, err := c.Connect(ctx, apitype.ConnectRequest{PeerID: "nope"}); !errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("connect to a bad ID: %v", err)
	}
	if _, err := c.Send(ctx, "bob", "relative/path"); !errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("send of a relative path: %v", err)
	}
	if b.connects != 0 || b.sends != 0 {
		t.Fatalf("refused requests reached the daemon: %d connects, %d sends", b.connects, b.sends)
	}
	if a, err := c.Connect(ctx, apitype.ConnectRequest{PeerID: protocol.PeerID{8}.String()}); err != nil || a.Plan != "punch" {
		t.Fatalf("connect: %+v %v", a, err)
	}
	if r, err := c.Send(ctx, "bob", filepath.Join(os.TempDir(), "f")); err != nil || r.StoredAs != "a.txt" {
		t.Fatalf("send: %+v %v", r, err)
	}
}

func TestErrorCodesRoundTrip(t *testing.T) {
	for _, base := range []error{apitype.ErrNoSupernode, apitype.ErrNothingFound, apitype.ErrDaemonClosed,
		protocol.ErrBadRequest, protocol.ErrForbidden} {
		code, status := errorCode(fmt.Errorf("wrapped: %w", base))
		if status == http.StatusInternalServerError {
			t.Errorf("%v: no code", base)
		}
		if err := fromCode(errorJSON{Error: "x", Code: code}); !errors.Is(err, base) {
			t.Errorf("%v: came back as %v", base, err)
		}
	}
	if err := fromCode(errorJSON{Error: "plain", Code: "error"}); err.Error() != "plain" {
		t.Errorf("an uncoded error: %v", err)
	}
}

func TestSecondServerRefused(t *testing.T) {
	dir, err := os.MkdirTemp("", "la")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := Listen(SocketPath(dir), &fakeBackend{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve() }()
	if _, err := Listen(SocketPath(dir), &fakeBackend{}); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second server: %v", err)
	}
	srv.Close()
	<-done
	// A socket left behind (by a daemon that was killed) is taken over.
	if err := os.WriteFile(SocketPath(dir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv2, err := Listen(SocketPath(dir), &fakeBackend{})
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	srv2.Close()
	if _, err := NewClient(dir).Status(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no daemon: %v", err)
	}
}
