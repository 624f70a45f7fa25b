package cluster

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSeededAgentResumesFromRestoredState plants a restored image in an empty
// data dir, starts the agent on it and checks that it elects itself with the
// image's state, numbers new entries above the seed index, and that a new
// agent joining it receives the state.
func TestSeededAgentResumesFromRestoredState(t *testing.T) {
	c := newTestCluster(t)
	img := &fsm.Image{
		LastApplied: 100,
		Topics:      []fsm.Topic{{ID: 10, Name: "orders", Partitions: 2, Config: fsm.TopicConfig{Compression: "zstd"}}},
		Partitions: []fsm.Partition{
			{TopicID: 10, Index: 0, Leader: "seed", LeaderEpoch: 4, NextOffset: 50, FlushedOffset: 50,
				Segments: []fsm.SegmentRef{{ObjectKey: "segments/a.seg", BaseOffset: 0, LastOffset: 49, RecordCount: 50}}},
			{TopicID: 10, Index: 1, Leader: "seed", LeaderEpoch: 2},
		},
		Groups: []fsm.GroupOffsetEntry{{Group: "billing", TopicID: 10, Partition: 0, Offset: 20}},
	}
	var snap bytes.Buffer
	if err := fsm.WriteImageSnapshot(&snap, img); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "seed")
	peer := freeAddr(t)
	const index = 5000
	clusterID, err := SeedRestoredState(SeedConfig{DataDir: dir, NodeID: "seed", PeerAddr: peer, Snapshot: snap.Bytes(), Index: index})
	if err != nil || clusterID == "" {
		t.Fatalf("seed: %q %v", clusterID, err)
	}
	if _, err := SeedRestoredState(SeedConfig{DataDir: dir, NodeID: "seed", PeerAddr: peer, Snapshot: snap.Bytes(), Index: index}); !errors.Is(err, ErrHasState) {
		t.Fatalf("second seed into the same dir: %v", err)
	}

	seed := c.startAt("seed", dir, peer, "127.0.0.1:0", nil)
	waitFor(t, 20*time.Second, "seed elects itself", func() bool { return seed.node.IsLeader() })
	if seed.node.ClusterID() != clusterID {
		t.Fatalf("cluster id %q, seeded %q", seed.node.ClusterID(), clusterID)
	}
	p, ok := seed.fsm.Partition(10, 0)
	if !ok || p.NextOffset != 50 || p.LeaderEpoch != 4 {
		t.Fatalf("restored partition = %+v %v", p, ok)
	}
	if offs, ok := seed.fsm.GroupOffsets("billing"); !ok || offs[fsm.PartitionKey{TopicID: 10, Partition: 0}].Offset != 20 {
		t.Fatalf("restored group = %+v", offs)
	}
	if id := createTopic(t, seed, "after", 1); id <= index {
		t.Fatalf("new topic id %d is not above the seed index %d", id, index)
	}

	joiner := c.start("joiner", "", func(cfg *Config) { cfg.Join = []string{seed.node.GossipAddr()} })
	waitFor(t, 30*time.Second, "joiner receives the restored state", func() bool {
		_, ok := joiner.fsm.Topic("orders")
		_, ok2 := joiner.fsm.Topic("after")
		return ok && ok2
	})
	if joiner.node.ClusterID() != clusterID {
		waitFor(t, 10*time.Second, "joiner adopts the cluster id", func() bool { return joiner.node.ClusterID() == clusterID })
	}
}

