package fsm

import (
	"errors"
	"fmt"
	"sort"
)

// Consumer-group membership (Kafka's classic group protocol): the
// generations, members, chosen protocol, group leader and assignments of
// each group, replicated so a new coordinator (the next Raft leader)
// continues from them. Heartbeats and session deadlines are not here: they
// live in memory on the coordinator (partition/coordinator.go). See
// DESIGN.md, "Consumer-group membership".

// Group membership commands (16..19 are reserved for them).
const (
	// CmdGroupJoin completes a rebalance: a new generation with its members.
	CmdGroupJoin CommandType = 16
	// CmdGroupSync stores the group leader's assignments: Stable.
	CmdGroupSync CommandType = 17
	// CmdGroupRemoveMembers removes members (left, session expired).
	CmdGroupRemoveMembers CommandType = 18
	// 19 is reserved for group membership.
)

// Group states (Kafka's names, as DescribeGroups reports them).
const (
	GroupStateEmpty               = "Empty"
	GroupStatePreparingRebalance  = "PreparingRebalance"
	GroupStateCompletingRebalance = "CompletingRebalance"
	GroupStateStable              = "Stable"
	GroupStateDead                = "Dead" // not stored: a group that does not exist
)

// NoGeneration is the generation of a commit that does not come from a
// group member (a "simple" consumer, REST, the plain gRPC CommitOffsets).
const NoGeneration int32 = -1

// Membership errors (the coordinator's and Apply's), mapped by the
// transports to Kafka's error codes and gRPC FAILED_PRECONDITION.
var (
	// ErrNotCoordinator: this agent is not the group coordinator (the Raft
	// leader); a *NotCoordinatorError names the leader.
	ErrNotCoordinator = errors.New("this agent is not the group coordinator")
	// ErrCoordinatorLoading: this agent just became the coordinator and
	// has not caught up with the log yet; retry shortly (it wraps
	// ErrUnavailable).
	ErrCoordinatorLoading = fmt.Errorf("%w: the group coordinator is loading", ErrUnavailable)
	// ErrUnknownMember: the member ID is not a member of the group.
	ErrUnknownMember = errors.New("unknown member id")
	// ErrIllegalGeneration: the request carries a generation that is not
	// the group's current one (a stale member, or a stale coordinator).
	ErrIllegalGeneration = errors.New("illegal generation")
	// ErrRebalanceInProgress: the group is rebalancing; rejoin.
	ErrRebalanceInProgress = errors.New("rebalance in progress")
	// ErrMemberIDRequired: a new member must rejoin with the member ID the
	// coordinator assigned (a *MemberIDRequiredError carries it).
	ErrMemberIDRequired = errors.New("member id required")
	// ErrInconsistentProtocol: the member's protocol type or protocols do
	// not match the group's.
	ErrInconsistentProtocol = errors.New("inconsistent group protocol")
	// ErrGroupNotEmpty: the group has active members (delete refused).
	ErrGroupNotEmpty = errors.New("consumer group has active members")
	// ErrInvalidSessionTimeout: the session timeout is outside the range
	// the coordinator accepts.
	ErrInvalidSessionTimeout = fmt.Errorf("%w: invalid session timeout", ErrInvalidArgument)
)

// Result codes of the membership commands (explicit values, outside the
// iota range of errors.go).
const (
	CodeIllegalGeneration Code = 32
	CodeUnknownMember     Code = 33
	CodeGroupNotEmpty     Code = 34
)

func init() {
	codeErrors[CodeIllegalGeneration] = ErrIllegalGeneration
	codeErrors[CodeUnknownMember] = ErrUnknownMember
	codeErrors[CodeGroupNotEmpty] = ErrGroupNotEmpty
}

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// TopicPartitions is a topic with some of its partitions (a member's
// assignment, decoded).
type TopicPartitions struct {
	Topic      string
	Partitions []int32
}

// GroupMember is one member of a group's current generation.
type GroupMember struct {
	ID         string
	InstanceID string // group.instance.id (static membership); "" = dynamic
	ClientID   string
	ClientHost string
	// Timeouts the member asked for, in milliseconds.
	SessionTimeoutMs   int32
	RebalanceTimeoutMs int32
	// Metadata is the member's metadata for the group's chosen protocol
	// (for protocol type "consumer": a ConsumerMemberMetadata).
	Metadata []byte
	// Assignment is what the group leader assigned this member in this
	// generation (a ConsumerMemberAssignment); nil until SyncGroup.
	Assignment []byte
}

// GroupMembership is a group's replicated membership.
type GroupMembership struct {
	Group        string
	Generation   int32
	State        string // GroupState*
	ProtocolType string
	Protocol     string
	Leader       string        // the leader member's ID
	Members      []GroupMember // ordered by ID
	UpdatedAt    int64         // the change's timestamp (unix ms)
}

// Member returns the member with this ID.
func (m *GroupMembership) Member(id string) (*GroupMember, bool) {
	i := sort.Search(len(m.Members), func(i int) bool { return m.Members[i].ID >= id })
	if i < len(m.Members) && m.Members[i].ID == id {
		return &m.Members[i], true
	}
	return nil, false
}

func (m *GroupMembership) clone() *GroupMembership {
	c := *m
	c.Members = append([]GroupMember(nil), m.Members...)
	return &c
}

