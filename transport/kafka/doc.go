// Package kafka serves the Kafka wire protocol on KAFKA_PORT.
//
// Every agent is a Kafka broker. Requests are decoded and responses encoded
// with franz-go's kmsg package; each API is one handler in the dispatch
// table (dispatch.go), and ApiVersions advertises exactly the table. A
// connection's requests are handled one at a time and answered in order, as
// Kafka brokers do. Handlers call the agent through consumer-side
// interfaces (interfaces.go), the same seams the REST and gRPC servers use.
// See DESIGN.md.
package kafka
