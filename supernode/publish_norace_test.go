//go:build !race

package supernode

const publishRace = false
