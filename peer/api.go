package peer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
)

// Status reports the daemon's state.
func (d *Daemon) Status() apitype.Status {
	st := apitype.Status{
		PeerID: d.ID().String(), Name: d.cfg.Name, DataDir: d.cfg.DataDir, ShareDir: d.cfg.ShareDir,
		LocalAddr: d.Addr().String(), Supernode: d.supernodeStatus(), Supernodes: d.attach.All(), User: d.user.snapshot(),
		Lead:     d.leadStatus(time.Now()),
		Uploaded: d.swarms.Uploaded(), Downloaded: d.swarms.Downloaded(),
	}
	if d.share != nil {
		for _, f := range d.share.Files() {
			sf := apitype.SharedFile{ContentID: f.ID.String(), Path: f.RelPath, Size: f.Meta.Size}
			if !f.Tags.IsZero() {
				t := f.Tags
				sf.Tags = &t
			}
			st.Shared = append(st.Shared, sf)
			st.SharedSize += f.Meta.Size
		}
	}
	if d.web != nil {
		st.Web = "http://" + d.web.Addr().String() + "/"
	}
	st.Downloads = d.swarms.Downloads()
	st.Swarms = d.swarms.Status()
	st.Links = d.conns.Links()
	st.Attempts = d.conns.Attempts()
	return st
}

// WebTokenFile holds the web page's token in the data dir while it runs.
const WebTokenFile = "web.token"

// WebURL opens the web page with its token; empty without one.
func (d *Daemon) WebURL() string {
	if d.web == nil {
		return ""
	}
	return d.web.URL()
}

// backend is the daemon as the control API sees it.
type backend struct{ *Daemon }

func (b backend) Rescan(ctx context.Context) (int, error) {
	if err := b.Daemon.Rescan(ctx); err != nil {
		return 0, err
	}
	if b.share == nil {
		return 0, nil
	}
	return len(b.share.Files()), nil
}

func (b backend) Inbox() (apitype.InboxList, error) {
	list, err := b.Daemon.Inbox()
	return apitype.InboxList{Dir: b.inbox.dir, Files: list}, err
}

func (b backend) Search(ctx context.Context, text string, cid protocol.ContentID, limit int, onHits func([]protocol.Hit)) (apitype.SearchResult, error) {
	return b.Daemon.Search(ctx, text, cid, limit, onHits)
}

// Get downloads a content ID to out (a file path, an existing directory, or ""
// for the current directory) and returns the final path. onProgress, if set, is
// called about five times a second and once at the end. While it runs the
// daemon uploads the pieces it has to the other peers of the swarm, and after it
// returns it keeps serving the file.
func (d *Daemon) Get(ctx context.Context, cid protocol.ContentID, out string, onProgress func(apitype.Progress)) (string, error) {
	return d.swarms.Get(ctx, cid, out, onProgress)
}

// Download is Get to a target with its overwrite rule; a target without a
// path is the download folder (Config.DownloadDir).
func (d *Daemon) Download(ctx context.Context, cid protocol.ContentID, to apitype.Target, onProgress func(apitype.Progress)) (string, error) {
	if to.Out == "" {
		to.Out = d.downloadDir() + string(filepath.Separator)
	}
	return d.swarms.Download(ctx, cid, to, onProgress)
}

func (d *Daemon) downloadDir() string {
	if d.cfg.DownloadDir != "" {
		return d.cfg.DownloadDir
	}
	if home, err := os.UserHomeDir(); err == nil {
		if fi, err := os.Stat(filepath.Join(home, "Downloads")); err == nil && fi.IsDir() {
			return filepath.Join(home, "Downloads")
		}
	}
	return filepath.Join(d.cfg.DataDir, "downloads")
}

// supernodeStatus is the primary attachment's status, with the relay this
// peer lives on when UDP is blocked.
func (d *Daemon) supernodeStatus() apitype.SupernodeStatus {
	st := d.attach.Snapshot()
	d.netMu.RLock()
	if d.onRelay != nil {
		st.Relay = d.relayTCP + " (tcp), relayed address " + d.onRelay.RelayedAddr().String()
		if d.renewals > 0 {
			st.Relay += fmt.Sprintf(", renewed %d times", d.renewals)
		}
	}
	d.netMu.RUnlock()
	return st
}
