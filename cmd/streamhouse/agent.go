package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/streamhouse/streamhouse/cluster"
	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/partition"
	"github.com/streamhouse/streamhouse/pgsync"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/grpcapi"
	"github.com/streamhouse/streamhouse/transport/kafka"
	"github.com/streamhouse/streamhouse/wal"
)

// Run starts the agent and blocks until SIGINT/SIGTERM.
func (c *agentCmd) Run() error {
	if c.CheckConfig {
		return c.runCheckConfig(context.Background(), os.Stdout)
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("configuration error: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := startAgent(ctx, c)
	if err != nil {
		return err
	}
	<-ctx.Done()
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Close(sctx)
}

// apiKeysCheckInterval is how often the agent looks for changes to
// API_KEYS_FILE.
var apiKeysCheckInterval = 5 * time.Second

// agent is the wired set of components of one running agent. startAgent
// builds and starts them in order; every step that acquires something
// pushes its release onto closers, and Close runs them in exactly the
// reverse order.
type agent struct {
	cfg         *agentCmd
	log         *slog.Logger
	registry    *prometheus.Registry
	clock       func() time.Time
	errorsTotal *prometheus.CounterVec
	connections prometheus.Gauge
	sec         *security

	lock  *dirLock
	wal   *wal.WAL
	store *partition.Store
	fsm   *fsm.FSM
	mux   *transport.PeerMux
	// peerRoutes is the peer RPC handler (newPartitions); startHTTP adds
	// the console's peer reads to it.
	peerRoutes *http.ServeMux
	node       *cluster.Node
	part       *partition.Service
	http       *transport.HTTPServer
	grpc       *grpc.Server
	grpcLn     net.Listener
	kafka      *kafka.Server
	pprof      *http.Server
	// grpcStopping is closed at shutdown to end long-polls and streams.
	grpcStopping chan struct{}
	objects      s3seg.ObjectStore
	quotas       *transport.Quotas

	checkpoints *pgsync.CheckpointService
	keysDone    chan struct{} // closed when the API_KEYS_FILE watcher returned

	closers []closer
}

// closer releases what one start step acquired.
type closer struct {
	name string
	fn   func(ctx context.Context) error
}

// onClose registers the release of what a start step acquired; Close runs
// them last-registered first.
func (a *agent) onClose(name string, fn func(ctx context.Context) error) {
	a.closers = append(a.closers, closer{name: name, fn: fn})
}

// startAgent wires and starts every component, one named step at a time.
// Order matters: the store must be open before Raft starts, since Raft
// replays the log into the FSM which materialises batches into the store;
// the object store is open before the node starts (the Raft leader probes
// that every agent it admits shares it); the peer RPC routes are complete
// before the node starts.
func startAgent(ctx context.Context, c *agentCmd) (_ *agent, err error) {
	a := newAgent(c)
	defer func() {
		if err != nil {
			a.Close(context.Background())
		}
	}()
	for _, step := range []func(context.Context) error{
		a.loadSecurity,
		a.prepareDataDir,
		a.openStorage,
		a.startPeerMux,
		a.openObjectStore,
		a.newNode,
		a.newPartitions,
		a.startNode,
		a.startPartitions,
		a.startBackground,
		a.startHTTP,
		a.startGRPC,
		a.startKafka,
		a.startPprof,
	} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	a.logStarted()
	return a, nil
}

// newAgent creates the logger, the metrics registry and the clock.
func newAgent(c *agentCmd) *agent {
	a := &agent{cfg: c, log: c.logger(), registry: prometheus.NewRegistry()}
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.clock = agentClock(a.log)
	a.errorsTotal = transport.NewErrorsCounter(a.registry, partition.ErrorKinds...) // REST, gRPC, flusher and janitor count into it
	a.connections = transport.NewActiveConnectionsGauge(a.registry)                 // REST and gRPC count into it
	return a
}

// loadSecurity loads TLS, the cluster secret, the gossip key and API keys.
func (a *agent) loadSecurity(context.Context) error {
	sec, err := a.cfg.loadSecurity(a.log)
	if err != nil {
		return err
	}
	a.sec = sec
	a.cfg.warnInsecure(a.sec, a.log)
	warnSecretFlags(os.Args[1:], a.log)
	return nil
}

// prepareDataDir creates DATA_DIR, restores into it when asked to and it is
// empty, and locks it.
func (a *agent) prepareDataDir(ctx context.Context) error {
	c, log := a.cfg, a.log
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("DATA_DIR %s: %w", c.DataDir, err)
	}
	if c.RestoreFromPostgres {
		if hasRaftState(c.DataDir) {
			log.Info("RESTORE_FROM_POSTGRES=true but DATA_DIR already holds Raft state: starting normally (a restore runs only on an empty data dir)")
		} else {
			log.Info("RESTORE_FROM_POSTGRES=true and DATA_DIR is empty: restoring from Postgres and the bucket")
			rep, err := runRestore(ctx, c, log, nil)
			if err != nil {
				return err
			}
			_ = printRestoreReport(os.Stderr, rep, "table")
		}
	}
	lock, err := lockDataDir(c.DataDir)
	if err != nil {
		return err
	}
	a.lock = lock
	a.onClose("data dir lock", func(context.Context) error { a.lock.release(); return nil })
	return nil
}

// memWALSegmentBytes caps WAL_SEGMENT_BYTES when the WAL is kept in memory
// (WAL_ENABLED=false): flushed records are freed a whole segment at a time
// and never from the newest one, so the segment size is heap the agent
// holds beyond its unflushed records.
const memWALSegmentBytes = 8 << 20

// openStorage opens the WAL, the store over it and the state machine.
func (a *agent) openStorage(context.Context) error {
	c, log := a.cfg, a.log
	walOpts := wal.Options{Dir: c.WALDir, SegmentMaxBytes: c.WALSegmentBytes, SyncInterval: time.Duration(c.WALSyncMs) * time.Millisecond, Logger: log, Registerer: a.registry}
	if fs := unsafeWALFS(); fs != nil {
		walOpts.FS = fs
		log.Warn("STREAMHOUSE_UNSAFE_WAL_FS is set: the WAL uses a fault-injection filesystem (tests only)")
	}
	if !c.WALEnabled {
		walOpts.FS = wal.NewMemFS()
		walOpts.SegmentMaxBytes = min(walOpts.SegmentMaxBytes, memWALSegmentBytes)
		log.Info("WAL_ENABLED=false: unflushed records are kept in memory; Raft still makes them durable", "segment_bytes", walOpts.SegmentMaxBytes)
	}
	w, err := wal.Open(walOpts)
	if err != nil {
		return fmt.Errorf("open WAL in %s: %w", c.WALDir, err)
	}
	a.wal = w
	a.onClose("wal", func(context.Context) error { return a.wal.Close() })
	if a.store, err = partition.OpenStore(a.wal, log); err != nil {
		return err
	}
	a.fsm = fsm.New(a.store)
	a.fsm.SetStallPolicy(fsm.StallPolicy{Logger: log})
	return nil
}

// startPeerMux listens on PEER_PORT (Raft, forwarding, cluster RPC).
func (a *agent) startPeerMux(ctx context.Context) error {
	c := a.cfg
	a.mux = transport.NewPeerMux(transport.PeerConfig{
		BindAddr: a.peerAddr(), AdvertiseAddr: net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.PeerPort)), Logger: a.log,
		TLS: a.sec.peerTLS, ClusterSecret: a.sec.secret,
	})
	if err := a.mux.Start(ctx); err != nil {
		return fmt.Errorf("PEER_PORT %d: %w", c.PeerPort, err)
	}
	a.onClose("peer mux", func(context.Context) error { return a.mux.Close() })
	return nil
}

