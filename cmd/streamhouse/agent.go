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

// agent is the wired set of components of one running agent.
type agent struct {
	cfg      *agentCmd
	log      *slog.Logger
	registry *prometheus.Registry

	wal      *wal.WAL
	store    *partition.Store
	fsm      *fsm.FSM
	node     *cluster.Node
	mux      *transport.PeerMux
	producer *partition.Producer
	flusher  *partition.Flusher
	janitor  *partition.Janitor
	ready    *readiness
	disk     *partition.DiskGuard
	reclaim  *reclaimer
	http     *transport.HTTPServer
	grpc     *grpc.Server
	grpcLn   net.Listener
	pprof    *http.Server
	// grpcStopping is closed at shutdown to end long-polls and streams.
	grpcStopping chan struct{}
	objects      s3seg.ObjectStore

	checkpointsDone chan struct{}

	sec      *security
	keysDone chan struct{} // closed when the API_KEYS_FILE watcher returned

	lock   *dirLock
	cancel context.CancelFunc
	pruned chan struct{}
}

// startCheckpoints starts the checkpoint loop, which only writes while this
// agent is the Raft leader. A malformed DATABASE_URL is a configuration
// error; Postgres being down (at startup or later) is not: the agent serves
// without it and connects (running the migrations) as soon as it can.
func (a *agent) startCheckpoints(bg context.Context) error {
	c := a.cfg
	if c.DatabaseURL == "" {
		a.log.Info("DATABASE_URL is not set: Postgres checkpoints disabled (no disaster recovery from Postgres)")
		return nil
	}
	if err := pgsync.ValidateURL(c.DatabaseURL); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	connected := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_checkpoint_db_connected",
		Help: "1 once this agent has connected to Postgres and applied the schema migrations; 0 while it cannot.",
	})
	a.registry.MustRegister(connected)
	a.checkpointsDone = make(chan struct{})
	go func() {
		defer close(a.checkpointsDone)
		db := a.connectPostgres(bg)
		if db == nil {
			return
		}
		defer db.Close()
		connected.Set(1)
		// The cluster ID exists once the Raft group is bootstrapped or this
		// agent was admitted; checkpoints are tagged with it.
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for a.node.ClusterID() == "" {
			select {
			case <-bg.Done():
				return
			case <-tick.C:
			}
		}
		cp, err := pgsync.NewCheckpointer(pgsync.CheckpointerConfig{
			DB: db, Source: checkpointSource{a}, Interval: time.Duration(c.CheckpointIntervalMs) * time.Millisecond,
			ClusterID: a.node.ClusterID(), NodeID: c.NodeID, Logger: a.log, Registerer: a.registry,
		})
		if err != nil {
			a.log.Error("Postgres checkpoints disabled", "err", err)
			return
		}
		cp.Run(bg)
	}()
	return nil
}

