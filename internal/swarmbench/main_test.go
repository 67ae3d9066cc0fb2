package swarmbench

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves nothing running behind it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
