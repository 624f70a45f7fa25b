package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

// grpcAddr is node i's gRPC host:port.
func (c *procCluster) grpcAddr(i int) string {
	for _, kv := range c.env[i] {
		if p, ok := strings.CutPrefix(kv, "GRPC_PORT="); ok {
			return "127.0.0.1:" + p
		}
	}
	c.t.Fatalf("node-%d has no GRPC_PORT", i+1)
	return ""
}

// cliEnv is the environment of a CLI run in tests: no config file of the
// user's, no connection variables of the caller's.
func cliEnv(t *testing.T, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STREAMHOUSE_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			env = append(env, kv)
		}
	}
	return append(append(env, "XDG_CONFIG_HOME="+t.TempDir()), extra...)
}

// TestClusterHealthAndStatus: against three agent processes, `cluster
// status` (gRPC) shows every agent's gRPC address, `cluster health` exits
// 0; after one agent is killed it exits 1 naming that agent, and -o json
// says the same.
func TestClusterHealthAndStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	c := startProcCluster(t, 3)
	servers := c.grpcAddr(0) + "," + c.grpcAddr(1) + "," + c.grpcAddr(2)
	env := cliEnv(t, "STREAMHOUSE_SERVER="+servers)
	waitFor(t, 30*time.Second, "3 voters", func() bool {
		st, ok := c.status(0)
		return ok && len(st.Voters) == 3 && st.Leader != ""
	})

	out, errOut, code := runBinary(t, env, nil, "cluster", "status")
	if code != 0 {
		t.Fatalf("cluster status: exit %d: %s", code, errOut)
	}
	for i := 0; i < 3; i++ {
		if !strings.Contains(out, c.grpcAddr(i)) {
			t.Errorf("cluster status does not show node-%d's gRPC address %s:\n%s", i+1, c.grpcAddr(i), out)
		}
	}
	if !strings.Contains(out, "GRPC") || !strings.Contains(out, "REST") {
		t.Errorf("cluster status has no GRPC/REST columns:\n%s", out)
	}

	var errOut2 string
	waitFor(t, 30*time.Second, "cluster health exits 0", func() bool {
		out, errOut2, code = runBinary(t, env, nil, "cluster", "health")
		return code == 0
	})
	if !strings.Contains(out, "healthy") {
		t.Fatalf("cluster health output:\n%s\n%s", out, errOut2)
	}

	c.procs[1].kill(t)
	c.procs[1] = nil
	out, errOut, code = runBinary(t, env, nil, "cluster", "health")
	if code != 1 || !strings.Contains(out, "node-2:") || !strings.Contains(errOut, "not healthy") {
		t.Fatalf("cluster health with node-2 killed: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	out, _, code = runBinary(t, env, nil, "cluster", "health", "-o", "json")
	var rep client.HealthReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.Healthy {
		t.Fatalf("cluster health -o json: exit %d, %v:\n%s", code, err, out)
	}
	named := false
	for _, p := range rep.Problems {
		named = named || p.Agent == "node-2"
	}
	if !named {
		t.Fatalf("no problem names node-2: %+v", rep.Problems)
	}
}

// TestClusterHealthCheckpointsDown: a single agent whose Postgres is
// unreachable is unhealthy, and health says why; status works on it.
func TestClusterHealthCheckpointsDown(t *testing.T) {
	a := newSoloAgent(t, "solo", t.TempDir(), "DATABASE_URL=postgres://sh:pw@127.0.0.1:1/streamhouse?connect_timeout=1")
	p := a.start(t)
	defer p.kill(t)
	env := cliEnv(t, "STREAMHOUSE_GRPC=127.0.0.1:"+strconv.Itoa(a.grpcPort))
	out, errOut, code := runBinary(t, env, nil, "cluster", "health")
	if code != 1 || !strings.Contains(out, "solo: checkpoints: cannot connect to Postgres") {
		t.Fatalf("cluster health: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	out, errOut, code = runBinary(t, env, nil, "cluster", "status", "-o", "json")
	var st client.ClusterStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.NodeID != "solo" || !st.Checkpoint.Configured || st.Checkpoint.Connected {
		t.Fatalf("cluster status -o json: exit %d %v: %s %s", code, err, out, errOut)
	}
}
