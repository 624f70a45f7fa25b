// Package transport holds StreamHouse's wire protocols: the public REST API
// (this file set), and later the public gRPC API, the peer RPC used to
// forward requests between agents, and the listener/TLS/auth plumbing.
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
// Handler exposes the full handler chain for tests.
//
// Every error response has the shape
//
//	{"error":{"code":"...","message":"..."}}
//
// with a stable machine-readable code (the Code* constants) and a human
// message. Write errors say whether the write was definitely not applied
// (503 unavailable: safe to retry) or may have been applied (504
// outcome_unknown). REST.md documents every endpoint and code.
//
// # Metrics
//
// Collectors are created per server from HTTPConfig.Registerer (never a
// global registry): streamhouse_active_connections,
// streamhouse_http_requests_total{route,code} and
// streamhouse_http_request_duration_seconds{route}. Error responses also
// increment the shared streamhouse_errors_total{kind} counter passed in
// HTTPConfig.Errors (see NewErrorsCounter), with kind = the error code.
package transport
