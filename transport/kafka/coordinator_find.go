package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Coordinator key types of FindCoordinator.
const (
	coordinatorGroup       int8 = 0
	coordinatorTransaction int8 = 1
)

// handleFindCoordinator answers the Raft leader's broker for every group
// (the group coordinator); COORDINATOR_NOT_AVAILABLE while no leader is a
// live broker, and for transactions, which are not served.
func (s *Server) handleFindCoordinator(_ context.Context, c *Conn, req *kmsg.FindCoordinatorRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	v := s.brokers()
	if req.Version < 4 {
		co := s.findCoordinator(c, req.CoordinatorType, req.CoordinatorKey, v)
		resp.ErrorCode, resp.ErrorMessage = co.ErrorCode, co.ErrorMessage
		resp.NodeID, resp.Host, resp.Port = co.NodeID, co.Host, co.Port
		return resp, nil
	}
	for _, key := range req.CoordinatorKeys {
		resp.Coordinators = append(resp.Coordinators, s.findCoordinator(c, req.CoordinatorType, key, v))
	}
	return resp, nil
}

// findCoordinator finds the coordinator of one key.
func (s *Server) findCoordinator(c *Conn, typ int8, key string, v brokerView) kmsg.FindCoordinatorResponseCoordinator {
	co := kmsg.NewFindCoordinatorResponseCoordinator()
	co.Key, co.NodeID = key, -1
	fail := func(err *kerr.Error, msg string) kmsg.FindCoordinatorResponseCoordinator {
		co.ErrorCode, co.ErrorMessage = err.Code, kmsg.StringPtr(msg)
		return co
	}
	switch typ {
	case coordinatorGroup:
	case coordinatorTransaction:
		return fail(kerr.CoordinatorNotAvailable, "transactions are not supported")
	default:
		return fail(kerr.InvalidRequest, "unknown coordinator key type")
	}
	if code := s.groupAccess(c, OpDescribe, key); code != 0 {
		co.ErrorCode = code
		return co
	}
	for _, b := range v.brokers {
		if b.id == v.controller {
			co.NodeID, co.Host, co.Port = b.id, b.host, b.port
			return co
		}
	}
	return fail(kerr.CoordinatorNotAvailable, "no Raft leader is known")
}