// TestSyncReadCatchesUpOrRefuses: a follower cut off from the cluster
// cannot confirm that it is up to date, so SyncRead refuses (unavailable)
// instead of letting it serve stale state as current; once the cut heals,
// SyncRead returns only after the follower applied what was committed
// meanwhile. (The jepsen harness found an agent answering "topic not
// found" while it was still replaying its log.)
func TestSyncReadCatchesUpOrRefuses(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(30 * time.Second)
	var follower *testNode
	var others []string
	for _, n := range c.running() {
		if n != lead && follower == nil {
			follower = n
			continue
		}
		others = append(others, n.mux.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A new leader refuses until its barrier has applied the log of
	// earlier terms (leaderReady), which can trail the election.
	waitFor(t, 10*time.Second, "SyncRead succeeds on the leader", func() bool {
		return lead.node.SyncRead(ctx) == nil
	})
	c.faults.Partition(others, []string{follower.mux.Addr()})
	createTopic(t, lead, "while-cut", 1)
	if _, ok := follower.fsm.Topic("while-cut"); ok {
		t.Fatal("the cut-off follower applied the topic")
	}
	if err := follower.node.SyncRead(ctx); !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("SyncRead on a cut-off follower: %v, want unavailable", err)
	}
	c.faults.Heal()
	waitFor(t, 20*time.Second, "SyncRead succeeds after the heal", func() bool {
		return follower.node.SyncRead(ctx) == nil
	})
	if _, ok := follower.fsm.Topic("while-cut"); !ok {
		t.Fatal("SyncRead returned before the follower applied what was committed during the cut")
	}
}

// startErr starts an agent on dir and returns Start's error; an agent that
// starts is stopped again.
func (c *testCluster) startErr(id, dir string) error {
	c.t.Helper()
	mux := transport.NewPeerMux(transport.PeerConfig{BindAddr: "127.0.0.1:0", Logger: c.log, DialTimeout: time.Second})
	defer mux.Close()
	node := New(fastConfig(id, dir, mux, c.log, prometheus.NewRegistry()), fsm.New(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mux.Start(ctx); err != nil {
		c.t.Fatal(err)
	}
	err := node.Start(ctx)
	_ = node.Close()
	return err
}

// A restore killed or failing between its writes (the in-progress mark,
// the term, the snapshot, the identity) must not leave a data dir the
// agent starts on as something else — a node without the restored state,
// or one refused with advice to move DATA_DIR/raft away (which would start
// an empty agent): the agent refuses with ErrSeedUnfinished, whose message
// says to run the restore again, and running it again plants the whole
// state.
func TestInterruptedSeedIsRefusedThenRedone(t *testing.T) {
	var snap bytes.Buffer
	img := &fsm.Image{LastApplied: 100, Topics: []fsm.Topic{{ID: 10, Name: "orders", Partitions: 1}},
		Partitions: []fsm.Partition{{TopicID: 10, Index: 0, Leader: "seed"}}}
	if err := fsm.WriteImageSnapshot(&snap, img); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"mark", "term", "snapshot", "identity"} {
		t.Run(step, func(t *testing.T) {
			c := newTestCluster(t)
			dir := filepath.Join(t.TempDir(), "seed")
			peer := freeAddr(t)
			cfg := SeedConfig{DataDir: dir, NodeID: "seed", PeerAddr: peer, Snapshot: snap.Bytes(), Index: 5000}
			killed := errors.New("killed")
			_, err := seedRestoredState(cfg, func(s string) error {
				if s == step {
					return killed
				}
				return nil
			})
			if !errors.Is(err, killed) {
				t.Fatalf("seed stopped after %s: %v", step, err)
			}
			if !SeedUnfinished(dir) {
				t.Fatal("SeedUnfinished = false after an interrupted seed")
			}
			err = c.startErr("seed", dir)
			if !errors.Is(err, ErrSeedUnfinished) || !strings.Contains(err.Error(), "run the restore again") {
				t.Fatalf("start on an unfinished seed = %v, want ErrSeedUnfinished telling to run the restore again", err)
			}
			clusterID, err := SeedRestoredState(cfg)
			if err != nil {
				t.Fatalf("seed again: %v", err)
			}
			if SeedUnfinished(dir) {
				t.Fatal("SeedUnfinished = true after a seed that finished")
			}
			seed := c.startAt("seed", dir, peer, "127.0.0.1:0", nil)
			waitFor(t, 20*time.Second, "seed elects itself", func() bool { return seed.node.IsLeader() })
			if _, ok := seed.fsm.Topic("orders"); !ok || seed.node.ClusterID() != clusterID {
				t.Fatalf("restored topic %v, cluster id %q want %q", ok, seed.node.ClusterID(), clusterID)
			}
		})
	}
}
