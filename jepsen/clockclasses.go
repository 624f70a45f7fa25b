package main

import (
	"time"

	"github.com/streamhouse/streamhouse/jepsen/nemesis"
)

// shortGCEnv makes orphan garbage collection aggressive enough to act
// within a run: an upload has 3 s of cluster time to be committed, and
// the janitor runs every 200 ms. (The default grace of 1 h never acts in a
// 60 s run.)
var shortGCEnv = []string{"ORPHAN_GRACE_MS=3000", "RETENTION_CHECK_MS=200"}

// addClockClasses registers the classes that exercise time-based
// decisions (docs/jepsen.md, "Clocks and garbage collection"):
//
//   - gc-short-grace: every agent or a majority is killed and stays down
//     6-15 s, longer than the grace, again and again; after each restart
//     the new leader's janitor runs against objects whose commits may
//     still be in the unapplied log.
//   - clock-skew: one agent's clock (the Raft leader's half the time)
//     jumps forward or back by seconds or hours, sometimes together with
//     a leader kill that moves leadership to or from the skewed agent,
//     with the same short grace.
func addClockClasses() {
	classes["gc-short-grace"] = classSpec{
		kinds: []string{nemesis.KillAll, nemesis.KillMajority}, env: shortGCEnv,
		hold: [2]time.Duration{6 * time.Second, 15 * time.Second},
	}
	classes[nemesis.ClockSkew] = classSpec{
		kinds: []string{nemesis.ClockSkew, nemesis.KillLeader}, mixed: true, env: shortGCEnv,
	}
	classOrder = append(classOrder, "gc-short-grace", nemesis.ClockSkew)
}
