package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// ServiceName is the full name of the StreamHouse service, also the health
// service name that reports the API's readiness.
const ServiceName = "streamhouse.v1.StreamHouse"

// Special offsets of FetchRequest.offset and SubscribeRequest.offset (the
// Kafka convention).
const (
	OffsetLatest   int64 = -1 // the high watermark: only records produced from now on
	OffsetEarliest int64 = -2 // the low watermark: everything still stored
)

// Defaults applied to requests that leave a field at 0.
const (
	DefaultFetchRecords  = 100     // FetchRequest.max_records, SubscribeRequest.max_records
	DefaultFetchBytes    = 1 << 20 // max_bytes: fits grpc-go's default 4 MiB receive limit
	DefaultSubscribeWait = 1000    // SubscribeRequest.max_wait_ms
)

// messageOverhead is added to the request limit when sizing the largest
// message gRPC accepts, for the protobuf framing around the records.
const messageOverhead = 64 << 10

// Config wires the gRPC API to the agent. Topics, Producer, Fetcher and
// Readiness are required; Idempotent, Groups, Offsets and Cluster are optional (the
// RPCs that need a missing one answer UNIMPLEMENTED, GetMetadata then lists
// no agents).
type Config struct {
	Topics     transport.Topics
	Producer   transport.Producer
	Idempotent transport.IdempotentProducer
	Fetcher    transport.Fetcher
	Groups     transport.Groups
	// Coordinator serves the group membership RPCs (JoinGroup, SyncGroup,
	// Heartbeat, LeaveGroup, member commits, members in DescribeGroup);
	// optional.
	Coordinator transport.GroupCoordinator
	Offsets     transport.Offsets
	Cluster     transport.ClusterInfo
	Readiness   transport.Readiness
	// Health adds the agent's backlog and checkpoint facts to
	// GetClusterStatus (optional: zero without it).
	Health transport.LocalHealth

	// Logger receives the server's logs (component=grpc); nil discards.
	Logger *slog.Logger
	// Registerer receives the server's own collectors (nil = unregistered).
	Registerer prometheus.Registerer
	// Errors is the shared streamhouse_errors_total{kind} counter
	// (transport.NewErrorsCounter), also given to the REST server; nil = not
	// counted.
	Errors *prometheus.CounterVec
	// Connections is the shared streamhouse_active_connections gauge
	// (transport.NewActiveConnectionsGauge), also given to the REST server;
	// nil = not counted.
	Connections prometheus.Gauge

	// MaxRecordBytes rejects a produce whose record (fsm.Record.Size) is
	// larger, before anything is written (INVALID_ARGUMENT,
	// record_too_large); 0 leaves the check to the Producer.
	MaxRecordBytes int
	// MaxRequestBytes bounds the records of one produce request
	// (RESOURCE_EXHAUSTED, request_too_large); 0 = transport's
	// DefaultMaxRequestBytes (32 MiB). gRPC refuses messages larger than
	// max(MaxRequestBytes, MaxRecordBytes) + 64 KiB before decoding them
	// (also RESOURCE_EXHAUSTED); a grpc.MaxRecvMsgSize option overrides that.
	MaxRequestBytes int

	// MaxConcurrentStreams bounds the calls one connection may have open
	// at once; 0 = DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32

	// Auth, when non-nil, requires an API key (metadata "authorization:
	// Bearer <token>") on every StreamHouse RPC, checked on the call's
	// headers before its body is read; the health and reflection services
	// stay open (at most MaxOpenCallsInFlight at once). nil = no
	// authentication.
	Auth *transport.Authenticator
	// Quotas, when non-nil, throttles each API key per its quotas
	// (RESOURCE_EXHAUSTED quota_exceeded); calls without a key are never
	// throttled.
	Quotas *transport.Quotas

	// Stopping, when closed, ends long-poll Fetches, Subscribe streams and
	// health Watch streams with UNAVAILABLE and turns health to NOT_SERVING,
	// so that (*grpc.Server).GracefulStop can finish: close it before calling
	// GracefulStop. nil: they end only when their clients cancel (call Stop
	// after a grace period).
	Stopping <-chan struct{}
}

