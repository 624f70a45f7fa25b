// Package client is the Go client of StreamHouse's public gRPC API
// (transport/proto/streamhouse/v1): administration (topics, consumer
// groups, metadata), a batching producer and a polling consumer.
//
// # Connecting
//
// Dial takes one or more agent gRPC addresses (bootstrap), asks one of them
// for the cluster metadata (GetMetadata) and keeps one grpc.ClientConn per
// agent address. The metadata (which agent leads which partition, and each
// agent's advertised gRPC address) is refreshed periodically
// (WithMetadataRefresh) and on demand, after an UNAVAILABLE or "not leader"
// answer. When an agent's address is unknown, the bootstrap connection is
// used: every agent answers every call and forwards writes to the partition
// leader, so routing by metadata is an optimisation, never a correctness
// requirement.
//
// # Cluster status and health
//
// ClusterStatus asks any agent for its view of the cluster
// (GetClusterStatus); AgentStatus asks one agent by address. CheckHealth
// asks any agent for the members, then every member for its own facts, and
// EvaluateHealth (pure, rules in its comment) judges them against
// HealthThresholds: `streamhouse cluster health` prints its report.
//
// # Errors
//
// Errors returned by the agent keep their gRPC status (status.Code and
// status.FromError work on them) and come as *Error, which also carries the
// agent's machine-readable kind (ErrorDetail.code, e.g. "not_found",
// "producer_fenced"). IsRetriable reports UNAVAILABLE; IsOutcomeUnknown
// reports UNKNOWN and DEADLINE_EXCEEDED (a write may or may not have been
// applied). A write was definitely not applied only when the agent's kind
// says so (for example "unavailable", "bad_request", "not_found",
// "out_of_order_sequence"): INTERNAL, or UNAVAILABLE and any other code
// without a kind, is what gRPC itself or a proxy answers when the
// connection breaks, perhaps after the agent applied the write, so its
// outcome is unknown. The producer turns such failures into
// outcome_unknown errors (UNKNOWN) itself.
//
// # Producer
//
// A Producer batches records per partition (Linger, MaxBatchRecords,
// MaxBatchBytes) and sends each batch to the partition's leader. It chooses
// partitions like Kafka's default partitioner: an explicit partition
// (Record.ToPartition), else fsm.KeyPartition (murmur2) for a keyed record,
// else a "sticky" partition that changes each time a batch is closed.
//
// By default the producer is idempotent: it obtains a producer id
// (InitProducer) and numbers the records of every partition with its own
// sequence. A batch keeps its base sequence across retries, so a batch whose
// answer was lost (UNAVAILABLE, UNKNOWN, DEADLINE_EXCEEDED, INTERNAL) is
// resent as is
// until RetryTimeout, and the agent answers a resent batch that it already
// wrote with the original offsets instead of writing it twice. Up to
// MaxInFlightPerPartition batches of a partition (default and at most 5,
// like Kafka's idempotent producer) are in flight at once, and partitions
// are sent in parallel (up to MaxInFlight requests in all). The sequences
// keep a partition's batches in order: the agent writes a batch only when
// its sequence is the next one, so a batch that overtook its predecessor
// is refused (OUT_OF_ORDER_SEQUENCE, not written) and resent once every
// batch before it is resolved. If a batch fails for good while later
// batches of its partition are in flight, or is given up while its
// outcome is unknown, the producer bumps its epoch (InitProducer with its
// own id) before sending anything else, which fences the abandoned
// requests and renumbers the batches in flight from 0 in order; a batch
// that may have been written under the old epoch is never renumbered (it
// fails with an unknown outcome). If another session bumps the epoch of the
// producer's id, every later send fails with ErrFenced: the producer is not
// re-initialised behind the caller's back.
//
// A batch's sequence is given back (reused by the next batch) only when
// the agent's kind says it was not written; after any other failure the
// producer bumps its epoch instead, because the agent would take a new
// batch with a reused sequence for the duplicate of a written one and
// acknowledge it without writing it.
//
// A non-idempotent producer (DisableIdempotence) retries only the agent's
// own UNAVAILABLE "unavailable", the one answer that guarantees nothing
// was written; any failure without the agent's "not written" kind is
// returned as outcome unknown.
//
// The agent validates a batch as a whole: a record it rejects (for example
// one over its record size limit) fails every record of that batch, with
// the same error. A record larger than MaxBatchBytes always travels alone.
// Send blocks while BufferBytes of records are buffered or in flight.
//
// # Consumer
//
// A Consumer reads the partitions of one topic with long-polling Fetch
// calls, starting from the group's committed offsets (when a group is set
// and has them) or from ConsumerConfig.Start. It always continues from the
// agent's next_offset: offsets may jump (a disaster restore leaves gaps), so
// nothing assumes they are dense. Commit stores, for each partition, the
// offset after the last record Poll returned.
//
// # Load generation
//
// Subpackage loadgen is the load loop of `streamhouse bench`; it drives
// this client (or the REST API) through its small Target interface.
package client