func (a *agent) peerAddr() string {
	return net.JoinHostPort(a.cfg.BindAddr, strconv.Itoa(a.cfg.PeerPort))
}

// newNode creates the cluster node (Raft, gossip); startNode starts it.
func (a *agent) newNode(context.Context) error {
	c := a.cfg
	a.node = cluster.New(cluster.Config{
		NodeID: c.NodeID, DataDir: c.DataDir, Mux: a.mux,
		GossipBindAddr:      net.JoinHostPort(c.BindAddr, strconv.Itoa(c.GossipPort)),
		GossipAdvertiseAddr: net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.GossipPort)),
		GossipKey:           a.sec.gossipKey,
		Join:                c.joinAddrs(), BootstrapExpect: c.BootstrapExpect,
		HTTPAddr:         net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.HTTPPort)),
		GRPCAddr:         net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.GRPCPort)),
		KafkaAddr:        c.KafkaAdvertised,
		Version:          version + " (" + shortCommit() + ")",
		DeadAgentTimeout: c.DeadAgentTimeout, PartitionFailoverTimeout: c.PartitionFailover,
		Logger: a.log, Registerer: a.registry, Clock: a.clock, Objects: a.objects,
		SerialLeaderWrite: !c.RaftParallelLeaderWrite,
	}, a.fsm)
	return nil
}

