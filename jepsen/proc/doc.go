// Package proc starts, probes and stops the server processes that tests and
// the jepsen harness run: MinIO, PostgreSQL and StreamHouse agents. It is
// the one launcher behind s3seg/s3segtest, pgsync/pgtest, jepsen/control
// and the multi-process tests of cmd/streamhouse.
//
//   - Start runs a prepared *exec.Cmd with its output appended to a log
//     file; the child dies with the calling process (Linux).
//   - WaitReady polls a probe (TCP, HTTPOK or the caller's own) until it
//     passes, the process exits or the context ends; Poll does the same
//     without a process.
//   - Stop sends a signal and SIGKILLs after a grace period; Kill SIGKILLs.
//   - FreePort hands out ports below the kernel's ephemeral range, so an
//     outgoing connection cannot take one before the server binds it.
//   - LogTail reads the end of a log for a failure message.
//
// It imports nothing from this module, so every package's tests can use it.
package proc
