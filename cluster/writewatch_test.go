package cluster

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// watchRig is a writeWatch over a heldStore, leading unless told not to.
type watchRig struct {
	store  *heldStore
	watch  *writeWatch
	leader atomic.Bool
}

func newWatchRig() *watchRig {
	r := &watchRig{store: newHeldStore()}
	r.leader.Store(true)
	r.watch = newWriteWatch(r.store, r.leader.Load)
	return r
}

// storeHeld starts a write of first..last that the store holds until
// release, waits until the store got it, and returns what the write
// returned once released.
func (r *watchRig) storeHeld(t *testing.T, first, last uint64) (release func() error) {
	t.Helper()
	hold := r.store.holdNext()
	done := make(chan error, 1)
	go func() { done <- r.watch.StoreLogs(commands(first, last)) }()
	<-r.store.entered
	released := false
	t.Cleanup(func() {
		if !released {
			r.store.release(hold)
		}
	})
	return func() error {
		released = true
		r.store.release(hold)
		return <-done
	}
}

// TestWriteWatchReportsAHungWrite: a write begun while leading that does
// not return counts as failing once it has been in flight for stuckAfter,
// until it returns.
func TestWriteWatchReportsAHungWrite(t *testing.T) {
	r := newWatchRig()
	r.watch.setStuck(50*time.Millisecond, time.Minute)
	release := r.storeHeld(t, 5, 6)
	waitFor(t, 10*time.Second, "the hung write to be reported", func() bool {
		index, err := r.watch.Failure()
		return err != nil && index == 5
	})
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if index, err := r.watch.Failure(); err != nil {
		t.Fatalf("Failure() = %d, %v after the write returned", index, err)
	}
}

// TestWriteWatchIgnoresAFollowersWrite: a write begun while following is
// a slow follower, which Raft handles; it is not reported.
func TestWriteWatchIgnoresAFollowersWrite(t *testing.T) {
	r := newWatchRig()
	var clock atomic.Int64
	r.watch.now = func() time.Time { return time.Unix(0, clock.Load()) }
	r.watch.setStuck(10*time.Second, 2*time.Second)
	r.leader.Store(false)
	_ = r.storeHeld(t, 1, 1)
	for range 20 {
		if index, err := r.watch.Failure(); err != nil {
			t.Fatalf("a follower's held write reported: %d, %v", index, err)
		}
		clock.Add(int64(time.Second))
	}
}

// TestWriteWatchFreezeIsNotAHungWrite: a write in flight across a pause of
// the whole process (SIGSTOP, a VM freeze: no observation in between) is
// not a hung disk; a write seen in flight for stuckAfter without such a
// gap is, and stays hung however far apart the looks after that.
func TestWriteWatchFreezeIsNotAHungWrite(t *testing.T) {
	r := newWatchRig()
	var clock atomic.Int64
	clock.Store(time.Unix(1000, 0).UnixNano())
	tick := func(d time.Duration) { clock.Add(int64(d)) }
	r.watch.now = func() time.Time { return time.Unix(0, clock.Load()) }
	r.watch.setStuck(10*time.Second, 2*time.Second)
	_ = r.storeHeld(t, 1, 2)

	observe := func(when string, wantHung bool) {
		t.Helper()
		index, err := r.watch.Failure()
		if hung := err != nil; hung != wantHung || (hung && index != 1) {
			t.Fatalf("%s: Failure() = %d, %v; want hung %v", when, index, err, wantHung)
		}
	}
	observe("first seen", false)
	tick(time.Second)
	observe("1 s later", false)
	tick(15 * time.Second) // frozen: nothing observed for longer than stuckGap
	observe("after a 15 s freeze", false)
	for i := 1; i < 10; i++ {
		tick(time.Second)
		observe(fmt.Sprintf("%d s after the freeze", i), false)
	}
	tick(time.Second)
	observe("10 s seen in flight without a gap", true)
	tick(time.Minute)
	observe("a minute later, the write not returned", true)
}

// TestWriteWatchSeesTheLeadersSynchronousWrites: behind the write-behind
// log, a configuration entry (stored synchronously, in Raft's main loop)
// that hangs is reported like a hung queued commit.
func TestWriteWatchSeesTheLeadersSynchronousWrites(t *testing.T) {
	r := newWatchRig()
	r.watch.setStuck(50*time.Millisecond, time.Minute)
	l := newLeaderLogOn(t, r.watch)
	hold := r.store.holdNext()
	defer r.store.release(hold)
	go func() {
		_ = l.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogConfiguration}})
	}()
	<-r.store.entered
	waitFor(t, 10*time.Second, "the hung configuration write to be reported", func() bool {
		index, err := r.watch.Failure()
		return err != nil && index == 1
	})
}

