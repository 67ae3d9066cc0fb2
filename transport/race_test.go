//go:build race

package transport

// floodRate caps the STUN flooder of TestSTUNFloodFromOneSource under the race
// detector, which slows the node tenfold: at full speed nearly every packet,
// the honest client's included, would be dropped by the kernel or by quic-go's
// queue before the node's limits see it. Figures are reported from runs
// without it, at full speed.
const floodRate = 20_000

// raceOn: the race detector's shadow memory inflates the process's RSS
// several times over, so RSS bounds are checked only without it.
const raceOn = true
