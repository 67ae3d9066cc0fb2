package cli

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/supernet-p2p/supernet/protocol"
)

// DefaultLogLevel is the log level of the daemons unless --log-level says otherwise.
const DefaultLogLevel = "info"

// ParseFlags parses args with the flags bind defines, for a command that
// takes flags only. It writes nothing: the error says what is wrong.
func ParseFlags(name string, bind func(*pflag.FlagSet), args []string) error {
	f := pflag.NewFlagSet(name, pflag.ContinueOnError)
	f.SetOutput(io.Discard)
	bind(f)
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes flags only", f.Arg(0), name)
	}
	return nil
}

// SplitList flattens flag values that may each hold a comma-separated list,
// dropping blanks.
func SplitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// CheckHostPort checks that addr is host:port with a numeric port; the host
// may be empty (all interfaces).
func CheckHostPort(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
		if err != nil {
			err = fmt.Errorf("port %q is not a number from 0 to 65535", port)
		}
	}
	if err != nil {
		return fmt.Errorf("--%s %q: want host:port (%w)", flag, addr, err)
	}
	return nil
}

// CheckTarget checks a node to dial: host:port or peerid@host:port.
func CheckTarget(flag, target string) error {
	addr := target
	if at := strings.LastIndexByte(target, '@'); at >= 0 {
		if _, err := protocol.ParsePeerID(target[:at]); err != nil {
			return fmt.Errorf("--%s %q: want host:port or peerid@host:port (%w)", flag, target, err)
		}
		addr = target[at+1:]
	}
	if err := CheckHostPort(flag, addr); err != nil {
		return fmt.Errorf("--%s %q: want host:port or peerid@host:port", flag, target)
	}
	return nil
}

// CheckIP checks that s is an IP address, when it is given.
func CheckIP(flag, s string) error {
	if s != "" && net.ParseIP(s) == nil {
		return fmt.Errorf("--%s %q: not an IP address", flag, s)
	}
	return nil
}

// AtLeast checks a flag's value that has no meaning below least.
func AtLeast[T ~int | ~int64 | ~float64](flag string, v, least T) error {
	if v < least {
		return fmt.Errorf("--%s %v: must be at least %v", flag, v, least)
	}
	return nil
}

// NotNegative checks a flag's value that has no meaning below zero.
func NotNegative[T ~int | ~int64 | ~float64](flag string, v T) error {
	if v < 0 {
		return fmt.Errorf("--%s %v: must not be negative", flag, v)
	}
	return nil
}
