//go:build !race

package transport

// floodRate: see race_test.go; 0 is as fast as the flooder can send.
const floodRate = 0

// raceOn: see race_test.go.
const raceOn = false