// GroupJoin completes a rebalance (payload version 1): the group's
// generation goes from PrevGeneration to PrevGeneration+1 with exactly
// Members (their metadata for Protocol), Leader among them, and the group
// waits for the leader's assignments (CompletingRebalance). Apply refuses
// it (CodeIllegalGeneration) unless the group's generation is still
// PrevGeneration, so a deposed coordinator cannot overwrite a newer one.
type GroupJoin struct {
	Group          string
	PrevGeneration int32
	ProtocolType   string
	Protocol       string
	Leader         string
	Members        []GroupMember // Assignment ignored
	Timestamp      int64
	MaxGroups      int64 // MAX_GROUPS for a new group (0 = unlimited)
}

// Type implements Command.
func (*GroupJoin) Type() CommandType { return CmdGroupJoin }
func (*GroupJoin) version() uint8    { return 1 }
func (c *GroupJoin) encode(e *enc) {
	e.str(c.Group)
	e.iv(int64(c.PrevGeneration))
	e.str(c.ProtocolType)
	e.str(c.Protocol)
	e.str(c.Leader)
	e.iv(c.Timestamp)
	e.iv(c.MaxGroups)
	e.uv(uint64(len(c.Members)))
	for i := range c.Members {
		encodeMember(e, &c.Members[i])
	}
}

func encodeMember(e *enc, m *GroupMember) {
	e.str(m.ID)
	e.str(m.InstanceID)
	e.str(m.ClientID)
	e.str(m.ClientHost)
	e.iv(int64(m.SessionTimeoutMs))
	e.iv(int64(m.RebalanceTimeoutMs))
	e.bytes(m.Metadata)
}

func decodeMember(d *dec, m *GroupMember) {
	m.ID = d.str()
	m.InstanceID = d.str()
	m.ClientID = d.str()
	m.ClientHost = d.str()
	m.SessionTimeoutMs = d.i32()
	m.RebalanceTimeoutMs = d.i32()
	m.Metadata = d.bytes()
}

func decodeGroupJoin(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdGroupJoin, v, 1); err != nil {
		return nil, err
	}
	c := &GroupJoin{}
	c.Group = d.str()
	c.PrevGeneration = d.i32()
	c.ProtocolType = d.str()
	c.Protocol = d.str()
	c.Leader = d.str()
	c.Timestamp = d.iv()
	c.MaxGroups = d.iv()
	c.Members = decodeSlice(d, 7, func(m *GroupMember) { decodeMember(d, m) })
	return c, nil
}

// MemberAssignment is one member's assignment in GroupSync.
type MemberAssignment struct {
	MemberID   string
	Assignment []byte
}

// GroupSync stores the group leader's assignments for Generation (payload
// version 1) and makes the group Stable. Members not listed get an empty
// assignment. Refused unless the group is in Generation and
// CompletingRebalance (CodeIllegalGeneration) and every listed member is
// in it (CodeUnknownMember).
type GroupSync struct {
	Group       string
	Generation  int32
	Assignments []MemberAssignment
	Timestamp   int64
}

// Type implements Command.
func (*GroupSync) Type() CommandType { return CmdGroupSync }
func (*GroupSync) version() uint8    { return 1 }
func (c *GroupSync) encode(e *enc) {
	e.str(c.Group)
	e.iv(int64(c.Generation))
	e.iv(c.Timestamp)
	e.uv(uint64(len(c.Assignments)))
	for _, a := range c.Assignments {
		e.str(a.MemberID)
		e.bytes(a.Assignment)
	}
}

func decodeGroupSync(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdGroupSync, v, 1); err != nil {
		return nil, err
	}
	c := &GroupSync{}
	c.Group = d.str()
	c.Generation = d.i32()
	c.Timestamp = d.iv()
	c.Assignments = decodeSlice(d, 2, func(a *MemberAssignment) {
		a.MemberID = d.str()
		a.Assignment = d.bytes()
	})
	return c, nil
}

// GroupRemoveMembers removes members from the group's current Generation
// (payload version 1): they left, or their session expired on the
// coordinator. With members left the group goes to PreparingRebalance
// (they keep their assignments until the next generation); with none it
// becomes Empty in a new generation, as in Kafka. Refused unless the group
// is in Generation (CodeIllegalGeneration) and every ID is a member
// (CodeUnknownMember).
type GroupRemoveMembers struct {
	Group      string
	Generation int32
	MemberIDs  []string
	Timestamp  int64
}

// Type implements Command.
func (*GroupRemoveMembers) Type() CommandType { return CmdGroupRemoveMembers }
func (*GroupRemoveMembers) version() uint8    { return 1 }
func (c *GroupRemoveMembers) encode(e *enc) {
	e.str(c.Group)
	e.iv(int64(c.Generation))
	e.iv(c.Timestamp)
	e.uv(uint64(len(c.MemberIDs)))
	for _, id := range c.MemberIDs {
		e.str(id)
	}
}

func decodeGroupRemoveMembers(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdGroupRemoveMembers, v, 1); err != nil {
		return nil, err
	}
	c := &GroupRemoveMembers{}
	c.Group = d.str()
	c.Generation = d.i32()
	c.Timestamp = d.iv()
	c.MemberIDs = decodeSlice(d, 1, func(id *string) { *id = d.str() })
	return c, nil
}