// newPartitions creates the partition service over the node and installs
// the peer RPC routes — the node's and the forwarded-produce ones — in one
// handler, before the node starts.
func (a *agent) newPartitions(context.Context) error {
	c := a.cfg
	cache := partition.NewSegmentCache(c.SegmentCacheSize, a.registry)
	segs := partition.NewSegmentStore(c.NodeID, a.objects, cache)
	// Closed after the partition service (registered before it): it stops
	// the cache's prefetches.
	a.onClose("segment store", func(context.Context) error { return segs.Close() })
	part, err := partition.New(a.partitionConfig(), partition.Deps{
		FSM: a.fsm, Store: a.store, Node: a.node, Segments: segs, Objects: a.objects,
		Forwarder:  &transport.PeerForwarder{Client: a.mux.RPCClient(), Resolve: a.node.PeerAddr},
		Registerer: a.registry, Logger: a.log, Clock: a.clock,
		Errors: func(kind string) { a.errorsTotal.WithLabelValues(kind).Inc() },
	})
	if err != nil {
		return err
	}
	a.part = part
	rpc := http.NewServeMux()
	rpc.Handle(transport.PeerProducePath, transport.ProduceRPCHandler(part.Producer()))
	rpc.Handle(transport.PeerIdempotentPath, transport.IdempotentRPCHandler(part.Producer()))
	rpc.Handle("/", a.node.RPCHandler())
	a.peerRoutes = rpc
	a.mux.HandleRPC(rpc)
	return nil
}

// partitionConfig is the partition service's part of the configuration.
func (a *agent) partitionConfig() partition.Config {
	c := a.cfg
	dirs := []string{c.DataDir}
	if c.WALEnabled && filepath.Clean(c.WALDir) != filepath.Clean(c.DataDir) {
		dirs = append(dirs, c.WALDir)
	}
	return partition.Config{
		NodeID: c.NodeID,
		Producer: partition.ProducerConfig{BatchSize: c.BatchSize, BatchTimeout: c.batchTimeout(), MaxRecordBytes: c.MaxRecordBytes,
			MaxUnflushedBytes: c.MaxUnflushedBytes, MaxUnflushedRecords: c.MaxUnflushedRecs,
			Coalescer: partition.CoalescerConfig{MaxInFlight: c.ProposeInFlight}},
		Flusher: partition.FlusherConfig{MaxBytes: c.SegmentMaxBytes, MaxAge: time.Duration(c.SegmentMaxAgeMs) * time.Millisecond,
			CommitWindow: time.Duration(c.OrphanGraceMs) * time.Millisecond},
		Janitor:   partition.JanitorConfig{Interval: time.Duration(c.RetentionCheckMs) * time.Millisecond},
		Limits:    fsm.ClusterLimits{MaxTopics: c.MaxTopics, MaxPartitions: c.MaxPartitions},
		MaxGroups: c.MaxGroups, DiskDirs: dirs, MinFreeDiskBytes: uint64(c.MinFreeDiskBytes),
		MetricsPartitions: c.MetricsPartitions,
		Coordinator:       partition.CoordinatorConfig{InitialRebalanceDelay: c.groupDelay()},
	}
}