// connectPostgres opens the database, retrying with capped exponential
// backoff until it succeeds or bg ends (nil). A schema newer than this
// binary stops the retries: it needs an operator, not time.
func (a *agent) connectPostgres(bg context.Context) *pgsync.DB {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		db, err := pgsync.Open(ctx, a.cfg.DatabaseURL, a.log)
		cancel()
		if err == nil {
			if attempt > 1 {
				a.log.Info("connected to Postgres; checkpoints start", "attempts", attempt)
			}
			return db
		}
		if bg.Err() != nil {
			return nil
		}
		if errors.Is(err, pgsync.ErrSchemaTooNew) {
			a.log.Error("Postgres checkpoints disabled", "err", err)
			return nil
		}
		a.log.Warn("cannot reach Postgres; serving without checkpoints and retrying", "err", err, "retry_in", wait)
		select {
		case <-bg.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
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

// startAgent wires and starts every component. Order matters: the store
// must be open before Raft starts, since Raft replays the log into the FSM
// which materialises batches into the store.
func startAgent(ctx context.Context, c *agentCmd) (_ *agent, err error) {
	log := c.logger()
	a := &agent{cfg: c, log: log, registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			a.Close(context.Background())
		}
	}()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	clock := agentClock(log)
	clockMs := func() int64 { return clock().UnixMilli() }
	errorsTotal := transport.NewErrorsCounter(a.registry)          // REST, gRPC, flusher and janitor count into it
	connections := transport.NewActiveConnectionsGauge(a.registry) // REST and gRPC count into it
	if a.sec, err = c.loadSecurity(log); err != nil {
		return nil, err
	}
	c.warnInsecure(a.sec, log)
	warnSecretFlags(os.Args[1:], log)

	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("DATA_DIR %s: %w", c.DataDir, err)
	}
	if c.RestoreFromPostgres {
		if hasRaftState(c.DataDir) {
			log.Info("RESTORE_FROM_POSTGRES=true but DATA_DIR already holds Raft state: starting normally (a restore runs only on an empty data dir)")
		} else {
			log.Info("RESTORE_FROM_POSTGRES=true and DATA_DIR is empty: restoring from Postgres and the bucket")
			rep, err := runRestore(ctx, c, log, nil)
			if err != nil {
				return nil, err
			}
			_ = printRestoreReport(os.Stderr, rep, "table")
		}
	}
	if a.lock, err = lockDataDir(c.DataDir); err != nil {
		return nil, err
	}
	walOpts := wal.Options{Dir: c.WALDir, SegmentMaxBytes: c.WALSegmentBytes, SyncInterval: time.Duration(c.WALSyncMs) * time.Millisecond, Logger: log, Registerer: a.registry}
	if fs := unsafeWALFS(); fs != nil {
		walOpts.FS = fs
		log.Warn("STREAMHOUSE_UNSAFE_WAL_FS is set: the WAL uses a fault-injection filesystem (tests only)")
	}
	if !c.WALEnabled {
		walOpts.FS = wal.NewMemFS()
		log.Info("WAL_ENABLED=false: unflushed records are kept in memory; Raft still makes them durable")
	}
	a.wal, err = wal.Open(walOpts)
	if err != nil {
		return nil, fmt.Errorf("open WAL in %s: %w", c.WALDir, err)
	}
	a.store, err = partition.OpenStore(a.wal, log)
	if err != nil {
		return nil, err
	}
	a.fsm = fsm.New(a.store)
	a.fsm.SetStallPolicy(fsm.StallPolicy{Logger: log})

	peerAddr := net.JoinHostPort(c.BindAddr, strconv.Itoa(c.PeerPort))
	a.mux = transport.NewPeerMux(transport.PeerConfig{
		BindAddr: peerAddr, AdvertiseAddr: net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.PeerPort)), Logger: log,
		TLS: a.sec.peerTLS, ClusterSecret: a.sec.secret,
	})
	if err := a.mux.Start(ctx); err != nil {
		return nil, fmt.Errorf("PEER_PORT %d: %w", c.PeerPort, err)
	}
	// The object store is open before the node starts: the Raft leader
	// probes that every agent it admits shares it.
	if err := a.openObjectStore(ctx); err != nil {
		return nil, err
	}
	a.node = cluster.New(cluster.Config{
		NodeID: c.NodeID, DataDir: c.DataDir, Mux: a.mux,
		GossipBindAddr:      net.JoinHostPort(c.BindAddr, strconv.Itoa(c.GossipPort)),
		GossipAdvertiseAddr: net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.GossipPort)),
		GossipKey:           a.sec.gossipKey,
		Join:                c.joinAddrs(), BootstrapExpect: c.BootstrapExpect,
		HTTPAddr:         net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.HTTPPort)),
		GRPCAddr:         net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.GRPCPort)),
		DeadAgentTimeout: c.DeadAgentTimeout, PartitionFailoverTimeout: c.PartitionFailover,
		Logger: log, Registerer: a.registry, Clock: clock, Objects: a.objects,
	}, a.fsm)
	a.mux.HandleRPC(a.node.RPCHandler()) // until the produce route is added below
	if err := a.node.Start(ctx); err != nil {
		return nil, err
	}

	cache := s3seg.NewCache(c.SegmentCacheSize, a.registry)
	segs := newSegmentStore(c.NodeID, a.objects, cache)

	a.producer = partition.NewProducer(partition.ProducerConfig{
		NodeID: c.NodeID, BatchSize: c.BatchSize, BatchTimeout: c.batchTimeout(),
		MaxRecordBytes: c.MaxRecordBytes, MaxUnflushedBytes: c.MaxUnflushedBytes, MaxUnflushedRecords: c.MaxUnflushedRecs, Logger: log, Clock: clockMs,
	}, a.fsm, a.node, a.store, partition.NewProducerMetrics(a.registry))
	a.startDiskGuard(context.Background())
	a.producer.SetForwarder(&transport.PeerForwarder{Client: a.mux.RPCClient(), Resolve: a.node.PeerAddr})
	rpc := http.NewServeMux()
	rpc.Handle(transport.PeerProducePath, transport.ProduceRPCHandler(a.producer))
	rpc.Handle(transport.PeerIdempotentPath, transport.IdempotentRPCHandler(a.producer))
	rpc.Handle("/", a.node.RPCHandler())
	a.mux.HandleRPC(rpc)
	fetcher := partition.NewFetcher(partition.FetcherConfig{}, a.fsm, a.store, segs, partition.NewFetcherMetrics(a.registry))
	admin := partition.NewAdmin(a.fsm, a.node, a.node)
	admin.SetLimits(fsm.ClusterLimits{MaxTopics: c.MaxTopics, MaxPartitions: c.MaxPartitions})
	groups := partition.NewGroups(a.fsm, a.node, fetcher)
	groups.SetMaxGroups(c.MaxGroups)
	// Answers that depend on this agent being up to date ("topic not
	// found", "offset out of range", a group's committed offsets) are
	// confirmed against the Raft leader's commit index first.
	a.producer.SetSyncer(a.node)
	fetcher.SetSyncer(a.node)
	groups.SetSyncer(a.node)
	admin.SetSyncer(a.node)
	a.flusher = partition.NewFlusher(partition.FlusherConfig{
		NodeID: c.NodeID, MaxBytes: c.SegmentMaxBytes, MaxAge: time.Duration(c.SegmentMaxAgeMs) * time.Millisecond, Logger: log,
		CommitWindow: time.Duration(c.OrphanGraceMs) * time.Millisecond, Clock: clockMs,
	}, a.fsm, a.store, segs, a.node, partition.NewFlusherMetrics(a.registry), func(kind string) { errorsTotal.WithLabelValues(kind).Inc() })
	registerStoreMetrics(a.registry, a.store)
	a.registry.MustRegister(newStateCollector(a.fsm, c.MetricsPartitions))
	a.janitor = partition.NewJanitor(partition.JanitorConfig{
		Interval: time.Duration(c.RetentionCheckMs) * time.Millisecond, Logger: log,
	}, a.fsm, segs, a.node, a.node, partition.NewJanitorMetrics(a.registry), func(kind string) { errorsTotal.WithLabelValues(kind).Inc() })
	a.ready = &readiness{node: a.node, objects: a.objects, store: a.store, maxUnflushed: c.MaxUnflushedBytes, disk: a.disk, log: log}
	a.ready.start(5 * time.Second)

	bg, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.pruned = make(chan struct{})
	go func() {
		defer close(a.pruned)
		partition.RunPruner(bg, a.fsm, a.store, log)
	}()
	a.producer.Start(bg)
	a.flusher.Start(bg)
	a.janitor.Start(bg)
	if err := a.startCheckpoints(bg); err != nil {
		return nil, err
	}
	// Registered without a keys file too (at 0), so dashboards and alerts
	// see the series from the start.
	keyMetrics := transport.NewAPIKeyMetrics(a.registry)
	quotas := a.startQuotas()
	if a.sec.auth != nil {
		a.keysDone = make(chan struct{})
		go func() {
			defer close(a.keysDone)
			transport.WatchAPIKeys(bg, transport.APIKeysWatch{Path: c.APIKeysFile, Every: apiKeysCheckInterval,
				Auth: a.sec.auth, Quotas: quotas, Metrics: keyMetrics, Logger: log})
		}()
	}

	a.http = transport.NewHTTPServer(transport.HTTPConfig{
		Addr: net.JoinHostPort(c.BindAddr, strconv.Itoa(c.HTTPPort)), MaxRecordBytes: c.MaxRecordBytes,
		Gatherer: a.registry, Registerer: a.registry, Errors: errorsTotal, Connections: connections, Logger: log,
		Cluster: a.node, Groups: groups, TLSConfig: a.sec.publicTLS, Auth: a.sec.auth,
		Quotas: quotas,
	}, admin, a.producer, fetcher, a.ready)
	if err := a.http.Start(ctx); err != nil {
		return nil, fmt.Errorf("HTTP_PORT %d: %w", c.HTTPPort, err)
	}
	if err := a.startGRPC(admin, fetcher, groups, quotas, errorsTotal, connections); err != nil {
		return nil, err
	}
	if err := a.startPprof(); err != nil {
		return nil, err
	}
	log.Info("agent started", "http", a.http.Addr(), "grpc", a.grpcAddr(), "peer", peerAddr, "data_dir", c.DataDir, "wal_enabled", c.WALEnabled,
		"tls", a.sec.publicTLS != nil, "peer_mtls", a.sec.peerTLS != nil, "cluster_secret", a.sec.secret != nil,
		"gossip_encrypted", a.sec.gossipKey != nil, "api_keys", a.sec.auth != nil)
	return a, nil
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
func (a *agent) startPprof() error {
	if a.cfg.PprofAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.PprofAddr)
	if err != nil {
		return fmt.Errorf("PPROF_ADDR %s: %w", a.cfg.PprofAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = a.pprof.Serve(ln) }()
	a.log.Warn("pprof listening without authentication: anyone who reaches it can profile this agent and read its memory profile", "addr", ln.Addr().String())
	return nil
}

