package grpcapi

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/transport"
)

// healthPollInterval is how often a health Watch re-reads Readiness.
var healthPollInterval = time.Second

// healthService implements grpc.health.v1.Health from the agent's
// Readiness, read on every call: SERVING iff ready (and not stopping), for
// the overall server ("") and ServiceName. A not-ready answer is a state
// report, not an error, as on REST's /ready.
type healthService struct {
	healthpb.UnimplementedHealthServer
	ready    transport.Readiness
	stopping <-chan struct{}
	poll     time.Duration
}

func (h *healthService) status(service string) (healthpb.HealthCheckResponse_ServingStatus, bool) {
	if service != "" && service != ServiceName {
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false
	}
	if h.isStopping() {
		return healthpb.HealthCheckResponse_NOT_SERVING, true
	}
	if ok, _ := h.ready.Ready(); ok {
		return healthpb.HealthCheckResponse_SERVING, true
	}
	return healthpb.HealthCheckResponse_NOT_SERVING, true
}

func (h *healthService) isStopping() bool {
	if h.stopping == nil {
		return false
	}
	select {
	case <-h.stopping:
		return true
	default:
		return false
	}
}

// Check answers NOT_FOUND for services other than "" and ServiceName, as the
// health protocol requires.
func (h *healthService) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, ok := h.status(req.GetService())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "unknown service %q (known: \"\" and %q)", req.GetService(), ServiceName)
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// List reports both services.
func (h *healthService) List(_ context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for _, name := range []string{"", ServiceName} {
		st, _ := h.status(name)
		out.Statuses[name] = &healthpb.HealthCheckResponse{Status: st}
	}
	return out, nil
}

// Watch sends the current status, then every change (Readiness is re-read
// every poll interval). An unknown service is reported as SERVICE_UNKNOWN,
// as the protocol requires. When the agent stops, the stream sends
// NOT_SERVING and ends with UNAVAILABLE.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ticker := time.NewTicker(h.poll)
	defer ticker.Stop()
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		st, _ := h.status(req.GetService())
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		if h.isStopping() {
			return status.Error(codes.Unavailable, "the agent is shutting down")
		}
		select {
		case <-ticker.C:
		case <-h.stopping: // nil channel when there is no Stopping: never ready
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}
