package peercli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/protocol"
)

// minPrefix is the shortest ID prefix taken: status prints 10 characters,
// and fewer than 4 would match by accident.
const minPrefix = 4

// resolvePeerID turns what the user typed into a peer ID: a whole ID as it
// is, or a prefix of one that status shows (supernodes, links, connection
// attempts, inbox senders), as status prints them.
func resolvePeerID(ctx context.Context, c *localapi.Client, s string) (string, error) {
	_, perr := protocol.ParsePeerID(s)
	if perr == nil {
		return s, nil
	}
	return resolvePrefix(ctx, c, perr, s, "abcdefghijklmnopqrstuvwxyz234567", func(st apitype.Status, ib apitype.InboxList) []string {
		ids := []string{st.Supernode.PeerID}
		for _, sn := range st.Supernodes {
			ids = append(ids, sn.PeerID)
		}
		for _, l := range st.Links {
			ids = append(ids, l.Peer)
		}
		for _, a := range st.Attempts {
			ids = append(ids, a.Peer)
		}
		if ld := st.Lead.Leading; ld != nil {
			ids = append(ids, ld.PeerID, ld.PromotedBy)
		}
		for _, e := range ib.Files {
			ids = append(ids, e.FromPeer)
		}
		return ids
	}, func(id string) bool { _, err := protocol.ParsePeerID(id); return err == nil })
}

// resolveContentID is resolvePeerID for content IDs: shared files,
// downloads and swarms.
func resolveContentID(ctx context.Context, c *localapi.Client, s string) (string, error) {
	_, perr := protocol.ParseContentID(s)
	if perr == nil {
		return s, nil
	}
	return resolvePrefix(ctx, c, perr, s, "0123456789abcdef", func(st apitype.Status, _ apitype.InboxList) []string {
		var ids []string
		for _, f := range st.Shared {
			ids = append(ids, f.ContentID)
		}
		for _, d := range st.Downloads {
			ids = append(ids, d.ContentID)
		}
		for _, sw := range st.Swarms {
			ids = append(ids, sw.ContentID)
		}
		return ids
	}, func(id string) bool { _, err := protocol.ParseContentID(id); return err == nil })
}

// usageUnlessDaemon is a resolve error as the CLI reports it: a usage
// error, but for a missing daemon, which keeps its own exit code.
func usageUnlessDaemon(err error) error {
	if errors.Is(err, localapi.ErrNoDaemon) {
		return explain(err)
	}
	return cli.Usage(err)
}

// resolvePrefix finds the one ID among those known that starts with s, of
// the characters in alphabet; perr is why s is not a whole ID, which every
// failure names.
func resolvePrefix(ctx context.Context, c *localapi.Client, perr error, s, alphabet string,
	known func(apitype.Status, apitype.InboxList) []string, valid func(string) bool) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) < minPrefix || strings.Trim(s, alphabet) != "" {
		return "", fmt.Errorf("%w (or at least %d characters of an ID the daemon knows)", perr, minPrefix)
	}
	st, err := c.Status(ctx)
	if err != nil {
		if errors.Is(err, localapi.ErrNoDaemon) {
			return "", fmt.Errorf("%w: %w", perr, err)
		}
		return "", err
	}
	ib, _ := c.Inbox(ctx) // a daemon without an inbox lists none
	var matches []string
	for _, id := range known(st, ib) {
		if id != "" && strings.HasPrefix(id, s) && valid(id) && !slices.Contains(matches, id) {
			matches = append(matches, id)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", fmt.Errorf("%w, and no ID the daemon knows starts with %q", perr, s)
	}
	slices.Sort(matches)
	return "", fmt.Errorf("%q starts %d IDs the daemon knows: %s; give more of it", s, len(matches), strings.Join(matches, ", "))
}
