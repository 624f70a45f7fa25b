package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// agentCmd is the agent's configuration: every setting is a flag with an
// equivalent environment variable; a flag wins over the variable.
type agentCmd struct {
	HTTPPort          int           `name:"http-port" env:"HTTP_PORT" default:"8080" help:"REST API, health and metrics port."`
	GRPCPort          int           `name:"grpc-port" env:"GRPC_PORT" default:"9090" help:"gRPC API port."`
	GRPCMaxStreams    uint32        `name:"grpc-max-concurrent-streams" env:"GRPC_MAX_CONCURRENT_STREAMS" default:"1000" help:"Calls one gRPC connection may have open at once (further calls wait in the client); keep it above the partitions one consumer reads from one agent."`
	KafkaPort         int           `name:"kafka-port" env:"KAFKA_PORT" default:"9092" help:"Kafka protocol port (0 disables the Kafka listener)."`
	KafkaAdvertised   string        `name:"kafka-advertised-addr" env:"KAFKA_ADVERTISED_ADDR" help:"host:port Kafka clients are told to connect to (default: ADVERTISE_ADDR:KAFKA_PORT)."`
	KafkaAutoCreate   bool          `name:"kafka-auto-create-topics" env:"KAFKA_AUTO_CREATE_TOPICS" default:"false" negatable:"" help:"Kafka Metadata requests create the unknown topics they name (Kafka's auto.create.topics.enable) with KAFKA_DEFAULT_PARTITIONS partitions; the API key must be allowed to create them."`
	KafkaPartitions   int32         `name:"kafka-default-partitions" env:"KAFKA_DEFAULT_PARTITIONS" default:"1" help:"Partitions of a topic created over Kafka without a count (auto-created, or CreateTopics with -1; Kafka's num.partitions)."`
	PeerPort          int           `name:"peer-port" env:"PEER_PORT" default:"9093" help:"Raft and agent-to-agent RPC port (one port, multiplexed)."`
	GossipPort        int           `name:"gossip-port" env:"GOSSIP_PORT" default:"7946" help:"Gossip (membership) port, TCP and UDP."`
	Join              string        `name:"join" env:"JOIN" help:"Comma-separated host:port gossip addresses of existing agents to join."`
	BootstrapExpect   int           `name:"bootstrap-expect" env:"BOOTSTRAP_EXPECT" default:"0" help:"Form a new cluster once this many agents (all started with the same value) see each other; 0 or 1 without JOIN = bootstrap alone; 1 with JOIN (naming itself) = bootstrap alone unless JOIN reaches another agent or cluster."`
	DeadAgentTimeout  time.Duration `name:"dead-agent-timeout" env:"DEAD_AGENT_TIMEOUT" default:"30s" help:"An agent dead in gossip this long is removed from the Raft group."`
	PartitionFailover time.Duration `name:"partition-failover-timeout" env:"PARTITION_FAILOVER_TIMEOUT" default:"3s" help:"Partitions of an agent dead in gossip this long move to live agents."`
	DataDir           string        `name:"data-dir" env:"DATA_DIR" default:"./data" help:"Directory for Raft state, the WAL and the local object store."`
	NodeID            string        `name:"node-id" env:"NODE_ID" help:"Unique agent ID (default: the hostname)."`
	BindAddr          string        `name:"bind-addr" env:"BIND_ADDR" default:"0.0.0.0" help:"Address every listener binds."`
	// AdvertiseAddr is the address peers use to reach this agent.
	AdvertiseAddr string `name:"advertise-addr" env:"ADVERTISE_ADDR" help:"Address peers dial (default: 127.0.0.1 when BIND_ADDR is 0.0.0.0, else BIND_ADDR)."`

	WALEnabled bool   `name:"wal-enabled" env:"WAL_ENABLED" default:"true" negatable:"" help:"Keep unflushed records in an on-disk WAL (false: in memory; Raft still makes them durable)."`
	WALDir     string `name:"wal-dir" env:"WAL_DIR" help:"WAL directory (default: DATA_DIR/wal)."`
	WALSyncMs  int    `name:"wal-sync-ms" env:"WAL_SYNC_MS" default:"100" help:"Group-commit: max extra wait (ms) before a background WAL fsync to gather more writes (acks wait for the Raft log fsync, not this); 0 = no extra wait."`
	// WALSegmentBytes bounds a WAL segment file; flushed records are freed a
	// whole segment at a time (never the newest), so a small disk needs
	// small segments.
	WALSegmentBytes  int64 `name:"wal-segment-bytes" env:"WAL_SEGMENT_BYTES" default:"16777216" help:"Size of a WAL segment file; flushed records are deleted a whole segment at a time (never the newest), so keep it well below the disk size. At most 8 MiB with WAL_ENABLED=false (the WAL in memory)."`
	MinFreeDiskBytes int64 `name:"min-free-disk-bytes" env:"MIN_FREE_DISK_BYTES" default:"536870912" help:"Below this many free bytes on the filesystem of DATA_DIR (or WAL_DIR) produce answers 503, /ready says why, and the agent compacts its Raft log; 0 = no floor."`

	RaftParallelLeaderWrite bool `name:"raft-parallel-leader-write" env:"RAFT_PARALLEL_LEADER_WRITE" default:"true" negatable:"" help:"The Raft leader writes and fsyncs its own log entries while it replicates them, instead of before (one fsync on the commit path instead of two in series); nothing is applied or acknowledged before the leader's own copy is durable. false: write first, then replicate."`

	BatchSize         int   `name:"batch-size" env:"BATCH_SIZE" default:"1000" help:"Records per proposed batch before it is sealed."`
	BatchTimeoutMs    int   `name:"batch-timeout-ms" env:"BATCH_TIMEOUT_MS" default:"10" help:"Max wait (ms) for a batch to fill while the partition has a batch in flight."`
	ProposeInFlight   int   `name:"propose-in-flight" env:"PROPOSE_IN_FLIGHT" default:"2" help:"Raft entries of record batches this agent may have proposed and not yet applied; batches of every partition that become ready meanwhile are grouped into the next entry (group commit). 0 = the default, 2."`
	SegmentMaxBytes   int64 `name:"segment-max-bytes" env:"SEGMENT_MAX_BYTES" default:"8388608" help:"Roll a segment object at this many unflushed bytes."`
	SegmentMaxAgeMs   int   `name:"segment-max-age-ms" env:"SEGMENT_MAX_AGE_MS" default:"1000" help:"Roll a segment object once the oldest unflushed record is this old (ms)."`
	MaxRecordBytes    int   `name:"max-record-bytes" env:"MAX_RECORD_BYTES" default:"1048576" help:"Largest accepted record (key+value+headers)."`
	MaxUnflushedBytes int64 `name:"max-unflushed-bytes" env:"MAX_UNFLUSHED_BYTES" default:"268435456" help:"Above this many unflushed bytes produce answers 503 (retry later)."`
	MaxTopics         int64 `name:"max-topics" env:"MAX_TOPICS" default:"1000" help:"Cluster-wide: creating a topic past this many topics is refused (409 limit_exceeded, gRPC RESOURCE_EXHAUSTED); 0 = no limit. Set the same value on every agent."`
	MaxPartitions     int64 `name:"max-partitions" env:"MAX_PARTITIONS" default:"20000" help:"Cluster-wide: creating a topic that would take the cluster past this many partitions is refused; 0 = no limit. Set the same value on every agent."`
	MaxGroups         int64 `name:"max-groups" env:"MAX_GROUPS" default:"10000" help:"Cluster-wide: a commit that would create a consumer group past this many groups is refused (409 limit_exceeded); 0 = no limit. Set the same value on every agent."`
	GroupDelayMs      int   `name:"group-initial-rebalance-delay-ms" env:"GROUP_INITIAL_REBALANCE_DELAY_MS" default:"300" help:"A consumer group without members waits this long after a join (and after each further join, up to the rebalance timeout) before forming its first generation, so members starting together share it (Kafka's group.initial.rebalance.delay.ms); 0 = no wait."`
	MaxUnflushedRecs  int64 `name:"max-unflushed-records" env:"MAX_UNFLUSHED_RECORDS" default:"1000000" help:"A partition refuses new records (503, retry later) while more than this many of its records are unflushed; a DR restore skips this many offsets after its evidence."`
	SegmentCacheSize  int64 `name:"segment-cache-size" env:"SEGMENT_CACHE_SIZE" default:"268435456" help:"Bytes of segment blocks cached in memory (LRU); 0 disables."`

	ObjectStoreDir   string `name:"object-store-dir" env:"OBJECT_STORE_DIR" help:"Directory of the local object store used when S3_BUCKET is unset (default: DATA_DIR/objects). Agents of one cluster must share their object store: S3, or this directory on shared storage."`
	S3Endpoint       string `name:"s3-endpoint" env:"S3_ENDPOINT" help:"S3-compatible endpoint URL (MinIO, DigitalOcean Spaces); unset = AWS S3."`
	S3Bucket         string `name:"s3-bucket" env:"S3_BUCKET" help:"Bucket for segment objects; unset = local-directory object store under DATA_DIR/objects."`
	S3Region         string `name:"s3-region" env:"S3_REGION,AWS_REGION" default:"us-east-1" help:"S3 region."`
	S3PathStyle      bool   `name:"s3-path-style" env:"S3_PATH_STYLE" default:"false" negatable:"" help:"Path-style bucket addressing (true for MinIO)."`
	AWSAccessKeyID   string `name:"aws-access-key-id" env:"AWS_ACCESS_KEY_ID" help:"S3 access key; unset = the AWS SDK's default credential chain."`
	AWSSecretKey     string `name:"aws-secret-access-key" env:"AWS_SECRET_ACCESS_KEY" help:"S3 secret key."`
	S3TimeoutMs      int    `name:"s3-timeout-ms" env:"S3_TIMEOUT_MS" default:"10000" help:"Timeout of one S3 request attempt (ms)."`
	RetentionCheckMs int    `name:"retention-check-ms" env:"RETENTION_CHECK_MS" default:"30000" help:"How often the Raft leader applies retention and deletes released objects (ms)."`
	OrphanGraceMs    int64  `name:"orphan-grace-ms" env:"ORPHAN_GRACE_MS" default:"3600000" help:"How long (cluster time) an uploaded segment object may wait for its commit; later the commit is refused, the records are flushed again, and the unreferenced object is garbage-collected (ms)."`

	DatabaseURL           string  `name:"database-url" env:"DATABASE_URL" help:"PostgreSQL URL for metadata checkpoints and DR restore (unset: checkpoints disabled)."`
	CheckpointIntervalMs  int     `name:"checkpoint-interval-ms" env:"CHECKPOINT_INTERVAL_MS" default:"5000" help:"How often the Raft leader checkpoints metadata to Postgres (ms)."`
	RestoreOffsetGap      int64   `name:"restore-offset-gap" env:"RESTORE_OFFSET_GAP" default:"1000000" help:"DR restore: offsets skipped per partition after the highest evidenced one, so records acknowledged after the last checkpoint never share an offset with new ones."`
	RestoreFromPostgres   bool    `name:"restore-from-postgres" env:"RESTORE_FROM_POSTGRES" default:"false" negatable:"" help:"Disaster recovery: when DATA_DIR holds no Raft state, restore the cluster from the latest Postgres checkpoint and the bucket before starting."`
	TLSCertPath           string  `name:"tls-cert-path" env:"TLS_CERT_PATH" help:"PEM certificate (chain) of this agent; with TLS_KEY_PATH it turns on TLS on the REST and gRPC listeners. Re-read when the file changes."`
	TLSKeyPath            string  `name:"tls-key-path" env:"TLS_KEY_PATH" help:"PEM private key of TLS_CERT_PATH."`
	TLSCAPath             string  `name:"tls-ca-path" env:"TLS_CA_PATH" help:"PEM certificate of the cluster's own CA: turns on mutual TLS on the peer port (Raft and agent RPC); every agent presents its certificate and accepts only peers whose certificate this CA signed."`
	PeerTLSCertPath       string  `name:"peer-tls-cert-path" env:"PEER_TLS_CERT_PATH" help:"Certificate presented on the peer port when it differs from TLS_CERT_PATH (e.g. a public certificate outside, a cluster-CA one inside); must be signed by TLS_CA_PATH."`
	PeerTLSKeyPath        string  `name:"peer-tls-key-path" env:"PEER_TLS_KEY_PATH" help:"Private key of PEER_TLS_CERT_PATH."`
	ClusterSecret         string  `name:"cluster-secret" env:"CLUSTER_SECRET" help:"Shared secret every agent must prove on the peer port (challenge-response, never sent); at least 16 bytes, e.g. openssl rand -base64 32. Prefer CLUSTER_SECRET_FILE or the environment variable: a flag is visible in ps."`
	ClusterSecretFile     string  `name:"cluster-secret-file" env:"CLUSTER_SECRET_FILE" help:"File holding CLUSTER_SECRET (one trailing newline is ignored)."`
	GossipKey             string  `name:"gossip-key" env:"GOSSIP_KEY" help:"Base64 key of 16, 24 or 32 bytes that encrypts and authenticates gossip (openssl rand -base64 32); every agent needs the same key. Prefer GOSSIP_KEY_FILE or the environment variable."`
	GossipKeyFile         string  `name:"gossip-key-file" env:"GOSSIP_KEY_FILE" help:"File holding GOSSIP_KEY."`
	APIKeysFile           string  `name:"api-keys-file" env:"API_KEYS_FILE" help:"File of API keys (name:scope:topics:sha256hex[:quotas] per line; streamhouse apikey create prints one). Set: every REST and gRPC call but /health, /live, /ready (and /metrics) needs Authorization: Bearer <token>. Re-read when it changes."`
	MetricsPartitions     bool    `name:"metrics-partition-series" env:"METRICS_PARTITION_SERIES" default:"false" negatable:"" help:"Also export per-partition watermark and consumer-group series on /metrics (one series per partition and group: large with many partitions). Default: per-topic aggregates only."`
	ConsoleEnabled        bool    `name:"console" env:"CONSOLE_ENABLED" default:"true" negatable:"" help:"Serve the web console at /ui/ on HTTP_PORT (same API keys as the REST API)."`
	KeyProduceBytesPerSec float64 `name:"key-produce-bytes-per-sec" env:"KEY_PRODUCE_BYTES_PER_SEC" default:"0" help:"Per API key, on each agent: record bytes produced per second (Kafka producer_byte_rate); over it: 429 quota_exceeded / RESOURCE_EXHAUSTED. 0 = unlimited. A key's line in API_KEYS_FILE may override it."`
	KeyFetchBytesPerSec   float64 `name:"key-fetch-bytes-per-sec" env:"KEY_FETCH_BYTES_PER_SEC" default:"0" help:"Per API key, on each agent: record bytes fetched per second (Kafka consumer_byte_rate), charged after each read so the next one is throttled. 0 = unlimited."`
	KeyMutationsPerSec    float64 `name:"key-mutations-per-sec" env:"KEY_MUTATIONS_PER_SEC" default:"0" help:"Per API key, on each agent: partitions created or deleted plus consumer groups deleted per second (Kafka controller_mutation_rate). 0 = unlimited."`
	MetricsAuth           bool    `name:"metrics-auth" env:"METRICS_AUTH" default:"false" negatable:"" help:"GET /metrics needs an API key with read scope (default: open)."`
	CheckConfig           bool    `name:"check-config" help:"Check the configuration and what it points to (TLS files, API keys, Postgres, the object store, free ports), print a checklist and exit: 0 when everything is OK, 1 otherwise."`
	PprofAddr             string  `name:"pprof-addr" env:"PPROF_ADDR" help:"Serve Go profiling endpoints (/debug/pprof/, unauthenticated) on this host:port (unset: off); a loopback address unless PPROF_ALLOW_REMOTE=true."`
	PprofAllowRemote      bool    `name:"pprof-allow-remote" env:"PPROF_ALLOW_REMOTE" default:"false" negatable:"" help:"Allow PPROF_ADDR on a non-loopback address (anyone who reaches it can profile the agent and read its memory profile)."`
	PprofBlockRate        int     `name:"pprof-block-rate" env:"PPROF_BLOCK_RATE" default:"0" help:"With PPROF_ADDR: record goroutine blocking events lasting at least this many nanoseconds in /debug/pprof/block (runtime.SetBlockProfileRate; 0 = off; 10000 is a cheap start)."`
	PprofMutexFraction    int     `name:"pprof-mutex-fraction" env:"PPROF_MUTEX_FRACTION" default:"0" help:"With PPROF_ADDR: sample 1 in this many mutex contention events in /debug/pprof/mutex (runtime.SetMutexProfileFraction; 0 = off)."`
	LogLevel              string  `name:"log-level" env:"LOG_LEVEL,RUST_LOG" default:"info" help:"debug, info, warn or error (RUST_LOG-style 'streamhouse=debug' accepted)."`
	LogFormat             string  `name:"log-format" env:"LOG_FORMAT" default:"text" enum:"text,json" help:"Log format: text or json."`

	// DR restore safety (restore.go).
	RestoreAllowUnreadable bool `name:"allow-unreadable" env:"RESTORE_ALLOW_UNREADABLE" default:"false" negatable:"" help:"DR restore: restore even if some segment objects stay unreadable after retries (their offsets become gaps; the objects are kept). Without it such a restore fails and names them."`
	RestoreReadRetryMs     int  `name:"restore-read-retry-ms" env:"RESTORE_READ_RETRY_MS" default:"120000" help:"DR restore: how long reading one segment footer is retried (exponential backoff) before the object counts as unreadable (ms)."`
}

