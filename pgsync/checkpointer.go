package pgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// Source provides the state to checkpoint. The cluster package implements
// it.
type Source interface {
	// CheckpointImage returns the committed state when this agent is the
	// Raft leader; ok=false otherwise. The image must not change after it
	// is returned (the Checkpointer reads it while writing).
	CheckpointImage() (img *fsm.Image, ok bool)
}

// Defaults of CheckpointerConfig.
const (
	DefaultInterval   = 5 * time.Second
	DefaultTimeout    = 30 * time.Second
	DefaultMaxBackoff = 30 * time.Second
	warnEvery         = time.Minute // repeated failures are logged at WARN at most this often
)

// CheckpointerConfig configures a Checkpointer. DB, Source, ClusterID and
// NodeID are required.
type CheckpointerConfig struct {
	DB     *DB
	Source Source
	// Interval between checkpoints (default 5s). The lag gauge is updated
	// at least this often.
	Interval time.Duration
	// Timeout bounds one attempt's database work (default 30s).
	Timeout time.Duration
	// MaxBackoff caps the retry delay after failures (default 30s); the
	// delay starts at min(Interval, 1s), doubles, and is jittered ±50%.
	MaxBackoff        time.Duration
	ClusterID, NodeID string
	Logger            *slog.Logger          // nil: discard
	Registerer        prometheus.Registerer // nil: metrics not registered; one Checkpointer per registry
	// Clock is the time source of the lag gauge (default time.Now); tests
	// drive it to make lag deterministic.
	Clock func() time.Time
}

// Checkpointer is the background loop that the Raft leader runs to
// checkpoint its committed state to PostgreSQL; see Run. Its methods are
// safe for concurrent use.
type Checkpointer struct {
	cfg     CheckpointerConfig
	log     *slog.Logger
	m       *metrics
	sem     chan struct{} // one attempt at a time
	running atomic.Bool

	mu       sync.Mutex
	last     Info      // last checkpoint written (or found unchanged) by this agent
	leader   bool      // the last attempt found this agent leader
	base     time.Time // capture time of the newest state known to be in PostgreSQL
	failing  int       // consecutive failures
	lastErr  string    // the last failure's message ("" after a success)
	lastWarn time.Time
}

// NewCheckpointer checks cfg, fills in defaults and creates the metrics. It
// starts nothing.
func NewCheckpointer(cfg CheckpointerConfig) (*Checkpointer, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("pgsync: CheckpointerConfig.DB is nil")
	case cfg.Source == nil:
		return nil, errors.New("pgsync: CheckpointerConfig.Source is nil")
	case cfg.ClusterID == "" || cfg.NodeID == "":
		return nil, errors.New("pgsync: CheckpointerConfig needs ClusterID and NodeID")
	case cfg.Interval < 0 || cfg.Timeout < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("pgsync: CheckpointerConfig durations must not be negative")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checkpointer{
		cfg: cfg,
		log: log.With("component", "pgsync"),
		m:   newMetrics(cfg.Registerer),
		sem: make(chan struct{}, 1),
	}, nil
}

// Last returns the last checkpoint this agent wrote or found unchanged
// (zero before the first).
func (c *Checkpointer) Last() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// outcome classifies one attempt.
type outcome int

const (
	written   outcome = iota // a checkpoint was written
	unchanged                // same Raft index as the last success: nothing to write
	stale                    // the database already holds this state or a newer one
	notLeader                // the Source says this agent is not the leader
	failed                   // counts as a failure: retried with backoff
	canceled                 // the caller's context ended
)

// CheckpointNow makes one attempt now and returns its result: the
// checkpoint written (or the last one, if the state is unchanged), or an
// error wrapping ErrNotLeader, ErrStaleCheckpoint or the failure. It waits
// for an attempt of Run in progress to finish first.
func (c *Checkpointer) CheckpointNow(ctx context.Context) (Info, error) {
	info, oc, err := c.attempt(ctx)
	if oc == written || oc == unchanged {
		return info, nil
	}
	return Info{}, err
}

// Run checkpoints until ctx is done: immediately, then every Interval,
// when the Source says this agent is the leader. Unchanged state counts as
// success without a write; a stale-guard rejection (another leader got
// further, or this leader's state is behind) is not a failure. Failures
// are retried with exponential backoff and jitter; each attempt is bounded
// by Timeout and runs in its own goroutine, so the lag gauge keeps being
// updated every Interval while PostgreSQL hangs. Run never panics (a
// panicking Source counts as a failed attempt). Call it once; a concurrent
// second call returns at once.
func (c *Checkpointer) Run(ctx context.Context) {
	if !c.running.CompareAndSwap(false, true) {
		c.log.Error("Checkpointer.Run called while already running")
		return
	}
	defer c.running.Store(false)

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = min(c.cfg.Interval, time.Second)
	bo.MaxInterval = c.cfg.MaxBackoff
	bo.Multiplier = 2
	bo.Reset()

	ticker := time.NewTicker(c.cfg.Interval)
	defer ticker.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()

	done := make(chan outcome, 1)
	inFlight, retryPending := false, false
	start := func() {
		inFlight = true
		go func() {
			_, oc, _ := c.attempt(ctx)
			done <- oc
		}()
	}
	start()
	for {
		select {
		case <-ctx.Done():
			if inFlight {
				<-done
			}
			c.mu.Lock()
			c.leader, c.base = false, time.Time{}
			c.mu.Unlock()
			c.m.lag.Set(0)
			return
		case <-ticker.C:
			c.updateLag()
			if !inFlight && !retryPending {
				start()
			}
		case <-retry.C:
			retryPending = false
			if !inFlight {
				start()
			}
		case oc := <-done:
			inFlight = false
			if oc == failed {
				retry.Reset(min(bo.NextBackOff(), c.cfg.MaxBackoff))
				retryPending = true
			} else {
				bo.Reset()
			}
		}
	}
}

