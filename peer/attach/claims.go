// Package attach keeps a leaf attached to its supernodes: the slots, the
// dials, the failover, the liveness pings, the member list, and the table
// that routes the answers to a search's queries. It reaches the daemon only
// through Config.
//
// The decisions (which supernode a slot claims next, which are held off
// after failing, when a silent supernode is left, and how wary the leaf is
// after leaving one that was only stalled) are pure code in Claims, Liveness
// and Watch: the Attachment calls them under its lock and passes the time
// in, so each rule is tested without a socket or a real clock.
package attach

import (
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// DownHoldoff keeps a slot from redialling a supernode that failed or
// dropped us while others are to be had.
const DownHoldoff = 10 * time.Second

// Claims are the supernode addresses the slots dial or are attached to, those
// held off after failing, and the supernode each address led to.
type Claims struct {
	claimed map[string]bool
	down    map[string]time.Time // until when
	aliases map[string]protocol.PeerID
}

// NewClaims returns empty claims.
func NewClaims() *Claims {
	return &Claims{
		claimed: make(map[string]bool),
		down:    make(map[string]time.Time),
		aliases: make(map[string]protocol.PeerID),
	}
}

// Claim is a target a slot dials or is attached to.
type Claim struct {
	Target, Addr string
	Expect       protocol.PeerID // zero when the target names none
}

// ClaimOne picks the first of targets no slot holds or dials, those that
// failed lately after the others, and marks it claimed. held are the
// supernodes attached now: a target that led to one of them (by its ID or
// by where it led before) is skipped, since the same supernode may be
// listed under several addresses.
func (c *Claims) ClaimOne(now time.Time, targets []string, held map[protocol.PeerID]bool) (Claim, bool) {
	var stale *Claim
	for _, t := range targets {
		expect, ad, err := transport.ParseTarget(t)
		known := expect
		if known.IsZero() {
			known = c.aliases[ad]
		}
		if err != nil || c.claimed[ad] || (!known.IsZero() && held[known]) {
			continue
		}
		cl := Claim{t, ad, expect}
		if now.Before(c.down[ad]) {
			if stale == nil {
				stale = &cl
			}
			continue
		}
		c.claimed[ad] = true
		return cl, true
	}
	if stale == nil {
		return Claim{}, false
	}
	c.claimed[stale.Addr] = true
	return *stale, true
}

// Release lets addr go for another slot.
func (c *Claims) Release(addr string) { delete(c.claimed, addr) }

// MarkDown holds off redials of addr for DownHoldoff, and forgets the holds
// that ran out.
func (c *Claims) MarkDown(now time.Time, addr string) {
	for k, until := range c.down {
		if now.After(until) {
			delete(c.down, k)
		}
	}
	c.down[addr] = now.Add(DownHoldoff)
}

// Down says whether addr is held off at now.
func (c *Claims) Down(now time.Time, addr string) bool { return now.Before(c.down[addr]) }

// LedTo notes that addr led to the supernode p.
func (c *Claims) LedTo(addr string, p protocol.PeerID) { c.aliases[addr] = p }
