package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// Config holds the partition service's settings.
type Config struct {
	// NodeID is this agent's ID (partition leadership is by node ID).
	NodeID   string
	Producer ProducerConfig
	Fetcher  FetcherConfig
	Flusher  FlusherConfig
	Janitor  JanitorConfig
	// Limits are the cluster-wide totals topic creation carries for the FSM
	// to enforce (MAX_TOPICS, MAX_PARTITIONS; zero: unlimited).
	Limits fsm.ClusterLimits
	// MaxGroups bounds the consumer groups in the cluster (0: no bound).
	MaxGroups int64
	// Coordinator tunes the consumer-group coordinator.
	Coordinator CoordinatorConfig
	// DiskDirs are the directories whose filesystems hold the agent's state
	// (DATA_DIR, WAL_DIR); below MinFreeDiskBytes free on the least free of
	// them produce is refused (0 = never).
	DiskDirs         []string
	MinFreeDiskBytes uint64
	// ReadinessInterval is how often the object store is checked for
	// /ready (default 5 s).
	ReadinessInterval time.Duration
	// MetricsPartitions adds per-partition series to the state metrics
	// (METRICS_PARTITION_SERIES).
	MetricsPartitions bool
}

// Deps are what the service works with; it owns none of them (the caller
// opens and closes them around the service's Start and Close).
type Deps struct {
	FSM   State  // the replicated state (*fsm.FSM)
	Store *Store // the fsm.Sink the FSM materialises batches into
	Node  Node   // this agent's Raft member (cluster.Node)
	// Segments writes and reads segment objects.
	Segments SegmentStore
	// Objects is checked for /ready; nil: not checked.
	Objects ObjectChecker
	// Forwarder sends produce requests to the partitions' leaders; nil:
	// partitions led elsewhere are refused with fsm.ErrNotLeader.
	Forwarder Forwarder
	// Registerer receives the service's collectors; nil: not registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Clock is this agent's clock (record timestamps, segment age); nil:
	// time.Now.
	Clock func() time.Time
	// Errors counts a background failure by kind (one of ErrorKinds);
	// nil: not counted.
	Errors func(kind string)
}

// Kinds of background failure reported through Deps.Errors.
const (
	ErrorSegmentUpload = "segment_upload" // a flush failed (retried)
	ErrorJanitor       = "janitor"        // a retention/GC round failed (retried)
)

// ErrorKinds lists every kind reported through Deps.Errors, so the
// counter behind it can export each at 0 from the start.
var ErrorKinds = []string{ErrorSegmentUpload, ErrorJanitor}

func (d Deps) withDefaults() Deps {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Errors == nil {
		d.Errors = func(string) {}
	}
	return d
}

// Service is one agent's partition layer: the produce path (producer,
// per-partition batchers), the read path (fetcher), topics and consumer
// groups, and the background work — the flusher, the janitor, the WAL
// pruner, the disk guard and the object store check behind /ready. Every
// goroutine it starts (loops, batchers, proposals, forwards) belongs to one
// group that Close cancels and waits for.
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	tasks   *group
	started sync.Once

	producer *Producer
	fetcher  *Fetcher
	admin    *Admin
	groups   *Groups
	coord    *Coordinator
	flusher  *Flusher
	janitor  *Janitor
	disk     *DiskGuard
	ready    *Readiness
}

// New wires the service and registers its metrics; it starts nothing.
func New(cfg Config, d Deps) (*Service, error) {
	if d.FSM == nil || d.Store == nil || d.Node == nil || d.Segments == nil {
		return nil, errors.New("partition: New needs Deps.FSM, Store, Node and Segments")
	}
	d = d.withDefaults()
	if cfg.ReadinessInterval <= 0 {
		cfg.ReadinessInterval = 5 * time.Second
	}
	s := &Service{cfg: cfg, deps: d, log: d.Logger, tasks: newGroup()}
	s.disk = newDiskGuard(DiskGuardConfig{Dirs: cfg.DiskDirs, MinFree: cfg.MinFreeDiskBytes, Logger: d.Logger,
		OnChange: s.diskChanged}, d.Registerer)
	s.producer = newProducer(cfg, d, s.tasks, s.disk, stallAdmission{d.Node})
	s.fetcher = newFetcher(cfg, d)
	s.admin = newAdmin(cfg, d)
	s.groups = newGroups(cfg, d, s.fetcher)
	s.coord = newCoordinator(cfg, d, s.groups)
	s.flusher = newFlusher(cfg, d)
	s.janitor = newJanitor(cfg, d)
	s.ready = &Readiness{node: d.Node, objects: d.Objects, store: d.Store, disk: s.disk,
		maxUnflushed: cfg.Producer.MaxUnflushedBytes, log: d.Logger}
	if d.Registerer != nil {
		s.registerMetrics(d.Registerer)
	}
	return s, nil
}

