package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/streamhouse/streamhouse/fsm"
)

// GroupCoordinator is the consumer-group coordinator (Kafka's classic
// group protocol) and the groups' committed offsets: partition.Coordinator
// and partition.Groups, adapted in cmd/streamhouse because transport
// imports no partition types. The coordinator of every group is the Raft
// leader's agent; elsewhere the membership calls fail with
// fsm.ErrNotCoordinator. Errors wrap the fsm sentinels (see
// groupErrorCode).
type GroupCoordinator interface {
	// JoinGroup waits until the group's next generation completes.
	JoinGroup(ctx context.Context, req JoinRequest) (JoinResult, error)
	// SyncGroup stores the leader's assignments (from the leader) and
	// waits for the member's own.
	SyncGroup(ctx context.Context, req SyncRequest) (SyncResult, error)
	Heartbeat(ctx context.Context, group string, generation int32, memberID, instanceID string) error
	// LeaveGroup removes members: one error per member (nil: removed).
	LeaveGroup(ctx context.Context, group string, members []LeaveMember) ([]error, error)
	// CommitOffsets commits for a member of the current generation, or
	// (generation -1, no member) for a group without members.
	CommitOffsets(ctx context.Context, req MemberCommit) error
	// DescribeGroup answers state fsm.GroupStateDead for no such group.
	DescribeGroup(ctx context.Context, group string) (GroupDescription, error)
	ListGroups(ctx context.Context) ([]GroupListing, error)
	// GroupOffsets is a group's committed offsets (fsm.ErrGroupNotFound:
	// none), read linearizably.
	GroupOffsets(ctx context.Context, group string) (fsm.GroupDescription, error)
	// DeleteGroup deletes a group without members and its offsets.
	DeleteGroup(ctx context.Context, group string) error
}

// GroupProtocol is one assignor a member supports, with its metadata.
type GroupProtocol struct {
	Name     string
	Metadata []byte
}

// JoinRequest is a JoinGroup.
type JoinRequest struct {
	Group, MemberID, InstanceID, ClientID, ClientHost string
	ProtocolType                                      string
	Protocols                                         []GroupProtocol
	SessionTimeout, RebalanceTimeout                  time.Duration
	// RequireMemberID: a join without a member ID is answered at once
	// with a *MemberIDRequiredError (JoinGroup v4+).
	RequireMemberID bool
}

// JoinMember is a member of the new generation as its leader sees it.
type JoinMember struct {
	MemberID, InstanceID string
	Metadata             []byte
}

// JoinResult is the generation a join completed.
type JoinResult struct {
	Generation                                 int32
	ProtocolType, Protocol, LeaderID, MemberID string
	// Members: every member, only for the group's leader.
	Members []JoinMember
}

// SyncRequest is a SyncGroup.
type SyncRequest struct {
	Group                                        string
	Generation                                   int32
	MemberID, InstanceID, ProtocolType, Protocol string
	Assignments                                  []fsm.MemberAssignment
}

// SyncResult is a member's assignment.
type SyncResult struct {
	ProtocolType, Protocol string
	Assignment             []byte
}

// LeaveMember names a member leaving, by member or instance ID.
type LeaveMember struct {
	MemberID, InstanceID string
}

// MemberCommit is an OffsetCommit.
type MemberCommit struct {
	Group                string
	Generation           int32
	MemberID, InstanceID string
	Commits              []fsm.GroupCommit
}

// MemberDescription is one member in DescribeGroups.
type MemberDescription struct {
	MemberID, InstanceID, ClientID, ClientHost string
	Metadata, Assignment                       []byte
}

// GroupDescription is a group's membership.
type GroupDescription struct {
	Group, State, ProtocolType, Protocol string
	Generation                           int32
	LeaderID                             string
	Members                              []MemberDescription
}

// GroupListing is one group in ListGroups.
type GroupListing struct {
	Group, ProtocolType, State string
}

// MemberIDRequiredError answers a first JoinGroup v4+: rejoin with
// MemberID. It wraps fsm.ErrMemberIDRequired.
type MemberIDRequiredError struct {
	MemberID string
}

func (e *MemberIDRequiredError) Error() string {
	return fmt.Sprintf("%s: rejoin with member id %q", fsm.ErrMemberIDRequired, e.MemberID)
}

// Unwrap makes errors.Is(err, fsm.ErrMemberIDRequired) true.
func (e *MemberIDRequiredError) Unwrap() error { return fsm.ErrMemberIDRequired }

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