// groupDelay is GROUP_INITIAL_REBALANCE_DELAY_MS (0: none, which the
// coordinator spells as a negative delay).
func (c *agentCmd) groupDelay() time.Duration {
	if c.GroupDelayMs == 0 {
		return -1
	}
	return time.Duration(c.GroupDelayMs) * time.Millisecond
}

// startNode starts Raft and gossip (and joins or bootstraps).
func (a *agent) startNode(ctx context.Context) error {
	// Close is registered first: a Start that fails half way is undone by it.
	a.onClose("cluster node", func(context.Context) error { return a.node.Close() })
	return a.node.Start(ctx)
}

// startPartitions starts the partition service's background work.
func (a *agent) startPartitions(ctx context.Context) error {
	a.part.Start(ctx)
	// Registered after the node's Close, so it runs before it: nothing
	// proposes to a closed node. (Between New and here the service has
	// started nothing: a failed start leaves nothing to stop.)
	a.onClose("partitions", func(context.Context) error { a.part.Close(); return nil })
	return nil
}

// startBackground starts the agent's own loops — Postgres checkpoints and
// the API_KEYS_FILE watcher — on a context that Close cancels.
func (a *agent) startBackground(context.Context) error {
	c, log := a.cfg, a.log
	bg, cancel := context.WithCancel(context.Background())
	a.onClose("background", func(context.Context) error {
		cancel()
		a.waitBackground()
		return nil
	})
	if err := a.startCheckpoints(bg); err != nil {
		return err
	}
	// Registered without a keys file too (at 0), so dashboards and alerts
	// see the series from the start.
	keyMetrics := transport.NewAPIKeyMetrics(a.registry)
	quotas := a.startQuotas()
	a.quotas = quotas
	if a.sec.auth != nil {
		a.keysDone = make(chan struct{})
		go func() {
			defer close(a.keysDone)
			transport.WatchAPIKeys(bg, transport.APIKeysWatch{Path: c.APIKeysFile, Every: apiKeysCheckInterval,
				Auth: a.sec.auth, Quotas: quotas, Metrics: keyMetrics, Logger: log})
		}()
	}
	return nil
}

// waitBackground waits for the loops startBackground started.
func (a *agent) waitBackground() {
	if a.keysDone != nil {
		<-a.keysDone
	}
	if a.checkpoints != nil {
		a.checkpoints.Close()
	}
}

// startHTTP serves the public REST API on HTTP_PORT.
func (a *agent) startHTTP(ctx context.Context) error {
	c, part := a.cfg, a.part
	a.http = transport.NewHTTPServer(transport.HTTPConfig{
		Addr: net.JoinHostPort(c.BindAddr, strconv.Itoa(c.HTTPPort)), MaxRecordBytes: c.MaxRecordBytes,
		Gatherer: a.registry, Registerer: a.registry, Errors: a.errorsTotal, Connections: a.connections, Logger: a.log,
		Cluster: a.node, Groups: part.Groups(), Coordinator: part.Coordinator(), Offsets: part.Fetcher(), TLSConfig: a.sec.publicTLS, Auth: a.sec.auth,
		Quotas: a.quotas, Console: a.consoleHandler(), Durability: consoleDurability{part}, LocalHealth: agentHealth{a},
		PeerRPC: a.mux.RPCClient(),
	}, part.Admin(), part.Producer(), part.Fetcher(), part.Readiness())
	// Other agents' console reads of this one, over the peer channel.
	a.peerRoutes.Handle(transport.PeerReadPathPrefix, a.http.PeerReadHandler())
	if err := a.http.Start(ctx); err != nil {
		return fmt.Errorf("HTTP_PORT %d: %w", c.HTTPPort, err)
	}
	a.onClose("http", a.http.Shutdown)
	return nil
}

