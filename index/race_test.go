//go:build race

package index_test

// The race detector drops sync.Pool items at random, so allocation counts mean nothing.
const raceEnabled = true
