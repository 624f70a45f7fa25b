package grpcapi

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

type fakeHealth transport.LocalHealthStatus

func (f fakeHealth) LocalHealth() transport.LocalHealthStatus { return transport.LocalHealthStatus(f) }

// TestGetClusterStatus: the cluster view, readiness and local health facts
// come back as the backends report them; a topic-restricted key sees only
// its topics' leaderships; without a cluster view the RPC is
// UNIMPLEMENTED.
func TestGetClusterStatus(t *testing.T) {
	tok, key, _ := transport.NewAPIKey("tenant-a", transport.ScopeRead, []string{"a"})
	taken := time.UnixMilli(1764280586000)
	e := newEnv(t, func(c *Config) {
		c.Auth = transport.NewAuthenticator([]transport.APIKey{key}, false)
		c.Health = fakeHealth{UnflushedBytes: 4096, Checkpoint: transport.CheckpointStatus{
			Configured: true, Connected: true, Leader: true, Lag: 1500 * time.Millisecond,
			ConsecutiveFailures: 2, LastError: "boom", LastRaftIndex: 77, LastTakenAt: taken}}
	})
	e.agent.cluster = transport.ClusterStatus{NodeID: "agent-1", RaftState: "Leader", Leader: "agent-1", Term: 3,
		CommitIndex: 10, AppliedIndex: 9, LastContactMs: 0, Voters: []string{"agent-1", "agent-2"},
		Members: []transport.ClusterMember{
			{ID: "agent-1", GossipState: "alive", Suffrage: "voter", RaftLeader: true, GRPCAddr: "h1:9090", HTTPAddr: "h1:8080", PeerAddr: "h1:9093", KafkaAddr: "h1:9092", BrokerID: 1,
				Leaderships: []string{"a/0", "b/0", "a/1"}},
			{ID: "agent-2", GossipState: "dead", Suffrage: "voter"},
		}}
	e.agent.mu.Lock()
	e.agent.ready, e.agent.readyReason = false, "low disk"
	e.agent.mu.Unlock()
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tok)

	st, err := e.client.GetClusterStatus(ctx, &pb.GetClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeId != "agent-1" || st.RaftState != "Leader" || st.RaftTerm != 3 || st.CommitIndex != 10 || st.AppliedIndex != 9 ||
		!slices.Equal(st.Voters, []string{"agent-1", "agent-2"}) || st.Ready || st.NotReadyReason != "low disk" || st.UnflushedBytes != 4096 {
		t.Fatalf("status = %v", st)
	}
	m := st.Members[0]
	if len(st.Members) != 2 || m.GrpcAddress != "h1:9090" || m.HttpAddress != "h1:8080" || m.PeerAddress != "h1:9093" || m.KafkaAddress != "h1:9092" || m.BrokerId != 1 ||
		!m.RaftLeader || m.RaftSuffrage != "voter" || !slices.Equal(m.PartitionLeaderships, []string{"a/0", "a/1"}) ||
		st.Members[1].GossipState != "dead" {
		t.Fatalf("members = %v", st.Members)
	}
	cp := st.Checkpoint
	if !cp.Configured || !cp.Connected || !cp.Leader || cp.LagMs != 1500 || cp.ConsecutiveFailures != 2 || cp.LastError != "boom" ||
		cp.LastRaftIndex != 77 || cp.LastTakenAtMs != taken.UnixMilli() {
		t.Fatalf("checkpoint = %v", cp)
	}

	_, err = e.client.GetClusterStatus(ctxT(t), &pb.GetClusterStatusRequest{})
	wantCode(t, err, codes.Unauthenticated, transport.CodeUnauthenticated)

	bare := newEnv(t, func(c *Config) { c.Cluster = nil })
	_, err = bare.client.GetClusterStatus(ctxT(t), &pb.GetClusterStatusRequest{})
	wantCode(t, err, codes.Unimplemented, transport.CodeNotFound)
}
