package partition

import (
	"context"
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

// The request and result types are declared in package fsm (the
// vocabulary the transports share, since they may not import partition);
// these aliases keep the coordinator's API readable here.
type (
	NotCoordinatorError        = fsm.NotCoordinatorError
	MemberIDRequiredError      = fsm.MemberIDRequiredError
	GroupProtocol              = fsm.GroupProtocol
	JoinRequest                = fsm.JoinRequest
	JoinMember                 = fsm.JoinMember
	JoinResult                 = fsm.JoinResult
	SyncRequest                = fsm.SyncRequest
	SyncResult                 = fsm.SyncResult
	LeaveMember                = fsm.LeaveMember
	MemberCommit               = fsm.MemberCommit
	MemberDescription          = fsm.MemberDescription
	GroupMembershipDescription = fsm.GroupMembershipDescription
	GroupListing               = fsm.GroupListing
)

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
