package natsload

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Cluster describes a JetStream cluster of Nodes servers on 127.0.0.1:
// server i (1-based) listens for clients on ClientPort+i-1, for routes on
// RoutePort+i-1 and for monitoring on MonitorPort+i-1, and stores its
// streams under Dir/n<i>.
type Cluster struct {
	Nodes       int
	Dir         string
	ClientPort  int
	RoutePort   int
	MonitorPort int
	// SyncInterval is JetStream's sync_interval: "" keeps the server's
	// default (fsync every 2 minutes), "always" fsyncs every write.
	SyncInterval string
}

// Validate checks what Config relies on.
func (c Cluster) Validate() error {
	switch {
	case c.Nodes < 1:
		return fmt.Errorf("natsload: %d nodes", c.Nodes)
	case c.Dir == "" || !filepath.IsAbs(c.Dir):
		return fmt.Errorf("natsload: store directory %q is not absolute", c.Dir)
	case c.ClientPort <= 0 || c.RoutePort <= 0 || c.MonitorPort <= 0 || max(c.ClientPort, c.RoutePort, c.MonitorPort)+c.Nodes > 65536:
		return fmt.Errorf("natsload: ports %d/%d/%d do not fit %d nodes", c.ClientPort, c.RoutePort, c.MonitorPort, c.Nodes)
	case strings.ContainsAny(c.SyncInterval, "\"\n"):
		return fmt.Errorf("natsload: sync interval %q", c.SyncInterval)
	}
	return nil
}

// URLs are the client URLs of every node.
func (c Cluster) URLs() []string {
	out := make([]string, c.Nodes)
	for i := range out {
		out[i] = fmt.Sprintf("nats://127.0.0.1:%d", c.ClientPort+i)
	}
	return out
}

// Config is the configuration file of node i (1-based).
func (c Cluster) Config(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# JetStream node %d of %d for make bench-compare (loopback only)\n", i, c.Nodes)
	fmt.Fprintf(&b, "server_name: n%d\n", i)
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\n", c.ClientPort+i-1)
	fmt.Fprintf(&b, "http: 127.0.0.1:%d\n", c.MonitorPort+i-1)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n", filepath.Join(c.Dir, fmt.Sprintf("n%d", i)))
	if c.SyncInterval != "" {
		fmt.Fprintf(&b, "  sync_interval: %q\n", c.SyncInterval)
	}
	b.WriteString("}\n")
	if c.Nodes > 1 {
		fmt.Fprintf(&b, "cluster {\n  name: bench\n  listen: 127.0.0.1:%d\n  routes: [\n", c.RoutePort+i-1)
		for j := 0; j < c.Nodes; j++ {
			fmt.Fprintf(&b, "    nats-route://127.0.0.1:%d\n", c.RoutePort+j)
		}
		b.WriteString("  ]\n}\n")
	}
	return b.String()
}
