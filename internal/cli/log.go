// Package cli holds what the commands share: logger set-up.
package cli

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// Logger writes to w: human-readable on a terminal, JSON lines otherwise or when
// json is set. Levels: debug (per-message detail), info (attach, link, transfer
// events), warn (a peer misbehaved or a retry), error (we could not do our job).
func Logger(w io.Writer, level string, json bool) (zerolog.Logger, error) {
	if err := CheckLogLevel(level); err != nil {
		return zerolog.Nop(), err
	}
	lvl, _ := zerolog.ParseLevel(level)
	if f, ok := w.(*os.File); ok && !json && term.IsTerminal(int(f.Fd())) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// CheckLogLevel checks a level Logger takes.
func CheckLogLevel(level string) error {
	if _, err := zerolog.ParseLevel(level); err != nil || level == "" {
		return fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return nil
}

// DefaultMemoryLimit is the soft limit daemons give the Go runtime unless
// GOMEMLIMIT says otherwise: the garbage collector works harder as the heap
// nears it, so short bursts of garbage (frames decoded and dropped under a
// flood) do not double the resident memory, as the default GOGC lets them.
// It is soft: a live heap above it slows the collector, it does not fail.
const DefaultMemoryLimit = 192 << 20

// SetMemoryLimit applies limit (bytes; 0 for none) unless GOMEMLIMIT is set.
func SetMemoryLimit(limit int64) {
	if os.Getenv("GOMEMLIMIT") != "" || limit <= 0 {
		return
	}
	debug.SetMemoryLimit(limit)
}

// LogFlags are the daemons' logging flags, --log-level and --log-json.
type LogFlags struct {
	Level string
	JSON  bool
}

// DefaultLogFlags are the logging flags' defaults.
func DefaultLogFlags() LogFlags { return LogFlags{Level: DefaultLogLevel} }

// Bind defines the flags on f.
func (l *LogFlags) Bind(f *pflag.FlagSet) {
	f.StringVar(&l.Level, "log-level", DefaultLogLevel, "debug, info, warn or error")
	f.BoolVar(&l.JSON, "log-json", false, "log JSON lines even on a terminal")
}

// Check checks the level.
func (l LogFlags) Check() error { return CheckLogLevel(l.Level) }

// Logger is Logger with these flags.
func (l LogFlags) Logger(w io.Writer) (zerolog.Logger, error) { return Logger(w, l.Level, l.JSON) }
