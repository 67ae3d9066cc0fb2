package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
)

// A file sent to a user by name arrives in that user's inbox, whichever
// supernode each side is on; a sender the user has not accepted is refused
// and leaves nothing behind.
func TestSendToUserByName(t *testing.T) {
	sns, _ := dirCluster(t, 4, 3, 100*time.Millisecond)
	inbox := t.TempDir()
	alice := startPeer(t, sns[0], "alice", nil, func(c *peer.Config) {
		c.Username, c.InboxDir = "alice", inbox
		c.InboxPolicy, c.AcceptFrom = peer.InboxAccepted, []string{"bob"}
	})
	bob := startPeer(t, sns[2], "bob", nil, func(c *peer.Config) { c.Username = "bob" })
	carol := startPeer(t, sns[3], "carol", nil, func(c *peer.Config) { c.Username = "carol" })
	for _, d := range []*peer.Daemon{alice, bob, carol} {
		eventually(t, raceSlowdown*10*time.Second, "usernames registered", func() bool {
			u := d.Status().User
			return u != nil && u.Registered
		})
	}
	data := randomBytes(7, 3<<20+12345)
	src := filepath.Join(t.TempDir(), "Abbey Road.flac")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := bob.Send(ctx, "alice", src)
	if err != nil {
		t.Fatal(err)
	}
	if res.StoredAs != "Abbey Road.flac" || res.PeerID != alice.ID().String() {
		t.Fatalf("send: %+v", res)
	}
	got, err := os.ReadFile(filepath.Join(inbox, res.StoredAs))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the inbox copy differs from what was sent (%v)", err)
	}
	t.Logf("bob sent alice %d bytes over a %s link in %.2f s", res.Size, res.Path, res.Seconds)
	// The same name again is kept beside the first, not over it.
	if res, err := bob.Send(ctx, "alice", src); err != nil || res.StoredAs != "Abbey Road (1).flac" {
		t.Fatalf("second send: %+v, %v", res, err)
	}
	// Carol is not accepted.
	if _, err := carol.Send(ctx, "alice", src); !errors.Is(err, protocol.ErrForbidden) {
		t.Fatalf("carol's send: %v, want forbidden", err)
	}
	if _, err := bob.Send(ctx, "nobody", src); !errors.Is(err, peer.ErrNoSuchUser) {
		t.Fatalf("send to an unknown user: %v, want ErrNoSuchUser", err)
	}
	list, err := alice.Inbox()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].FromPeer != bob.ID().String() || list[0].FromUser != "bob" || list[1].Name != "Abbey Road (1).flac" {
		t.Fatalf("inbox: %+v", list)
	}
	entries, _ := os.ReadDir(inbox)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 { // two files and the index: no partial left by the refusal
		t.Fatalf("inbox folder holds %v", names)
	}
}
