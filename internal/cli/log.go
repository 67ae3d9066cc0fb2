// Package cli holds what the commands share: logger set-up.
package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// Logger writes to w: human-readable on a terminal, JSON lines otherwise or when
// json is set. Levels: debug (per-message detail), info (attach, link, transfer
// events), warn (a peer misbehaved or a retry), error (we could not do our job).
func Logger(w io.Writer, level string, json bool) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	if f, ok := w.(*os.File); ok && !json && term.IsTerminal(int(f.Fd())) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