// envOf maps flag names to their environment variables, for error messages.
func envOf(parser *kong.Kong, flag string) string {
	for _, n := range parser.Model.Children {
		for _, f := range n.Flags {
			if f.Name == flag && len(f.Envs) > 0 {
				return strings.Join(f.Envs, "/")
			}
		}
	}
	return ""
}

// kongFromEnvar is how kong ends an error about a value that came from an
// environment variable: ` (from envar HTTP_PORT="abc")`.
const kongFromEnvar = " (from envar "

// explainParseError names the environment variable in kong's flag errors,
// once: a bad variable becomes `HTTP_PORT (--http-port): expected a valid
// 64 bit int but got "abc"`, a bad flag `--http-port: … (environment
// variable HTTP_PORT)`.
func explainParseError(parser *kong.Kong, err error) string {
	msg := err.Error()
	var pe *kong.ParseError
	if errors.As(err, &pe) {
		msg = pe.Error()
	}
	i := strings.Index(msg, "--")
	if i < 0 {
		return msg
	}
	name := msg[i+2:]
	if j := strings.IndexAny(name, ": ="); j >= 0 {
		name = name[:j]
	}
	if k := strings.LastIndex(msg, kongFromEnvar); k >= 0 {
		env := msg[k+len(kongFromEnvar):]
		if j := strings.IndexAny(env, "=)"); j >= 0 {
			env = env[:j]
		}
		return strings.Replace(msg[:k], "--"+name, env+" (--"+name+")", 1)
	}
	if env := envOf(parser, name); env != "" {
		return fmt.Sprintf("%s (environment variable %s)", msg, env)
	}
	return msg
}

