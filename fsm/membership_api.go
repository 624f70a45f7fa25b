package fsm

import (
	"fmt"
	"time"
)

// The group coordinator's request and result types (partition.Coordinator
// implements the protocol; the transports map these to Kafka's and gRPC's
// messages). See partition/coordinator.go.

// NotCoordinatorError says which agent coordinates groups now (the Raft
// leader's node ID; "" when no leader is known). It wraps
// ErrNotCoordinator.
type NotCoordinatorError struct {
	Leader string
	// Addr is the coordinator's address on the protocol that answers
	// (filled by the transport that knows it; "" when unknown).
	Addr string
}

func (e *NotCoordinatorError) Error() string {
	if e.Leader == "" {
		return ErrNotCoordinator.Error() + " (no leader known)"
	}
	return fmt.Sprintf("%s: the coordinator is agent %s", ErrNotCoordinator, e.Leader)
}

// Unwrap makes errors.Is(err, ErrNotCoordinator) true.
func (e *NotCoordinatorError) Unwrap() error { return ErrNotCoordinator }

// MemberIDRequiredError is the answer to a first join that asked for
// Kafka's v4+ semantics (JoinRequest.RequireMemberID): rejoin with
// MemberID. It wraps ErrMemberIDRequired.
type MemberIDRequiredError struct {
	MemberID string
}

func (e *MemberIDRequiredError) Error() string {
	return fmt.Sprintf("%s: rejoin with member id %q", ErrMemberIDRequired, e.MemberID)
}

// Unwrap makes errors.Is(err, ErrMemberIDRequired) true.
func (e *MemberIDRequiredError) Unwrap() error { return ErrMemberIDRequired }

// GroupProtocol is one protocol (assignor) a member supports, with its
// metadata for it (protocol type "consumer": a ConsumerMemberMetadata).
type GroupProtocol struct {
	Name     string
	Metadata []byte
}

// JoinRequest is a member's JoinGroup.
type JoinRequest struct {
	Group string
	// MemberID is "" for a new member.
	MemberID string
	// InstanceID is group.instance.id (static membership); "" = dynamic.
	// A join with the instance ID of another member replaces that member.
	InstanceID string
	ClientID   string
	ClientHost string
	// ProtocolType is the group's kind ("consumer" for Kafka consumers and
	// StreamHouse's own clients); every member must use the same one.
	ProtocolType string
	// Protocols in the member's order of preference; the group uses the
	// first one every member supports.
	Protocols []GroupProtocol
	// SessionTimeout: the member is removed when no heartbeat arrives for
	// this long (within the coordinator's minimum and maximum).
	SessionTimeout time.Duration
	// RebalanceTimeout: how long a rebalance waits for the members to
	// rejoin (0: SessionTimeout).
	RebalanceTimeout time.Duration
	// RequireMemberID: a join without MemberID is answered at once with a
	// *MemberIDRequiredError carrying the new member's ID (Kafka JoinGroup
	// v4+); otherwise the new member joins with a fresh ID in one call.
	RequireMemberID bool
}

// JoinMember is a member as its group's leader sees it in the join
// response.
type JoinMember struct {
	MemberID   string
	InstanceID string
	Metadata   []byte // for the group's protocol
}

// JoinResult is the outcome of a completed join: the new generation.
type JoinResult struct {
	Generation   int32
	ProtocolType string
	Protocol     string
	LeaderID     string
	MemberID     string
	// Members is every member of the generation when MemberID is the
	// leader (it computes the assignment), else empty.
	Members []JoinMember
}

// SyncRequest is a member's SyncGroup: the leader sends the assignments,
// every member gets its own back.
type SyncRequest struct {
	Group      string
	Generation int32
	MemberID   string
	InstanceID string
	// ProtocolType and Protocol, when set, must match the group's.
	ProtocolType string
	Protocol     string
	// Assignments: only from the leader (ignored from others).
	Assignments []MemberAssignment
}

// SyncResult is a member's assignment for the generation.
type SyncResult struct {
	ProtocolType string
	Protocol     string
	Assignment   []byte
}

// LeaveMember names one member leaving (by member ID, or by instance ID
// for a static member).
type LeaveMember struct {
	MemberID   string
	InstanceID string
}

// MemberCommit is an offset commit from a group member: refused unless
// MemberID is in the group's current Generation. Generation
// NoGeneration with an empty MemberID is a "simple" commit, allowed
// only while the group has no members.
type MemberCommit struct {
	Group      string
	Generation int32
	MemberID   string
	InstanceID string
	Commits    []GroupCommit
}

// MemberDescription is one member in a group description.
type MemberDescription struct {
	MemberID   string
	InstanceID string
	ClientID   string
	ClientHost string
	Metadata   []byte
	Assignment []byte
	// Partitions is Assignment decoded when the protocol type is
	// "consumer" (nil when it is not, or does not decode).
	Partitions []TopicPartitions
}

// GroupMembershipDescription is a group's membership as DescribeGroups
// reports it.
type GroupMembershipDescription struct {
	Group        string
	State        string // GroupState*; GroupStateDead: no such group
	ProtocolType string
	Protocol     string
	Generation   int32
	LeaderID     string
	Members      []MemberDescription // ordered by member ID
}

// GroupListing is one group in ListGroups.
type GroupListing struct {
	Group        string
	ProtocolType string // "" for a group with offsets only
	State        string
}
