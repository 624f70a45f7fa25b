package client

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"
)

// Group consumer defaults.
const (
	DefaultSessionTimeout   = 10 * time.Second
	DefaultRebalanceTimeout = 30 * time.Second
	// ConsumerProtocolType is the protocol type of Kafka consumers, which
	// the group consumer also speaks, so both can share a group.
	ConsumerProtocolType = "consumer"
	// AssignorRange and AssignorRoundRobin are the assignors it offers.
	AssignorRange      = "range"
	AssignorRoundRobin = "roundrobin"
)

// GroupConsumerConfig configures a GroupConsumer.
type GroupConsumerConfig struct {
	Group string // required
	Topic string // required
	// Start applies to assigned partitions without a committed offset.
	Start StartPosition
	// ClientID prefixes the member id (default "streamhouse").
	ClientID string
	// SessionTimeout: without a heartbeat for this long the member is
	// removed and its partitions go to the others (default 10 s).
	SessionTimeout time.Duration
	// RebalanceTimeout: how long a rebalance waits for the members to
	// rejoin (default 30 s). Poll must be called more often than this.
	RebalanceTimeout time.Duration
	// HeartbeatInterval (default SessionTimeout / 3).
	HeartbeatInterval time.Duration
	// Assignors offered, preferred first (default range, roundrobin).
	Assignors []string
	// MaxRecords, MaxBytes, MaxWait: as in ConsumerConfig.
	MaxRecords int
	MaxBytes   int
	MaxWait    time.Duration
	// ManualCommit: the consumer never commits by itself, not even before
	// a rebalance; the caller commits what it processed (CommitOffsets).
	ManualCommit bool
	// OnAssigned, when set, is called after each rebalance with the
	// generation and the partitions this member now owns (from Poll's
	// goroutine).
	OnAssigned func(generation int32, partitions []int32)
}

// GroupConsumer is a member of a consumer group: the group's members share
// the topic's partitions (Kafka's classic group protocol with the
// "consumer" protocol type, so Kafka consumers can be members of the same
// group). The coordinator forms generations; the member elected leader
// computes the assignment (range or round-robin). A heartbeat goroutine
// keeps the session; when the group rebalances, the next Poll commits the
// positions of the partitions it owned (with the old generation), stops
// reading them, rejoins and reads what it is assigned next from the
// committed offsets. Delivery is at least once: records returned before a
// rebalance whose commit is refused are read again by their next owner.
//
// Poll, Commit and Close must not run concurrently with each other.
type GroupConsumer struct {
	c   *Client
	cfg GroupConsumerConfig

	mu       sync.Mutex
	memberID string
	gen      int32
	assigned []int32
	inner    *Consumer // reads the assigned partitions; nil when none
	// count is the topic's partition count when the member joined: when
	// the cached metadata shows more (CreatePartitions), the member
	// rejoins so the new partitions get an owner.
	count int32
	// starts: where each owned partition's reading began in this
	// generation (the group's committed offset, else the Start position).
	starts map[int32]int64
	rejoin bool // the heartbeat learned of a rebalance
	wake   chan struct{}
	hbStop context.CancelFunc
	hbDone chan struct{}
	closed bool
}

// NewGroupConsumer joins the group and returns once the member has its
// first assignment.
func (c *Client) NewGroupConsumer(ctx context.Context, cfg GroupConsumerConfig) (*GroupConsumer, error) {
	if cfg.Group == "" || cfg.Topic == "" {
		return nil, newError("NewGroupConsumer", codes.InvalidArgument, KindBadRequest, "group and topic are required")
	}
	orDefault(&cfg.SessionTimeout, DefaultSessionTimeout)
	orDefault(&cfg.RebalanceTimeout, DefaultRebalanceTimeout)
	orDefault(&cfg.HeartbeatInterval, cfg.SessionTimeout/3)
	orDefault(&cfg.MaxRecords, DefaultMaxRecords)
	orDefault(&cfg.MaxWait, DefaultMaxWait)
	if cfg.ClientID == "" {
		cfg.ClientID = "streamhouse"
	}
	if len(cfg.Assignors) == 0 {
		cfg.Assignors = []string{AssignorRange, AssignorRoundRobin}
	}
	for _, a := range cfg.Assignors {
		if a != AssignorRange && a != AssignorRoundRobin {
			return nil, newError("NewGroupConsumer", codes.InvalidArgument, KindBadRequest, "unknown assignor %q (use range or roundrobin)", a)
		}
	}
	if _, err := c.partitionCount(ctx, cfg.Topic); err != nil {
		return nil, err
	}
	g := &GroupConsumer{c: c, cfg: cfg, gen: -1, wake: make(chan struct{}, 1)}
	if err := g.join(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// MemberID and Generation identify the member in its current generation.
func (g *GroupConsumer) MemberID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.memberID
}

// Generation is the member's current generation.
func (g *GroupConsumer) Generation() int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen
}

// Assignment is the partitions the member owns in its generation.
func (g *GroupConsumer) Assignment() []int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.assigned)
}

