package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Defaults of HealthThresholds (a zero field takes its default).
const (
	DefaultMaxRaftLag        = 5000
	DefaultMaxContact        = 10 * time.Second
	DefaultMaxCheckpointLag  = time.Minute
	DefaultMaxUnflushedBytes = 128 << 20
)

// HealthThresholds are the limits CheckHealth judges the cluster by.
type HealthThresholds struct {
	// MaxRaftLag: log entries a voter's applied index may trail the
	// leader's commit index.
	MaxRaftLag uint64
	// MaxContact: longest a voter may go without hearing from the leader.
	MaxContact time.Duration
	// MaxCheckpointLag: age of the newest state in Postgres on the leader
	// (when it checkpoints).
	MaxCheckpointLag time.Duration
	// MaxUnflushedBytes: an agent's unflushed backlog.
	MaxUnflushedBytes int64
}

func (t HealthThresholds) withDefaults() HealthThresholds {
	if t.MaxRaftLag == 0 {
		t.MaxRaftLag = DefaultMaxRaftLag
	}
	if t.MaxContact == 0 {
		t.MaxContact = DefaultMaxContact
	}
	if t.MaxCheckpointLag == 0 {
		t.MaxCheckpointLag = DefaultMaxCheckpointLag
	}
	if t.MaxUnflushedBytes == 0 {
		t.MaxUnflushedBytes = DefaultMaxUnflushedBytes
	}
	return t
}

