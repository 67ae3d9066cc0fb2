package compare

import (
	"testing"
	"time"
)

func smallWorkload() Workload {
	return Workload{Peers: 400, Queries: 300, Duration: 12 * time.Minute, Seed: 7}
}

func TestQuick(t *testing.T) {
	res, err := Run(smallWorkload(), Options{}, Designs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%+v", r)
	}
}
