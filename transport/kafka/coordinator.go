package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/streamhouse/streamhouse/fsm"
)

// GroupOffsets is the groups' committed offsets (partition.Groups): read
// linearizably (fsm.ErrGroupNotFound: none), and deleted with the group.
// The membership calls go to the coordinator (transport.GroupCoordinator,
// partition.Coordinator): every group's coordinator is the Raft leader's
// agent; elsewhere they fail with fsm.ErrNotCoordinator.
type GroupOffsets interface {
	DescribeGroup(ctx context.Context, group string) (fsm.GroupDescription, error)
	DeleteGroup(ctx context.Context, group string) error
}

// groupErrorCode maps a coordinator error to a Kafka error code. A lost
// or missing Raft leader is NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE,
// which make clients find the coordinator again.
func groupErrorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, fsm.ErrNotCoordinator), errors.Is(err, fsm.ErrNotLeader):
		return kerr.NotCoordinator.Code
	case errors.Is(err, fsm.ErrCoordinatorLoading):
		return kerr.CoordinatorLoadInProgress.Code
	case errors.Is(err, fsm.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.CoordinatorNotAvailable.Code
	case errors.Is(err, fsm.ErrUnknownMember):
		return kerr.UnknownMemberID.Code
	case errors.Is(err, fsm.ErrIllegalGeneration):
		return kerr.IllegalGeneration.Code
	case errors.Is(err, fsm.ErrRebalanceInProgress):
		return kerr.RebalanceInProgress.Code
	case errors.Is(err, fsm.ErrMemberIDRequired):
		return kerr.MemberIDRequired.Code
	case errors.Is(err, fsm.ErrInconsistentProtocol):
		return kerr.InconsistentGroupProtocol.Code
	case errors.Is(err, fsm.ErrGroupNotEmpty):
		return kerr.NonEmptyGroup.Code
	case errors.Is(err, fsm.ErrGroupNotFound):
		return kerr.GroupIDNotFound.Code
	case errors.Is(err, fsm.ErrInvalidSessionTimeout):
		return kerr.InvalidSessionTimeout.Code
	}
	return errorCode(err)
}

// groupAccess checks a group request: a valid group name the principal
// may op on. It returns the Kafka error code (0: go on).
func (s *Server) groupAccess(c *Conn, op Operation, group string) int16 {
	if err := fsm.ValidateGroupName(group); err != nil {
		return kerr.InvalidGroupID.Code
	}
	if err := s.authorize(c, op, group); err != nil {
		return kerr.GroupAuthorizationFailed.Code
	}
	return 0
}

// topicAccess checks that the principal may op on a topic (0: it may).
func (s *Server) topicAccess(c *Conn, op Operation, topic string) int16 {
	if err := s.authorize(c, op, topic); err != nil {
		return kerr.TopicAuthorizationFailed.Code
	}
	return 0
}
