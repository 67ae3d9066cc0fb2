package cli

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// ExitUsage is the exit code of a command given a bad flag, argument or value.
const ExitUsage = 2

// UsageError is a mistake in how a command was called: an unknown flag, a
// wrong number of arguments, a value out of range. Main prints it with a hint
// at the command's --help and exits with ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as a usage error; nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return err
	}
	return &UsageError{Err: err}
}

// Exiter is an error that has already been explained to the user and names
// the exit code; Main prints nothing more for it.
type Exiter interface {
	error
	ExitCode() int
}

// Version is this build's version: the module version when built from a
// release, else the VCS revision and time the go tool stamped, with
// "+dirty" when the tree had changes, then the Go version and platform.
func Version() string {
	return versionOf(debug.ReadBuildInfo())
}

func versionOf(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "unknown (no build information) " + runtime.Version()
	}
	v := bi.Main.Version
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " " + rev + dirty
		if at != "" {
			v += " " + at
		}
	}
	return fmt.Sprintf("%s %s %s/%s", v, bi.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// Main runs cmd with args (without the program name) the way every binary
// here runs: with --version, and with every error printed once to stderr as
// "name: error". A usage error gets a hint at --help and exits with
// ExitUsage; an Exiter exits with its code, unprinted; any other error exits
// with 1.
func Main(cmd *cobra.Command, args []string, stderr io.Writer) int {
	LogUnits()
	prepare(cmd)
	cmd.SetArgs(args)
	cmd.SetErr(stderr)
	ran, err := cmd.ExecuteC()
	if err == nil {
		return 0
	}
	var ex Exiter
	if errors.As(err, &ex) {
		return ex.ExitCode()
	}
	name := cmd.Name()
	var ue *UsageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		path := name // the hint names the command that ran, "peer get"
		if ran != nil {
			path = ran.CommandPath()
		}
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", name, err, path)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// LogUnits makes the process's logs write durations with their unit
// ("took":"177.39ms"), not as bare numbers of milliseconds. zerolog keeps
// the format in a global, so only a main function, before it logs, calls it.
func LogUnits() {
	if zerolog.DurationFieldFormat != zerolog.DurationFormatString {
		zerolog.DurationFieldFormat = zerolog.DurationFormatString
	}
}

// prepare gives cmd --version, keeps cobra from printing usage or errors
// itself (Main does), and makes flag and argument errors of cmd and its
// subcommands usage errors that name the command.
func prepare(cmd *cobra.Command) {
	cmd.Version = Version()
	cmd.SetVersionTemplate(cmd.Name() + " {{.Version}}\n")
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SilenceErrors, c.SilenceUsage = true, true
		c.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
			return &UsageError{Err: err}
		})
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return &UsageError{Err: err}
				}
				return nil
			}
		}
		if c.HasParent() && !c.Runnable() && c.HasSubCommands() {
			// Else cobra prints help and exits 0 on "supernode network bogus".
			c.RunE = func(c *cobra.Command, a []string) error {
				if len(a) > 0 {
					return &UsageError{Err: fmt.Errorf("unknown command %q for %q", a[0], c.CommandPath())}
				}
				return c.Help()
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cmd)
}

// isCobraUsage reports errors cobra makes before any flag is parsed, such as
// an unknown subcommand, which reach Main without passing a hook.
func isCobraUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ") || strings.HasPrefix(err.Error(), "unknown flag")
}
