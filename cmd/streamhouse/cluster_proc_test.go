package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
	"github.com/streamhouse/streamhouse/transport"
)

// procCluster is a cluster of agent processes on loopback.
type procCluster struct {
	t     *testing.T
	minio *s3segtest.MinIO
	dir   string
	env   [][]string
	http  []int
	procs []*agentProc
}

// startProcCluster starts n agents on one MinIO bucket; extraEnv is added
// to every agent's environment.
func startProcCluster(t *testing.T, n int, extraEnv ...string) *procCluster {
	t.Helper()
	m := s3segtest.StartMinIO(t)
	m.CreateBucket(t, "cluster")
	c := &procCluster{t: t, minio: m, dir: t.TempDir()}
	gossip := make([]int, n)
	var join []string
	for i := range gossip {
		gossip[i] = freePort(t)
		join = append(join, "127.0.0.1:"+strconv.Itoa(gossip[i]))
	}
	for i := 0; i < n; i++ {
		hp := freePort(t)
		c.http = append(c.http, hp)
		c.env = append(c.env, []string{
			"NODE_ID=node-" + strconv.Itoa(i+1), "BIND_ADDR=127.0.0.1", "HTTP_PORT=" + strconv.Itoa(hp), "GRPC_PORT=" + strconv.Itoa(freePort(t)),
			"PEER_PORT=" + strconv.Itoa(freePort(t)), "GOSSIP_PORT=" + strconv.Itoa(gossip[i]), "KAFKA_PORT=" + strconv.Itoa(freePort(t)),
			"DATA_DIR=" + filepath.Join(c.dir, "node-"+strconv.Itoa(i+1)), "BOOTSTRAP_EXPECT=" + strconv.Itoa(n),
			"JOIN=" + strings.Join(join, ","), "PARTITION_FAILOVER_TIMEOUT=1s", "DEAD_AGENT_TIMEOUT=10m",
			"SEGMENT_MAX_AGE_MS=200", "LOG_LEVEL=info",
			"S3_ENDPOINT=" + m.Endpoint, "S3_BUCKET=cluster", "S3_PATH_STYLE=true", "S3_REGION=" + m.Region,
			"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey,
		})
		c.env[i] = append(c.env[i], extraEnv...)
	}
	c.procs = make([]*agentProc, n)
	// Registered before any launch, so a failed start still cleans up.
	t.Cleanup(func() {
		for i, p := range c.procs {
			if p != nil {
				p.kill(t)
			}
			dumpLogOnFailure(t, c.logPath(i))
		}
	})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); c.procs[i] = c.launch(i) }(i)
	}
	wg.Wait()
	for i, p := range c.procs {
		if p == nil {
			t.Fatalf("node-%d did not start (see its log above)", i+1)
		}
	}
	return c
}

func (c *procCluster) logPath(i int) string {
	return filepath.Join(c.dir, fmt.Sprintf("node-%d.log", i+1))
}

func (c *procCluster) launch(i int) *agentProc {
	return startProc(c.t, c.env[i], c.http[i], c.logPath(i))
}

func (c *procCluster) base(i int) string { return c.procs[i].base }

func (c *procCluster) status(i int) (transport.ClusterStatus, bool) {
	var st transport.ClusterStatus
	code, err := tryCall("GET", c.base(i)+"/api/v1/cluster", nil, &st)
	return st, err == nil && code == 200
}

// index of node "node-N" in procs.
func nodeIndex(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "node-"))
	return n - 1
}

