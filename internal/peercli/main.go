// Package peercli is the `peer` command: the daemon (`peer up`) and the commands
// that talk to it over its control socket (`search`, `get`, `status`, `rescan`).
// It lives here so the demo runs the very same code a user types.
package peercli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/protocol"
)

// exitError carries an exit code; its message has already been printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }
func (e exitError) ExitCode() int { return e.code }

// Main runs the peer command with args (without the program name) and returns
// the exit code.
func Main(args []string) int { return cli.Main(root(), args, os.Stderr) }

type globals struct {
	dataDir string
}

func root() *cobra.Command {
	g := &globals{}
	cmd := &cobra.Command{
		Use:   "peer",
		Short: "A peer of the supernode overlay: share a folder, search, download",
	}
	cmd.PersistentFlags().StringVar(&g.dataDir, "data-dir", peer.DefaultDataDir(), "data directory of the daemon ($"+peer.DataDirEnv+")")
	cmd.AddCommand(upCmd(g), searchCmd(g), getCmd(g), connectCmd(g), lookupCmd(g), sendCmd(g), inboxCmd(g), statusCmd(g), rescanCmd(g), configCmd(g), webCmd(g), benchCmd())
	return cmd
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Exit codes beyond 0-5, as aria2 numbers the same failures.
const (
	exitInterrupted = 7  // stopped by a signal; run again to resume
	exitDiskFull    = 9  // no room on the disk
	exitExists      = 13 // the target file is there already
)

// explain prints a one-line reason for the common failures and picks an exit code.
func explain(err error) error {
	switch {
	case errors.Is(err, localapi.ErrNoDaemon):
		fmt.Fprintln(os.Stderr, "peer:", err)
		return exitError{3}
	case errors.Is(err, peer.ErrNoSupernode):
		fmt.Fprintln(os.Stderr, "peer: the daemon cannot reach a supernode:", err)
		return exitError{4}
	case errors.Is(err, peer.ErrNothingFound):
		fmt.Fprintln(os.Stderr, "peer:", err)
		return exitError{5}
	case errors.Is(err, protocol.ErrBadContentID):
		return cli.Usage(err)
	case errors.Is(err, peer.ErrExists):
		fmt.Fprintln(os.Stderr, "peer:", err)
		return exitError{exitExists}
	case errors.Is(err, peer.ErrDiskFull):
		fmt.Fprintln(os.Stderr, "peer: the disk is full:", err)
		return exitError{exitDiskFull}
	}
	return err
}
