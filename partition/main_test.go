package partition

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (batchers, the sweeper, forwards, the
// flusher, the janitor, the WAL) must be gone when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
