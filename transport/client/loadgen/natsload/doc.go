// Package natsload puts NATS JetStream under the same load as StreamHouse
// for `make bench-compare`: a loadgen.Target whose batches are async
// JetStream publishes with as many acks outstanding as the batch has
// records, so loadgen's one produce loop and one histogram measure both
// systems identically; and the configuration of a loopback JetStream
// cluster to run it against.
//
// It exists only for the benchmark: nothing else in the module imports
// nats.go, and no agent talks to NATS.
package natsload
