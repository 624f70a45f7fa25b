package kafka

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// fakeGroups records commits and answers DescribeGroup from them; the
// membership calls answer err (the real coordinator is tested through
// real agents in cmd/streamhouse).
type fakeGroups struct {
	mu      sync.Mutex
	commits []fsm.MemberCommit
	err     error
}

func (f *fakeGroups) Join(context.Context, fsm.JoinRequest) (fsm.JoinResult, error) {
	return fsm.JoinResult{}, f.err
}

func (f *fakeGroups) Sync(context.Context, fsm.SyncRequest) (fsm.SyncResult, error) {
	return fsm.SyncResult{}, f.err
}

func (f *fakeGroups) Heartbeat(context.Context, string, int32, string, string) error { return f.err }

func (f *fakeGroups) Leave(_ context.Context, _ string, ms []fsm.LeaveMember) ([]error, error) {
	return make([]error, len(ms)), f.err
}

func (f *fakeGroups) CommitOffsets(_ context.Context, req fsm.MemberCommit) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.commits = append(f.commits, req)
	return nil
}

func (f *fakeGroups) Describe(_ context.Context, g string) (fsm.GroupMembershipDescription, error) {
	return fsm.GroupMembershipDescription{Group: g, State: fsm.GroupStateDead}, f.err
}

func (f *fakeGroups) List(context.Context) ([]fsm.GroupListing, error) { return nil, f.err }

func (f *fakeGroups) IsCoordinator() (bool, string) { return f.err == nil, "" }

func (f *fakeGroups) DescribeGroup(_ context.Context, g string) (fsm.GroupDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := fsm.GroupDescription{Group: g}
	for _, c := range f.commits {
		for _, gc := range c.Commits {
			d.Partitions = append(d.Partitions, fsm.GroupPartition{Topic: gc.Topic, Partition: gc.Partition, Offset: gc.Offset, Metadata: gc.Metadata})
		}
	}
	if len(d.Partitions) == 0 {
		return d, fsm.ErrGroupNotFound
	}
	return d, nil
}

func (f *fakeGroups) DeleteGroup(context.Context, string) error { return f.err }

func groupsEnv(t *testing.T, fg *fakeGroups, mods ...func(*Config)) *env {
	return newEnv(t, append([]func(*Config){func(c *Config) { c.Coordinator, c.Groups = fg, fg }}, mods...)...)
}

// noLeader is a cluster without a known Raft leader.
type noLeader struct{ *fakeAgent }

func (n noLeader) ClusterStatus() transport.ClusterStatus {
	st := n.fakeAgent.ClusterStatus()
	st.Leader = ""
	return st
}

func TestFindCoordinatorIsTheRaftLeader(t *testing.T) {
	e := groupsEnv(t, &fakeGroups{})
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKeys = []string{"g1", "g2"}
	resp, err := req.RequestWith(ctxT(t), e.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Coordinators) != 2 {
		t.Fatalf("%d coordinators, want 2", len(resp.Coordinators))
	}
	for _, c := range resp.Coordinators {
		if c.ErrorCode != 0 || c.NodeID != 7 || fmt.Sprintf("%s:%d", c.Host, c.Port) != e.addr {
			t.Errorf("%s: error %d node %d at %s:%d", c.Key, c.ErrorCode, c.NodeID, c.Host, c.Port)
		}
	}
	req.CoordinatorType, req.CoordinatorKeys = coordinatorTransaction, []string{"txn"}
	if resp, err = req.RequestWith(ctxT(t), e.client(t)); err != nil || resp.Coordinators[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("transaction coordinator: %v %+v", err, resp)
	}
}

