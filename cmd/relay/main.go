// Command relay runs a TURN relay for the overlay on a public host, and reports
// its load to the supernodes that hand it out.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/admin"
	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/internal/defaults"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/transport"
)

func main() { os.Exit(cli.Main(command(), os.Args[1:], os.Stderr)) }

func command() *cobra.Command {
	var fl flags
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run a TURN relay that supernodes hand to peers who cannot connect directly",
		Long: `Run a TURN relay (RFC 8656) over UDP and TCP. It accepts only credentials minted
by supernodes with the secret they share with it, caps what each peer may relay
and for how long, refuses to relay to private and reserved addresses (unless
allowed with --allow-peer), and reports its load to the supernodes given with
--supernode.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.loadConfig(cmd.Flags()); err != nil {
				return cli.Usage(err)
			}
			s, err := fl.settings(os.Getenv)
			if err != nil {
				return cli.Usage(err)
			}
			return run(s)
		},
	}
	fl.bind(cmd.Flags())
	return cmd
}

// run reads the secret, serves, and reports the load to the supernodes until
// a signal comes.
func run(st settings) error {
	log, err := st.log.Logger(os.Stderr)
	if err != nil {
		return cli.Usage(err)
	}
	secret, err := cli.ReadSecret(st.secretFile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := st.cfg
	cfg.Secret, cfg.Log = secret, log
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	load := func() *protocol.RelayLoad {
		ld := r.Load()
		m := &protocol.RelayLoad{UDP: transport.AdvertisedAddr(r.UDPAddr(), st.advertise), Allocations: uint32(ld.Allocations),
			Capacity: uint32(ld.Capacity), Rate: ld.Rate}
		if a := r.TCPAddr(); a != nil {
			m.TCP = transport.AdvertisedAddr(a, st.advertise)
		}
		if ip6 := r.RelayIP6(); ip6 != nil {
			m.IPv6 = ip6.String()
		}
		return m
	}
	fmt.Fprintf(os.Stderr, "relay listening on udp %s", r.UDPAddr())
	if a := r.TCPAddr(); a != nil {
		fmt.Fprintf(os.Stderr, " and tcp %s", a)
	}
	fmt.Fprintln(os.Stderr)
	var wg sync.WaitGroup
	if len(st.supernodes) > 0 {
		id, err := protocol.LoadOrCreateIdentity(st.dataDir)
		if err != nil {
			return err
		}
		pc, err := transport.ListenUDP("0.0.0.0:0")
		if err != nil {
			return err
		}
		node, err := transport.New(transport.Config{Identity: id, Conn: pc, Log: log, Agent: "supernet-relay"})
		if err != nil {
			pc.Close()
			return err
		}
		defer node.Close()
		// A certificate with the relay role, if the operator gave one;
		// otherwise the relay proves the secret it shares.
		var chain protocol.Chain
		if st.certFile != "" {
			_, ch, err := protocol.ReadChainFile(st.certFile)
			if err != nil {
				return err
			}
			if ch.Leaf().Peer() != id.ID {
				return fmt.Errorf("--cert %s is for %s, not this relay's key %s", st.certFile, ch.Leaf().Peer(), id.ID)
			}
			chain = ch
		}
		hello := protocol.RelayHello(secret, chain)
		for _, t := range st.supernodes {
			wg.Add(1)
			go func() { defer wg.Done(); report(ctx, node, t, hello, load, log) }()
		}
	}
	if st.admin != "" {
		a, err := admin.New(admin.Config{Listen: st.admin, Version: cli.Version(),
			Collectors: []prometheus.Collector{r.Collector()}, Health: r.Healthy, Log: log})
		if err != nil {
			return err
		}
		defer a.Go(ctx)()
		fmt.Fprintf(os.Stderr, "admin listening on http://%s (/metrics, /healthz, /debug/pprof/)\n", a.Addr())
	}
	<-ctx.Done()
	log.Info().Str("cause", context.Cause(ctx).Error()).Msg("relay stopping")
	wg.Wait()
	return nil
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
	retry := defaults.Backoff(500*time.Millisecond, 30*time.Second)
	for ctx.Err() == nil {
		var l *transport.Link
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err == nil {
			l, _, err = node.DialHello(ctx, ua, expect, protocol.RoleRelay, hello)
		}
		if err == nil {
			retry.Reset()
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
		if errors.Is(err, protocol.ErrForbidden) {
			log.Error().Err(err).Str("supernode", addr).Msg("supernode refused this relay")
		} else {
			log.Warn().Err(err).Str("supernode", addr).Msg("supernode unreachable")
		}
		select {
		case <-time.After(retry.NextBackOff()):
		case <-ctx.Done():
			return
		}
	}
}
