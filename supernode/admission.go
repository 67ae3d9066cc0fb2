package supernode

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// Admission: this supernode serves only with a certificate chain from its
// overlay's network key, and links only to supernodes and relays that show
// one (or, for a relay, a proof of the relay secret). See Admission in
// protocol/doc.go.

const (
	// selfCertTTL is how long a chain lasts that a supernode holding the
	// network key issues itself; it is issued again when half is left.
	selfCertTTL = 30 * 24 * time.Hour
	// DefaultPromotedCertTTL is how long a promoted supernode's certificate
	// lasts; the promoting supernode renews it at a third of that.
	DefaultPromotedCertTTL = 30 * time.Minute
	// certWarnAhead is when an operator's certificate starts to be reported
	// as about to expire.
	certWarnAhead = 7 * 24 * time.Hour
)

// admission is the supernode's own chain.
type admission struct {
	ready chan struct{} // closed once a chain is set
	chain protocol.Chain
	// warned is the last day an expiry warning was logged.
	warned time.Time
}

// initAdmission checks the configured network and chain, or issues a chain
// from the network key. A promoted supernode may start without one: it
// waits for the certificate its promoter sends.
func (s *Server) initAdmission() error {
	cfg := &s.cfg
	if cfg.NetworkKey != nil {
		n := protocol.NetworkIDOf(cfg.NetworkKey)
		if !cfg.Network.IsZero() && cfg.Network != n {
			return fmt.Errorf("supernode: the network key is %s, not the configured network %s", n, cfg.Network)
		}
		cfg.Network = n
	}
	if cfg.Network.IsZero() {
		return errors.New("supernode: no network: give the overlay's network key or a certificate chain from it")
	}
	s.adm.ready = make(chan struct{})
	switch {
	case len(cfg.Chain) > 0:
		return s.SetChain(cfg.Chain)
	case cfg.NetworkKey != nil:
		return s.SetChain(s.selfChain(time.Now()))
	case cfg.Promoted:
		return nil
	}
	return fmt.Errorf("supernode: %w: no certificate for %s in network %s", protocol.ErrNotAdmitted, s.ID(), cfg.Network)
}

func (s *Server) selfChain(now time.Time) protocol.Chain {
	return protocol.Admit(s.cfg.NetworkKey, s.node.Identity().Key.Public().(ed25519.PublicKey),
		protocol.CertSupernode|protocol.CertRelay|protocol.CertAdmit, now.Add(selfCertTTL))
}

// SetChain gives the supernode its certificate chain: at start, or when a
// promoted supernode's certificate arrives or is renewed.
func (s *Server) SetChain(ch protocol.Chain) error {
	if err := ch.Verify(s.cfg.Network, s.ID(), protocol.CertSupernode, time.Now()); err != nil {
		return fmt.Errorf("supernode: own certificate: %w", err)
	}
	s.mu.Lock()
	first := len(s.adm.chain) == 0
	renewed := !first && !ch.Equal(s.adm.chain)
	s.adm.chain = ch.Clone()
	s.mu.Unlock()
	if first {
		close(s.adm.ready)
		s.log.Info().Str("network", s.cfg.Network.String()).Str("roles", ch.Leaf().Roles.String()).
			Time("expires", ch.Expires()).Int("chain", len(ch)).Msg("admitted to the overlay")
	} else if renewed {
		s.log.Debug().Time("expires", ch.Expires()).Msg("certificate renewed")
	}
	return nil
}

// Chain is the supernode's current certificate chain (nil until it has one).
func (s *Server) Chain() protocol.Chain {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adm.chain.Clone()
}

// Network is the overlay's network ID.
func (s *Server) Network() protocol.NetworkID { return s.cfg.Network }