func (a *agent) logStarted() {
	c := a.cfg
	a.log.Info("agent started", "http", a.http.Addr(), "grpc", a.grpcAddr(), "peer", a.peerAddr(), "data_dir", c.DataDir, "wal_enabled", c.WALEnabled,
		"tls", a.sec.publicTLS != nil, "peer_mtls", a.sec.peerTLS != nil, "cluster_secret", a.sec.secret != nil,
		"gossip_encrypted", a.sec.gossipKey != nil, "api_keys", a.sec.auth != nil)
}

// startCheckpoints starts the checkpoint service, which only writes while
// this agent is the Raft leader. A malformed DATABASE_URL is a
// configuration error; Postgres being down (at startup or later) is not:
// the agent serves without it and connects (running the migrations) as
// soon as it can.
func (a *agent) startCheckpoints(bg context.Context) error {
	c := a.cfg
	if c.DatabaseURL == "" {
		a.log.Info("DATABASE_URL is not set: Postgres checkpoints disabled (no disaster recovery from Postgres)")
		return nil
	}
	cp, err := pgsync.NewCheckpointService(pgsync.CheckpointServiceConfig{
		DatabaseURL: c.DatabaseURL, Source: checkpointSource{a}, ClusterID: a.node.ClusterID, NodeID: c.NodeID,
		Interval: time.Duration(c.CheckpointIntervalMs) * time.Millisecond, Logger: a.log, Registerer: a.registry,
	})
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	a.checkpoints = cp
	cp.Start(bg)
	return nil
}

// checkpointSource hands the checkpointer the committed state while this
// agent is the Raft leader.
type checkpointSource struct{ a *agent }

func (s checkpointSource) CheckpointImage() (*fsm.Image, bool) {
	if !s.a.node.IsLeader() {
		return nil, false
	}
	img := s.a.fsm.Image()
	img.RaftTerm = s.a.node.Status().Term // Status is cheap; ClusterStatus also walks gossip members
	return img, true
}

// startQuotas builds the per-key quotas (KEY_*_PER_SEC defaults, overridden
// per key in API_KEYS_FILE) over the keys in force. Their metric is
// registered even without keys (at 0); without keys nothing is throttled.
func (a *agent) startQuotas() *transport.Quotas {
	rates := a.cfg.quotaRates()
	q := transport.NewQuotas(rates, a.registry, nil)
	if a.sec.auth == nil {
		if rates != (transport.QuotaRates{}) {
			a.log.Warn("KEY_*_PER_SEC quotas are set but API_KEYS_FILE is not: quotas apply per API key, so nothing is throttled")
		}
		return q
	}
	q.SetKeys(a.sec.auth.Keys())
	return q
}

// startPprof serves net/http/pprof on PPROF_ADDR when set (validate keeps
// it on loopback unless PPROF_ALLOW_REMOTE). It does not serve
// /debug/pprof/cmdline: the command line may hold a secret.
func (a *agent) startPprof(context.Context) error {
	if a.cfg.PprofAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.PprofAddr)
	if err != nil {
		return fmt.Errorf("PPROF_ADDR %s: %w", a.cfg.PprofAddr, err)
	}
	// Off unless asked for: the block profile costs on every blocking event.
	if a.cfg.PprofBlockRate > 0 {
		runtime.SetBlockProfileRate(a.cfg.PprofBlockRate)
	}
	if a.cfg.PprofMutexFraction > 0 {
		runtime.SetMutexProfileFraction(a.cfg.PprofMutexFraction)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.pprof.Serve(ln)
	}()
	a.onClose("pprof", func(context.Context) error {
		err := a.pprof.Close()
		<-served
		return err
	})
	a.log.Warn("pprof listening without authentication: anyone who reaches it can profile this agent and read its memory profile", "addr", ln.Addr().String())
	return nil
}

