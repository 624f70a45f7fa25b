// Package partition implements the per-partition produce, flush and read
// paths on top of the replicated state machine: batching proposals,
// materialising committed batches into the WAL, packing segments and
// serving fetches with long-poll. New(Config, Deps) builds the service;
// Start runs its background work and Close stops every goroutine it
// started. See DESIGN.md.
package partition