// join (re)joins the group until it has an assignment: JoinGroup, the
// leader's assignment, SyncGroup, then a reader of the assigned
// partitions and the heartbeat.
func (g *GroupConsumer) join(ctx context.Context) error {
	g.stopHeartbeat()
	for {
		parts, err := g.joinOnce(ctx)
		if err == nil {
			return g.assign(ctx, parts)
		}
		if !rejoinable(err) || ctx.Err() != nil {
			return err
		}
		if Kind(err) == KindUnknownMember {
			g.mu.Lock()
			g.memberID = ""
			g.mu.Unlock()
		}
		g.c.log.Debug("rejoining the group", "group", g.cfg.Group, "err", err)
	}
}

// rejoinable: the group moved on while joining; join again.
func rejoinable(err error) bool {
	switch Kind(err) {
	case KindRebalanceInProgress, KindIllegalGeneration, KindUnknownMember:
		return true
	}
	return false
}

// joinOnce is one JoinGroup + SyncGroup round; it returns the partitions
// of the topic assigned to this member.
func (g *GroupConsumer) joinOnce(ctx context.Context) ([]int32, error) {
	meta := (&kmsg.ConsumerMemberMetadata{Topics: []string{g.cfg.Topic}}).AppendTo(nil)
	req := JoinGroupRequest{Group: g.cfg.Group, MemberID: g.MemberID(), ClientID: g.cfg.ClientID, ProtocolType: ConsumerProtocolType,
		SessionTimeout: g.cfg.SessionTimeout, RebalanceTimeout: g.cfg.RebalanceTimeout}
	for _, a := range g.cfg.Assignors {
		req.Protocols = append(req.Protocols, GroupProtocol{Name: a, Metadata: meta})
	}
	res, err := g.c.JoinGroup(ctx, req)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.memberID, g.gen = res.MemberID, res.Generation
	g.mu.Unlock()
	var plan map[string][]byte
	if res.LeaderID == res.MemberID {
		if plan, err = g.plan(ctx, res); err != nil {
			return nil, err
		}
	}
	b, err := g.c.SyncGroup(ctx, g.cfg.Group, res.Generation, res.MemberID, plan)
	if err != nil {
		return nil, err
	}
	var a kmsg.ConsumerMemberAssignment
	if len(b) > 0 {
		if err := a.ReadFrom(b); err != nil {
			return nil, fmt.Errorf("client: group %q: undecodable assignment: %w", g.cfg.Group, err)
		}
	}
	var parts []int32
	for _, t := range a.Topics {
		if t.Topic == g.cfg.Topic {
			parts = append(parts, t.Partitions...)
		}
	}
	slices.Sort(parts)
	return parts, nil
}

// plan is the leader's assignment of every member's subscribed topics.
func (g *GroupConsumer) plan(ctx context.Context, res JoinGroupResult) (map[string][]byte, error) {
	subs := map[string][]string{} // member → topics
	counts := map[string]int32{}
	for _, m := range res.Members {
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(m.Metadata); err != nil {
			return nil, fmt.Errorf("client: group %q: member %s sent undecodable metadata: %w", g.cfg.Group, m.MemberID, err)
		}
		subs[m.MemberID] = md.Topics
		for _, t := range md.Topics {
			if _, ok := counts[t]; ok {
				continue
			}
			n, err := g.c.partitionCount(ctx, t)
			if err != nil && Code(err) != codes.NotFound {
				return nil, err
			}
			counts[t] = n
		}
	}
	var byMember map[string]map[string][]int32
	if res.Protocol == AssignorRoundRobin {
		byMember = AssignRoundRobin(subs, counts)
	} else {
		byMember = AssignRange(subs, counts)
	}
	out := make(map[string][]byte, len(subs))
	for m := range subs {
		a := kmsg.ConsumerMemberAssignment{}
		topics := make([]string, 0, len(byMember[m]))
		for t := range byMember[m] {
			topics = append(topics, t)
		}
		sort.Strings(topics)
		for _, t := range topics {
			a.Topics = append(a.Topics, kmsg.ConsumerMemberAssignmentTopic{Topic: t, Partitions: byMember[m][t]})
		}
		out[m] = a.AppendTo(nil)
	}
	return out, nil
}

// assign starts reading the assigned partitions (from the group's
// committed offsets) and the heartbeat.
func (g *GroupConsumer) assign(ctx context.Context, parts []int32) error {
	var inner *Consumer
	if len(parts) > 0 {
		var err error
		inner, err = g.c.NewConsumer(ctx, ConsumerConfig{Topic: g.cfg.Topic, Group: g.cfg.Group, Partitions: parts,
			Start: g.cfg.Start, MaxRecords: g.cfg.MaxRecords, MaxBytes: g.cfg.MaxBytes, MaxWait: g.cfg.MaxWait})
		if err != nil {
			return err
		}
	}
	count, _ := g.c.partitionCount(ctx, g.cfg.Topic)
	starts := map[int32]int64{}
	for _, p := range parts {
		starts[p], _ = inner.Position(p)
	}
	g.mu.Lock()
	g.assigned, g.inner, g.rejoin, g.count, g.starts = parts, inner, false, count, starts
	gen, member := g.gen, g.memberID
	g.mu.Unlock()
	g.startHeartbeat(gen, member)
	if g.cfg.OnAssigned != nil {
		g.cfg.OnAssigned(gen, slices.Clone(parts))
	}
	return nil
}
