package transport

import (
	"context"
	"net/http"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// Consumer-group REST endpoints (see REST.md).

type groupCommitJSON struct {
	Topic     *string `json:"topic"`
	Partition *int32  `json:"partition"`
	Offset    *int64  `json:"offset"`
	Metadata  string  `json:"metadata,omitempty"`
}

// commitRequest is either one offset ({"topic","partition","offset"}) or
// several ({"offsets":[...]}), committed all or nothing.
type commitRequest struct {
	groupCommitJSON
	Offsets []groupCommitJSON `json:"offsets"`
}

type groupPartitionJSON struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Offset        int64  `json:"offset"`
	Metadata      string `json:"metadata,omitempty"`
	CommittedAt   string `json:"committed_at"`
	HighWatermark int64  `json:"high_watermark"`
	LowWatermark  int64  `json:"low_watermark"`
	Lag           int64  `json:"lag"`
}

type groupJSON struct {
	Group      string               `json:"group"`
	Partitions []groupPartitionJSON `json:"partitions"`
	TotalLag   int64                `json:"total_lag"`
	// Membership (with a coordinator): Kafka's group state, the protocol,
	// the generation, the leader member and the members.
	State        string            `json:"state,omitempty"`
	ProtocolType string            `json:"protocol_type,omitempty"`
	Protocol     string            `json:"protocol,omitempty"`
	Generation   int32             `json:"generation,omitempty"`
	Leader       string            `json:"leader,omitempty"`
	Members      []groupMemberJSON `json:"members,omitempty"`
}

type groupMemberJSON struct {
	MemberID   string               `json:"member_id"`
	InstanceID string               `json:"instance_id,omitempty"`
	ClientID   string               `json:"client_id"`
	ClientHost string               `json:"client_host"`
	Assignment []topicPartitionJSON `json:"assignment"`
}

type topicPartitionJSON struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// addMembership adds the group's membership to its description.
func (s *HTTPServer) addMembership(r *http.Request, out *groupJSON) error {
	if s.cfg.Coordinator == nil {
		return nil
	}
	d, err := s.cfg.Coordinator.Describe(r.Context(), out.Group)
	if err != nil {
		return err
	}
	out.State, out.ProtocolType, out.Protocol, out.Generation, out.Leader = d.State, d.ProtocolType, d.Protocol, d.Generation, d.LeaderID
	for _, m := range d.Members {
		mj := groupMemberJSON{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost,
			Assignment: []topicPartitionJSON{}}
		for _, tp := range m.Partitions {
			mj.Assignment = append(mj.Assignment, topicPartitionJSON{Topic: tp.Topic, Partitions: tp.Partitions})
		}
		out.Members = append(out.Members, mj)
	}
	return nil
}

type groupSummaryJSON struct {
	Group      string   `json:"group"`
	Topics     []string `json:"topics"`
	Partitions int      `json:"partitions"`
	TotalLag   int64    `json:"total_lag"`
}

type resetRequest struct {
	Strategy   *string `json:"strategy"`
	Topic      *string `json:"topic"`
	Partitions []int32 `json:"partitions"`
	Offset     *int64  `json:"offset"`
	Timestamp  *int64  `json:"timestamp"` // unix ms
}

func toGroupJSON(d fsm.GroupDescription) groupJSON {
	out := groupJSON{Group: d.Group, TotalLag: d.TotalLag, Partitions: make([]groupPartitionJSON, len(d.Partitions))}
	for i, p := range d.Partitions {
		out.Partitions[i] = groupPartitionJSON{
			Topic: p.Topic, Partition: p.Partition, Offset: p.Offset, Metadata: p.Metadata,
			CommittedAt:   time.UnixMilli(p.CommittedAt).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			HighWatermark: p.HighWatermark, LowWatermark: p.LowWatermark, Lag: p.Lag,
		}
	}
	return out
}

func (s *HTTPServer) groups() (Groups, error) {
	if s.cfg.Groups == nil {
		return nil, &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: "consumer groups are not served by this agent"}
	}
	return s.cfg.Groups, nil
}

