// Command supernode runs a group leader of the overlay on a public host.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/admin"
	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/supernode"
)

func main() { os.Exit(cli.Main(command(), os.Args[1:], os.Stderr)) }

func command() *cobra.Command {
	var fl flags
	cmd := &cobra.Command{
		Use:   "supernode",
		Short: "Run a supernode: index leaves' content and route queries between supernodes",
		Long: fmt.Sprintf(`Run a supernode of the overlay. It listens on one UDP port (default %d, all
interfaces) for QUIC and STUN, accepts peers, indexes what they share, links to
the supernodes given with --join, and routes searches between them.`, supernode.DefaultPort),
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
	fl.bind(cmd.Flags(), os.Getenv)
	cmd.AddCommand(idCommand(), networkCommand(), admitCommand())
	return cmd
}

// run reads the secret and the admission, opens the sockets and serves until
// a signal comes.
func run(st settings) error {
	log, err := st.log.Logger(os.Stderr)
	if err != nil {
		return cli.Usage(err)
	}
	cli.SetMemoryLimit(st.memLimit)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	secret, err := cli.ReadSecret(st.secretFile)
	if err != nil {
		return err
	}
	cfg := st.cfg
	adm, err := loadAdmission(cfg.DataDir, st.networkKeyFile, st.certFile, len(cfg.Join) > 0)
	if err != nil {
		return err
	}
	cfg.RelaySecret, cfg.Log = secret, log
	adm.apply(&cfg)
	if st.relay != nil {
		rc := *st.relay
		rc.Secret, rc.Log = secret, log.With().Str("part", "relay").Logger()
		r, err := relay.New(rc)
		if err != nil {
			return err
		}
		defer r.Close()
		cfg.Relay = r
		fmt.Fprintf(os.Stderr, "relay listening on %s (udp and tcp)\n", r.UDPAddr())
	}
	s, err := supernode.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "supernode %s listening on udp %s\n", s.ID(), s.Addr())
	if adm.created {
		fmt.Fprintf(os.Stderr, "started a new overlay, network %s; its key is in %s: keep it secret.\n"+
			"  To admit another supernode: there run `supernode id --key`, here `supernode admit KEY -o admission.cert`,\n"+
			"  then there `supernode --cert admission.cert --join %s@HOST:%d`\n",
			adm.network, filepath.Join(cfg.DataDir, protocol.NetworkKeyFile), s.ID(), s.Addr().Port)
	} else {
		fmt.Fprintf(os.Stderr, "network %s\n", adm.network)
	}
	if st.admin != "" {
		cs := []prometheus.Collector{s.Collector()}
		if cfg.Relay != nil {
			cs = append(cs, cfg.Relay.Collector())
		}
		a, err := admin.New(admin.Config{Listen: st.admin, Version: cli.Version(), Collectors: cs, Health: s.Healthy, Log: log})
		if err != nil {
			s.Close()
			return err
		}
		defer a.Go(ctx)()
		fmt.Fprintf(os.Stderr, "admin listening on http://%s (/metrics, /healthz, /debug/pprof/)\n", a.Addr())
	}
	err = s.Serve(ctx)
	if cause := context.Cause(ctx); ctx.Err() != nil {
		log.Info().Str("cause", cause.Error()).Msg("supernode stopping")
	}
	s.Close()
	if errors.Is(err, supernode.ErrServerClosed) {
		return nil
	}
	return err
}