// validate checks ranges and fills derived defaults. Errors name the
// environment variable.
func (c *agentCmd) validate() error {
	if err := c.readSecretFiles(); err != nil {
		return err
	}
	if err := c.checkValues(); err != nil {
		return err
	}
	return c.fillDefaults()
}

// checkValues checks the settings without touching anything outside the
// process. Errors name the environment variable.
func (c *agentCmd) checkValues() error {
	errs := c.rangeErrors()
	errs = append(errs, c.relationErrors()...)
	errs = append(errs, c.validateSecurity()...)
	if c.DataDir == "" {
		errs = append(errs, errors.New("DATA_DIR must not be empty"))
	}
	return errors.Join(errs...)
}

func checkPort(env string, v int) error {
	if v < 0 || v > 65535 {
		return fmt.Errorf("%s=%d: must be a port between 0 and 65535", env, v)
	}
	return nil
}

func checkPositive(env string, v int64) error    { return checkAtLeast(env, v, 1) }
func checkNonNegative(env string, v int64) error { return checkAtLeast(env, v, 0) }

// checkKafkaPartitions checks KAFKA_DEFAULT_PARTITIONS (1..fsm.MaxPartitions).
func checkKafkaPartitions(n int32) error {
	if err := fsm.ValidatePartitionCount(n); err != nil {
		return fmt.Errorf("KAFKA_DEFAULT_PARTITIONS=%d: %w", n, err)
	}
	return nil
}

