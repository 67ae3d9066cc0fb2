package localapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
)

// ErrNoDaemon means no daemon answers on the data directory's control socket.
var ErrNoDaemon = errors.New("no peer daemon is running")

// Client talks to a daemon over its control socket.
type Client struct {
	DataDir string
	sock    string
	hc      *http.Client
}

// NewClient makes a client for the daemon of dataDir.
func NewClient(dataDir string) *Client {
	sock := SocketPath(dataDir)
	return &Client{
		DataDir: dataDir,
		sock:    sock,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}},
	}
}

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://peer"+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%w for data directory %s (start one with `peer up`)", ErrNoDaemon, c.DataDir)
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e errorJSON
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e) != nil || e.Error == "" {
			return nil, fmt.Errorf("daemon answered %s", resp.Status)
		}
		return nil, fromCode(e)
	}
	return resp, nil
}

// fromCode turns an error event back into an error wrapping the right sentinel.
func fromCode(e errorJSON) error {
	var base error
	switch e.Code {
	case "no_supernode":
		base = apitype.ErrNoSupernode
	case "not_found":
		base = apitype.ErrNothingFound
	case "bad_request":
		base = protocol.ErrBadRequest
	case "closing":
		base = apitype.ErrDaemonClosed
	case "exists":
		base = apitype.ErrExists
	case "disk_full":
		base = apitype.ErrDiskFull
	case "forbidden":
		base = protocol.ErrForbidden
	default:
		return errors.New(e.Error)
	}
	return &codedError{msg: e.Error, base: base}
}

type codedError struct {
	msg  string
	base error
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.base }

// Status fetches the daemon's status.
func (c *Client) Status(ctx context.Context) (apitype.Status, error) {
	var st apitype.Status
	resp, err := c.do(ctx, http.MethodGet, "/v1/status", nil)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// Rescan asks the daemon to rescan its share now.
func (c *Client) Rescan(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/rescan", struct{}{})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func (c *Client) stream(ctx context.Context, path string, body any, on func(event) error) error {
	resp, err := c.do(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("bad event from daemon: %w", err)
		}
		if ev.Error != nil {
			return fromCode(*ev.Error)
		}
		if err := on(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() == nil {
			// The daemon went away mid-answer: killed, or it crashed.
			return fmt.Errorf("%w: %v", errEndOfStream, err)
		}
		return err
	}
	return errEndOfStream
}

var errEndOfStream = errors.New("the daemon stopped answering (did it stop?); a download resumes when run again")

// Search runs a search; onHits gets hits as they stream in.
func (c *Client) Search(ctx context.Context, req apitype.SearchRequest, onHits func([]apitype.HitJSON)) (apitype.SearchResult, error) {
	var res apitype.SearchResult
	err := c.stream(ctx, "/v1/search", req, func(ev event) error {
		if len(ev.Hits) > 0 && onHits != nil {
			onHits(ev.Hits)
		}
		if ev.Done != nil {
			res = *ev.Done
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) {
		err = nil
	}
	return res, err
}

var errDone = errors.New("done")

// Get downloads a content ID; onProgress gets progress as it changes.
func (c *Client) Get(ctx context.Context, req apitype.GetRequest, onProgress func(apitype.Progress)) (apitype.Progress, error) {
	var last apitype.Progress
	err := c.stream(ctx, "/v1/get", req, func(ev event) error {
		if ev.Progress != nil {
			last = *ev.Progress
			if onProgress != nil {
				onProgress(last)
			}
			if last.State == "done" {
				return errDone
			}
		}
		return nil
	})
	if errors.Is(err, errDone) {
		err = nil
	}
	return last, err
}

// Connect asks the daemon to set up a link to a peer and reports how it went.
func (c *Client) Connect(ctx context.Context, req apitype.ConnectRequest) (apitype.Attempt, error) {
	var a apitype.Attempt
	resp, err := c.do(ctx, http.MethodPost, "/v1/connect", req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&a)
	return a, err
}

// Lookup resolves a username through the daemon's supernodes.
func (c *Client) Lookup(ctx context.Context, name string) (apitype.LookupResult, error) {
	var res apitype.LookupResult
	resp, err := c.do(ctx, http.MethodPost, "/v1/lookup", apitype.LookupRequest{Name: name})
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&res)
	return res, err
}

// Send asks the daemon to deliver the file at path (absolute) to user.
func (c *Client) Send(ctx context.Context, user, path string) (apitype.SendResult, error) {
	var res apitype.SendResult
	resp, err := c.do(ctx, http.MethodPost, "/v1/send", apitype.SendRequest{User: user, Path: path})
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&res)
	return res, err
}

// InboxSave copies an arrival out of the inbox and says where to.
func (c *Client) InboxSave(ctx context.Context, req apitype.InboxSaveRequest) (string, error) {
	var out apitype.InboxSaved
	resp, err := c.do(ctx, http.MethodPost, "/v1/inbox/save", req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out.Path, err
}

// InboxRemove deletes arrivals from the inbox.
func (c *Client) InboxRemove(ctx context.Context, names []string) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/inbox/rm", apitype.InboxRemoveRequest{Names: names})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Inbox lists what other peers delivered.
func (c *Client) Inbox(ctx context.Context) (apitype.InboxList, error) {
	var list apitype.InboxList
	resp, err := c.do(ctx, http.MethodGet, "/v1/inbox", nil)
	if err != nil {
		return list, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&list)
	return list, err
}
