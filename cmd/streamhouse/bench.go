package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
	"github.com/streamhouse/streamhouse/transport/client/loadgen"
)

// benchCmd is a load generator against running agents (transport/client/loadgen).
type benchCmd struct {
	Server      string        `name:"server" default:"http://127.0.0.1:8080" help:"Agent REST base URLs (http://host:HTTP_PORT), comma-separated to spread producers over them. Unlike other commands, bench --server names REST URLs; see --grpc-server."`
	Topic       string        `name:"topic" default:"bench" help:"Topic to use (created if missing)."`
	Partitions  int32         `name:"partitions" default:"8" help:"Partitions of the topic when it is created."`
	Records     int64         `name:"records" default:"200000" help:"Records to produce (ignored with --duration)."`
	Duration    time.Duration `name:"duration" help:"Produce for this long instead of a record count."`
	RecordSize  int           `name:"record-size" default:"100" help:"Value size in bytes."`
	Batch       int           `name:"batch" default:"100" help:"Records per produce request."`
	Concurrency int           `name:"concurrency" default:"16" help:"Concurrent producer connections."`
	Rate        int64         `name:"rate" help:"Fixed produce rate in records/s (0 = as fast as possible). Latency is measured from the intended send time (coordinated omission aware)."`
	Produce     bool          `name:"produce" default:"true" negatable:"" help:"Produce records (--no-produce: only read the topic back, e.g. cold from S3 after an agent restart)."`
	Consume     bool          `name:"consume" default:"true" negatable:"" help:"After producing, read every partition back and report consume throughput."`
	Output      string        `name:"output" short:"o" default:"table" enum:"table,json" help:"table or json."`
	Protocol    string        `name:"protocol" default:"rest" enum:"rest,grpc" help:"rest (JSON over HTTP) or grpc (the Go client: idempotent producer, batches sent to partition leaders)."`
	RecordFile  string        `name:"record" placeholder:"FILE" help:"Append the result as a JSON line to FILE (with --label), for --summarize."`
	Label       string        `name:"label" help:"Scenario name stored with --record."`
	Summarize   string        `name:"summarize" placeholder:"FILE" help:"Print the results recorded in FILE as one table and exit (runs nothing)."`
	GRPCServer  string        `name:"grpc-server" env:"STREAMHOUSE_SERVER,STREAMHOUSE_GRPC" default:"127.0.0.1:9090" help:"Agent gRPC host:port list for --protocol grpc, like other commands' --server (--server still names the REST URL used for metrics)."`
	securityFlags
}

// Validate implements kong's hook: a --server that is not a REST URL
// exits 2.
func (b *benchCmd) Validate() error {
	for _, u := range splitList(b.Server) {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return explainedError{fmt.Errorf("bench --server takes the agents' REST URLs (http://host:HTTP_PORT, default 8080), not %q; the gRPC host:port list goes to --grpc-server", u)}
		}
	}
	if _, err := parseServerList(b.GRPCServer); err != nil {
		return explainedError{fmt.Errorf("--grpc-server (or STREAMHOUSE_SERVER): %w", err)}
	}
	return nil
}

// https reports whether the REST URLs use TLS (then gRPC does too).
func (b *benchCmd) https() bool { return strings.HasPrefix(b.Server, "https://") }

func (b *benchCmd) Run() error {
	if b.Summarize != "" {
		return summarizeBench(os.Stdout, b.Summarize)
	}
	if b.Batch <= 0 || b.Concurrency <= 0 || b.RecordSize < 0 || b.Partitions <= 0 {
		return errors.New("--batch, --concurrency and --partitions must be positive, --record-size not negative")
	}
	var servers []string
	for _, u := range splitList(b.Server) {
		if u = strings.TrimRight(u, "/"); u != "" {
			servers = append(servers, u)
		}
	}
	if len(servers) == 0 {
		return errors.New("--server needs at least one URL")
	}
	b.Server = servers[0]
	hc, err := b.httpClient(&http.Transport{MaxIdleConnsPerHost: b.Concurrency * 2}, 60*time.Second, b.https())
	if err != nil {
		return err
	}
	ctx := context.Background()
	rest := loadgen.REST{Client: hc, Servers: servers}
	if b.Partitions, err = rest.EnsureTopic(ctx, b.Topic, b.Partitions); err != nil {
		return err
	}
	res, err := b.run(ctx, rest)
	if err != nil {
		return err
	}
	if err := b.record(res); err != nil {
		return err
	}
	return b.print(res)
}

