// Command supernode runs a group leader of the overlay on a public host.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/supernode"
)

func main() {
	if err := command().Execute(); err != nil {
		os.Exit(1)
	}
}

func command() *cobra.Command {
	var (
		listen, dataDir, logLevel string
		altListen, tcpListen      string
		relayListen, relayIP      string
		secretFile                string
		certFile, networkKeyFile  string
		join, turnServers         []string
		relayAllow                []string
		advertise                 []string
		neighbours                int
		jsonLogs                  bool
		maxLeaves, leafLimit      int
		promoteEvery              time.Duration
		hops                      uint8
		memLimit                  int64
		limitLoopback             bool
	)
	cmd := &cobra.Command{
		Use:   "supernode",
		Short: "Run a supernode: index leaves' content and route queries between supernodes",
		Long: fmt.Sprintf(`Run a supernode of the overlay. It listens on one UDP port (default %d, all
interfaces) for QUIC and STUN, accepts peers, indexes what they share, links to
the supernodes given with --join, and routes searches between them.`, supernode.DefaultPort),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cli.Logger(os.Stderr, logLevel, jsonLogs)
			if err != nil {
				return usageErr(err)
			}
			cli.SetMemoryLimit(memLimit)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var targets []string
			for _, j := range join {
				for _, t := range strings.Split(j, ",") {
					if t = strings.TrimSpace(t); t != "" {
						targets = append(targets, t)
					}
				}
			}
			secret, err := cli.ReadSecret(secretFile)
			if err != nil {
				return usageErr(err)
			}
			adm, err := loadAdmission(dataDir, networkKeyFile, certFile, len(targets) > 0)
			if err != nil {
				return usageErr(err)
			}
			cfg := supernode.Config{
				Listen: listen, Join: targets, DataDir: dataDir, MaxLeaves: maxLeaves,
				LeafLimit: leafLimit, PromoteEvery: promoteEvery,
				AltListen: altListen, ListenTCP: tcpListen, RelaySecret: secret,
				Advertise: advertise, Neighbours: neighbours, LimitLoopback: limitLoopback,
				Router: supernode.RouterConfig{HopLimit: hops}, Log: log,
			}
			adm.apply(&cfg)
			for _, ts := range turnServers {
				if _, _, err := net.SplitHostPort(ts); err != nil {
					return usageErr(fmt.Errorf("--turn-server %q: want host:port", ts))
				}
				cfg.TURNServers = append(cfg.TURNServers, ts)
			}
			if len(cfg.TURNServers) > 0 && secret == nil {
				return usageErr(errors.New("--turn-server needs the secret it shares: --relay-secret-file or $" + cli.SecretEnv))
			}
			if relayListen != "" {
				if secret == nil {
					return usageErr(errors.New("--relay needs a secret: --relay-secret-file or $" + cli.SecretEnv))
				}
				rc := relay.Config{Secret: secret, ListenUDP: relayListen, RelayIP: net.ParseIP(relayIP),
					Log: log.With().Str("part", "relay").Logger()}
				for _, a := range relayAllow {
					p, err := relay.ParsePeerPrefix(a)
					if err != nil {
						return usageErr(fmt.Errorf("--relay-allow-peer: %w", err))
					}
					rc.AllowPeers = append(rc.AllowPeers, p)
				}
				r, err := relay.New(rc)
				if err != nil {
					return usageErr(err)
				}
				defer r.Close()
				cfg.Relay, cfg.RelayHost = r, relayIP
				fmt.Fprintf(os.Stderr, "relay listening on %s (udp and tcp)\n", r.UDPAddr())
			}
			s, err := supernode.New(cfg)
			if err != nil {
				fmt.Fprintln(os.Stderr, "supernode:", err)
				return err
			}
			fmt.Fprintf(os.Stderr, "supernode %s listening on udp %s\n", s.ID(), s.Addr())
			if adm.created {
				fmt.Fprintf(os.Stderr, "started a new overlay, network %s; its key is in %s: keep it secret.\n"+
					"  To admit another supernode: there run `supernode id --key`, here `supernode admit KEY -o admission.cert`,\n"+
					"  then there `supernode --cert admission.cert --join %s@HOST:%d`\n",
					adm.network, filepath.Join(dataDir, protocol.NetworkKeyFile), s.ID(), s.Addr().Port)
			} else {
				fmt.Fprintf(os.Stderr, "network %s\n", adm.network)
			}
			err = s.Serve(ctx)
			s.Close()
			if errors.Is(err, supernode.ErrServerClosed) {
				return nil
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "supernode:", err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", fmt.Sprintf(":%d", supernode.DefaultPort), "UDP address to listen on")
	f.StringSliceVar(&join, "join", nil, "supernodes to link to: host:port or peerid@host:port, comma-separated")
	f.StringVar(&dataDir, "data-dir", supernode.DefaultDataDir(), "directory for the identity key ($SUPERNODE_DATA_DIR)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&jsonLogs, "log-json", false, "log JSON lines even on a terminal")
	f.IntVar(&maxLeaves, "max-leaves", 1000, "most peers attached at once")
	f.IntVar(&leafLimit, "leaf-limit", 200, "peers kept before an eligible one is promoted to supernode and takes some over (-1: never promote)")
	f.DurationVar(&promoteEvery, "promote-every", time.Minute, "least time between two promotions")
	f.Uint8Var(&hops, "hops", 4, "hop limit for queries between supernodes")
	f.StringVar(&altListen, "alt-listen", "", "second UDP address for NAT tests and dial-backs (default: port+1; - for none)")
	f.StringVar(&tcpListen, "tcp-listen", "", "TCP address where peers without UDP ask for a relay (default: the UDP address; - for none)")
	f.StringVar(&relayListen, "relay", "", "run a TURN relay in this process on this address, e.g. :3478")
	f.StringVar(&relayIP, "relay-ip", "", "public IP of the relay, needed when it listens on all interfaces")
	f.StringArrayVar(&relayAllow, "relay-allow-peer", nil, "private or reserved range (CIDR or address) the relay may relay to anyway; repeatable")
	f.StringSliceVar(&turnServers, "turn-server", nil, "stock TURN servers (host:port) sharing the relay secret, e.g. coturn with use-auth-secret")
	f.StringSliceVar(&advertise, "advertise", nil, "host:port other supernodes reach this one at, for the member list (default: the listen address when it names a host)")
	f.IntVar(&neighbours, "neighbours", 8, "supernode links to keep, opened from the member list (ring fingers first) when the joined ones are fewer (-1: only --join)")
	f.StringVar(&secretFile, "relay-secret-file", "", "file with the secret shared with relays (mode 600), or $"+cli.SecretEnv)
	f.StringVar(&certFile, "cert", "", "certificate admitting this supernode to its overlay (default: admission.cert in the data dir)")
	f.StringVar(&networkKeyFile, "network-key", "", "the overlay's network key, to issue our own certificate (default: network.key in the data dir)")
	f.Int64Var(&memLimit, "memory-limit", cli.DefaultMemoryLimit, "soft limit of the Go heap in bytes, which makes the collector work harder near it (0: none; $GOMEMLIMIT wins)")
	f.BoolVar(&limitLoopback, "limit-loopback", false, "apply the per-address limits to loopback sources too (exempt by default, so a local overlay can share 127.0.0.1)")
	cmd.AddCommand(idCommand(), networkCommand(), admitCommand())
	return cmd
}

func usageErr(err error) error {
	fmt.Fprintln(os.Stderr, "supernode:", err)
	return err
}
