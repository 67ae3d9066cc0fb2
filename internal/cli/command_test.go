package cli

import (
	"bytes"
	"errors"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

type coded struct{}

func (coded) Error() string { return "explained already" }
func (coded) ExitCode() int { return 5 }

// testCommand is a root with a flag, a runnable subcommand taking one
// argument, and a group of subcommands that does nothing itself.
func testCommand() *cobra.Command {
	root := &cobra.Command{Use: "tool", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	var n int
	root.Flags().IntVar(&n, "n", 0, "a number")
	get := &cobra.Command{Use: "get ID", Args: cobra.ExactArgs(1), RunE: func(_ *cobra.Command, a []string) error {
		switch a[0] {
		case "bad":
			return Usage(errors.New("bad ID"))
		case "coded":
			return coded{}
		case "fail":
			return errors.New("disk on fire")
		}
		return nil
	}}
	group := &cobra.Command{Use: "group", Short: "a group"}
	group.AddCommand(&cobra.Command{Use: "leaf", RunE: func(*cobra.Command, []string) error { return nil }})
	root.AddCommand(get, group)
	return root
}

func TestMainExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want []string // in stderr, in order; nil: stderr empty
	}{
		{nil, 0, nil},
		{[]string{"get", "x"}, 0, nil},
		{[]string{"--bogus"}, ExitUsage, []string{"tool: unknown flag: --bogus\n", "Run 'tool --help' for usage.\n"}},
		{[]string{"--n", "x"}, ExitUsage, []string{"tool: invalid argument", "Run 'tool --help'"}},
		{[]string{"extra"}, ExitUsage, []string{`tool: unknown command "extra" for "tool"`, "Run 'tool --help'"}},
		{[]string{"get"}, ExitUsage, []string{"tool: accepts 1 arg(s), received 0", "Run 'tool get --help'"}},
		{[]string{"get", "--bogus", "x"}, ExitUsage, []string{"unknown flag: --bogus", "Run 'tool get --help'"}},
		{[]string{"get", "bad"}, ExitUsage, []string{"tool: bad ID\n", "Run 'tool get --help'"}},
		{[]string{"get", "coded"}, 5, nil},
		{[]string{"get", "fail"}, 1, []string{"tool: disk on fire\n"}},
		{[]string{"group", "nope"}, ExitUsage, []string{`unknown command "nope" for "tool group"`, "Run 'tool group --help'"}},
	}
	for _, tc := range cases {
		var out bytes.Buffer
		code := Main(testCommand(), tc.args, &out)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d; stderr %q", tc.args, code, tc.code, out.String())
		}
		rest := out.String()
		for _, w := range tc.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%q: stderr %q lacks %q", tc.args, out.String(), w)
				break
			}
			rest = rest[i+len(w):]
		}
		if tc.want == nil && out.Len() > 0 {
			t.Errorf("%q: stray stderr %q", tc.args, out.String())
		}
		if strings.Count(out.String(), "Run '") > 1 {
			t.Errorf("%q: hint given twice: %q", tc.args, out.String())
		}
	}
}

func TestVersionFlag(t *testing.T) {
	cmd := testCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	if code := Main(cmd, []string{"--version"}, &stderr); code != 0 || stderr.Len() > 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if got := stdout.String(); !strings.HasPrefix(got, "tool ") || !strings.Contains(got, "go1.") {
		t.Errorf("--version printed %q", got)
	}
}

func TestVersionOf(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "3a3a61dd22cf912ba8a8aaf4d4fb4c2544df3bc4"},
		{Key: "vcs.time", Value: "2026-12-07T17:19:03Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	if got, want := versionOf(bi, true), "devel 3a3a61dd22cf+dirty 2026-12-07T17:19:03Z go1.26.8"; !strings.HasPrefix(got, want) {
		t.Errorf("checkout: %q, want it to start %q", got, want)
	}
	bi = &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}}
	if got := versionOf(bi, true); !strings.HasPrefix(got, "v1.2.3 go1.26.8 ") {
		t.Errorf("release: %q", got)
	}
	if got := versionOf(nil, false); !strings.HasPrefix(got, "unknown") {
		t.Errorf("no build info: %q", got)
	}
}

func TestLogDurationsHaveUnits(t *testing.T) {
	LogUnits()
	var out bytes.Buffer
	log, err := Logger(&out, "info", true)
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Dur("took", 177390*time.Microsecond).Msg("x")
	if !strings.Contains(out.String(), `"took":"177.39ms"`) {
		t.Errorf("logged %s", out.String())
	}
}