// startGRPC serves the public gRPC API on GRPC_PORT.
func (a *agent) startGRPC(context.Context) error {
	c, part := a.cfg, a.part
	ln, err := net.Listen("tcp", net.JoinHostPort(c.BindAddr, strconv.Itoa(c.GRPCPort)))
	if err != nil {
		return fmt.Errorf("GRPC_PORT %d: %w", c.GRPCPort, err)
	}
	a.grpcLn = ln
	a.grpcStopping = make(chan struct{})
	var opts []grpc.ServerOption
	if a.sec.publicTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(a.sec.publicTLS)))
	}
	a.grpc = grpcapi.NewServer(grpcapi.Config{
		Topics: part.Admin(), Producer: part.Producer(), Idempotent: part.Producer(), Fetcher: part.Fetcher(), Groups: part.Groups(), Coordinator: part.Coordinator(), Offsets: part.Fetcher(),
		Cluster: a.node, Readiness: part.Readiness(), Health: agentHealth{a}, Logger: a.log, Registerer: a.registry, MaxRecordBytes: c.MaxRecordBytes,
		Errors: a.errorsTotal, Connections: a.connections,
		Stopping: a.grpcStopping, Auth: a.sec.auth, Quotas: a.quotas, MaxConcurrentStreams: c.GRPCMaxStreams,
	}, opts...)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.grpc.Serve(ln)
	}()
	a.onClose("grpc", func(ctx context.Context) error {
		a.stopGRPC(ctx)
		<-served
		return nil
	})
	return nil
}

// stopGRPC ends long-polls and streams, then lets calls in progress finish
// for up to 5 s (or until ctx ends) before closing the connections.
func (a *agent) stopGRPC(ctx context.Context) {
	close(a.grpcStopping)
	stopped := make(chan struct{})
	go func() { a.grpc.GracefulStop(); close(stopped) }()
	grace := time.NewTimer(5 * time.Second)
	defer grace.Stop()
	select {
	case <-stopped:
		return
	case <-grace.C:
		a.grpc.Stop() // ends long-lived Subscribe streams
	case <-ctx.Done():
		a.grpc.Stop()
	}
	<-stopped
}

func (a *agent) grpcAddr() string {
	if a.grpcLn == nil {
		return ""
	}
	return a.grpcLn.Addr().String()
}

// openObjectStore opens the object store (see agentCmd.openObjectStore).
func (a *agent) openObjectStore(ctx context.Context) (err error) {
	a.objects, err = a.cfg.openObjectStore(ctx, a.registry, a.log)
	return err
}

// openObjectStore opens S3 when S3_BUCKET is set, else the local-directory
// store under DATA_DIR/objects. S3 is not contacted here: an unreachable
// store or a missing bucket is reported by /ready and the logs, and produce
// keeps working (records stay in the WAL) until the backlog bound.
func (c *agentCmd) openObjectStore(ctx context.Context, reg prometheus.Registerer, log *slog.Logger) (s3seg.ObjectStore, error) {
	return s3seg.OpenStore(ctx, s3seg.StoreConfig{
		S3: s3seg.S3Config{
			Endpoint: c.S3Endpoint, Bucket: c.S3Bucket, Region: c.S3Region, PathStyle: c.S3PathStyle,
			AccessKeyID: c.AWSAccessKeyID, SecretAccessKey: c.AWSSecretKey,
			RequestTimeout: time.Duration(c.S3TimeoutMs) * time.Millisecond,
		},
		Dir:        c.ObjectStoreDir,
		PrivateDir: (c.BootstrapExpect > 1 || c.Join != "") && c.ObjectStoreDir == filepath.Join(c.DataDir, "objects"),
	}, reg, log)
}

// Close stops the agent: the steps of startAgent are undone in exactly the
// reverse order (stop taking requests, stop the background loops, the
// partition service, Raft, the peer listener, close the WAL, unlock
// DATA_DIR). It is idempotent.
func (a *agent) Close(ctx context.Context) error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i].fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", a.closers[i].name, err))
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}