// NewServer builds a *grpc.Server serving the StreamHouse service, the
// grpc.health.v1 health service (SERVING iff Readiness says ready, for the
// services "" and ServiceName) and server reflection, with interceptors that
// map errors to statuses, recover panics and record metrics, and a stats
// handler counting open connections, and the limits of limits.go. opts are
// appended to the server's own options (they must not set an InTapHandle).
// It starts nothing: call Serve.
func NewServer(cfg Config, opts ...grpc.ServerOption) *grpc.Server {
	if cfg.Topics == nil || cfg.Producer == nil || cfg.Fetcher == nil || cfg.Readiness == nil {
		panic("grpcapi: NewServer needs non-nil Topics, Producer, Fetcher and Readiness")
	}
	s := newService(cfg)
	srv := grpc.NewServer(append(s.serverOptions(), opts...)...)
	pb.RegisterStreamHouseServer(srv, s)
	healthgrpc.RegisterHealthServer(srv, &healthService{ready: cfg.Readiness, stopping: cfg.Stopping, poll: healthPollInterval})
	reflection.Register(srv)
	s.methods = methodSet(srv) // before Serve: the tap only reads it
	return srv
}

// service implements pb.StreamHouseServer and the interceptors.
type service struct {
	pb.UnimplementedStreamHouseServer
	cfg        Config
	log        *slog.Logger
	m          *metrics
	maxRequest int
	// methods: every registered method (set by NewServer, read-only after).
	methods map[string]bool
	// openSlots: open-service calls admitted by the tap and not yet past
	// their request message (capacity MaxOpenCallsInFlight).
	openSlots chan struct{}
}

func newService(cfg Config) *service {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &service{cfg: cfg, log: logger.With("component", "grpc"), m: newMetrics(cfg), maxRequest: cfg.MaxRequestBytes,
		openSlots: make(chan struct{}, MaxOpenCallsInFlight)}
	if s.maxRequest <= 0 {
		s.maxRequest = transport.DefaultMaxRequestBytes
	}
	return s
}

// writeMethods are the RPCs that change state (see transport.Op).
var writeMethods = map[string]bool{
	pb.StreamHouse_CreateTopic_FullMethodName:   true,
	pb.StreamHouse_DeleteTopic_FullMethodName:   true,
	pb.StreamHouse_Produce_FullMethodName:       true,
	pb.StreamHouse_InitProducer_FullMethodName:  true,
	pb.StreamHouse_CommitOffsets_FullMethodName: true,
	pb.StreamHouse_DeleteGroup_FullMethodName:   true,
	pb.StreamHouse_ResetGroup_FullMethodName:    true,
}

// methodScopes is the least scope each RPC needs (the handlers check
// topics); RPCs not listed need read. See docs/security.md.
var methodScopes = map[string]transport.Scope{
	pb.StreamHouse_CreateTopic_FullMethodName:   transport.ScopeAdmin,
	pb.StreamHouse_DeleteTopic_FullMethodName:   transport.ScopeAdmin,
	pb.StreamHouse_Produce_FullMethodName:       transport.ScopeWrite,
	pb.StreamHouse_InitProducer_FullMethodName:  transport.ScopeWrite,
	pb.StreamHouse_CommitOffsets_FullMethodName: transport.ScopeWrite,
	pb.StreamHouse_DeleteGroup_FullMethodName:   transport.ScopeWrite,
	pb.StreamHouse_ResetGroup_FullMethodName:    transport.ScopeWrite,
}

// authenticate checks the bearer token of a StreamHouse RPC (in its
// metadata md) and the scope of its key, and returns ctx carrying the
// caller. Other services (health, reflection) and everything with auth
// disabled pass through. The tap calls it on the headers, the interceptors
// again before the handler.
func (s *service) authenticate(ctx context.Context, method string, md metadata.MD) (context.Context, error) {
	if !s.cfg.Auth.Enabled() || !isStreamHouse(method) {
		return ctx, nil
	}
	var token string
	if md != nil {
		if v := md.Get("authorization"); len(v) > 0 {
			t, ok := transport.BearerToken(v[0])
			if !ok {
				return ctx, fmt.Errorf("%w: the authorization metadata must be \"Bearer\" followed by an API key", transport.ErrUnauthenticated)
			}
			token = t
		}
	}
	p, err := s.cfg.Auth.Authenticate(token)
	if err != nil {
		return ctx, err
	}
	ctx = transport.WithPrincipal(ctx, p)
	scope, ok := methodScopes[method]
	if !ok {
		scope = transport.ScopeRead
	}
	return ctx, s.cfg.Auth.Authorize(ctx, scope)
}

// authorize checks the caller's scope and topics (auth disabled: nil).
func (s *service) authorize(ctx context.Context, scope transport.Scope, topics ...string) error {
	return s.cfg.Auth.Authorize(ctx, scope, topics...)
}

// authedStream carries the authenticated caller in a stream's context.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

func opOf(method string) transport.Op {
	if writeMethods[method] {
		return transport.OpWrite
	}
	return transport.OpRead
}

