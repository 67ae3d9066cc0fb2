//go:build race

package supernode

// The race detector makes the memory tests too slow at full size.
const publishRace = true