// run runs the benchmark over the protocol of --protocol.
func (b *benchCmd) run(ctx context.Context, rest loadgen.REST) (loadgen.Result, error) {
	cfg := loadgen.Config{
		Protocol: b.Protocol, Topic: b.Topic, Partitions: b.Partitions, Records: b.Records, Duration: b.Duration,
		RecordSize: b.RecordSize, Batch: b.Batch, Concurrency: b.Concurrency, Rate: b.Rate,
		Produce: b.Produce, Consume: b.Consume,
		ReadRecords: 1000, ReadSource: "earliest→end (segments + WAL)",
	}
	agent := loadgen.Agent{Client: rest.Client, URL: rest.Servers[0]}
	if b.Protocol != "grpc" {
		return loadgen.Run(ctx, cfg, rest, agent)
	}
	c, err := b.dialGRPC(ctx)
	if err != nil {
		return loadgen.Result{}, err
	}
	defer c.Close()
	target, err := loadgen.NewGRPC(ctx, c, b.Produce)
	if err != nil {
		return loadgen.Result{}, err
	}
	defer target.Close()
	cfg.ReadRecords, cfg.ReadBytes, cfg.ReadSource = 5000, 4<<20, "earliest→end over gRPC (segments + WAL)"
	return loadgen.Run(ctx, cfg, target, agent)
}

// dialGRPC connects the Go client to --grpc-server.
func (b *benchCmd) dialGRPC(ctx context.Context) (*client.Client, error) {
	addrs := splitList(b.GRPCServer)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("--grpc-server needs at least one host:port")
	}
	opts, err := b.clientOptions(b.https())
	if err != nil {
		return nil, err
	}
	return client.Dial(ctx, addrs, opts...)
}

func (b *benchCmd) print(r loadgen.Result) error {
	if b.Output == "json" {
		return writeJSON(os.Stdout, r)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "records\t%d × %d B (%d partitions, %d connections, %d per request, %s)\n", r.Records, r.RecordSize, r.Partitions, r.Concurrency, r.Batch, r.Protocol)
	if r.TargetRate > 0 {
		fmt.Fprintf(w, "target rate\t%d records/s\n", r.TargetRate)
	}
	if r.RecordsPerSec > 0 {
		fmt.Fprintf(w, "produce\t%.0f records/s, %.1f MiB/s over %.1f s\n", r.RecordsPerSec, r.MiBPerSec, r.Seconds)
		fmt.Fprintf(w, "produce ack latency\tp50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms\n", r.AckP50Ms, r.AckP99Ms, r.AckP999Ms)
	}
	if r.E2EP50Ms > 0 || r.E2EP99Ms > 0 {
		fmt.Fprintf(w, "end-to-end (produce→tail consumer)\tp50 %.1f ms, p99 %.1f ms (ms-resolution timestamps)\n", r.E2EP50Ms, r.E2EP99Ms)
	}
	if r.ConsumeRecsSec > 0 {
		fmt.Fprintf(w, "consume\t%.0f records/s (%s)\n", r.ConsumeRecsSec, r.ConsumeSource)
	}
	fmt.Fprintf(w, "agent (first --server)\t%.1f CPU s, peak RSS %.0f MiB\n", r.AgentCPUSeconds, r.AgentPeakRSSMiB)
	fmt.Fprintf(w, "object store\t%.0f PUTs/GiB, %.0f ranged GETs/GiB\n", r.S3PutsPerGiB, r.S3GetsPerGiB)
	fmt.Fprintf(w, "errors\t%d (503 retries %d)\n", r.Errors, r.Retries503)
	return w.Flush()
}