// TestClusterSurvivesLeaderKills: three agent processes, continuous
// produce through all three, SIGKILL the Raft leader, then a partition
// leader, restart both; every acknowledged record is readable from every
// agent at its offset, offsets dense; produce resumes after each kill.
func TestClusterSurvivesLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	c := startProcCluster(t, 3)
	var st transport.ClusterStatus
	waitFor(t, 30*time.Second, "3 voters", func() bool {
		var ok bool
		st, ok = c.status(0)
		return ok && len(st.Voters) == 3 && st.Leader != ""
	})
	const parts = 6
	createTopic(t, c.base(1), "f", parts)
	var (
		led     = newAckLedger()
		stop    atomic.Bool
		wg      sync.WaitGroup
		lastAck atomic.Int64 // unix nanos of the latest ack
	)
	// Restarted agents keep their HTTP port, so the base URLs are fixed
	// (c.procs itself is replaced on restart).
	bases := []string{c.base(0), c.base(1), c.base(2)}
	for w := 0; w < 9; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				target := bases[w%3]
				vals := make([]string, 10)
				for j := range vals {
					vals[j] = fmt.Sprintf("w%d-%d-%d", w, i, j)
				}
				code, err := led.produce(target, "f", vals)
				if err != nil || code != 200 {
					if err == nil && code != 503 && code != 504 && code != 404 {
						t.Errorf("produce via %s: status %d", target, code)
						return
					}
					time.Sleep(50 * time.Millisecond) // client backoff; the agent may be down
					continue
				}
				lastAck.Store(time.Now().UnixNano())
			}
		}(w)
	}
	waitFor(t, 30*time.Second, "initial load", func() bool { return led.n.Load() > 2000 })

	// resumeAfterKill kills node i, waits until produce is acknowledged
	// again (by the surviving agents), restarts it and waits until ready.
	resumeAfterKill := func(what string, i int) {
		killedAt := time.Now()
		c.procs[i].kill(t)
		before := led.n.Load()
		waitFor(t, 30*time.Second, "produce resumes after killing the "+what, func() bool {
			return led.n.Load() > before+500 && lastAck.Load() > killedAt.UnixNano()
		})
		t.Logf("killed the %s (node-%d): produce resumed within %v", what, i+1, time.Since(killedAt).Round(10*time.Millisecond))
		c.procs[i] = c.launch(i)
	}
	st, _ = c.status(0)
	resumeAfterKill("raft leader", nodeIndex(st.Leader))
	// A partition leader that is not the (new) Raft leader.
	waitFor(t, 30*time.Second, "a status showing every partition's leader", func() bool {
		for i := range c.procs {
			var ok bool
			if st, ok = c.status(i); !ok || st.Leader == "" {
				continue
			}
			n := 0
			for _, m := range st.Members {
				n += len(m.Leaderships)
			}
			if n == parts {
				return true
			}
		}
		return false
	})
	victim := -1
	for _, m := range st.Members {
		if !m.RaftLeader && len(m.Leaderships) > 0 {
			victim = nodeIndex(m.ID)
			break
		}
	}
	if victim < 0 {
		t.Fatalf("no partition leader besides the raft leader: %+v", st.Members)
	}
	resumeAfterKill("partition leader", victim)
	after := led.n.Load()
	waitFor(t, 30*time.Second, "produce through all agents after the restarts", func() bool { return led.n.Load() > after+1000 })
	stop.Store(true)
	wg.Wait()
	t.Logf("acknowledged %d records", len(led.acks))

	// Every agent converges to the same high watermarks and serves every
	// acknowledged record at its offset.
	waitFor(t, 60*time.Second, "agents converge", func() bool {
		var ref transport.PartitionsResponse
		if code, err := tryCall("GET", c.base(0)+"/api/v1/topics/f/partitions", nil, &ref); err != nil || code != 200 {
			return false
		}
		for i := 1; i < 3; i++ {
			var pr transport.PartitionsResponse
			if code, err := tryCall("GET", c.base(i)+"/api/v1/topics/f/partitions", nil, &pr); err != nil || code != 200 {
				return false
			}
			for p := range pr.Partitions {
				if pr.Partitions[p].HighWatermark != ref.Partitions[p].HighWatermark {
					return false
				}
			}
		}
		return true
	})
	for i := 0; i < 3; i++ {
		total := verifyAcked(t, c.base(i), "f", parts, led.acks)
		t.Logf("node-%d serves %d records", i+1, total)
	}
}
