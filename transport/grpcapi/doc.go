// Package grpcapi serves StreamHouse's public gRPC API (service
// streamhouse.v1.StreamHouse, defined in transport/proto and generated into
// transport/gen; GRPC.md is the reference).
//
// NewServer returns a *grpc.Server with the StreamHouse service, the
// grpc.health.v1 health service (SERVING iff the agent's Readiness says
// ready) and server reflection. Like the REST server, it reaches the agent
// only through the interfaces of package transport and imports nothing of
// cluster or partition.
//
// With Config.Auth, a tap (grpc.InTapHandle, limits.go) checks a
// StreamHouse call's token and method scope on its headers, before gRPC
// reads its message, so unauthenticated callers never make the agent read
// a body; calls to the open services are bounded in flight
// (MaxOpenCallsInFlight). The server also bounds concurrent streams per
// connection, metadata size, the handshake time, idle connections and
// keepalive pings (GRPC.md, "Limits").
//
// Every RPC goes through one unary or stream interceptor that
//   - with Config.Auth, authenticates StreamHouse RPCs again (metadata
//     "authorization: Bearer <token>") and checks the method's scope
//     (handlers check topics); health and reflection stay open;
//   - recovers a panic into codes.Internal (logged with its stack), so a
//     handler bug never takes the agent down;
//   - maps the handler's error to a status in one place (classify, through
//     transport's error table, the one REST uses), attaching an ErrorDetail
//     whose code is the REST code (and the watermarks for
//     offset_out_of_range);
//   - counts streamhouse_grpc_requests_total{method,code},
//     streamhouse_grpc_request_duration_seconds{method} and the shared
//     streamhouse_errors_total{kind}.
//
// A stats.Handler keeps the shared streamhouse_active_connections gauge and
// counts RPCs that gRPC rejected before the interceptor (a message over the
// size limit).
//
// Long polls (Fetch with max_wait_ms, Subscribe, health Watch) end with
// UNAVAILABLE when Config.Stopping is closed, so GracefulStop can complete.
package grpcapi
