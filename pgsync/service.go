package pgsync

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Connection retries of the CheckpointService: the first wait, its cap, and
// the bound of one connection attempt (Open: connect, ping, migrate).
const (
	connectRetryMin = 500 * time.Millisecond
	connectRetryMax = 30 * time.Second
	connectTimeout  = 30 * time.Second
	clusterIDPoll   = 200 * time.Millisecond
)

// CheckpointServiceConfig configures a CheckpointService. DatabaseURL,
// Source, ClusterID and NodeID are required.
type CheckpointServiceConfig struct {
	DatabaseURL string
	Source      Source
	// ClusterID returns the cluster's ID, "" until the Raft group is
	// bootstrapped or this agent was admitted; checkpoints are tagged with it.
	ClusterID  func() string
	NodeID     string
	Interval   time.Duration         // CheckpointerConfig.Interval
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics not registered
}

// CheckpointService is an agent's checkpointing: it connects to PostgreSQL
// (running the migrations), retrying with capped exponential backoff for
// as long as it takes, waits for the cluster ID, then runs a Checkpointer
// (which writes only while Source says this agent is the Raft leader).
// The agent serves without Postgres meanwhile. The gauge
// streamhouse_checkpoint_db_connected is 1 once connected.
type CheckpointService struct {
	cfg       CheckpointServiceConfig
	log       *slog.Logger
	connected prometheus.Gauge

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	cp     *Checkpointer // set once connected and the cluster ID is known
	dbOK   bool          // connected (and migrated)
}

// NewCheckpointService checks the URL (a malformed one is a configuration
// error: ValidateURL's) and registers the connected gauge. It starts
// nothing and contacts nothing.
func NewCheckpointService(cfg CheckpointServiceConfig) (*CheckpointService, error) {
	if err := ValidateURL(cfg.DatabaseURL); err != nil {
		return nil, err
	}
	if cfg.Source == nil || cfg.ClusterID == nil || cfg.NodeID == "" {
		return nil, errors.New("pgsync: CheckpointServiceConfig needs Source, ClusterID and NodeID")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	connected := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_checkpoint_db_connected",
		Help: "1 once this agent has connected to Postgres and applied the schema migrations; 0 while it cannot.",
	})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(connected)
	}
	return &CheckpointService{cfg: cfg, log: log, connected: connected}, nil
}

// Start runs the service in one goroutine until ctx ends or Close is
// called. Call it once.
func (s *CheckpointService) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
}

// Close stops the service and waits for it (the Checkpointer's attempt in
// flight is cancelled). Idempotent; a service never started returns at once.
func (s *CheckpointService) Close() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Status reports the service's checkpointing: whether it is connected, and
// the Checkpointer's Status once it runs.
func (s *CheckpointService) Status() Status {
	s.mu.Lock()
	cp, ok := s.cp, s.dbOK
	s.mu.Unlock()
	var st Status
	if cp != nil {
		st = cp.Status()
	}
	st.Connected = ok
	return st
}

// run connects, waits for the cluster ID and checkpoints until ctx ends.
func (s *CheckpointService) run(ctx context.Context) {
	db := s.connect(ctx)
	if db == nil {
		return
	}
	defer db.Close()
	s.connected.Set(1)
	s.mu.Lock()
	s.dbOK = true
	s.mu.Unlock()
	clusterID := s.waitClusterID(ctx)
	if clusterID == "" {
		return
	}
	cp, err := NewCheckpointer(CheckpointerConfig{
		DB: db, Source: s.cfg.Source, Interval: s.cfg.Interval,
		ClusterID: clusterID, NodeID: s.cfg.NodeID, Logger: s.cfg.Logger, Registerer: s.cfg.Registerer,
	})
	if err != nil {
		s.log.Error("Postgres checkpoints disabled", "err", err)
		return
	}
	s.mu.Lock()
	s.cp = cp
	s.mu.Unlock()
	cp.Run(ctx)
}

// connect opens the database, retrying with capped exponential backoff
// until it succeeds or ctx ends (nil). A schema newer than this binary
// stops the retries: it needs an operator, not time.
func (s *CheckpointService) connect(ctx context.Context) *DB {
	wait := connectRetryMin
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, connectTimeout)
		db, err := Open(actx, s.cfg.DatabaseURL, s.cfg.Logger)
		cancel()
		if err == nil {
			if attempt > 1 {
				s.log.Info("connected to Postgres; checkpoints start", "attempts", attempt)
			}
			return db
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrSchemaTooNew) {
			s.log.Error("Postgres checkpoints disabled", "err", err)
			return nil
		}
		s.log.Warn("cannot reach Postgres; serving without checkpoints and retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, connectRetryMax)
	}
}

// waitClusterID polls for the cluster ID ("" when ctx ended first).
func (s *CheckpointService) waitClusterID(ctx context.Context) string {
	tick := time.NewTicker(clusterIDPoll)
	defer tick.Stop()
	for {
		if id := s.cfg.ClusterID(); id != "" {
			return id
		}
		select {
		case <-ctx.Done():
			return ""
		case <-tick.C:
		}
	}
}
