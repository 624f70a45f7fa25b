package natsload

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func testCluster(t *testing.T, sync string) Cluster {
	return Cluster{Nodes: 3, Dir: t.TempDir(), ClientPort: 14222, RoutePort: 14322, MonitorPort: 14422, SyncInterval: sync}
}

func TestClusterConfigNamesEveryRouteAndItsOwnPorts(t *testing.T) {
	c := testCluster(t, "always")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	conf := c.Config(2)
	for _, want := range []string{
		"server_name: n2\n", "listen: 127.0.0.1:14223\n", "http: 127.0.0.1:14423\n",
		`store_dir: "` + filepath.Join(c.Dir, "n2") + `"`, `sync_interval: "always"`,
		"listen: 127.0.0.1:14323\n", "nats-route://127.0.0.1:14322\n", "nats-route://127.0.0.1:14324\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("node 2's configuration lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(testCluster(t, "").Config(1), "sync_interval") {
		t.Error("the default sync interval is written out")
	}
	if got := c.URLs(); len(got) != 3 || got[2] != "nats://127.0.0.1:14224" {
		t.Errorf("URLs %v", got)
	}
}

func TestClusterValidateRefusesWhatTheConfigCannotHold(t *testing.T) {
	for name, c := range map[string]Cluster{
		"no nodes":          {Dir: "/tmp/x", ClientPort: 1, RoutePort: 2, MonitorPort: 3},
		"relative dir":      {Nodes: 3, Dir: "data", ClientPort: 1, RoutePort: 2, MonitorPort: 3},
		"ports overflow":    {Nodes: 3, Dir: "/tmp/x", ClientPort: 65534, RoutePort: 2, MonitorPort: 3},
		"quote in interval": {Nodes: 1, Dir: "/tmp/x", ClientPort: 1, RoutePort: 2, MonitorPort: 3, SyncInterval: `2m"`},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// natsServer is the pinned nats-server that make bench-compare installs:
// $STREAMHOUSE_NATS_SERVER, else the repository's .cache/bin copy.
func natsServer(t *testing.T) string {
	if p := os.Getenv("STREAMHOUSE_NATS_SERVER"); p != "" {
		return p
	}
	matches, _ := filepath.Glob("../../../../.cache/bin/nats-server-v*")
	if len(matches) == 0 {
		return ""
	}
	p, err := filepath.Abs(matches[len(matches)-1])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClusterConfigPassesNatsServersCheck runs `nats-server -t` (test the
// configuration and exit) on every node's file, for both sync settings,
// when the pinned server is installed (make bench-compare installs it; set
// STREAMHOUSE_NATS_SERVER to point elsewhere). Without it only the text
// checks above run, and the log says so.
func TestClusterConfigPassesNatsServersCheck(t *testing.T) {
	bin := natsServer(t)
	if bin == "" {
		t.Log("nats-server not installed (make bench-compare installs it): configuration not checked by the server")
		return
	}
	for _, sync := range []string{"", "always", "2m"} {
		c := testCluster(t, sync)
		for i := 1; i <= c.Nodes; i++ {
			path := filepath.Join(t.TempDir(), "n.conf")
			if err := os.WriteFile(path, []byte(c.Config(i)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, "-t", "-c", path).CombinedOutput(); err != nil {
				t.Fatalf("sync %q node %d: nats-server -t: %v\n%s\n%s", sync, i, err, out, c.Config(i))
			}
		}
	}
}
