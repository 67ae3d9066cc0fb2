// Command relay runs a TURN relay for the overlay on a public host, and reports
// its load to the supernodes that hand it out.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/transport"
)

func main() {
	if err := command().Execute(); err != nil {
		os.Exit(1)
	}
}

func command() *cobra.Command {
	var (
		listen, tcp, relayIP, secretFile, dataDir, logLevel, advertise string
		certFile                                                       string
		supernodes, allowPeers                                         []string
		maxBytes                                                       int64
		maxDuration, credTTL                                           time.Duration
		maxAllocs, maxPerPeer                                          int
		minPort, maxPort                                               uint16
		jsonLogs                                                       bool
	)
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run a TURN relay that supernodes hand to peers who cannot connect directly",
		Long: `Run a TURN relay (RFC 8656) over UDP and TCP. It accepts only credentials minted
by supernodes with the secret they share with it, caps what each peer may relay
and for how long, refuses to relay to private and reserved addresses (unless
allowed with --allow-peer), and reports its load to the supernodes given with
--supernode.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cli.Logger(os.Stderr, logLevel, jsonLogs)
			if err != nil {
				return fail(err)
			}
			secret, err := cli.ReadSecret(secretFile)
			if err != nil {
				return fail(err)
			}
			if secret == nil {
				return fail(errors.New("a secret is required: --secret-file or $" + cli.SecretEnv))
			}
			var allow []netip.Prefix
			for _, a := range allowPeers {
				p, err := relay.ParsePeerPrefix(a)
				if err != nil {
					return fail(fmt.Errorf("--allow-peer: %w", err))
				}
				allow = append(allow, p)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r, err := relay.New(relay.Config{Secret: secret, ListenUDP: listen, ListenTCP: tcp, RelayIP: net.ParseIP(relayIP),
				MaxBytes: maxBytes, MaxDuration: maxDuration, MaxAllocations: maxAllocs, MaxPerPeer: maxPerPeer,
				CredTTL: credTTL, AllowPeers: allow, MinPort: minPort, MaxPort: maxPort, Log: log})
			if err != nil {
				return fail(err)
			}
			defer r.Close()
			host := advertise
			if host == "" {
				host = relayIP
			}
			load := func() *protocol.RelayLoad {
				ld := r.Load()
				m := &protocol.RelayLoad{UDP: transport.AdvertisedAddr(r.UDPAddr(), host), Allocations: uint32(ld.Allocations),
					Capacity: uint32(ld.Capacity), Rate: ld.Rate}
				if a := r.TCPAddr(); a != nil {
					m.TCP = transport.AdvertisedAddr(a, host)
				}
				return m
			}
			fmt.Fprintf(os.Stderr, "relay listening on udp %s", r.UDPAddr())
			if a := r.TCPAddr(); a != nil {
				fmt.Fprintf(os.Stderr, " and tcp %s", a)
			}
			fmt.Fprintln(os.Stderr)
			var wg sync.WaitGroup
			if len(supernodes) > 0 {
				id, err := protocol.LoadOrCreateIdentity(dataDir)
				if err != nil {
					return fail(err)
				}
				pc, err := transport.ListenUDP("0.0.0.0:0")
				if err != nil {
					return fail(err)
				}
				node, err := transport.New(transport.Config{Identity: id, Conn: pc, Log: log, Agent: "supernet-relay"})
				if err != nil {
					pc.Close()
					return fail(err)
				}
				defer node.Close()
				// A certificate with the relay role, if the operator gave one;
				// otherwise the relay proves the secret it shares.
				var chain protocol.Chain
				if certFile != "" {
					_, ch, err := protocol.ReadChainFile(certFile)
					if err != nil {
						return fail(err)
					}
					if ch.Leaf().Peer() != id.ID {
						return fail(fmt.Errorf("--cert %s is for %s, not this relay's key %s", certFile, ch.Leaf().Peer(), id.ID))
					}
					chain = ch
				}
				hello := protocol.RelayHello(secret, chain)
				for _, sn := range supernodes {
					for _, t := range strings.Split(sn, ",") {
						if t = strings.TrimSpace(t); t != "" {
							wg.Add(1)
							go func() { defer wg.Done(); report(ctx, node, t, hello, load, log) }()
						}
					}
				}
			}
			<-ctx.Done()
			wg.Wait()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":3478", "TURN address over UDP")
	f.StringVar(&tcp, "tcp", "", "TURN address over TCP (default: the --listen address; - for none)")
	f.StringVar(&relayIP, "relay-ip", "", "public IP of relayed addresses (needed when listening on all interfaces)")
	f.StringVar(&advertise, "advertise", "", "host supernodes give to peers (default: --relay-ip)")
	f.StringVar(&secretFile, "secret-file", "", "file with the secret shared with the supernodes (mode 600), or $"+cli.SecretEnv)
	f.StringSliceVar(&supernodes, "supernode", nil, "supernodes to report load to: host:port or peerid@host:port")
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "directory for the relay's identity key")
	f.StringVar(&certFile, "cert", "", "certificate admitting this relay's key to the overlay (default: prove the secret instead)")
	f.Int64Var(&maxBytes, "max-bytes", relay.DefaultMaxBytes, "most bytes one peer may relay in a session, over all its allocations")
	f.DurationVar(&maxDuration, "max-duration", relay.DefaultMaxDuration, "length of a peer's session, from its first allocation; its allocations end with it")
	f.IntVar(&maxAllocs, "max-allocations", relay.DefaultMaxAllocations, "most allocations at once")
	f.IntVar(&maxPerPeer, "max-per-peer", relay.DefaultMaxPerPeer, "most allocations one peer may hold at once")
	f.DurationVar(&credTTL, "cred-ttl", relay.DefaultCredTTL, "longest credential lifetime the supernodes mint; later expiries are refused")
	f.StringArrayVar(&allowPeers, "allow-peer", nil, "private or reserved range (CIDR or address) clients may relay to anyway; repeatable")
	f.Uint16Var(&minPort, "min-port", 0, "lowest relay port (with --max-port; default: any port the system gives)")
	f.Uint16Var(&maxPort, "max-port", 0, "highest relay port (with --min-port)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&jsonLogs, "log-json", false, "log JSON lines even on a terminal")
	return cmd
}

func defaultDataDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "supernet", "relay")
	}
	return ".relay"
}

// report keeps a link to one supernode and sends it the relay's load every
// few seconds, redialling with backoff.
func report(ctx context.Context, node *transport.Node, target string, hello func(tls.ConnectionState) (*protocol.Hello, error),
	load func() *protocol.RelayLoad, log zerolog.Logger) {
	expect, addr, err := transport.ParseTarget(target)
	if err != nil {
		log.Error().Err(err).Msg("bad supernode address")
		return
	}
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		var l *transport.Link
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err == nil {
			l, _, err = node.DialHello(ctx, ua, expect, protocol.RoleRelay, hello)
		}
		if err == nil {
			backoff = 500 * time.Millisecond
			log.Info().Str("supernode", addr).Msg("reporting load")
			t := time.NewTicker(2 * time.Second)
			for err == nil {
				err = l.Send(load())
				select {
				case <-t.C:
				case <-l.Done():
					err = l.Err()
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
			t.Stop()
			l.Close(nil)
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn().Err(err).Str("supernode", addr).Msg("supernode unreachable")
		select {
		case <-time.After(backoff/2 + rand.N(backoff)):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func fail(err error) error {
	fmt.Fprintln(os.Stderr, "relay:", err)
	return err
}