// checkAtLeast checks v >= least (0 or 1).
func checkAtLeast(env string, v, least int64) error {
	switch {
	case v >= least:
		return nil
	case least == 1:
		return fmt.Errorf("%s=%d: must be greater than 0", env, v)
	}
	return fmt.Errorf("%s=%d: must not be negative", env, v)
}

// rangeErrors checks every numeric setting on its own (nil entries: fine).
func (c *agentCmd) rangeErrors() []error {
	errs := []error{
		checkPort("HTTP_PORT", c.HTTPPort), checkPort("GRPC_PORT", c.GRPCPort), checkPort("KAFKA_PORT", c.KafkaPort), checkPort("PEER_PORT", c.PeerPort), checkPort("GOSSIP_PORT", c.GossipPort),
		checkPositive("GRPC_MAX_CONCURRENT_STREAMS", int64(c.GRPCMaxStreams)),
		checkNonNegative("BOOTSTRAP_EXPECT", int64(c.BootstrapExpect)),
		checkPositive("DEAD_AGENT_TIMEOUT", int64(c.DeadAgentTimeout)),
		checkPositive("PARTITION_FAILOVER_TIMEOUT", int64(c.PartitionFailover)),
		checkNonNegative("WAL_SYNC_MS", int64(c.WALSyncMs)),
		checkPositive("WAL_SEGMENT_BYTES", c.WALSegmentBytes),
		checkNonNegative("MIN_FREE_DISK_BYTES", c.MinFreeDiskBytes),
		checkPositive("BATCH_SIZE", int64(c.BatchSize)),
		checkNonNegative("BATCH_TIMEOUT_MS", int64(c.BatchTimeoutMs)),
		checkNonNegative("PROPOSE_IN_FLIGHT", int64(c.ProposeInFlight)),
		checkPositive("SEGMENT_MAX_BYTES", c.SegmentMaxBytes),
		checkPositive("SEGMENT_MAX_AGE_MS", int64(c.SegmentMaxAgeMs)),
		checkPositive("MAX_RECORD_BYTES", int64(c.MaxRecordBytes)),
		checkNonNegative("MAX_UNFLUSHED_BYTES", c.MaxUnflushedBytes),
		checkNonNegative("MAX_TOPICS", c.MaxTopics),
		checkNonNegative("MAX_PARTITIONS", c.MaxPartitions),
		checkKafkaPartitions(c.KafkaPartitions),
		checkNonNegative("MAX_GROUPS", c.MaxGroups),
		checkNonNegative("GROUP_INITIAL_REBALANCE_DELAY_MS", int64(c.GroupDelayMs)),
		checkPositive("MAX_UNFLUSHED_RECORDS", c.MaxUnflushedRecs),
		checkNonNegative("SEGMENT_CACHE_SIZE", c.SegmentCacheSize),
		checkPositive("S3_TIMEOUT_MS", int64(c.S3TimeoutMs)),
		checkPositive("RETENTION_CHECK_MS", int64(c.RetentionCheckMs)),
		checkPositive("ORPHAN_GRACE_MS", c.OrphanGraceMs),
		checkPositive("CHECKPOINT_INTERVAL_MS", int64(c.CheckpointIntervalMs)),
		checkNonNegative("RESTORE_OFFSET_GAP", c.RestoreOffsetGap),
		checkNonNegative("RESTORE_READ_RETRY_MS", int64(c.RestoreReadRetryMs)),
	}
	for i, v := range c.quotaRates() {
		if err := transport.ValidateQuotaRate(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", quotaEnv[i], err))
		}
	}
	return errs
}

