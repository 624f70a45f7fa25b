package fsm

import (
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// The FSM starts no goroutines; the check keeps it so.
func TestMain(m *testing.M) { testkit.Main(m) }