// startGRPC serves the public gRPC API on GRPC_PORT.
func (a *agent) startGRPC(admin *partition.Admin, fetcher *partition.Fetcher, groups *partition.Groups, quotas *transport.Quotas,
	errorsTotal *prometheus.CounterVec, connections prometheus.Gauge) error {
	c := a.cfg
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
		Topics: admin, Producer: a.producer, Idempotent: a.producer, Fetcher: fetcher, Groups: groups,
		Cluster: a.node, Readiness: a.ready, Logger: a.log, Registerer: a.registry, Errors: errorsTotal, Connections: connections,
		MaxRecordBytes: c.MaxRecordBytes, Stopping: a.grpcStopping, Auth: a.sec.auth, Quotas: quotas, MaxConcurrentStreams: c.GRPCMaxStreams,
	}, opts...)
	go func() { _ = a.grpc.Serve(ln) }()
	return nil
}

func (a *agent) grpcAddr() string {
	if a.grpcLn == nil {
		return ""
	}
	return a.grpcLn.Addr().String()
}

// openObjectStore opens S3 when S3_BUCKET is set, else the local-directory
// store under DATA_DIR/objects. S3 is not contacted here: an unreachable
// store or a missing bucket is reported by /ready and the logs, and produce
// keeps working (records stay in the WAL) until the backlog bound.
func (a *agent) openObjectStore(ctx context.Context) error {
	c := a.cfg
	if c.S3Bucket == "" {
		local, err := s3seg.NewLocalStore(c.ObjectStoreDir)
		if err != nil {
			return fmt.Errorf("local object store (OBJECT_STORE_DIR=%s): %w", c.ObjectStoreDir, err)
		}
		if (c.BootstrapExpect > 1 || c.Join != "") && c.ObjectStoreDir == filepath.Join(c.DataDir, "objects") {
			a.log.Warn("this agent is part of a cluster but its object store is a private directory: other agents cannot read the segments it flushes; set S3_BUCKET (or OBJECT_STORE_DIR on shared storage)")
		}
		a.objects = s3seg.Instrumented(local, a.registry, "local")
		a.log.Info("object store: local directory (set S3_BUCKET to use S3)", "dir", local.Dir())
		return nil
	}
	s3, err := s3seg.NewS3Store(ctx, s3seg.S3Config{
		Endpoint: c.S3Endpoint, Bucket: c.S3Bucket, Region: c.S3Region, PathStyle: c.S3PathStyle,
		AccessKeyID: c.AWSAccessKeyID, SecretAccessKey: c.AWSSecretKey,
		RequestTimeout: time.Duration(c.S3TimeoutMs) * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("S3 object store (S3_BUCKET=%s): %w", c.S3Bucket, err)
	}
	a.objects = s3seg.Instrumented(s3, a.registry, "s3")
	a.log.Info("object store: S3", "bucket", c.S3Bucket, "endpoint", c.S3Endpoint, "region", c.S3Region, "path_style", c.S3PathStyle)
	return nil
}

func registerStoreMetrics(reg prometheus.Registerer, s *partition.Store) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamhouse_unflushed_bytes", Help: "Bytes of committed records held locally and not yet flushed to a segment.",
	}, func() float64 { return float64(s.Bytes()) }))
}