// relationErrors checks settings that depend on each other, and the
// formats of addresses and the log level.
func (c *agentCmd) relationErrors() []error {
	var errs []error
	if c.MaxUnflushedRecs > 0 && c.MaxUnflushedRecs < int64(c.BatchSize) {
		errs = append(errs, fmt.Errorf("MAX_UNFLUSHED_RECORDS=%d is below BATCH_SIZE=%d: a full batch could never be written", c.MaxUnflushedRecs, c.BatchSize))
	}
	if c.RestoreFromPostgres && c.DatabaseURL == "" {
		errs = append(errs, errors.New("RESTORE_FROM_POSTGRES=true needs DATABASE_URL"))
	}
	if (c.AWSAccessKeyID == "") != (c.AWSSecretKey == "") {
		errs = append(errs, errors.New("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together (or both unset for the default credential chain)"))
	}
	if c.S3Endpoint != "" && c.S3Bucket == "" {
		errs = append(errs, errors.New("S3_ENDPOINT is set but S3_BUCKET is not: set the bucket to use S3"))
	}
	if c.S3Endpoint != "" {
		if u, err := url.Parse(c.S3Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("S3_ENDPOINT=%q: must be an http:// or https:// URL", c.S3Endpoint))
		}
	}
	if c.MaxRecordBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("MAX_RECORD_BYTES=%d: must be at most 67108864 (64 MiB)", c.MaxRecordBytes))
	}
	if c.PeerPort == 0 {
		errs = append(errs, errors.New("PEER_PORT=0: the Raft port must be fixed so peers can reach it"))
	}
	for _, j := range c.joinAddrs() {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("JOIN=%q: %q is not host:port", c.Join, j))
		}
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// fillDefaults fills the settings derived from others.
func (c *agentCmd) fillDefaults() error {
	if c.NodeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return errors.New("NODE_ID is not set and the hostname is unavailable")
		}
		c.NodeID = h
	}
	if c.WALDir == "" {
		c.WALDir = filepath.Join(c.DataDir, "wal")
	}
	if c.ObjectStoreDir == "" {
		c.ObjectStoreDir = filepath.Join(c.DataDir, "objects")
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
		if c.BindAddr == "0.0.0.0" || c.BindAddr == "" || c.BindAddr == "::" {
			c.AdvertiseAddr = "127.0.0.1"
		}
	}
	if c.KafkaAdvertised == "" && c.KafkaPort > 0 {
		c.KafkaAdvertised = net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.KafkaPort))
	}
	return nil
}

