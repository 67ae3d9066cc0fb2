package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// claimEverything makes supernode sn, on link l, take ours as a live member
// that holds every query's files, as a supernode that wants every query
// would: it sends our signed member entry every half second, one one-hop
// summary whose filter has every bit set, and, for the keyword ring, the
// keys of words as ours (sn keeps every key in an overlay of three). It
// stops when ctx ends or the link closes.
func claimEverything(ctx context.Context, l *transport.Link, sn protocol.PeerID, id *protocol.Identity, chain protocol.Chain, addr string, words ...string) {
	inc := uint64(time.Now().UnixMilli())
	filter := append([]byte{1, 10, 7}, bytes.Repeat([]byte{0xff}, 128)...)
	sig := ed25519.Sign(id.Key, protocol.SummarySigned(id.ID, inc, 1, filter))
	sent := false
	for beat := uint64(1); ; beat++ {
		rec := protocol.MemberRecord{Addrs: []string{addr}, Beat: uint64(time.Now().UnixMilli()), Incarnation: inc, Chain: chain}
		rec.Sign(id)
		if l.Send(&protocol.Members{Members: []protocol.MemberRecord{rec}}) != nil {
			return
		}
		if !sent {
			// After the entry: a summary of a supernode not yet listed is dropped.
			time.Sleep(100 * time.Millisecond)
			if l.Send(&protocol.Summaries{Updates: []protocol.SummaryUpdate{
				{Origin: id.ID, Inc: inc, Ver: 1, Filter: filter, Sig: sig}}}) != nil {
				return
			}
			var keys protocol.KeyList
			for _, w := range words {
				keys = append(keys, index.HashString(w))
			}
			if l.Send(&protocol.TermPuts{Batches: []protocol.TermBatch{
				{To: protocol.IDPrefix(sn), Publisher: protocol.IDPrefix(id.ID), Inc: inc, Hops: 1, Add: keys}}}) != nil {
				return
			}
			sent = true
		}
		select {
		case <-ctx.Done():
			return
		case <-l.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