// Close stops the agent in dependency order: stop taking requests, stop
// producing and flushing, stop Raft, close the WAL.
func (a *agent) Close(ctx context.Context) error {
	var errs []error
	if a.http != nil {
		errs = append(errs, a.http.Shutdown(ctx))
	}
	if a.grpc != nil {
		close(a.grpcStopping)
		stopped := make(chan struct{})
		go func() { a.grpc.GracefulStop(); close(stopped) }()
		grace := time.NewTimer(5 * time.Second)
		select {
		case <-stopped:
		case <-grace.C:
			a.grpc.Stop() // ends long-lived Subscribe streams
		case <-ctx.Done():
			a.grpc.Stop()
		}
		grace.Stop()
	}
	if a.pprof != nil {
		_ = a.pprof.Close()
	}
	if a.producer != nil {
		a.producer.Close()
	}
	if a.flusher != nil {
		a.flusher.Close()
	}
	if a.janitor != nil {
		a.janitor.Close()
	}
	if a.ready != nil {
		a.ready.stop()
	}
	a.stopDiskGuard()
	if a.cancel != nil {
		a.cancel()
		<-a.pruned
	}
	if a.keysDone != nil {
		<-a.keysDone
	}
	if a.checkpointsDone != nil {
		<-a.checkpointsDone
	}

	if a.node != nil {
		errs = append(errs, a.node.Close())
	}
	a.stopReclaim()
	if a.mux != nil {
		errs = append(errs, a.mux.Close())
	}
	if a.wal != nil {
		errs = append(errs, a.wal.Close())
	}
	a.lock.release()
	return errors.Join(errs...)
}