// waitAdmitted blocks until the supernode has a chain; false when closing.
func (s *Server) waitAdmitted() bool {
	select {
	case <-s.adm.ready:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// checkAdmission runs every gossip round: it renews a chain the supernode
// issues itself, warns of an operator's certificate running out, and closes
// links to supernodes whose admission has expired.
func (s *Server) checkAdmission(now time.Time) {
	ch := s.Chain()
	if len(ch) > 0 {
		left := ch.Expires().Sub(now)
		switch {
		case s.cfg.NetworkKey != nil && left < selfCertTTL/2:
			if err := s.SetChain(s.selfChain(now)); err != nil {
				s.log.Error().Err(err).Msg("cannot renew our own certificate")
			}
		case left <= 0:
			if s.cfg.Promoted {
				s.elect.CertLapsed(now)
			} else if now.Sub(s.adm.warned) > time.Hour {
				s.adm.warned = now
				s.log.Error().Time("expired", ch.Expires()).Msg("our certificate has expired: other supernodes and leaves refuse us until it is renewed")
			}
		case left < certWarnAhead && !s.cfg.Promoted && now.Sub(s.adm.warned) > 24*time.Hour:
			s.adm.warned = now
			s.log.Warn().Time("expires", ch.Expires()).Msg("our certificate expires soon: ask the operator for a new one")
		}
	}
	s.mu.Lock()
	var lapsed []*transport.Link
	for p, id := range s.byPeer {
		until := s.admittedUntil[p]
		if m := s.members.AdmittedUntil(p); m.After(until) {
			until = m
			s.admittedUntil[p] = m
		}
		if l := s.links[id]; l != nil && now.After(until.Add(protocol.CertSkew)) {
			lapsed = append(lapsed, l)
		}
	}
	s.mu.Unlock()
	for _, l := range lapsed {
		l.Log().Warn().Msg("neighbour's certificate expired; closing the link")
		l.Close(fmt.Errorf("%w: your certificate expired", protocol.ErrCertExpired))
	}
}

// checkHello checks a dialler's claim to the supernode or relay role.
func (s *Server) checkHello(in *transport.Incoming) error {
	h := in.Hello
	now := time.Now()
	switch h.Role {
	case protocol.RoleSupernode:
		return h.Chain.Verify(s.cfg.Network, in.Peer, protocol.CertSupernode, now)
	case protocol.RoleRelay:
		if len(h.Chain) > 0 {
			return h.Chain.Verify(s.cfg.Network, in.Peer, protocol.CertRelay, now)
		}
		if len(s.cfg.RelaySecret) == 0 {
			return fmt.Errorf("%w: this supernode has no relay secret, so it hands out no relays", protocol.ErrNotAdmitted)
		}
		exp, err := in.ExportKeyingMaterial(protocol.RelayProofLabel, protocol.RelayProofLen)
		if err != nil || !protocol.CheckRelayProof(s.cfg.RelaySecret, exp, h.RelayProof) {
			return fmt.Errorf("%w: a relay needs a certificate or a proof of the relay secret", protocol.ErrNotAdmitted)
		}
	}
	return nil
}

// checkWelcome checks that a supernode we dialled is admitted to our network.
func (s *Server) checkWelcome(l *transport.Link, w *protocol.Welcome) error {
	return w.CheckAdmitted(s.cfg.Network, l.Peer, time.Now())
}

// supernodeHello is the hello for linking to another supernode.
func (s *Server) supernodeHello() *protocol.Hello {
	return &protocol.Hello{Role: protocol.RoleSupernode, Chain: s.Chain()}
}

// welcome is what the supernode answers every hello with.
func (s *Server) welcome(role protocol.Role) *protocol.Welcome {
	return &protocol.Welcome{Role: role, Agent: "supernet-supernode", Network: s.cfg.Network, Chain: s.Chain()}
}

// PublicKey is the supernode's ed25519 public key.
func (s *Server) PublicKey() []byte {
	return append([]byte(nil), s.node.Identity().Key.Public().(ed25519.PublicKey)...)
}
