package main

import (
	"fmt"
	"os"

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
