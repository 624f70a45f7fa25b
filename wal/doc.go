// Package wal is StreamHouse's local write-ahead log: an append-only,
// segmented log of opaque entries, each identified by a caller-chosen,
// strictly increasing uint64 index (gaps allowed). The agent keeps the
// records it materialises from Raft here until they are flushed to S3, then
// drops whole old segments with TruncateFront.
//
// Entries are framed with their length, index and a CRC32C and appended to
// segment files named by their first index. Append returns only once its
// entries are fsynced; concurrent callers share fsyncs (group commit, with
// an optional window set by Options.SyncInterval). AppendAsync writes without
// waiting and Sync waits for everything written so far. Read and Iterate
// serve entries from an in-memory index with one pread, verifying checksums.
//
// Open rebuilds the index by scanning every segment. A torn tail of the last
// segment (a partial or zero-filled final write) is cut off and kept in a
// ".torn" side file; any other damage makes Open fail with an error wrapping
// ErrCorrupt that names the file and offset. An fsync error is fatal to the
// instance: it refuses every later write with an error wrapping ErrFailed
// and the cause, and never retries the fsync.
//
// All I/O goes through the FS interface: OSFS for real files, MemFS for an
// in-memory log (the agent's WAL_ENABLED=false mode) and, in strict mode,
// for crash and fault-injection tests.
//
// DESIGN.md in this directory describes the on-disk format, the group
// commit, the recovery rules and the invariants.
package wal