func (c *agentCmd) joinAddrs() []string { return splitList(c.Join) }

func (c *agentCmd) batchTimeout() time.Duration {
	return time.Duration(c.BatchTimeoutMs) * time.Millisecond
}

// parseLogLevel accepts plain levels and RUST_LOG-style directives
// ("info", "streamhouse=debug,hyper=warn"): the streamhouse directive wins,
// else the last bare level.
func parseLogLevel(s string) (slog.Level, error) {
	level := slog.LevelInfo
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		target, lv, hasTarget := strings.Cut(part, "=")
		if !hasTarget {
			lv, target = target, ""
		}
		if target != "" && target != "streamhouse" && !strings.HasPrefix(target, "streamhouse") {
			continue
		}
		l, err := levelFromString(lv)
		if err != nil {
			return 0, fmt.Errorf("LOG_LEVEL/RUST_LOG=%q: %w", s, err)
		}
		if target != "" {
			return l, nil
		}
		level = l
	}
	return level, nil
}

func levelFromString(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace", "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "off":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (use debug, info, warn or error)", s)
}

func (c *agentCmd) logger() *slog.Logger {
	level, _ := parseLogLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h).With("node", c.NodeID)
}

// quotaEnv names the setting of each per-key quota default.
var quotaEnv = [...]string{transport.QuotaProduce: "KEY_PRODUCE_BYTES_PER_SEC",
	transport.QuotaFetch: "KEY_FETCH_BYTES_PER_SEC", transport.QuotaMutations: "KEY_MUTATIONS_PER_SEC"}

// quotaRates are the per-key quota defaults (0 = unlimited).
func (c *agentCmd) quotaRates() transport.QuotaRates {
	var r transport.QuotaRates
	r[transport.QuotaProduce] = c.KeyProduceBytesPerSec
	r[transport.QuotaFetch] = c.KeyFetchBytesPerSec
	r[transport.QuotaMutations] = c.KeyMutationsPerSec
	return r
}
