// Package pgsync checkpoints the committed metadata of a StreamHouse
// cluster (fsm.Image: topics, partitions, the segment index, consumer-group
// offsets, idempotent producers, pending object deletes) to PostgreSQL, the
// durable system of record from which disaster recovery rebuilds a cluster.
//
// Open connects and applies the embedded schema migrations.
// DB.WriteCheckpoint stores an image in one transaction behind a guard that
// never lets checkpoints regress; DB.LoadLatest reads the latest one back
// for restore. Checkpointer is the loop the Raft leader runs, with
// exponential backoff, per-attempt timeouts and Prometheus metrics; it never
// blocks anything else.
//
// See DESIGN.md for the schema (every table and column), the guard,
// incremental segment writes and the loop's failure behaviour. Subpackage
// pgtest starts a real PostgreSQL server for tests.
package pgsync
