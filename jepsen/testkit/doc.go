// Package testkit holds the helpers every package's tests share: WaitFor
// (poll a condition with a deadline), SyncBuffer (a goroutine-safe log
// sink) and Main (a TestMain body that runs optional setup and teardown
// around the tests and then fails the run if goroutines were left behind,
// with go.uber.org/goleak).
//
// It imports nothing from this module, so any package's tests can import
// it without an import cycle.
package testkit