// AgentProbe is one agent's answer to CheckHealth (Status nil and Error set
// when it did not answer).
type AgentProbe struct {
	Member ClusterMember  `json:"member"`
	Status *ClusterStatus `json:"status,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// HealthProblem is one reason the cluster is not healthy; Agent is empty
// for a cluster-wide problem.
type HealthProblem struct {
	Agent  string `json:"agent,omitempty"`
	Reason string `json:"reason"`
}

func (p HealthProblem) String() string {
	if p.Agent == "" {
		return p.Reason
	}
	return p.Agent + ": " + p.Reason
}

// HealthReport is CheckHealth's verdict and the facts behind it.
type HealthReport struct {
	Healthy    bool            `json:"healthy"`
	Problems   []HealthProblem `json:"problems"`
	AnsweredBy string          `json:"answered_by"`
	RaftLeader string          `json:"raft_leader"`
	Agents     []AgentProbe    `json:"agents"`
}

// CheckHealth asks any agent for the cluster's members, then every member
// (at its advertised gRPC address, in parallel) for its own facts, and
// judges them by th (see EvaluateHealth). An error means no agent answered.
func (c *Client) CheckHealth(ctx context.Context, th HealthThresholds) (HealthReport, error) {
	view, err := c.ClusterStatus(ctx)
	if err != nil {
		return HealthReport{}, err
	}
	probes := make([]AgentProbe, len(view.Members))
	var wg sync.WaitGroup
	for i, m := range view.Members {
		probes[i].Member = m
		if m.GossipState == "left" && m.Suffrage == "none" {
			continue // gone for good: nothing to ask
		}
		if m.GRPCAddress == "" {
			probes[i].Error = "no gRPC address known (not in gossip)"
			continue
		}
		wg.Add(1)
		go func(p *AgentProbe) {
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, agentStatusTimeout)
			defer cancel()
			st, err := c.AgentStatus(actx, p.Member.GRPCAddress)
			if err != nil {
				p.Error = probeError(err)
				return
			}
			p.Status = &st
		}(&probes[i])
	}
	wg.Wait()
	return EvaluateHealth(view, probes, th), nil
}

// probeError words a failed probe: the code and the agent's (or the
// connection's) message, without the operation.
func probeError(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return CodeWord(e.Code) + ": " + e.Message
	}
	return err.Error()
}

// EvaluateHealth judges the cluster from one agent's view and every
// member's probe. The cluster is healthy when none of these holds:
//   - no agent is the Raft leader;
//   - a member is unreachable, or gossip says it is not alive (a member
//     that left and is out of the Raft configuration is ignored);
//   - a member is not ready (its /ready reason);
//   - a member's unflushed backlog is above MaxUnflushedBytes;
//   - a voter trails the leader's commit index by more than MaxRaftLag
//     entries or has not heard from it within MaxContact;
//   - fewer voters are alive, reachable and caught up than the leader aims
//     for (3, or 5 from five members; every member when fewer):
//     under-replicated;
//   - the leader checkpoints to Postgres and cannot connect, is failing,
//     or its checkpoint lag is above MaxCheckpointLag.
func EvaluateHealth(view ClusterStatus, probes []AgentProbe, th HealthThresholds) HealthReport {
	th = th.withDefaults()
	r := HealthReport{AnsweredBy: view.NodeID, Agents: probes, Problems: []HealthProblem{}}
	leader := findLeader(probes)
	if leader == nil {
		r.Problems = append(r.Problems, HealthProblem{Reason: noLeaderReason(view)})
	} else {
		r.RaftLeader = leader.NodeID
	}
	members, healthyVoters := 0, 0
	for _, p := range probes {
		probs, counted, healthyVoter := memberProblems(p, leader, th)
		if counted {
			members++
		}
		if healthyVoter {
			healthyVoters++
		}
		r.Problems = append(r.Problems, probs...)
	}
	voters := view.Voters
	if leader != nil {
		voters = leader.Voters
		r.Problems = append(r.Problems, checkpointProblems(leader, th)...)
	}
	if want := wantVoters(members); healthyVoters < want {
		r.Problems = append(r.Problems, HealthProblem{Reason: fmt.Sprintf(
			"under-replicated: %d of the raft voters (%s) are alive and caught up, the cluster wants %d",
			healthyVoters, strings.Join(voters, ", "), want)})
	}
	r.Healthy = len(r.Problems) == 0
	return r
}

// findLeader returns the status of the probed agent that is the Raft
// leader (the highest term's, should two claim it).
func findLeader(probes []AgentProbe) *ClusterStatus {
	var leader *ClusterStatus
	for _, p := range probes {
		if st := p.Status; st != nil && st.RaftState == "Leader" && (leader == nil || st.RaftTerm > leader.RaftTerm) {
			leader = st
		}
	}
	return leader
}

func noLeaderReason(view ClusterStatus) string {
	if view.NotReadyReason != "" {
		return fmt.Sprintf("no raft leader (%s says: %s)", view.NodeID, view.NotReadyReason)
	}
	return "no raft leader"
}

// memberProblems judges one member. counted is false for a member that
// left and is out of the Raft configuration; healthyVoter is whether it is
// a voter that answered, is alive in gossip and follows the leader closely.
func memberProblems(p AgentProbe, leader *ClusterStatus, th HealthThresholds) (probs []HealthProblem, counted, healthyVoter bool) {
	m := p.Member
	add := func(format string, args ...any) {
		probs = append(probs, HealthProblem{Agent: m.NodeID, Reason: fmt.Sprintf(format, args...)})
	}
	if m.GossipState == "left" && m.Suffrage == "none" {
		return nil, false, false
	}
	alive := m.GossipState == "alive"
	switch {
	case p.Status == nil && !alive:
		add("dead: gossip says %s, unreachable (%s)", m.GossipState, p.Error)
		return probs, true, false
	case p.Status == nil:
		add("unreachable at %s: %s", m.GRPCAddress, p.Error)
		return probs, true, false
	case !alive:
		add("gossip says %s", m.GossipState)
	}
	st := p.Status
	if !st.Ready {
		add("not ready: %s", st.NotReadyReason)
	}
	if st.UnflushedBytes > th.MaxUnflushedBytes {
		add("unflushed backlog of %d bytes is above %d (segment uploads are behind)", st.UnflushedBytes, th.MaxUnflushedBytes)
	}
	caughtUp := true
	if leader != nil && m.Suffrage == "voter" && st.NodeID != leader.NodeID {
		if leader.CommitIndex > st.AppliedIndex+th.MaxRaftLag {
			add("voter trails the leader by %d raft log entries (more than %d)", leader.CommitIndex-st.AppliedIndex, th.MaxRaftLag)
			caughtUp = false
		}
		if st.LastContactMs < 0 || time.Duration(st.LastContactMs)*time.Millisecond > th.MaxContact {
			add("voter has not heard from the leader for %s", contactText(st.LastContactMs))
			caughtUp = false
		}
	}
	return probs, true, alive && caughtUp && m.Suffrage == "voter"
}

func contactText(ms int64) string {
	if ms < 0 {
		return "ever (never contacted)"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// checkpointProblems judges the leader's Postgres checkpoints.
func checkpointProblems(leader *ClusterStatus, th HealthThresholds) []HealthProblem {
	cp := leader.Checkpoint
	if !cp.Configured {
		return nil
	}
	var out []HealthProblem
	add := func(format string, args ...any) {
		out = append(out, HealthProblem{Agent: leader.NodeID, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case !cp.Connected:
		add("checkpoints: cannot connect to Postgres")
	case cp.ConsecutiveFailures > 0:
		add("checkpoints failing (%d consecutive attempts): %s", cp.ConsecutiveFailures, cp.LastError)
	}
	if lag := time.Duration(cp.LagMs) * time.Millisecond; lag > th.MaxCheckpointLag {
		add("checkpoint lag %s is above %s", lag, th.MaxCheckpointLag)
	}
	return out
}

// wantVoters is the number of voters the Raft leader aims for with n
// agents (cluster/membership.go targetVoters): 3, or 5 from five agents;
// every agent when there are fewer.
func wantVoters(n int) int {
	target := 3
	if n >= 5 {
		target = 5
	}
	return min(target, n)
}
