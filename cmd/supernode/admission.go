package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

// defaultCertValid is how long `supernode admit` certifies a key for.
const defaultCertValid = 90 * 24 * time.Hour

// admission is what a starting supernode serves under: the network key it
// holds, or a chain from it.
type admission struct {
	network protocol.NetworkID
	key     ed25519.PrivateKey
	chain   protocol.Chain
	created bool // a new overlay was started: the network key was just made
}

// loadAdmission finds the supernode's admission: --network-key, --cert, or
// the files of those names in the data directory. With none and nothing to
// join, the supernode is the first of a new overlay and makes its network
// key; with none and --join, it cannot link to anyone, which is an error.
func loadAdmission(dataDir, keyFile, certFile string, joining bool) (*admission, error) {
	a := &admission{}
	explicitKey, explicitCert := keyFile != "", certFile != ""
	if keyFile == "" {
		keyFile = filepath.Join(dataDir, protocol.NetworkKeyFile)
	}
	if certFile == "" {
		certFile = filepath.Join(dataDir, protocol.CertFile)
	}
	key, err := protocol.ReadKeyFile(keyFile)
	switch {
	case err == nil:
		a.key, a.network = key, protocol.NetworkIDOf(key)
	case explicitKey || !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("network key: %w", err)
	}
	n, ch, err := protocol.ReadChainFile(certFile)
	switch {
	case err == nil:
		if a.key != nil && n != a.network {
			return nil, fmt.Errorf("certificate %s is for network %s, but the network key is %s's", certFile, n, a.network)
		}
		a.network, a.chain = n, ch
	case explicitCert || !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if a.key != nil || a.chain != nil {
		return a, nil
	}
	if joining {
		return nil, fmt.Errorf("%w: this supernode has no certificate, so the supernodes it joins will refuse it.\n"+
			"  Run `supernode id --key --data-dir %s` here for its public key, then, where the network key is,\n"+
			"  `supernode admit KEY -o admission.cert`, and copy that file to %s (or pass --cert)",
			protocol.ErrNotAdmitted, dataDir, certFile)
	}
	key, err = protocol.CreateKeyFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("network key: %w", err)
	}
	a.key, a.network, a.created = key, protocol.NetworkIDOf(key), true
	return a, nil
}

// apply sets the supernode's configuration from the admission.
func (a *admission) apply(cfg *supernode.Config) {
	cfg.Network, cfg.NetworkKey, cfg.Chain = a.network, a.key, a.chain
}

func idCommand() *cobra.Command {
	var (
		dataDir string
		key     bool
	)
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Print this supernode's peer ID, or with --key its public key for `supernode admit`",
		Long: `Print this supernode's peer ID (making its identity key on first use). With --key,
print its public key instead: what the operator who holds the network key admits,
with 'supernode admit KEY'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := protocol.LoadOrCreateIdentity(dataDir)
			if err != nil {
				return err
			}
			if key {
				fmt.Fprintln(cmd.OutOrStdout(), protocol.FormatPublicKey(id.Key.Public().(ed25519.PublicKey)))
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), id.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", supernode.DefaultDataDir(), "directory for the identity key ($"+supernode.DataDirEnv+")")
	cmd.Flags().BoolVar(&key, "key", false, "print the public key to admit rather than the peer ID")
	return cmd
}

func networkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Create or show an overlay's network key",
	}
	var keyFile string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a network key: the root of a new overlay",
		Long: `Create a network key, the root of a new overlay. Keep it secret: whoever holds it
can admit supernodes and relays. A supernode started with it in its data directory
(or with --network-key) issues its own certificate; others need one from
'supernode admit'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := protocol.CreateKeyFile(keyFile)
			if errors.Is(err, os.ErrExist) {
				return cli.Usage(fmt.Errorf("%s exists already; `supernode network show` prints its network ID", keyFile))
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), protocol.NetworkIDOf(key))
			fmt.Fprintf(cmd.ErrOrStderr(), "network key written to %s (mode 600): keep it secret\n", keyFile)
			return nil
		},
	}
	showCmd := &cobra.Command{
		Use:   "show",
		Short: "Print the network ID of a network key or of a certificate",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				n, ch, err := protocol.ReadChainFile(args[0])
				if err != nil {
					return err
				}
				return printChain(cmd.OutOrStdout(), n, ch)
			}
			key, err := protocol.ReadKeyFile(keyFile)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), protocol.NetworkIDOf(key))
			return nil
		},
	}
	def := filepath.Join(supernode.DefaultDataDir(), protocol.NetworkKeyFile)
	for _, c := range []*cobra.Command{initCmd, showCmd} {
		c.Flags().StringVar(&keyFile, "network-key", def, "the network key file")
		cmd.AddCommand(c)
	}
	return cmd
}

func printChain(w io.Writer, n protocol.NetworkID, ch protocol.Chain) error {
	fmt.Fprintf(w, "network  %s\n", n)
	for i, c := range ch {
		issuer := "the network key"
		if i > 0 {
			issuer = ch[i-1].Peer().String()
		}
		fmt.Fprintf(w, "cert %d   %s  roles %s  expires %s  signed by %s\n", i, c.Peer(), c.Roles,
			time.Unix(c.Expires, 0).UTC().Format(time.RFC3339), issuer)
	}
	if err := ch.Verify(n, ch.Leaf().Peer(), ch.Leaf().Roles, time.Now()); err != nil {
		fmt.Fprintf(w, "NOT VALID: %v\n", err)
		return err
	}
	fmt.Fprintln(w, "valid")
	return nil
}

func admitCommand() *cobra.Command {
	var (
		keyFile, out, roles string
		valid               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "admit KEY",
		Short: "Admit a supernode or relay to the overlay: sign a certificate for its key",
		Long: `Sign a certificate admitting a key to the overlay whose network key you hold.
KEY is the public key 'supernode id --key' prints on the host to admit (key-...).
Copy the certificate to that host's data directory as admission.cert, or pass
it with --cert.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := protocol.ParsePublicKey(args[0])
			if err != nil {
				return cli.Usage(err)
			}
			key, err := protocol.ReadKeyFile(keyFile)
			if err != nil {
				return fmt.Errorf("network key: %w", err)
			}
			r, err := protocol.ParseCertRoles(roles)
			if err != nil {
				return cli.Usage(err)
			}
			if valid <= 0 {
				return cli.Usage(errors.New("--valid must be positive"))
			}
			ch := protocol.Admit(key, pub, r, time.Now().Add(valid))
			b, err := protocol.EncodeChainPEM(protocol.NetworkIDOf(key), ch)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "admitted %s as %s until %s: %s\n", ch.Leaf().Peer(), r,
				ch.Expires().UTC().Format(time.RFC3339), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "network-key", filepath.Join(supernode.DefaultDataDir(), protocol.NetworkKeyFile), "the network key file")
	f.StringVarP(&out, "out", "o", "", "write the certificate here (default: standard output)")
	f.StringVar(&roles, "roles", "supernode,relay,admit", "roles to grant: supernode, relay, admit (sign for leaves it promotes)")
	f.DurationVar(&valid, "valid", defaultCertValid, "how long the certificate lasts")
	return cmd
}
