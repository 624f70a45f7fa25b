package grpcapi

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/streamhouse/streamhouse/transport/internal/grpcbuf"
)

// Connection and call limits (GRPC.md, "Limits"; docs/security.md).
const (
	// DefaultMaxConcurrentStreams bounds the calls one connection may have
	// open at once (Config.MaxConcurrentStreams = 0). Further calls wait
	// in the client until one ends.
	DefaultMaxConcurrentStreams = 1000
	// MaxHeaderListBytes bounds the metadata (HTTP/2 header list) of one
	// call; a larger one resets the stream before any handler runs.
	MaxHeaderListBytes = 64 << 10
	// MaxOpenCallsInFlight bounds, with API keys on, the calls to the open
	// services (health, reflection) whose request message has not been
	// received yet, over all connections. gRPC has one receive limit per
	// server (sized for produce requests), so this is what bounds the
	// memory unauthenticated callers can make the agent hold. Further open
	// calls are refused UNAVAILABLE (retry; counted as kind "unavailable")
	// before their body is read.
	MaxOpenCallsInFlight = 4
)

// Keepalive and idle settings: dead peers are found within keepaliveTime
// + keepaliveTimeout, a connection without calls is closed (GOAWAY; clients
// reconnect) after idleTimeout like REST's idle timeout, the TLS and
// HTTP/2 handshake must finish within handshakeTimeout, and a client may
// ping at most every minPingInterval.
const (
	idleTimeout      = 2 * time.Minute
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
	handshakeTimeout = 10 * time.Second
	minPingInterval  = 10 * time.Second
)

// serverOptions are the options NewServer gives grpc.NewServer before the
// caller's.
func (s *service) serverOptions() []grpc.ServerOption {
	streams := s.cfg.MaxConcurrentStreams
	if streams == 0 {
		streams = DefaultMaxConcurrentStreams
	}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(max(s.maxRequest, s.cfg.MaxRecordBytes) + messageOverhead),
		grpc.MaxConcurrentStreams(streams),
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idleTimeout, Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minPingInterval, PermitWithoutStream: true}),
		grpc.InTapHandle(s.tap),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.StatsHandler(&statsHandler{s: s}),
		// Buffers that are not cleared, in classes that fit a produce
		// request (GRPC.md, "Buffers").
		grpc.ForceServerCodecV2(grpcbuf.Codec{}),
		experimental.BufferPool(grpcbuf.Default),
	}
}

// methodSet lists the full method names of every service registered on
// srv: the tap refuses others, and only these become metric labels.
func methodSet(srv *grpc.Server) map[string]bool {
	out := map[string]bool{}
	for name, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			out["/"+name+"/"+m.Name] = true
		}
	}
	return out
}

// tap runs on a call's headers, before gRPC reads any of its messages.
// With API keys on, a StreamHouse call is refused here unless its token is
// valid and its key has the method's scope (the interceptors check again,
// and the handlers check topics), so an unauthenticated caller never makes
// the agent read, let alone decode, its body. Calls to the open services
// are admitted within MaxOpenCallsInFlight; unknown methods are refused.
func (s *service) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !s.cfg.Auth.Enabled() {
		return ctx, nil
	}
	method := info.FullMethodName
	if !s.methods[method] {
		return nil, s.refuse(method, status.Errorf(codes.Unimplemented, "unknown method %s", method))
	}
	if !isStreamHouse(method) {
		return s.admitOpen(ctx, method)
	}
	if _, err := s.authenticate(ctx, method, info.Header); err != nil {
		return nil, s.refuse(method, err)
	}
	return ctx, nil
}

func isStreamHouse(method string) bool { return strings.HasPrefix(method, "/"+ServiceName+"/") }

// refuse counts and logs a call the tap refused (the interceptors and the
// stats handler never see it) and returns its status.
func (s *service) refuse(method string, err error) error {
	ae := classify(opOf(method), err)
	s.m.errors.WithLabelValues(ae.kind).Inc()
	if s.methods[method] {
		s.m.Requests.WithLabelValues(method, ae.code.String()).Inc()
	}
	s.log.Debug("call refused before reading its body", "method", method, "code", ae.code.String(), "err", err)
	return ae.status().Err()
}

// openSlotKey carries an open call's admission to the stats handler, which
// releases it when the request message has arrived.
type openSlotKey struct{}

// admitOpen takes one of the MaxOpenCallsInFlight slots for a call to an
// open service, or refuses it. The slot is released when its first message
// has been received (a health Watch does not keep it) or when the call
// ends, whichever comes first.
func (s *service) admitOpen(ctx context.Context, method string) (context.Context, error) {
	select {
	case s.openSlots <- struct{}{}:
	default:
		return nil, s.refuse(method, status.Errorf(codes.Unavailable,
			"too many unauthenticated calls in flight (at most %d); retry", MaxOpenCallsInFlight))
	}
	release := sync.OnceFunc(func() { <-s.openSlots })
	context.AfterFunc(ctx, release) // the stream's context ends with the stream
	return context.WithValue(ctx, openSlotKey{}, release), nil
}

// releaseOpenSlot releases the slot of an admitted open call (no-op for
// other calls).
func releaseOpenSlot(ctx context.Context) {
	if release, ok := ctx.Value(openSlotKey{}).(func()); ok {
		release()
	}
}
