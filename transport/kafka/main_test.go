package kafka

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/transport"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// fakeAgent is an in-memory cluster of one agent with topics.
type fakeAgent struct {
	mu     sync.Mutex
	nodeID string
	addr   string
	topics map[string]fsm.Topic
	leader map[string]string // "topic/partition" -> node ID; default nodeID
	log    fakeLog
	// barrier, when set, is what Partitions (the read barrier) fails with.
	barrier error
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{nodeID: "agent-1", topics: map[string]fsm.Topic{}, leader: map[string]string{}}
}

func (f *fakeAgent) ClusterStatus() transport.ClusterStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return transport.ClusterStatus{NodeID: f.nodeID, Leader: f.nodeID, Members: []transport.ClusterMember{
		{ID: f.nodeID, GossipState: "alive", KafkaAddr: f.addr, BrokerID: 7},
	}}
}

func (f *fakeAgent) Topics() []fsm.Topic {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []fsm.Topic{}
	for _, t := range f.topics {
		out = append(out, t)
	}
	return out
}

func (f *fakeAgent) Topic(name string) (fsm.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return fsm.Topic{}, fsm.ErrTopicNotFound
	}
	return t, nil
}

func (f *fakeAgent) PartitionsForRouting(name string) ([]fsm.PartitionInfo, error) {
	return f.partitions(name)
}

func (f *fakeAgent) Partitions(name string) ([]fsm.PartitionInfo, error) {
	f.mu.Lock()
	err := f.barrier
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.partitions(name)
}

func (f *fakeAgent) partitions(name string) ([]fsm.PartitionInfo, error) {
	t, err := f.Topic(name)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fsm.PartitionInfo, t.Partitions)
	for i := range out {
		leader, ok := f.leader[name+"/"+string(rune('0'+i))]
		if !ok {
			leader = f.nodeID
		}
		low := f.log.low[pkey(name, int32(i))]
		next := low + int64(len(f.log.parts[pkey(name, int32(i))]))
		out[i] = fsm.PartitionInfo{TopicID: t.ID, Topic: name, Partition: int32(i), Leader: leader, LeaderEpoch: 3, LowWatermark: low, NextOffset: next}
	}
	return out, nil
}

func (f *fakeAgent) addTopic(name string, parts int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topics[name] = fsm.Topic{ID: uint64(len(f.topics) + 10), Name: name, Partitions: parts}
}

// env is a Server on a real listener backed by a fakeAgent.
type env struct {
	agent *fakeAgent
	srv   *Server
	addr  string
}

func newEnv(t *testing.T, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{agent: newFakeAgent()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.agent.addr = e.addr
	cfg := Config{NodeID: e.agent.nodeID, Cluster: e.agent, Topics: e.agent, Fetcher: e.agent,
		Producer: e.agent, Idempotent: e.agent, Offsets: e.agent}
	for _, m := range mods {
		m(&cfg)
	}
	e.srv = NewServer(cfg)
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = e.srv.Close()
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// client returns a franz-go client of the env's broker.
func (e *env) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