// registerMetrics registers the collectors over the state and the store.
func (s *Service) registerMetrics(reg prometheus.Registerer) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamhouse_unflushed_bytes", Help: "Bytes of committed records held locally and not yet flushed to a segment.",
	}, func() float64 { return float64(s.deps.Store.Bytes()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamhouse_apply_stalled",
		Help: "1 while this agent cannot store a committed batch locally (disk full): applying waits and retries.",
	}, func() float64 {
		_, stalled := s.deps.FSM.Stalled()
		return boolGauge(stalled)
	}))
	reg.MustRegister(newStateCollector(s.deps.FSM, s.cfg.MetricsPartitions))
}

// diskChanged runs on the disk guard's goroutine when free space crosses
// the floor: the node hands Raft leadership away and compacts the Raft log
// while low, and a stalled apply need not wait out its backoff once space
// is back.
func (s *Service) diskChanged(low bool) {
	if !low {
		s.deps.FSM.RetryNow()
	}
	s.deps.Node.ReclaimDisk(low)
}

// Start measures the disk and checks the object store once (bounded by
// ctx), then starts the background goroutines: the disk guard, the object
// store check, the WAL pruner, the batcher sweeper, the proposal
// coalescer, the flusher and the janitor. They run until Close, whatever becomes of ctx. Only the first
// call does anything.
func (s *Service) Start(ctx context.Context) {
	s.started.Do(func() { s.start(ctx) })
}

func (s *Service) start(ctx context.Context) {
	s.disk.Check()
	s.ready.check(ctx)
	s.tasks.Every("diskguard", s.disk.cfg.Interval, func(context.Context) { s.disk.Check() })
	s.tasks.Every("readiness", s.cfg.ReadinessInterval, s.ready.check)
	s.tasks.Go("pruner", func(ctx context.Context) { runPruner(ctx, s.deps.FSM, s.deps.Store, s.log) })
	s.tasks.Go("sweeper", s.producer.sweepLoop)
	_ = s.producer.coalescer.start() // else on first use; false only when closing
	s.tasks.Every("flusher", s.flusher.cfg.Interval, s.flusher.tick)
	s.tasks.Every("janitor", s.janitor.cfg.Interval, s.janitor.round)
	s.tasks.Go("coordinator", s.coord.run)
}

// Close stops every goroutine of the service and waits for them: queued
// produce requests fail with fsm.ErrUnavailable, forwards and proposals in
// flight end with an unknown outcome, unflushed records stay in the store
// (and the Raft log) for the next start. Requests after Close are refused.
// It is idempotent.
func (s *Service) Close() {
	s.tasks.Close()
}

// Producer is the produce path (REST, gRPC and the peer produce routes).
func (s *Service) Producer() *Producer { return s.producer }

// Fetcher is the read path.
func (s *Service) Fetcher() *Fetcher { return s.fetcher }

// Admin manages topics.
func (s *Service) Admin() *Admin { return s.admin }

// Groups manages consumer groups.
func (s *Service) Groups() *Groups { return s.groups }

// Readiness is what /ready reports.
func (s *Service) Readiness() *Readiness { return s.ready }

// stallAdmission refuses produce while this agent cannot apply because
// its disk does not take a write (the FSM's stall, or its own Raft log
// write failing or hung): a new batch could not be applied here either, so the
// request would only wait and time out.
type stallAdmission struct{ n Node }

func (s stallAdmission) Admit() error {
	if st, stalled := s.n.StorageStall(); stalled {
		return fmt.Errorf("%w: %s", fsm.ErrUnavailable, st.String())
	}
	return nil
}
