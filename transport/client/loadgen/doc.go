// Package loadgen is the load generator behind `streamhouse bench`: one
// produce loop (fixed rate or saturated, a number of records or a duration,
// per-batch ack latency measured from the intended send time into an
// HdrHistogram-style histogram, exact to 0.1 % at p99.9), rate sweeps up to
// saturation (the OpenMessaging Benchmark's latency-vs-throughput curve), a tail
// reader for produce→consume latency, a read-back of every partition, and
// the agent's /metrics sampled around the run (CPU, peak RSS, object-store
// requests per GiB).
//
// The loop talks to the agents through a Target: one batch send and one
// partition read. REST (JSON over HTTP) and GRPC (the Go client's idempotent
// producer and Fetch) implement it; the loop does not know which one runs.
// A Target that is also a TopicReader reads the topic back its own way:
// Kafka (franz-go) does, with a consumer of every partition, as a Kafka
// application reads (one Fetch per partition leader for many partitions).
// Subpackage natsload implements it for NATS JetStream, so `make
// bench-compare` measures both systems with the same code.
package loadgen