// attempt takes the image and writes it, updating Last, the metrics and
// the lag base.
func (c *Checkpointer) attempt(ctx context.Context) (info Info, oc outcome, err error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return Info{}, canceled, ctx.Err()
	}
	defer func() { <-c.sem }()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pgsync: checkpoint attempt panicked: %v", r)
			c.log.Error("checkpoint attempt panicked", "panic", r, "stack", string(debug.Stack()))
			c.m.failures.Inc()
			info, oc = Info{}, failed
		}
		c.updateLag()
	}()

	captured := c.cfg.Clock()
	img, last, oc, err := c.capture(captured)
	if err != nil {
		return Info{}, oc, err
	}
	if last.RaftIndex != 0 && img.LastApplied == last.RaftIndex {
		c.succeeded(captured, nil)
		return last, unchanged, nil
	}
	return c.write(ctx, img, captured)
}

// capture asks the Source for the image (captured: the time just before)
// and notes whether this agent leads. It also returns the last checkpoint
// this agent wrote; an error comes with notLeader or failed.
func (c *Checkpointer) capture(captured time.Time) (*fsm.Image, Info, outcome, error) {
	img, ok := c.cfg.Source.CheckpointImage()
	c.mu.Lock()
	if !ok {
		c.leader, c.base = false, time.Time{}
		c.mu.Unlock()
		return nil, Info{}, notLeader, fmt.Errorf("pgsync: %w", ErrNotLeader)
	}
	if !c.leader {
		// Until a checkpoint succeeds, the newest state known to be in
		// PostgreSQL is counted from when this agent became leader.
		c.leader, c.base = true, captured
		c.log.Debug("leader: checkpointing", "raft_index", img.LastApplied)
	}
	last := c.last
	c.mu.Unlock()
	if img == nil {
		c.m.failures.Inc()
		return nil, Info{}, failed, errors.New("pgsync: the checkpoint source returned no image")
	}
	return img, last, written, nil
}

// write writes img under the attempt timeout and classifies the result.
func (c *Checkpointer) write(ctx context.Context, img *fsm.Image, captured time.Time) (Info, outcome, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	began := time.Now()
	info, err := c.cfg.DB.WriteCheckpoint(actx, img, c.cfg.ClusterID, c.cfg.NodeID)
	cancel()
	c.m.duration.Observe(time.Since(began).Seconds())
	switch {
	case err == nil:
		c.succeeded(captured, &info)
		c.m.total.Inc()
		c.m.raftIndex.Set(float64(info.RaftIndex))
		c.log.Debug("checkpoint written", "raft_index", info.RaftIndex, "segments_written", info.SegmentsWritten,
			"duration", time.Since(began))
		return info, written, nil
	case errors.Is(err, ErrStaleCheckpoint):
		// The database holds this state or a newer one: nothing is lost.
		c.succeeded(captured, nil)
		c.log.Debug("checkpoint skipped: the database is at or beyond this state", "raft_index", img.LastApplied, "reason", err)
		return Info{}, stale, err
	case ctx.Err() != nil:
		return Info{}, canceled, err
	}
	c.failed(ctx, img, err)
	return Info{}, failed, err
}

// failed counts a failed attempt and logs it: at WARN the first time and
// at most once every warnEvery after, at DEBUG otherwise.
func (c *Checkpointer) failed(ctx context.Context, img *fsm.Image, err error) {
	c.m.failures.Inc()
	c.mu.Lock()
	c.failing++
	c.lastErr = err.Error()
	n := c.failing
	warn := n == 1 || time.Since(c.lastWarn) >= warnEvery
	if warn {
		c.lastWarn = time.Now()
	}
	c.mu.Unlock()
	level := slog.LevelDebug
	if warn {
		level = slog.LevelWarn
	}
	c.log.Log(ctx, level, "checkpoint to PostgreSQL failed; retrying with backoff", "raft_index", img.LastApplied,
		"consecutive_failures", n, "err", err)
}

// succeeded records that the database holds the state captured at
// captured (and, if info is set, that this agent wrote it).
func (c *Checkpointer) succeeded(captured time.Time, info *Info) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = captured
	if info != nil {
		c.last = *info
	}
	if c.failing > 0 {
		c.log.Info("checkpoints to PostgreSQL resumed", "failed_attempts", c.failing)
		c.failing, c.lastErr = 0, ""
	}
}

// updateLag sets the lag gauge: on the leader, the time since the capture
// of the newest state known to be in PostgreSQL; 0 otherwise.
func (c *Checkpointer) updateLag() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.leader {
		c.m.lag.Set(0)
		return
	}
	c.m.lag.Set(max(c.cfg.Clock().Sub(c.base).Seconds(), 0))
}

// Status is what an agent reports about its checkpointing (cluster health).
type Status struct {
	Connected bool // connected to PostgreSQL (and migrated)
	Leader    bool // the last attempt found this agent the Raft leader
	// Lag is, on the leader, the time since the capture of the newest state
	// known to be in PostgreSQL (the lag gauge); 0 elsewhere.
	Lag                 time.Duration
	ConsecutiveFailures int
	LastError           string // the last failure's message; "" after a success
	Last                Info   // the last checkpoint this agent wrote
}

// Status returns the Checkpointer's state now (Connected is left false: the
// CheckpointService knows it).
func (c *Checkpointer) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Leader: c.leader, ConsecutiveFailures: c.failing, LastError: c.lastErr, Last: c.last}
	if c.leader {
		st.Lag = max(c.cfg.Clock().Sub(c.base), 0)
	}
	return st
}
