package main

import (
	"math"
	"testing"
)

func TestInterval(t *testing.T) {
	// Mean 3, sample standard deviation sqrt(2.5), t(0.975, 4 df) = 2.7764.
	mean, half := interval([]float64{1, 2, 3, 4, 5})
	if mean != 3 || math.Abs(half-2.7764*math.Sqrt(2.5)/math.Sqrt(5)) > 1e-3 {
		t.Errorf("interval = %v ± %v, want 3 ± 1.963", mean, half)
	}
	if mean, half := interval([]float64{7}); mean != 7 || half != 0 {
		t.Errorf("one value: %v ± %v, want 7 ± 0", mean, half)
	}
}
