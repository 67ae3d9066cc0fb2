package swarm

import "errors"

// Errors a download ends with, which the daemon's control API passes on.
var (
	ErrNothingFound = errors.New("no source found for that content")
	// ErrClosed is the daemon that runs the swarms shutting down.
	ErrClosed = errors.New("peer daemon closed")
)

// Progress is the state of one download, sent to the CLI as it changes.
type Progress struct {
	ContentID string  `json:"content_id"`
	Name      string  `json:"name,omitempty"`
	Path      string  `json:"path,omitempty"`
	State     string  `json:"state"` // locating, connecting, downloading, done, failed
	Size      int64   `json:"size"`
	Verified  int64   `json:"verified_bytes"`
	Pieces    int     `json:"pieces"`
	Have      int     `json:"pieces_verified"`
	Resumed   int     `json:"pieces_resumed,omitempty"`
	Sources   int     `json:"sources"`        // peers known to have some of it
	Active    int     `json:"active_sources"` // peers exchanging it with us now
	BadPieces int     `json:"bad_pieces,omitempty"`
	Banned    int     `json:"banned_sources,omitempty"`
	Rate      float64 `json:"rate_bytes_per_sec"`
	Uploaded  int64   `json:"uploaded_bytes,omitempty"` // sent to other downloaders meanwhile
	Error     string  `json:"error,omitempty"`
}

// Status is one file this peer exchanges with others, as status lists it.
type Status struct {
	ContentID string `json:"content_id"`
	Name      string `json:"name,omitempty"`
	// Role is "downloading", "seeding" (a finished download) or "first source"
	// (a file of the share folder).
	Role     string `json:"role"`
	Pieces   int    `json:"pieces"`
	Have     int    `json:"pieces_verified"`
	Peers    int    `json:"peers"`
	Unchoked int    `json:"unchoked"` // peers we upload to now
	Uploaded int64  `json:"uploaded_bytes"`
}
