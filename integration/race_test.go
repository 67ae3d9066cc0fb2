//go:build race

package integration

// raceSlowdown stretches the waits of the tests that run a hundred daemons:
// under the race detector everything runs several times slower. Figures are
// reported from runs without it.
const raceSlowdown = 4
