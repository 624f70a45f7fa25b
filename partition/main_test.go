package partition

import (
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// Every goroutine a test starts (batchers, the sweeper, forwards, the
// flusher, the janitor, the WAL) must be gone when the tests end.
func TestMain(m *testing.M) { testkit.Main(m) }

// The shared test helpers, under the names this package's tests use.
var waitFor = testkit.WaitFor
