// Package relay is the overlay's TURN relay (RFC 8656, built on pion/turn) and
// the client peers use to get an allocation on one.
//
// Peers that cannot reach each other directly run QUIC end to end through a
// relayed address, so a relay forwards encrypted UDP it cannot read; it is not
// a proxy of the overlay protocol and knows nothing of peers beyond the ID in
// their credentials.
//
// Credentials are short-lived and in the TURN REST API form that supernodes mint
// with a secret they share with the relays: the username is
// "<unix expiry>:<peer ID>" and the password base64(HMAC-SHA1(secret, username)).
// A stock coturn started with use-auth-secret and the same static-auth-secret
// accepts them, so an operator may run coturn instead of this relay.
//
// Credentials expiring further ahead than the supernodes' credential TTL
// (plus a clock-skew allowance) are refused, so a forged far-future expiry
// cannot make one live for ever.
//
// Limits are kept per identity (the peer ID in the username), not per
// credential, because supernodes mint a fresh username on every ask. An
// identity's first allocation opens a session: within it all its
// allocations, under any credentials, share one byte quota (both directions
// counted), and all end when it does, whatever their refreshes. Each identity
// and the relay as a whole have an allocation limit; each allocation has a
// cap on its permissions and channels.
//
// Clients may relay only to public addresses: private, shared (CGNAT),
// loopback, link-local, documentation, benchmarking, multicast and other
// reserved ranges, in IPv4, IPv6 and IPv4-mapped forms, are refused unless
// the operator allows a range.
package relay

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST API fixes HMAC-SHA1
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// DefaultRealm is the realm of relays and clients that do not set one.
const DefaultRealm = "supernet"

// Errors a caller can branch on.
var (
	// ErrUnauthorized: the relay refused the credentials (bad, expired, or
	// minted with another secret). Fresh credentials are needed.
	ErrUnauthorized = errors.New("relay refused the credentials")
	// ErrQuota: the relay is full, or this peer has as many allocations as it
	// may hold. Another relay may take it.
	ErrQuota = errors.New("relay allocation quota reached")
	// ErrRelayLost: the connection to the relay ended under a live
	// allocation, for instance because the relay stopped it at its quota.
	ErrRelayLost = errors.New("relay connection lost")
)

// Credentials are what a supernode hands a peer for one relay.
type Credentials struct {
	Username string    `msgpack:"u,omitempty"`
	Password string    `msgpack:"p,omitempty"`
	Expires  time.Time `msgpack:"e,omitempty"`
}

// Mint makes credentials for peer that the relays sharing secret accept until
// now+ttl (whole seconds).
//
// It computes what pion's GenerateLongTermTURNRESTCredentials does, with the
// clock passed in.
func Mint(secret []byte, peer string, ttl time.Duration, now time.Time) Credentials {
	exp := now.Add(ttl).Unix()
	user := strconv.FormatInt(exp, 10) + ":" + peer
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(user))
	return Credentials{
		Username: user,
		Password: base64.StdEncoding.EncodeToString(mac.Sum(nil)),
		Expires:  time.Unix(exp, 0),
	}
}

// parseUsername splits a TURN REST username into its expiry and peer ID.
func parseUsername(username string) (exp time.Time, peer string, ok bool) {
	ts, peer, found := strings.Cut(username, ":")
	if !found || peer == "" {
		return time.Time{}, "", false
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.Unix(n, 0), peer, true
}

// peerOf is the peer ID in a username, or the whole username when it has none.
func peerOf(username string) string {
	if _, p, ok := parseUsername(username); ok {
		return p
	}
	return username
}
