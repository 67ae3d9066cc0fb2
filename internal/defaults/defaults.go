// Package defaults holds what the packages' Config defaults share: filling an
// unset field, and where a program keeps its data.
package defaults

import (
	"cmp"
	"os"
	"path/filepath"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Set sets *v to def unless *v is positive: zero and negative values are
// unset.
func Set[T cmp.Ordered](v *T, def T) {
	var zero T
	if *v <= zero {
		*v = def
	}
}

// DataDir is the data directory of the program called name: the value of
// the environment variable env when it is set (read through getenv; no
// variable when env is ""), else a folder of the user's configuration
// directory, else .name in the working directory.
func DataDir(getenv func(string) string, env, name string) string {
	if env != "" {
		if d := getenv(env); d != "" {
			return d
		}
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "supernet", name)
	}
	return "." + name
}

// Backoff is the retry schedule the daemons share (cenkalti/backoff): from
// initial, doubling to at most max, each wait drawn from half to one and a
// half times the interval so that many clients that failed together do not
// retry together. It never stops; the caller's context does.
func Backoff(initial, max time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: initial, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: max}
	b.Reset()
	return b
}
