//go:build !race

package transport

// floodRate paces the STUN flooder of TestSTUNFloodFromOneSource (see
// race_test.go): 50,000 requests a second is several times what the limits
// let through, and well within what the node reads even on a loaded machine.
// A flood beyond what the node can read is dropped by the kernel and by
// quic-go's queue before any limit sees it; the hostile suite in integration
// measures that case (TestHostileSTUNFlood).
const floodRate = 50_000

// raceOn: see race_test.go.
const raceOn = false
