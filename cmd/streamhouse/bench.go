package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
	"github.com/streamhouse/streamhouse/transport/client/loadgen"
)

// benchCmd is a load generator against running agents (transport/client/loadgen).
type benchCmd struct {
	Server       string        `name:"server" default:"http://127.0.0.1:8080" help:"Agent REST base URLs (http://host:HTTP_PORT), comma-separated to spread producers over them. Unlike other commands, bench --server names REST URLs; see --grpc-server."`
	Topic        string        `name:"topic" default:"bench" help:"Topic to use (created if missing)."`
	Partitions   int32         `name:"partitions" default:"8" help:"Partitions of the topic when it is created."`
	Records      int64         `name:"records" default:"200000" help:"Records to produce (ignored with --duration)."`
	Duration     time.Duration `name:"duration" help:"Produce for this long instead of a record count."`
	RecordSize   int           `name:"record-size" default:"100" help:"Value size in bytes."`
	Batch        int           `name:"batch" default:"100" help:"Records per produce request."`
	Concurrency  int           `name:"concurrency" default:"16" help:"Concurrent producer connections."`
	Rate         int64         `name:"rate" help:"Fixed produce rate in records/s (0 = as fast as possible). Latency is measured from the intended send time (coordinated omission aware)."`
	Warmup       time.Duration `name:"warmup" help:"Before a fixed-rate run (--rate, and each --sweep point), produce at that rate for this long without measuring it, like the OpenMessaging Benchmark's warm-up phase."`
	AgentMetrics bool          `name:"agent-metrics" default:"true" negatable:"" help:"Read the agents' /metrics before and after the run (CPU, object-store requests) and sample every agent's peak RSS once a second; --no-agent-metrics leaves the agents unobserved (make bench-compare, where the other system is not observed either)."`
	Spread       bool          `name:"spread" help:"Send the records of each request to consecutive partitions (default: a whole request to one partition, requests rotating over the partitions)."`
	Produce      bool          `name:"produce" default:"true" negatable:"" help:"Produce records (--no-produce: only read the topic back, e.g. cold from S3 after an agent restart)."`
	Consume      bool          `name:"consume" default:"true" negatable:"" help:"After producing, read every partition back and report consume throughput."`
	Output       string        `name:"output" short:"o" default:"table" enum:"table,json" help:"table or json."`
	Protocol     string        `name:"protocol" default:"rest" enum:"rest,grpc,kafka" help:"rest (JSON over HTTP), grpc (the Go client: idempotent producer, batches sent to partition leaders) or kafka (franz-go on --kafka-server: idempotent producer, Fetch requests)."`
	KafkaServer  string        `name:"kafka-server" default:"127.0.0.1:9092" help:"Agent Kafka host:port list for --protocol kafka."`
	KafkaRead    string        `name:"kafka-read" default:"consumer" enum:"consumer,fetch" help:"How --protocol kafka reads the topic back: consumer (a franz-go consumer of every partition: one Fetch per partition leader for all its partitions) or fetch (one Fetch request per partition and page, like the Go client's read-back)."`
	RecordFile   string        `name:"record" placeholder:"FILE" help:"Append the result as a JSON line to FILE (with --label), for --summarize."`
	Label        string        `name:"label" help:"Scenario name stored with --record."`
	Summarize    string        `name:"summarize" placeholder:"FILE" help:"Print the results recorded in FILE as one table and exit (runs nothing)."`
	GRPCServer   string        `name:"grpc-server" env:"STREAMHOUSE_SERVER,STREAMHOUSE_GRPC" default:"127.0.0.1:9090" help:"Agent gRPC host:port list for --protocol grpc, like other commands' --server (--server still names the REST URL used for metrics)."`
	Sweep        []int64       `name:"sweep" placeholder:"RATE,..." help:"Latency-vs-throughput curve: run --duration at each fixed rate (records/s, ascending) until the achieved rate falls below 95% of the offered one; each point is one recorded row."`
	Chart        string        `name:"chart" placeholder:"FILE" help:"With --summarize: also write the rate sweeps' latency-vs-throughput curves as an ASCII chart to FILE."`
	Compare      string        `name:"compare" placeholder:"FILE" help:"Print the rows recorded in FILE with a --system as one side-by-side table with ratios to StreamHouse and exit (runs nothing)."`
	Target       string        `name:"target" default:"streamhouse" enum:"streamhouse,nats" help:"streamhouse (the agents at --server) or nats (a JetStream cluster at --nats-url, for make bench-compare)."`
	System       string        `name:"system" help:"Name of the measured system stored with --record (default: the target); --compare puts rows side by side by it."`
	CPUProfile   string        `name:"cpu-profile" placeholder:"FILE" help:"Write a CPU profile of this load generator (the client side) to FILE (go tool pprof)."`
	NATS         natsFlags     `embed:"" prefix:"nats-"`
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
	switch {
	case b.Summarize != "":
		return summarizeBench(os.Stdout, b.Summarize, b.Chart)
	case b.Compare != "":
		return compareBench(os.Stdout, b.Compare)
	case b.NATS.WriteConfig != "":
		return b.NATS.writeConfigs()
	}
	if b.Batch <= 0 || b.Concurrency <= 0 || b.RecordSize < 0 || b.Partitions <= 0 {
		return errors.New("--batch, --concurrency and --partitions must be positive, --record-size not negative")
	}
	if b.Warmup < 0 || b.Warmup > 0 && b.Rate <= 0 && len(b.Sweep) == 0 {
		return errors.New("--warmup needs a fixed rate (--rate or --sweep) and must not be negative")
	}
	if b.Warmup > 0 && (!b.Produce || b.Consume && len(b.Sweep) == 0) {
		return errors.New("--warmup needs --no-consume (the read-back reads the topic from its start and would count the warm-up's records) and a produce phase")
	}
	if len(b.Sweep) > 0 && b.Duration <= 0 {
		return errors.New("--sweep needs --duration (the length of each point)")
	}
	if b.System == "" {
		b.System = b.Target
	}
	stop, err := startCPUProfile(b.CPUProfile)
	if err != nil {
		return err
	}
	defer stop()
	if b.Target == "nats" {
		return b.runNATS(context.Background())
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
	return b.run(ctx, rest)
}

// config is the load of the flags.
func (b *benchCmd) config() loadgen.Config {
	return loadgen.Config{
		Protocol: b.Protocol, Topic: b.Topic, Partitions: b.Partitions, Records: b.Records, Duration: b.Duration,
		RecordSize: b.RecordSize, Batch: b.Batch, Concurrency: b.Concurrency, Rate: b.Rate, Warmup: b.Warmup,
		Produce: b.Produce, Consume: b.Consume, Spread: b.Spread,
		ReadRecords: 1000, ReadSource: "earliest→end (segments + WAL)",
	}
}

// execute runs cfg once, or as a rate sweep with --sweep, and records and
// prints every result.
func (b *benchCmd) execute(ctx context.Context, cfg loadgen.Config, t loadgen.Target, agents []loadgen.Agent) error {
	report := func(r loadgen.Result) error {
		r.System = b.System
		if err := b.record(r); err != nil {
			return err
		}
		return b.print(r)
	}
	if len(b.Sweep) > 0 {
		_, err := loadgen.Sweep(ctx, cfg, b.Sweep, t, report, agents...)
		return err
	}
	res, err := loadgen.Run(ctx, cfg, t, agents...)
	if err != nil {
		return err
	}
	return report(res)
}

// run runs the benchmark over the protocol of --protocol, sampling every
// agent of --server.
func (b *benchCmd) run(ctx context.Context, rest loadgen.REST) error {
	cfg := b.config()
	var agents []loadgen.Agent
	if b.AgentMetrics {
		for _, u := range rest.Servers {
			agents = append(agents, loadgen.Agent{Client: rest.Client, URL: u})
		}
	}
	switch b.Protocol {
	case "kafka":
		return b.runKafka(ctx, cfg, agents)
	case "grpc":
	default:
		return b.execute(ctx, cfg, rest, agents)
	}
	c, err := b.dialGRPC(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	target, err := loadgen.NewGRPC(ctx, c, b.Produce)
	if err != nil {
		return err
	}
	defer target.Close()
	cfg.ReadRecords, cfg.ReadBytes, cfg.ReadSource = 5000, 4<<20, "earliest→end over gRPC (segments + WAL)"
	return b.execute(ctx, cfg, target, agents)
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
	if r.System != "" && r.System != "streamhouse" {
		fmt.Fprintf(w, "system\t%s\n", r.System)
	}
	if r.TargetRate > 0 {
		fmt.Fprintf(w, "target rate\t%d records/s\n", r.TargetRate)
	}
	if r.WarmupSeconds > 0 {
		fmt.Fprintf(w, "warm-up\t%v at the target rate before the measured window, not counted (its ack p99 %.2f ms)\n",
			time.Duration(r.WarmupSeconds*float64(time.Second)), r.WarmupAckP99Ms)
	}
	if r.RecordsPerSec > 0 {
		fmt.Fprintf(w, "produce\t%.0f records/s, %.1f MiB/s over %.1f s\n", r.RecordsPerSec, r.MiBPerSec, r.Seconds)
		fmt.Fprintf(w, "produce ack latency\tp50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n", r.AckP50Ms, r.AckP99Ms, r.AckP999Ms, r.AckMaxMs)
	}
	if r.E2EP50Ms > 0 || r.E2EP99Ms > 0 {
		fmt.Fprintf(w, "end-to-end (produce→tail consumer)\tp50 %.1f ms, p99 %.1f ms (ms-resolution timestamps)\n", r.E2EP50Ms, r.E2EP99Ms)
	}
	if r.ConsumeRecsSec > 0 {
		fmt.Fprintf(w, "consume\t%.0f records/s (%s)\n", r.ConsumeRecsSec, r.ConsumeSource)
	}
	if len(r.AgentsPeakRSSMiB) > 0 {
		fmt.Fprintf(w, "agent (first --server)\t%.1f CPU s\n", r.AgentCPUSeconds)
		fmt.Fprintf(w, "peak RSS per agent\t%s MiB\n", joinMiB(r.AgentsPeakRSSMiB))
		fmt.Fprintf(w, "object store\t%.0f PUTs/GiB, %.0f ranged GETs/GiB\n", r.S3PutsPerGiB, r.S3GetsPerGiB)
	}
	fmt.Fprintf(w, "errors\t%d (503 retries %d)\n", r.Errors, r.Retries503)
	return w.Flush()
}

// runKafka runs cfg through franz-go on --kafka-server.
func (b *benchCmd) runKafka(ctx context.Context, cfg loadgen.Config, agents []loadgen.Agent) error {
	target, err := loadgen.NewKafka(splitList(b.KafkaServer))
	if err != nil {
		return err
	}
	defer target.Close()
	target.RawFetch = b.KafkaRead == "fetch"
	cfg.ReadRecords, cfg.ReadBytes, cfg.ReadSource = 5000, 4<<20, "earliest→end, franz-go consumer (segments + WAL)"
	if target.RawFetch {
		cfg.ReadSource = "earliest→end, a Kafka Fetch per partition (segments + WAL)"
	}
	return b.execute(ctx, cfg, target, agents)
}

// startCPUProfile profiles this process into path until stop is called
// ("" = no profile).
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
