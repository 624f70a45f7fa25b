// Package transport holds StreamHouse's wire protocols: the public REST API,
// the peer port shared by Raft and the peer RPC used to forward requests
// between agents, and later the public gRPC API and more of the
// listener/TLS/auth plumbing.
//
// The package imports only fsm from this module. It reaches the agent through
// the small interfaces declared in interfaces.go (Topics, Producer, Fetcher,
// Readiness), which the agent's wiring satisfies; it never imports cluster or
// partition.
//
// # REST server
//
// NewHTTPServer builds an *HTTPServer from an HTTPConfig and the four
// interfaces. The constructor starts nothing: Start listens (returning listen
// errors synchronously) and serves in the background; Shutdown drains
// in-flight requests, ends long-poll consumes early, and is idempotent.
// Handler exposes the full handler chain for tests. The topic response
// types (TopicJSON, PartitionJSON, TopicsResponse, PartitionsResponse) are
// exported so that REST clients in this module (the jepsen harness, the
// agent's tests) decode the shape the server writes instead of a copy.
//
// Every error response has the shape
//
//	{"error":{"code":"...","message":"..."}}
//
// with a stable machine-readable code (the Code* constants) and a human
// message. Write errors say whether the write was definitely not applied
// (503 unavailable: safe to retry) or may have been applied (504
// outcome_unknown). REST.md documents every endpoint and code. The error
// table (errkind.go: Classify, ErrorKind) maps errors to these codes and to
// HTTP statuses and gRPC codes, for REST, gRPC and the peer RPC alike.
//
// # Web console support
//
// With HTTPConfig.Console set (transport/console's handler) the server
// serves the web console's files at /ui/ without authentication; the page
// calls the API with the user's key. Three read-only endpoints serve it:
// /api/v1/durability (durability.go: this agent's flush backlog and
// checkpoint, and the other admitted agents' read over the peer channel
// by peerread.go — never with the caller's Authorization header, each call
// bounded by a 2 s timeout and a 1 MiB answer; HTTPServer.PeerReadHandler
// serves the peer side), /api/v1/topics/{name}/storage
// (one page of partitions, at most 200) and /api/v1/metrics/history
// (metricshistory.go: a ring of samples of the agent's own registry taken
// every 2 s by a goroutine that Start starts and Shutdown waits for).
//
// # Peer traffic
//
// Agents talk to each other on one TCP port (PEER_PORT) through a PeerMux
// (peer.go): hashicorp/raft traffic and peer RPC share it. Every connection
// opens with a handshake — one tag byte (Raft or RPC), then the dialer's
// advertised address as a uvarint length and bytes — read under a deadline;
// unknown tags, bad lengths and malformed addresses close the connection.
// RaftLayer returns a raft.StreamLayer for raft.NewNetworkTransportWithConfig
// (Accept sees only Raft connections); HandleRPC serves peer RPC as
// HTTP/1.1 over the mux, and RPCClient dials peers with the RPC tag
// (URLs http://<peer advertised host:port>/peer/v1/...). PeerConfig.TLS, when
// set, wraps whole connections in TLS below the handshake.
// PeerConfig.ClusterSecret adds a mutual HMAC challenge-response
// (peer_auth.go) bound to both agents' addresses and the TLS session, so a
// handshake relayed or reflected to another agent is refused.
//
// Faults (faults.go) is the test hook for network faults between PeerMuxes
// of one process, keyed by advertised address: Partition, Isolate, Block
// (asymmetric), Delay and DropRPCResponses (the server runs the handler,
// then closes the connection unanswered: "outcome unknown" for the caller),
// enforced on dial, on accept and on live connections. PEER.md documents
// the wire format, the fault semantics and how Raft is plugged in.
//
// # TLS and API keys
//
// tls.go: CertFiles serves a certificate key pair from PEM files and
// re-reads it when they change; ServerTLSConfig is the public listeners'
// config, PeerMTLSConfig the peer port's mutual TLS against the cluster's
// own CA. PeerConfig.ClusterSecret adds an HMAC challenge-response to the
// peer handshake (PEER.md). auth.go: API keys (bearer tokens stored as
// SHA-256, scoped read ⊂ write ⊂ admin, optionally per topic), parsed from
// the keys file; an Authenticator checks tokens in constant time and
// scopes/topics (Authorize). HTTPConfig.Auth enforces them on every route
// but the probes; errors are 401 unauthenticated / 403 permission_denied.
// auth_watch.go: WatchAPIKeys re-reads the keys file when it changes and
// swaps the keys in force (failing closed on a broken or deleted file).
// quota.go: per-key quotas (Kafka's producer_byte_rate, consumer_byte_rate,
// controller_mutation_rate): a token bucket per key in force and quota,
// charged by the REST and gRPC handlers after authorization and before the
// work (a fetch: after it, throttling the next); 429 quota_exceeded.
//
// # Metrics
//
// Collectors are created per server with promauto.With(HTTPConfig.Registerer)
// (never a global registry): streamhouse_http_requests_total{route,code} and
// streamhouse_http_request_duration_seconds{route}. The agent creates the
// shared collectors once and passes them to REST and gRPC:
// streamhouse_errors_total{kind} (HTTPConfig.Errors, NewErrorsCounter; kind =
// the error code) and streamhouse_active_connections (HTTPConfig.Connections,
// NewActiveConnectionsGauge).
package transport
