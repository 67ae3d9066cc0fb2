package peer

import (
	"context"
	"time"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
)

// Status reports the daemon's state.
func (d *Daemon) Status() apitype.Status {
	st := apitype.Status{
		PeerID: d.ID().String(), Name: d.cfg.Name, DataDir: d.cfg.DataDir, ShareDir: d.cfg.ShareDir,
		LocalAddr: d.Addr().String(), Supernode: d.attach.snapshot(), Supernodes: d.attach.all(), User: d.user.snapshot(),
		Lead:     d.leadStatus(time.Now()),
		Uploaded: d.uploaded.Load(), Downloaded: d.downloaded.Load(),
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
