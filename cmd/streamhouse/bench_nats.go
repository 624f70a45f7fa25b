package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/streamhouse/streamhouse/transport/client/loadgen/natsload"
)

// natsFlags drive a NATS JetStream cluster with the same load
// (`bench --target nats`, used by `make bench-compare`) and write the
// configuration of the loopback cluster it runs against.
type natsFlags struct {
	URL         string `name:"url" default:"nats://127.0.0.1:14222" help:"--target nats: comma-separated client URLs of the JetStream cluster."`
	Replicas    int    `name:"replicas" default:"3" help:"--target nats: replicas of the stream (named after --topic, subjects <topic>.<partition>)."`
	Connections int    `name:"connections" help:"--target nats: client connections the workers share (default: one per worker, at most 16)."`

	WriteConfig  string `name:"write-config" placeholder:"DIR" hidden:"" help:"Write n1.conf… of a loopback JetStream cluster (stores under DIR/data) into DIR and exit."`
	Nodes        int    `name:"nodes" default:"3" hidden:"" help:"Servers of --nats-write-config."`
	Port         int    `name:"port" default:"14222" hidden:"" help:"First client port of --nats-write-config (routes from port+100, monitoring from port+200)."`
	SyncInterval string `name:"sync-interval" hidden:"" help:"JetStream sync_interval of --nats-write-config (empty: the server's default, 2 min; always: fsync every write)."`
}

// cluster is the loopback cluster the flags describe.
func (f natsFlags) cluster() (natsload.Cluster, error) {
	dir, err := filepath.Abs(f.WriteConfig)
	if err != nil {
		return natsload.Cluster{}, err
	}
	c := natsload.Cluster{Nodes: f.Nodes, Dir: filepath.Join(dir, "data"), ClientPort: f.Port,
		RoutePort: f.Port + 100, MonitorPort: f.Port + 200, SyncInterval: f.SyncInterval}
	return c, c.Validate()
}

// writeConfigs writes one configuration file per node.
func (f natsFlags) writeConfigs() error {
	c, err := f.cluster()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.WriteConfig, 0o755); err != nil {
		return err
	}
	for i := 1; i <= c.Nodes; i++ {
		path := filepath.Join(f.WriteConfig, fmt.Sprintf("n%d.conf", i))
		if err := os.WriteFile(path, []byte(c.Config(i)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runNATS produces into a JetStream stream with the load of the flags:
// each batch is --batch async publishes whose acks are awaited together,
// measured by the same loop and histogram as StreamHouse.
func (b *benchCmd) runNATS(ctx context.Context) error {
	urls := splitList(b.NATS.URL)
	if len(urls) == 0 {
		return errors.New("--nats-url needs at least one URL")
	}
	conns := b.NATS.Connections
	if conns <= 0 {
		conns = min(b.Concurrency, 16)
	}
	perConn := (b.Concurrency + conns - 1) / conns
	t, err := natsload.Dial(urls, conns, perConn*b.Batch)
	if err != nil {
		return err
	}
	defer t.Close()
	if err := t.EnsureStream(ctx, b.Topic, b.NATS.Replicas); err != nil {
		return err
	}
	cfg := b.config()
	cfg.Protocol, cfg.Consume = "nats async publish", false
	return b.execute(ctx, cfg, t, nil)
}