// TestClusterMovesLeadershipOffAHungConfigurationWrite: a configuration
// entry the leader stores synchronously hangs (Raft's main loop blocks,
// its replication goroutines go on heartbeating): the stall watch fences
// the leader, the others elect and commit, and the old leader catches up
// once its disk returns. With the serial leader write every leader write
// is synchronous; the same holds.
func TestClusterMovesLeadershipOffAHungConfigurationWrite(t *testing.T) {
	for _, serial := range []bool{false, true} {
		t.Run(fmt.Sprintf("serial=%v", serial), func(t *testing.T) {
			c, logOf := startHoldingCluster(t, func(cfg *Config) {
				cfg.SerialLeaderWrite = serial
				cfg.logStuckAfter = time.Second
			})
			createTopic(t, c.waitLeader(30*time.Second), "before", 1)
			// Leadership can still move right after the start; try again
			// until the held configuration write is the leader's own.
			var lead *testNode
			var hold chan struct{}
			added := make(chan error, 1)
			for attempt := 0; lead == nil; attempt++ {
				if attempt == 5 {
					t.Fatal("the leader's configuration write was never held")
				}
				l := c.waitLeader(30 * time.Second)
				h := logOf(l.id)
				ch := make(chan struct{})
				h.holdConfig.Store(&ch)
				go func() { added <- l.node.r().AddNonvoter("n9", "127.0.0.1:1", 0, 0).Error() }()
				waitFor(t, 10*time.Second, "the configuration write to be held or refused", func() bool {
					return h.heldFirst.Load() != 0 || len(added) > 0
				})
				if h.heldFirst.Load() != 0 {
					lead, hold = l, ch
					break
				}
				h.holdConfig.Store(nil)
				<-added
			}
			released := false
			defer func() {
				if !released {
					close(hold)
				}
			}()
			var others []*testNode
			for _, n := range c.running() {
				if n != lead {
					others = append(others, n)
				}
			}
			next := c.waitLeaderOf(30*time.Second, func() []*testNode { return others })
			if _, err := propose(t, next, &fsm.CreateTopic{Name: "after", Partitions: 1, Leaders: []string{next.id}}); err != nil {
				t.Fatalf("propose on the new leader %s: %v", next.id, err)
			}
			if st, stalled := lead.node.StorageStall(); !stalled || st.Err == nil {
				t.Errorf("the agent with the hung log write reports no storage stall (%v, %v): produce would not be refused", st, stalled)
			}
			if ready, why := lead.node.Ready(); ready || why == "" {
				t.Errorf("the agent with the hung log write is ready (%v, %q)", ready, why)
			}
			logOf(lead.id).holdConfig.Store(nil)
			close(hold)
			released = true
			<-added // answered either way: the new leader decides
			waitSameLog(t, c, next, "before", "after")
			if _, stalled := lead.node.StorageStall(); stalled {
				t.Errorf("the old leader still reports a storage stall after its disk returned")
			}
		})
	}
}

// TestWriteWatchCountsCommitsInsideACall: one call can store many commits
// (raft's dispatch of a large batch with the serial leader write); a call
// whose commits go on is a slow disk, not a hung one. Once they stop, the
// call is hung after stuckAfter.
func TestWriteWatchCountsCommitsInsideACall(t *testing.T) {
	r := newWatchRig()
	var clock, commits atomic.Int64
	r.watch.now = func() time.Time { return time.Unix(0, clock.Load()) }
	r.watch.progress = func() uint64 { return uint64(commits.Load()) }
	r.watch.setStuck(10*time.Second, 2*time.Second)
	_ = r.storeHeld(t, 1, 100)
	for i := range 30 { // 30 s in flight, a commit every second
		if index, err := r.watch.Failure(); err != nil {
			t.Fatalf("%d s into a call that commits every second: %d, %v", i, index, err)
		}
		clock.Add(int64(time.Second))
		commits.Add(1)
	}
	_, _ = r.watch.Failure() // the last commit seen: the count starts here
	for range 10 {
		clock.Add(int64(time.Second))
		_, _ = r.watch.Failure()
	}
	if index, err := r.watch.Failure(); err == nil || index != 1 {
		t.Fatalf("10 s without a commit: Failure() = %d, %v; want hung from 1", index, err)
	}
}
