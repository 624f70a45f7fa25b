package main

import "github.com/streamhouse/streamhouse/wal"

// unsafeWALFS returns a WAL filesystem for fault-injection runs (the jepsen
// harness), selected by STREAMHOUSE_UNSAFE_WAL_FS; nil = the normal one.
// Never set it in production.
func unsafeWALFS() wal.FS { return nil }
