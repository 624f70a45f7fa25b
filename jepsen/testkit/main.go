package testkit

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Option configures Main.
type Option func(*mainConfig)

type mainConfig struct {
	setup func() (teardown func(failed bool) error, err error)
	leak  []goleak.Option
}

// Setup runs setup before the tests (a shared server, say). If it fails the
// run fails without running the tests; otherwise teardown runs after them,
// told whether they failed (to print a server log), and an error from it
// fails the run.
func Setup(setup func() (teardown func(failed bool) error, err error)) Option {
	return func(c *mainConfig) { c.setup = setup }
}

// IgnoreTopFunction makes the leak check ignore goroutines whose top stack
// frame is f (package-qualified function name). Name one function, with a
// comment saying who owns it; never a blanket ignore.
func IgnoreTopFunction(f string) Option {
	return func(c *mainConfig) { c.leak = append(c.leak, goleak.IgnoreTopFunction(f)) }
}

// Main is a TestMain body: os.Exit(Run(m, opts...)).
func Main(m *testing.M, opts ...Option) { os.Exit(Run(m, opts...)) }

// Run runs the tests between the setup and teardown of Setup, then, if
// everything passed, fails the run when goroutines are left behind. It
// returns the exit code.
func Run(m *testing.M, opts ...Option) int {
	var c mainConfig
	for _, o := range opts {
		o(&c)
	}
	teardown := func(bool) error { return nil }
	if c.setup != nil {
		td, err := c.setup()
		if err != nil {
			fmt.Fprintln(os.Stderr, "test setup:", err)
			return 1
		}
		teardown = td
	}
	code := m.Run()
	if err := teardown(code != 0); err != nil {
		fmt.Fprintln(os.Stderr, "test teardown:", err)
		code = 1
	}
	if code == 0 {
		if err := findLeaks(c.leak); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: goroutines left behind after a successful test run:", err)
			code = 1
		}
	}
	return code
}

// leakSettle is how long goroutines get to end after the tests. Some end
// by themselves shortly after their owner closed: memberlist's Shutdown
// does not wait for a probe in flight, which returns when its probe
// interval (1 s for an agent) has passed. goleak.Find alone retries for
// well under a second.
const leakSettle = 5 * time.Second

// findLeaks runs goleak.Find until it finds nothing or leakSettle has
// passed, and returns its last error.
func findLeaks(opts []goleak.Option) error {
	deadline := time.Now().Add(leakSettle)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}
