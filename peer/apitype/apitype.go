// Package apitype holds what a peer daemon says to the world outside its
// process: the statuses, results and requests of its local control API, and
// the errors the CLI matches. It holds data only; the daemon fills it in and
// package localapi carries it.
package apitype

import (
	"errors"
	"fmt"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/swarm"
)

// Errors the CLI and tests match; the control API carries them as codes.
var (
	ErrNoSupernode  = errors.New("not attached to any supernode")
	ErrNothingFound = swarm.ErrNothingFound
	ErrDaemonClosed = swarm.ErrClosed
	// ErrExists is a download's target file that is there already.
	ErrExists = swarm.ErrExists
	// ErrDiskFull is a download or copy that found no room on its disk.
	ErrDiskFull = errors.New("no space left on the disk")
	// ErrNoSuchUser is a username nobody holds.
	ErrNoSuchUser = fmt.Errorf("no such user (%w)", protocol.ErrNotFound)
)

// Path names how a link to another peer runs.
const (
	PathDirect  = "direct"
	PathRelayed = "relayed"
)

// Status is what `peer status` shows.
type Status struct {
	PeerID    string `json:"peer_id"`
	Name      string `json:"name,omitempty"`
	DataDir   string `json:"data_dir"`
	ShareDir  string `json:"share_dir,omitempty"`
	LocalAddr string `json:"local_addr"`
	// Web is the web page's address (the token to open it is in the data
	// dir: `peer web` prints the whole link); empty without one.
	Web       string          `json:"web,omitempty"`
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

// SupernodeStatus describes one attachment to a supernode.
type SupernodeStatus struct {
	Addr      string    `json:"addr"`
	PeerID    string    `json:"peer_id,omitempty"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitempty"`
	Observed  string    `json:"observed_addr,omitempty"`
	Reflexive string    `json:"reflexive_addr,omitempty"`
	// Proven are our addresses in the other IP family that the supernode
	// took, and gives peers beside Observed.
	Proven []string `json:"proven_addrs,omitempty"`
	// Mapping is what two STUN answers showed of our NAT; NAT is what the
	// supernode established, with Public set when its dial back reached us.
	Mapping   string `json:"mapping,omitempty"`
	NAT       string `json:"nat,omitempty"`
	Public    bool   `json:"public"`
	Relay     string `json:"relay,omitempty"` // the relay we live on, when UDP is blocked
	LastError string `json:"last_error,omitempty"`
	// Listed is how many supernodes the member list (or its cache) names,
	// ours included: where we attach when the configured ones are gone.
	Listed int `json:"supernodes_listed"`
}

// UserStatus is the peer's own username record in the directory.
type UserStatus struct {
	Name       string    `json:"name"`
	Registered bool      `json:"registered"`
	Seq        uint64    `json:"seq,omitempty"`
	Expires    time.Time `json:"expires,omitempty"`
	Supernodes []string  `json:"supernodes,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
}

// LookupResult is a username resolved through the directory.
type LookupResult struct {
	Name       string    `json:"name"`
	PeerID     string    `json:"peer_id"`
	Addrs      []string  `json:"addrs"`
	NAT        string    `json:"nat"`
	Supernodes []string  `json:"supernodes"`
	Expires    time.Time `json:"expires"`
	Hops       int       `json:"hops"`    // supernode hops to the replica that answered
	Elapsed    float64   `json:"elapsed"` // seconds
}

// LeadStatus says whether this peer could serve as a supernode, as its
// supernodes learn from its candidacy.
type LeadStatus struct {
	Eligible bool     `json:"eligible"`
	Why      []string `json:"why_not,omitempty"`
	// Leading is the supernode this peer runs or ran since a supernode
	// promoted it; nil when never promoted.
	Leading *LeadingStatus `json:"leading,omitempty"`
}

// LeadingStatus is the supernode a promoted peer runs in its process.
type LeadingStatus struct {
	Active     bool      `json:"active"`
	PeerID     string    `json:"peer_id"`
	Addr       string    `json:"addr"`
	PromotedBy string    `json:"promoted_by"`
	Since      time.Time `json:"since"`
	Leaves     int       `json:"leaves"`
	LeafLimit  int       `json:"leaf_limit"`
	Ended      time.Time `json:"ended,omitempty"`
	EndedWhy   string    `json:"ended_why,omitempty"`
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

// SearchResult summarises a finished search.
type SearchResult struct {
	Supernodes int             `json:"supernodes"`
	Status     protocol.Status `json:"-"`
	Partial    bool            `json:"partial"`
	// Queries is how many of our supernodes the search went to: more than one
	// when it was hedged or sent again after a supernode was lost.
	Queries int `json:"queries"`
}

// Progress is the state of one download, sent to the CLI as it changes.
// The swarm that runs the download keeps it.
type Progress = swarm.Progress

// Target is where a download goes, and whether it may replace a file.
type Target = swarm.Target

// SwarmStatus is one file this peer exchanges with others, as status lists it.
type SwarmStatus = swarm.Status

// Attempt is one connection setup, as `peer status` shows it.
type Attempt struct {
	Peer    string        `json:"peer_id"`
	Plan    string        `json:"plan"`
	Path    string        `json:"path,omitempty"`
	Took    time.Duration `json:"took_ns"`
	Upgrade bool          `json:"upgrade,omitempty"`
	Err     string        `json:"error,omitempty"`
	At      time.Time     `json:"at"`
}

// LinkStatus is one open link to another peer, as `peer status` shows it.
type LinkStatus struct {
	Peer   string    `json:"peer_id"`
	Path   string    `json:"path"`
	Plan   string    `json:"plan,omitempty"`
	Remote string    `json:"remote_addr"`
	Users  int       `json:"users"`
	Since  time.Time `json:"since"`
}

// InboxEntry is one file that arrived.
type InboxEntry struct {
	Name     string    `json:"name"` // as stored in the inbox folder
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	FromPeer string    `json:"from_peer"`
	FromUser string    `json:"from_user,omitempty"` // as the sender named itself; checked when the policy needed it
	At       time.Time `json:"at"`
}

// InboxList is what GET /v1/inbox returns.
type InboxList struct {
	Dir   string       `json:"dir"`
	Files []InboxEntry `json:"files"`
}

// InboxSaveRequest is the body of POST /v1/inbox/save: copy an arrival out.
type InboxSaveRequest struct {
	Name      string `json:"name"`
	Output    string `json:"output,omitempty"`
	Overwrite bool   `json:"overwrite,omitempty"`
}

// InboxSaved is where an arrival was copied to.
type InboxSaved struct {
	Path string `json:"path"`
}

// InboxRemoveRequest is the body of POST /v1/inbox/rm.
type InboxRemoveRequest struct {
	Names []string `json:"names"`
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

// SearchRequest is the body of POST /v1/search.
type SearchRequest struct {
	Query     string `json:"query,omitempty"`
	ContentID string `json:"content_id,omitempty"`
	Limit     int    `json:"limit,omitempty"`
}

// GetRequest is the body of POST /v1/get.
type GetRequest struct {
	ContentID string `json:"content_id"`
	// Output is a file, or a folder: one that exists or a path ending in
	// a separator.
	Output string `json:"output,omitempty"`
	// Overwrite replaces a file already at the path.
	Overwrite bool `json:"overwrite,omitempty"`
}

// ConnectRequest is the body of POST /v1/connect.
type ConnectRequest struct {
	PeerID    string `json:"peer_id"`
	Supernode string `json:"supernode,omitempty"` // the peer's supernode, if known
}

// LookupRequest is the body of POST /v1/lookup.
type LookupRequest struct {
	Name string `json:"name"`
}

// SendRequest is the body of POST /v1/send.
type SendRequest struct {
	User string `json:"user"`
	Path string `json:"path"` // absolute: the daemon's working folder is not the caller's
}
