package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/wal"
)

// unsafeWALFSEnv selects a fault-injection WAL filesystem.
const unsafeWALFSEnv = "STREAMHOUSE_UNSAFE_WAL_FS"

// unsafeWALFS returns a WAL filesystem for fault-injection runs (the jepsen
// harness), selected by STREAMHOUSE_UNSAFE_WAL_FS; nil = the normal one.
// Never set it in production.
//
//   - "lossy": wal.NewLossyFS over the OS filesystem: WAL writes stay in
//     process memory until fsynced, so a SIGKILL loses every unsynced write
//     (as a power failure would), proving nothing acknowledged depends on
//     them.
//
// Any other non-empty value exits with status 2, like an invalid setting.
func unsafeWALFS() wal.FS {
	switch v := os.Getenv(unsafeWALFSEnv); v {
	case "":
		return nil
	case "lossy":
		return wal.NewLossyFS(wal.OSFS{})
	default:
		fmt.Fprintf(os.Stderr, "streamhouse: invalid %s=%q: the only value is \"lossy\" (tests only)\n", unsafeWALFSEnv, v)
		os.Exit(2)
		return nil
	}
}

// testClockOffsetEnv names a file holding a clock offset for this agent
// (tests only: the jepsen clock nemesis).
const testClockOffsetEnv = "STREAMHOUSE_TEST_CLOCK_OFFSET_FILE"

// offsetClock is a wall clock shifted by the duration written in a file
// ("90s", "-2h"; a missing or empty file means no shift). The file is
// re-read at most every 100 ms, so a harness can jump the agent's clock
// forward and back while it runs.
type offsetClock struct {
	path string

	mu     sync.Mutex
	offset time.Duration
	readAt time.Time
	log    *slog.Logger
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.readAt) >= 100*time.Millisecond {
		c.readAt = time.Now()
		c.offset = c.read()
	}
	return time.Now().Add(c.offset)
}

func (c *offsetClock) read() time.Duration {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return 0
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.log.Warn("ignoring an unreadable clock offset", "file", c.path, "err", err)
		return c.offset
	}
	return d
}

// agentClock returns the wall clock the agent's time-stamping components
// use: time.Now, or, with STREAMHOUSE_TEST_CLOCK_OFFSET_FILE set (never in
// production), time.Now shifted by the offset in that file.
func agentClock(log *slog.Logger) func() time.Time {
	path := os.Getenv(testClockOffsetEnv)
	if path == "" {
		return time.Now
	}
	log.Warn(testClockOffsetEnv+" is set: this agent's clock is shifted by the offset in that file (tests only)", "file", path)
	c := &offsetClock{path: path, log: log}
	return c.Now
}