func (s *service) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, s.panicked(info.FullMethod, p)
		}
		err = s.finish(ctx, info.FullMethod, start, err)
	}()
	md, _ := metadata.FromIncomingContext(ctx)
	actx, err := s.authenticate(ctx, info.FullMethod, md)
	if err != nil {
		return nil, err
	}
	return handler(actx, req)
}

func (s *service) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			err = s.panicked(info.FullMethod, p)
		}
		err = s.finish(ss.Context(), info.FullMethod, start, err)
	}()
	md, _ := metadata.FromIncomingContext(ss.Context())
	actx, err := s.authenticate(ss.Context(), info.FullMethod, md)
	if err != nil {
		return err
	}
	if actx != ss.Context() {
		ss = &authedStream{ServerStream: ss, ctx: actx}
	}
	return handler(srv, ss)
}

// panicked logs a recovered panic and returns the error the client gets: a
// handler bug must never take the agent down.
func (s *service) panicked(method string, p any) error {
	s.log.Error("panic in gRPC handler", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	err := fmt.Errorf("panic: %v", p) // classified as Internal, generic message
	if opOf(method) == transport.OpWrite {
		// It may have come after the write was proposed (invariant 5).
		return transport.AfterProposal(err)
	}
	return err
}

// finish turns a handler's error into its status, logs and counts it.
func (s *service) finish(ctx context.Context, method string, start time.Time, err error) error {
	if tag, ok := ctx.Value(rpcTagKey{}).(*rpcTag); ok {
		tag.seen.Store(true)
	}
	code := codes.OK
	var out error
	if err != nil {
		ae := classify(opOf(method), err)
		code = ae.code
		// A call its client canceled or timed out has no reader for the
		// error: it is not an error response.
		gone := ctx.Err() != nil && (code == codes.Canceled || code == codes.DeadlineExceeded)
		if !gone {
			s.m.errors.WithLabelValues(ae.kind).Inc()
		}
		level := slog.LevelDebug
		switch code {
		case codes.Internal:
			level = slog.LevelError
		case codes.Unavailable, codes.Unknown:
			level = slog.LevelWarn
		}
		s.log.Log(ctx, level, "request failed", "method", method, "code", code.String(), "kind", ae.kind, "err", err)
		out = ae.status().Err()
	}
	s.m.Requests.WithLabelValues(method, code.String()).Inc()
	s.m.Duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	return out
}

// rpcTag follows one RPC from the stats handler to the interceptor, so that
// RPCs that fail before reaching the interceptor (a message over the size
// limit, an undecodable message) are still counted.
type rpcTag struct {
	method string
	seen   atomic.Bool // the interceptor counted this RPC
}

type rpcTagKey struct{}

// statsHandler tracks open connections in streamhouse_active_connections
// and counts the RPCs the interceptors never saw.
type statsHandler struct{ s *service }

func (h *statsHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcTagKey{}, &rpcTag{method: info.FullMethodName})
}

func (h *statsHandler) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	if _, ok := rs.(*stats.InPayload); ok {
		releaseOpenSlot(ctx) // the open call's request has arrived
		return
	}
	end, ok := rs.(*stats.End)
	if !ok || end.IsClient() {
		return
	}
	tag, ok := ctx.Value(rpcTagKey{}).(*rpcTag)
	if !ok || tag.seen.Load() {
		return
	}
	// Only registered methods get here (gRPC answers unknown ones without
	// stats), so the method label stays bounded.
	ae := classify(opOf(tag.method), end.Error)
	if ae.code != codes.OK {
		h.s.m.errors.WithLabelValues(ae.kind).Inc()
		h.s.log.Debug("request rejected before its handler", "method", tag.method, "code", ae.code.String(), "err", end.Error)
	}
	h.s.m.Requests.WithLabelValues(tag.method, ae.code.String()).Inc()
	h.s.m.Duration.WithLabelValues(tag.method).Observe(end.EndTime.Sub(end.BeginTime).Seconds())
}

func (h *statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (h *statsHandler) HandleConn(_ context.Context, cs stats.ConnStats) {
	switch cs.(type) {
	case *stats.ConnBegin:
		h.s.m.active.Inc()
	case *stats.ConnEnd:
		h.s.m.active.Dec()
	}
}

// pollContext derives the context of a long poll: it also ends when the
// agent starts stopping. Call the CancelFunc when done.
func (s *service) pollContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if s.cfg.Stopping != nil {
		go func() {
			select {
			case <-s.cfg.Stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// stopping reports whether Config.Stopping is closed.
func (s *service) stopping() bool {
	if s.cfg.Stopping == nil {
		return false
	}
	select {
	case <-s.cfg.Stopping:
		return true
	default:
		return false
	}
}