func (s *HTTPServer) handleListGroups(w http.ResponseWriter, r *http.Request) error {
	g, err := s.groups()
	if err != nil {
		return err
	}
	list := g.ListGroups()
	out := make([]groupSummaryJSON, 0, len(list))
	for _, x := range list {
		if !s.cfg.Auth.TopicsVisible(r.Context(), x.Topics) {
			continue // a topic-restricted key sees the groups of its topics only
		}
		gs := groupSummaryJSON{Group: x.Group, Topics: x.Topics, Partitions: x.Partitions, TotalLag: x.TotalLag}
		if gs.Topics == nil {
			gs.Topics = []string{}
		}
		out = append(out, gs)
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": out})
	return nil
}

func (s *HTTPServer) handleDescribeGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.groups()
	if err != nil {
		return err
	}
	d, err := g.DescribeGroup(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	if err := s.authorize(r, ScopeRead, GroupTopics(d)...); err != nil {
		return err
	}
	out := toGroupJSON(d)
	if err := s.addMembership(r, &out); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *HTTPServer) handleDeleteGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.groups()
	if err != nil {
		return err
	}
	if err := AuthorizeGroup(r.Context(), s.cfg.Auth, g, r.PathValue("group"), ScopeWrite); err != nil {
		return err
	}
	if err := s.cfg.Quotas.Take(r.Context(), QuotaMutations, 1); err != nil {
		return err
	}
	if err := g.DeleteGroup(r.Context(), r.PathValue("group")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *HTTPServer) handleCommitOffsets(w http.ResponseWriter, r *http.Request) error {
	g, err := s.groups()
	if err != nil {
		return err
	}
	var req commitRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	single := req.Topic != nil || req.Partition != nil || req.Offset != nil
	if single && req.Offsets != nil {
		return badRequest("send either topic/partition/offset or an offsets array, not both")
	}
	items := req.Offsets
	if single {
		items = []groupCommitJSON{req.groupCommitJSON}
	}
	if len(items) == 0 {
		return badRequest("nothing to commit: send topic, partition and offset (or an offsets array)")
	}
	commits := make([]fsm.GroupCommit, len(items))
	for i, it := range items {
		switch {
		case it.Topic == nil || *it.Topic == "":
			return badRequest("offsets[%d].topic is required", i)
		case it.Partition == nil:
			return badRequest("offsets[%d].partition is required", i)
		case it.Offset == nil:
			return badRequest("offsets[%d].offset is required", i)
		}
		commits[i] = fsm.GroupCommit{Topic: *it.Topic, Partition: *it.Partition, Offset: *it.Offset, Metadata: it.Metadata}
		if err := s.authorize(r, ScopeWrite, *it.Topic); err != nil {
			return err
		}
	}
	group := r.PathValue("group")
	if err := g.CommitOffsets(r.Context(), group, commits); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"group": group, "committed": len(commits)})
	return nil
}

func (s *HTTPServer) handleResetGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.groups()
	if err != nil {
		return err
	}
	var req resetRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Strategy == nil || *req.Strategy == "" {
		return badRequest("strategy is required: earliest, latest, offset or timestamp")
	}
	if req.Topic == nil || *req.Topic == "" {
		return badRequest("topic is required")
	}
	if err := s.authorize(r, ScopeWrite, *req.Topic); err != nil {
		return err
	}
	reset := fsm.GroupReset{Strategy: *req.Strategy, Topic: *req.Topic, Partitions: req.Partitions}
	switch reset.Strategy {
	case fsm.ResetOffset:
		if req.Offset == nil {
			return badRequest("strategy offset needs an offset")
		}
		reset.Offset = *req.Offset
	case fsm.ResetTimestamp:
		if req.Timestamp == nil {
			return badRequest("strategy timestamp needs a timestamp (unix milliseconds)")
		}
		reset.TimestampMs = *req.Timestamp
	case fsm.ResetEarliest, fsm.ResetLatest:
	default:
		return badRequest("unknown strategy %q: use earliest, latest, offset or timestamp", reset.Strategy)
	}
	d, err := g.ResetGroup(r.Context(), r.PathValue("group"), reset)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toGroupJSON(d))
	return nil
}

// AuthorizeGroup checks that the caller has scope on every topic group
// holds offsets for (auth disabled: always allowed). It fails closed: when
// the group cannot be described — unknown, or the read failed — that error
// is returned and the caller must not act on the group.
func AuthorizeGroup(ctx context.Context, a *Authenticator, g Groups, group string, scope Scope) error {
	if !a.Enabled() {
		return nil
	}
	d, err := g.DescribeGroup(ctx, group)
	if err != nil {
		return err
	}
	return a.Authorize(ctx, scope, GroupTopics(d)...)
}

// GroupTopics lists the distinct topics a group holds offsets for.
func GroupTopics(d fsm.GroupDescription) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range d.Partitions {
		if !seen[p.Topic] {
			seen[p.Topic] = true
			out = append(out, p.Topic)
		}
	}
	return out
}

// GroupCoordinator is the consumer-group coordinator (partition.Coordinator)
// as the transports use it: Kafka's classic group protocol (JoinGroup,
// SyncGroup, Heartbeat, LeaveGroup, member offset commits, the membership
// in group descriptions). Errors wrap the fsm membership sentinels
// (fsm/membership.go): fsm.ErrNotCoordinator as an *fsm.NotCoordinatorError
// naming the Raft leader's node ID, fsm.ErrUnknownMember,
// fsm.ErrIllegalGeneration, fsm.ErrRebalanceInProgress,
// fsm.ErrMemberIDRequired (an *fsm.MemberIDRequiredError),
// fsm.ErrInconsistentProtocol, fsm.ErrInvalidSessionTimeout.
type GroupCoordinator interface {
	Join(ctx context.Context, req fsm.JoinRequest) (fsm.JoinResult, error)
	Sync(ctx context.Context, req fsm.SyncRequest) (fsm.SyncResult, error)
	Heartbeat(ctx context.Context, group string, generation int32, memberID, instanceID string) error
	Leave(ctx context.Context, group string, members []fsm.LeaveMember) ([]error, error)
	CommitOffsets(ctx context.Context, req fsm.MemberCommit) error
	Describe(ctx context.Context, group string) (fsm.GroupMembershipDescription, error)
	List(ctx context.Context) ([]fsm.GroupListing, error)
	IsCoordinator() (bool, string)
}
