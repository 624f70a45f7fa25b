package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// The group coordinator (Kafka's classic group protocol, shared by the
// Kafka listener and the native gRPC API). The coordinator of every group
// is the Raft leader's agent: membership, generations, the chosen
// protocol, the group leader and the assignments are replicated through
// the fsm's group commands; heartbeats, session deadlines and the joins of
// a rebalance in progress live in memory on the leader and start afresh
// (a full session timeout) after a leader change. Assignment is
// client-side: the group's leader member computes it. See DESIGN.md,
// "Consumer-group membership".
//
// Errors wrap the fsm sentinels: fsm.ErrNotCoordinator (a
// *NotCoordinatorError naming the leader), fsm.ErrCoordinatorLoading,
// fsm.ErrUnknownMember, fsm.ErrIllegalGeneration,
// fsm.ErrRebalanceInProgress, fsm.ErrMemberIDRequired (a
// *MemberIDRequiredError with the assigned ID), fsm.ErrInconsistentProtocol,
// fsm.ErrInvalidSessionTimeout, fsm.ErrInvalidArgument, fsm.ErrGroupNotFound,
// plus the write-outcome errors (fsm.ErrUnavailable, fsm.ErrOutcomeUnknown).

// NotCoordinatorError says which agent coordinates groups now (the Raft
// leader's node ID; "" when no leader is known). It wraps
// fsm.ErrNotCoordinator.
type NotCoordinatorError struct {
	Leader string
}

func (e *NotCoordinatorError) Error() string {
	if e.Leader == "" {
		return fsm.ErrNotCoordinator.Error() + " (no leader known)"
	}
	return fmt.Sprintf("%s: the coordinator is agent %s", fsm.ErrNotCoordinator, e.Leader)
}

// Unwrap makes errors.Is(err, fsm.ErrNotCoordinator) true.
func (e *NotCoordinatorError) Unwrap() error { return fsm.ErrNotCoordinator }

// MemberIDRequiredError is the answer to a first join that asked for
// Kafka's v4+ semantics (JoinRequest.RequireMemberID): rejoin with
// MemberID. It wraps fsm.ErrMemberIDRequired.
type MemberIDRequiredError struct {
	MemberID string
}

func (e *MemberIDRequiredError) Error() string {
	return fmt.Sprintf("%s: rejoin with member id %q", fsm.ErrMemberIDRequired, e.MemberID)
}

// Unwrap makes errors.Is(err, fsm.ErrMemberIDRequired) true.
func (e *MemberIDRequiredError) Unwrap() error { return fsm.ErrMemberIDRequired }

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
	// this long (within CoordinatorConfig's Min/MaxSessionTimeout).
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
	Assignments []fsm.MemberAssignment
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
// fsm.NoGeneration with an empty MemberID is a "simple" commit, allowed
// only while the group has no members.
type MemberCommit struct {
	Group      string
	Generation int32
	MemberID   string
	InstanceID string
	Commits    []fsm.GroupCommit
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
	Partitions []fsm.TopicPartitions
}

// GroupMembershipDescription is a group's membership as DescribeGroups
// reports it.
type GroupMembershipDescription struct {
	Group        string
	State        string // fsm.GroupState*; fsm.GroupStateDead: no such group
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

// CoordinatorConfig tunes the coordinator; zero values take the defaults.
type CoordinatorConfig struct {
	// InitialRebalanceDelay: a group without members waits this long after
	// a join (and after each further join, up to the rebalance timeout)
	// before completing its first generation, so members starting together
	// land in one generation (Kafka's group.initial.rebalance.delay.ms).
	// Default 300 ms; negative: no delay.
	InitialRebalanceDelay time.Duration
	// Min/MaxSessionTimeout bound JoinRequest.SessionTimeout (defaults
	// 1 s and 5 min; Kafka's group.min/max.session.timeout.ms).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// Tick is how often deadlines are checked (default 50 ms).
	Tick time.Duration
}

// Coordinator returns the group coordinator.
func (s *Service) Coordinator() *Coordinator { return s.coord }

// Join joins (or rejoins) a member and waits until the group's next
// generation completes, ctx ends, or the member is dropped from it. A
// join that arrives while the group is Stable starts a rebalance: the
// other members learn of it from their heartbeats and must rejoin within
// the rebalance timeout, else the new generation goes on without them.
func (c *Coordinator) Join(ctx context.Context, req JoinRequest) (JoinResult, error) {
	return c.join(ctx, req)
}

// Sync stores the leader's assignments (from the leader) and returns the
// member's assignment for the generation once the leader's have been
// stored: it waits for them until ctx ends or the group moves on
// (fsm.ErrRebalanceInProgress).
func (c *Coordinator) Sync(ctx context.Context, req SyncRequest) (SyncResult, error) {
	return c.sync(ctx, req)
}

// Heartbeat refreshes the member's session. It answers
// fsm.ErrRebalanceInProgress while a rebalance is under way (the member
// must rejoin), fsm.ErrIllegalGeneration for a generation that is not the
// current one, fsm.ErrUnknownMember for a member that is not in it.
func (c *Coordinator) Heartbeat(ctx context.Context, group string, generation int32, memberID, instanceID string) error {
	return c.heartbeat(ctx, group, generation, memberID, instanceID)
}

// Leave removes members from their group (which then rebalances). One
// error per member, in order (nil: removed).
func (c *Coordinator) Leave(ctx context.Context, group string, members []LeaveMember) ([]error, error) {
	return c.leave(ctx, group, members)
}

// CommitOffsets commits offsets for a group member (or a simple consumer:
// fsm.NoGeneration, no member ID), all or nothing. A member's commit is
// refused with fsm.ErrIllegalGeneration / fsm.ErrUnknownMember unless it
// is in the group's current generation, checked by the fsm at apply.
func (c *Coordinator) CommitOffsets(ctx context.Context, req MemberCommit) error {
	return c.commit(ctx, req)
}

// Describe returns a group's membership (state fsm.GroupStateDead for a
// group that does not exist). Any agent answers from its replicated state;
// the in-memory PreparingRebalance of the coordinator shows only there.
func (c *Coordinator) Describe(ctx context.Context, group string) (GroupMembershipDescription, error) {
	return c.describe(ctx, group)
}

// List lists every group (with offsets, members or both).
func (c *Coordinator) List(ctx context.Context) ([]GroupListing, error) {
	return c.list(ctx)
}

// IsCoordinator reports whether this agent coordinates groups now, and
// otherwise the coordinator's node ID ("" when unknown).
func (c *Coordinator) IsCoordinator() (bool, string) {
	return c.isCoordinator()
}