func TestFindCoordinatorWithoutLeader(t *testing.T) {
	e := groupsEnv(t, &fakeGroups{}, func(c *Config) { c.Cluster = noLeader{c.Cluster.(*fakeAgent)} })
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKeys = []string{"g"}
	resp, err := req.RequestWith(ctxT(t), e.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Coordinators[0]; c.ErrorCode != kerr.CoordinatorNotAvailable.Code || c.NodeID != -1 {
		t.Fatalf("no leader: error %d node %d, want COORDINATOR_NOT_AVAILABLE", c.ErrorCode, c.NodeID)
	}
}

// TestOffsetCommitChecksEachPartition: partitions of unknown topics or
// beyond the topic, and oversized metadata, get their own codes; the rest
// commit together and read back through OffsetFetch.
func TestOffsetCommitChecksEachPartition(t *testing.T) {
	fg := &fakeGroups{}
	e := groupsEnv(t, fg)
	e.agent.addTopic("t", 2)
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = "g"
	add := func(topic string, p int32, off int64, meta string) {
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.Metadata = p, off, &meta
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
	}
	add("t", 0, 5, "m")
	add("t", 9, 5, "")
	add("missing", 0, 5, "")
	add("t", 1, 6, strings.Repeat("x", maxCommitMetadata+1))
	resp, err := req.RequestWith(ctxT(t), e.client(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []int16{0, kerr.UnknownTopicOrPartition.Code, kerr.UnknownTopicOrPartition.Code, kerr.OffsetMetadataTooLarge.Code}
	for i, rt := range resp.Topics {
		if got := rt.Partitions[0].ErrorCode; got != want[i] {
			t.Errorf("%s/%d: error %v, want %v", rt.Topic, rt.Partitions[0].Partition, kerr.ErrorForCode(got), kerr.ErrorForCode(want[i]))
		}
	}
	if len(fg.commits) != 1 || len(fg.commits[0].Commits) != 1 || fg.commits[0].Generation != -1 {
		t.Fatalf("commits %+v, want one of t/0 with generation -1", fg.commits)
	}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Group = "g"
	fetch.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
	fr, err := fetch.RequestWith(ctxT(t), e.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(fr.Groups) == 1 { // kgo sends v8+: batched groups
		ps := fr.Groups[0].Topics[0].Partitions
		if ps[0].Offset != 5 || deref(ps[0].Metadata) != "m" || ps[1].Offset != -1 {
			t.Fatalf("fetched %+v", ps)
		}
	} else {
		t.Fatalf("offset fetch answered %+v", fr)
	}
}

func TestGroupErrorCodes(t *testing.T) {
	for err, want := range map[error]*kerr.Error{
		fmt.Errorf("x: %w", fsm.ErrNotCoordinator): kerr.NotCoordinator,
		fsm.ErrNotLeader:                          kerr.NotCoordinator,
		fsm.ErrCoordinatorLoading:                 kerr.CoordinatorLoadInProgress,
		fsm.ErrUnavailable:                        kerr.CoordinatorNotAvailable,
		fsm.ErrUnknownMember:                      kerr.UnknownMemberID,
		fsm.ErrIllegalGeneration:                  kerr.IllegalGeneration,
		fsm.ErrRebalanceInProgress:                kerr.RebalanceInProgress,
		&fsm.MemberIDRequiredError{MemberID: "m"}: kerr.MemberIDRequired,
		fsm.ErrInconsistentProtocol:               kerr.InconsistentGroupProtocol,
		fsm.ErrGroupNotEmpty:                      kerr.NonEmptyGroup,
		fsm.ErrGroupNotFound:                      kerr.GroupIDNotFound,
		fsm.ErrInvalidSessionTimeout:              kerr.InvalidSessionTimeout,
		fsm.ErrTopicNotFound:                      kerr.UnknownTopicOrPartition,
		fmt.Errorf("%w", context.Canceled):        kerr.CoordinatorNotAvailable,
	} {
		if got := groupErrorCode(err); got != want.Code {
			t.Errorf("%v: %v, want %v", err, kerr.ErrorForCode(got), want)
		}
	}
}

// TestNotCoordinatorAnswers: membership calls on an agent that is not
// the coordinator answer NOT_COORDINATOR, so clients find it again.
func TestNotCoordinatorAnswers(t *testing.T) {
	e := groupsEnv(t, &fakeGroups{err: fsm.ErrNotCoordinator})
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "g", "m", 1
	broker := e.client(t).Broker(7) // straight to the broker: no coordinator lookup, no retries
	for group, want := range map[string]*kerr.Error{"g": kerr.NotCoordinator, "": kerr.InvalidGroupID} {
		hb.Group = group
		resp, err := broker.Request(ctxT(t), hb)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.(*kmsg.HeartbeatResponse).ErrorCode; code != want.Code {
			t.Errorf("heartbeat of group %q: %v, want %v", group, kerr.ErrorForCode(code), want)
		}
	}
}

// TestJoinRequestByVersion: v4+ asks for MEMBER_ID_REQUIRED semantics;
// v0 has no rebalance timeout (it is the session timeout).
func TestJoinRequestByVersion(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &Conn{nc: a, ClientID: "cli"}
	for _, v := range []int16{0, 3, 4, 9} {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Version, req.Group, req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = v, "g", 6000, 9000
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{1}}}
		jr := joinRequest(c, req)
		wantRebalance := 9 * time.Second
		if v == 0 {
			wantRebalance = 6 * time.Second
		}
		if jr.RequireMemberID != (v >= 4) || jr.RebalanceTimeout != wantRebalance || jr.SessionTimeout != 6*time.Second ||
			jr.ClientID != "cli" || len(jr.Protocols) != 1 || jr.Protocols[0].Name != "range" {
			t.Errorf("v%d: %+v", v, jr)
		}
	}
}
