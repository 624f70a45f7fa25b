package partition

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// DefaultMinFreeDiskBytes is the default free-space floor (512 MiB): room
// for one Raft snapshot carrying a full MAX_UNFLUSHED_BYTES backlog
// (256 MiB by default) plus the Raft log and WAL growth of writes already
// in flight when produce starts being refused.
const DefaultMinFreeDiskBytes = 512 << 20

// DiskGuardConfig configures a DiskGuard.
type DiskGuardConfig struct {
	// Dirs are the directories whose filesystems hold this agent's state
	// (DATA_DIR, WAL_DIR); the guard watches the least free of them.
	Dirs []string
	// MinFree: below this many free bytes produce is refused (0 = never).
	MinFree uint64
	// Interval between measurements (default 1 s).
	Interval time.Duration
	// Statfs measures free bytes; nil = FreeBytes.
	Statfs func(dir string) (uint64, error)
	// OnChange runs on the guard's goroutine when the state flips: low =
	// true to reclaim space, false when space is back (e.g. to retry a
	// stalled apply at once).
	OnChange func(low bool)
	Logger   *slog.Logger
}

// DiskGuard watches the free space of the agent's data directories and
// refuses produce below the floor, so a filling disk turns into clean
// "retry later" answers long before a write fails with ENOSPC.
type DiskGuard struct {
	cfg  DiskGuardConfig
	log  *slog.Logger
	free prometheus.Gauge
	lowG prometheus.Gauge

	mu       sync.Mutex
	low      bool
	freeB    uint64
	dir      string // the least free directory
	measured bool
	errored  bool
}

// newDiskGuard returns a guard; the service measures once at Start, then
// every Interval (Check). Its gauges are registered on reg (if not nil).
func newDiskGuard(cfg DiskGuardConfig, reg prometheus.Registerer) *DiskGuard {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Statfs == nil {
		cfg.Statfs = FreeBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &DiskGuard{cfg: cfg, log: cfg.Logger.With("component", "diskguard"),
		free: prometheus.NewGauge(prometheus.GaugeOpts{Name: "streamhouse_disk_free_bytes",
			Help: "Free bytes on the least free filesystem holding DATA_DIR or WAL_DIR."}),
		lowG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "streamhouse_disk_low",
			Help: "1 while free disk space is below MIN_FREE_DISK_BYTES (produce answers 503)."}),
	}
	minG := prometheus.NewGauge(prometheus.GaugeOpts{Name: "streamhouse_disk_min_free_bytes", Help: "The MIN_FREE_DISK_BYTES threshold."})
	minG.Set(float64(cfg.MinFree))
	if reg != nil {
		reg.MustRegister(g.free, g.lowG, minG)
	}
	return g
}

// Check measures now and updates the state (and runs OnChange on a flip).
func (g *DiskGuard) Check() {
	free, dir, err := g.measure()
	g.mu.Lock()
	if err != nil {
		first := !g.errored
		g.errored = true
		g.mu.Unlock()
		if first {
			g.log.Warn("cannot measure free disk space; the MIN_FREE_DISK_BYTES guard keeps its last state", "err", err)
		}
		return
	}
	g.errored = false
	was, first := g.low, !g.measured
	g.low = g.cfg.MinFree > 0 && free < g.cfg.MinFree
	g.freeB, g.dir, g.measured = free, dir, true
	low := g.low
	g.mu.Unlock()
	g.free.Set(float64(free))
	g.lowG.Set(boolGauge(low))
	if low == was && !first {
		return
	}
	if low {
		g.log.Warn("free disk space below MIN_FREE_DISK_BYTES: refusing produce and reclaiming space",
			"dir", dir, "free_bytes", free, "min_free_bytes", g.cfg.MinFree)
	} else if !first {
		g.log.Info("free disk space back above MIN_FREE_DISK_BYTES: accepting produce", "dir", dir, "free_bytes", free)
	}
	if g.cfg.OnChange != nil && (low || !first) {
		g.cfg.OnChange(low)
	}
}

func (g *DiskGuard) measure() (uint64, string, error) {
	var min uint64
	var minDir string
	for i, d := range g.cfg.Dirs {
		free, err := g.cfg.Statfs(d)
		if err != nil {
			return 0, "", fmt.Errorf("statfs %s: %w", d, err)
		}
		if i == 0 || free < min {
			min, minDir = free, d
		}
	}
	return min, minDir, nil
}

// Low reports whether free space is below the floor, with the reason
// /ready gives.
func (g *DiskGuard) Low() (bool, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.low {
		return false, ""
	}
	return true, fmt.Sprintf("disk: %d bytes free in %s, below MIN_FREE_DISK_BYTES=%d; produce answers 503 until space is freed",
		g.freeB, g.dir, g.cfg.MinFree)
}

// Admit returns an error wrapping fsm.ErrUnavailable (definitely not
// written; retry) while free space is below the floor.
func (g *DiskGuard) Admit() error {
	if low, why := g.Low(); low {
		return fmt.Errorf("%w: %s", fsm.ErrUnavailable, why)
	}
	return nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
