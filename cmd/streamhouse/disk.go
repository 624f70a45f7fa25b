package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/partition"
)

// startDiskGuard watches free space under DATA_DIR and WAL_DIR: below
// MIN_FREE_DISK_BYTES produce is refused, /ready says why, Raft leadership
// is handed to an agent with space and the Raft log is compacted; an FSM stalled on local storage also refuses produce.
func (a *agent) startDiskGuard(ctx context.Context) {
	c := a.cfg
	dirs := []string{c.DataDir}
	if c.WALEnabled && filepath.Clean(c.WALDir) != filepath.Clean(c.DataDir) {
		dirs = append(dirs, c.WALDir)
	}
	a.reclaim = newReclaimer(a.node, a.log)
	a.disk = partition.NewDiskGuard(partition.DiskGuardConfig{
		Dirs: dirs, MinFree: uint64(c.MinFreeDiskBytes), Logger: a.log,
		OnChange: func(low bool) {
			if !low {
				a.fsm.RetryNow() // a stalled apply need not wait out its backoff
			}
			a.node.NoteLowDisk(low) // hand Raft leadership away while low
			a.reclaim.set(low)
		},
	}, a.registry)
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamhouse_apply_stalled",
		Help: "1 while this agent cannot store a committed batch locally (disk full): applying waits and retries.",
	}, func() float64 {
		if _, stalled := a.fsm.Stalled(); stalled {
			return 1
		}
		return 0
	}))
	a.producer.SetAdmission(a.disk, stallAdmission{a.fsm})
	a.disk.Start(ctx)
	a.reclaim.start()
}

// stopDiskGuard stops measuring. The reclaimer is stopped after the node
// closed (stopReclaim): a compaction may wait for a snapshot, which waits
// for a stalled FSM until the node's Close halts it.
func (a *agent) stopDiskGuard() {
	if a.disk != nil {
		a.disk.Close()
	}
}

func (a *agent) stopReclaim() {
	if a.reclaim != nil {
		a.reclaim.stop()
	}
}

// stallAdmission refuses produce while Apply waits for local storage: a new
// batch could not be applied here either.
type stallAdmission struct{ f *fsm.FSM }

func (s stallAdmission) Admit() error {
	if st, stalled := s.f.Stalled(); stalled {
		return fmt.Errorf("%w: %s", fsm.ErrUnavailable, st.String())
	}
	return nil
}

// lowDiskSetter is what the reclaimer needs of cluster.Node.
type lowDiskSetter interface {
	SetLowDisk(low bool) error
}

// reclaimer applies the latest low-disk state to Raft's log compaction on
// its own goroutine (a snapshot can take long, and blocks while the FSM is
// stalled), so the disk guard's measurements never wait for it.
type reclaimer struct {
	node lowDiskSetter
	log  *slog.Logger
	want chan bool // latest requested state, capacity 1
	quit chan struct{}
	done chan struct{}
}

func newReclaimer(node lowDiskSetter, log *slog.Logger) *reclaimer {
	return &reclaimer{node: node, log: log, want: make(chan bool, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

// set requests a state; a request not yet taken is replaced.
func (r *reclaimer) set(low bool) {
	for {
		select {
		case r.want <- low:
			return
		default:
		}
		select {
		case <-r.want:
		default:
		}
	}
}

func (r *reclaimer) start() {
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.quit:
				return
			case low := <-r.want:
				if err := r.node.SetLowDisk(low); err != nil {
					r.log.Warn("low-disk raft log compaction", "low", low, "err", err)
				}
			}
		}
	}()
}

// stop waits for a compaction in progress to return.
func (r *reclaimer) stop() {
	close(r.quit)
	<-r.done
}

// checkDiskSpace is --check-config's view of MIN_FREE_DISK_BYTES.
func (c *agentCmd) checkDiskSpace(add addFunc) {
	const name = "disk space"
	free, err := partition.FreeBytes(c.DataDir)
	switch {
	case err != nil:
		add(checkWarn, name, "cannot measure free space in DATA_DIR=%s: %v (MIN_FREE_DISK_BYTES is not enforced)", c.DataDir, err)
	case c.MinFreeDiskBytes > 0 && free < uint64(c.MinFreeDiskBytes):
		add(checkWarn, name, "%d bytes free in DATA_DIR=%s, below MIN_FREE_DISK_BYTES=%d: the agent would refuse produce", free, c.DataDir, c.MinFreeDiskBytes)
	case c.MinFreeDiskBytes > 0 && c.MinFreeDiskBytes < c.MaxUnflushedBytes:
		add(checkWarn, name, "MIN_FREE_DISK_BYTES=%d is below MAX_UNFLUSHED_BYTES=%d: a Raft snapshot of a full backlog may not fit in the headroom", c.MinFreeDiskBytes, c.MaxUnflushedBytes)
	default:
		add(checkOK, name, "%d bytes free in DATA_DIR=%s (MIN_FREE_DISK_BYTES=%d)", free, c.DataDir, c.MinFreeDiskBytes)
	}
}
