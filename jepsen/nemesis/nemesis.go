// Package nemesis injects faults into a control.Cluster on a seeded random
// schedule and records every action in the history.
package nemesis

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/control"
	"github.com/streamhouse/streamhouse/jepsen/history"
	"github.com/streamhouse/streamhouse/transport"
)

// Fault kinds.
const (
	KillOne             = "kill-one"
	KillLeader          = "kill-leader"
	KillPartitionLeader = "kill-partition-leader"
	KillMajority        = "kill-majority"
	KillAll             = "kill-all"
	Pause               = "pause"
	PartitionOne        = "partition-one"
	PartitionLeader     = "partition-leader"
	PartitionHalves     = "partition-halves"
	PartitionAsym       = "partition-asymmetric"
	CutGossip           = "cut-gossip"
	CutRaft             = "cut-raft"
	S3Outage            = "s3-outage"
	PGOutage            = "pg-outage"
	Wipe                = "wipe"
)

// Kinds lists every fault kind.
var Kinds = []string{KillOne, KillLeader, KillPartitionLeader, KillMajority, KillAll, Pause, PartitionOne,
	PartitionLeader, PartitionHalves, PartitionAsym, CutGossip, CutRaft, S3Outage, PGOutage, Wipe,
	WipeKill, KillMajorityWipe}

// Config is a nemesis schedule.
type Config struct {
	Kinds []string // chosen from at random each cycle
	Mixed bool     // apply a random subset (1..3) of Kinds at once
	Seed  uint64
	Quiet [2]time.Duration // healthy time between faults (min, max)
	Hold  [2]time.Duration // how long a fault lasts (min, max)
	Topic string
	// MinFreeDisk is the agents' MIN_FREE_DISK_BYTES (DiskFull).
	MinFreeDisk int64
	Log         *slog.Logger
	OnPaused    func(i int, paused bool)
}

// Event is one fault occurrence, for recovery statistics.
type Event struct {
	Kind    string        `json:"kind"`
	Targets []string      `json:"targets,omitempty"`
	Start   time.Duration `json:"start_ns"` // since the history's start
	Healed  time.Duration `json:"healed_ns"`
	// RestartReady: for kills and wipes, time from restart until every
	// restarted agent answered /ready.
	RestartReady time.Duration `json:"restart_ready_ns,omitempty"`
	Err          string        `json:"error,omitempty"`
}

// Nemesis runs the schedule.
type Nemesis struct {
	cfg Config
	c   *control.Cluster
	rec *history.Recorder
	rng *rand.Rand
	log *slog.Logger

	mu     sync.Mutex
	cuts   map[string][]control.Cut // active cuts per fault instance
	Events []Event
}

// New returns a nemesis for c.
func New(cfg Config, c *control.Cluster, rec *history.Recorder) *Nemesis {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.OnPaused == nil {
		cfg.OnPaused = func(int, bool) {}
	}
	return &Nemesis{cfg: cfg, c: c, rec: rec, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e656d)), log: cfg.Log, cuts: map[string][]control.Cut{}}
}

func (n *Nemesis) between(r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(n.rng.Int64N(int64(r[1]-r[0])))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// active is a started fault and how to undo it.
type active struct {
	kind    string
	targets []string
	undo    func(ctx context.Context) (time.Duration, error)
	start   time.Duration
}

// Run injects faults until ctx ends, then heals everything.
func (n *Nemesis) Run(ctx context.Context) {
	for {
		if !sleepCtx(ctx, n.between(n.cfg.Quiet)) {
			return
		}
		kinds := []string{n.cfg.Kinds[n.rng.IntN(len(n.cfg.Kinds))]}
		if n.cfg.Mixed {
			k := 1 + n.rng.IntN(min(3, len(n.cfg.Kinds)))
			perm := n.rng.Perm(len(n.cfg.Kinds))
			kinds = kinds[:0]
			for _, i := range perm[:k] {
				kinds = append(kinds, n.cfg.Kinds[i])
			}
			kinds = compatible(kinds)
		}
		var acts []active
		for _, k := range kinds {
			if a, ok := n.start(ctx, k); ok {
				acts = append(acts, a)
			}
		}
		sleepCtx(ctx, n.between(n.cfg.Hold))
		// Undo in reverse, even when ctx is done.
		for i := len(acts) - 1; i >= 0; i-- {
			n.stop(acts[i])
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// compatible drops kinds that would make a run lose data legitimately or
// make the cluster unrecoverable together: a fault that wipes a disk
// (wipingKinds) is never combined with another one or with a kill (a wiped
// agent must catch up before another agent loses anything).
func compatible(kinds []string) []string {
	first := slices.IndexFunc(kinds, func(k string) bool { return wipingKinds[k] })
	if first < 0 {
		return kinds
	}
	var out []string
	for i, k := range kinds {
		if i == first || (!wipingKinds[k] && !strings.HasPrefix(k, "kill")) {
			out = append(out, k)
		}
	}
	return out
}

func (n *Nemesis) now() time.Duration { return time.Since(n.rec.Start()) }

func (n *Nemesis) record(value string, targets []string, do func() error) error {
	inv := n.rec.Invoke(history.Op{Process: history.NemesisProcess, F: history.FNemesis, Value: value, Targets: targets})
	err := do()
	t := history.OK
	if err != nil {
		t = history.Info
	}
	n.rec.Complete(inv, t, func(c *history.Op) {
		if err != nil {
			c.Err = err.Error()
		}
	})
	n.log.Info("nemesis", "action", value, "targets", targets, "err", err)
	return err
}

func (n *Nemesis) ids(idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, n.c.Agents[i].ID)
	}
	return out
}

func (n *Nemesis) randomAgent() int { return n.rng.IntN(len(n.c.Agents)) }

// agentOrLeader is a random agent, or the Raft leader half the time.
func (n *Nemesis) agentOrLeader() int {
	i := n.randomAgent()
	if n.rng.IntN(2) == 0 {
		i = n.leaderIndex()
	}
	return i
}

// leaderIndex is the Raft leader's slot, or a random agent if unknown.
func (n *Nemesis) leaderIndex() int {
	if id := n.c.RaftLeader(); id != "" {
		if i := n.c.Index(id); i >= 0 {
			return i
		}
	}
	return n.randomAgent()
}

// partitionLeaderIndex is the leader of a random partition that is not the
// Raft leader when possible.
func (n *Nemesis) partitionLeaderIndex(ctx context.Context) int {
	raft := n.c.RaftLeader()
	var cands []int
	for i := range n.c.Agents {
		if !n.c.Running(i) || n.c.Paused(i) {
			continue
		}
		var pr transport.PartitionsResponse
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.c.GetJSON(qctx, i, "/api/v1/topics/"+n.cfg.Topic+"/partitions", &pr)
		cancel()
		if err != nil {
			continue
		}
		for _, p := range pr.Partitions {
			if j := n.c.Index(p.Leader); j >= 0 && p.Leader != raft {
				cands = append(cands, j)
			}
		}
		if len(cands) == 0 {
			for _, p := range pr.Partitions {
				if j := n.c.Index(p.Leader); j >= 0 {
					cands = append(cands, j)
				}
			}
		}
		break
	}
	if len(cands) == 0 {
		return n.randomAgent()
	}
	return cands[n.rng.IntN(len(cands))]
}

func (n *Nemesis) majority() []int {
	k := len(n.c.Agents)/2 + 1
	perm := n.rng.Perm(len(n.c.Agents))[:k]
	sort.Ints(perm)
	return perm
}

func (n *Nemesis) setCuts(key string, cuts []control.Cut) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cuts == nil {
		delete(n.cuts, key)
	} else {
		n.cuts[key] = cuts
	}
	var all []control.Cut
	for _, cs := range n.cuts {
		all = append(all, cs...)
	}
	return n.c.SetCuts(all)
}

// isolate returns cuts separating group a from the rest in class.
func (n *Nemesis) isolate(a []int, class string) []control.Cut {
	in := map[int]bool{}
	for _, i := range a {
		in[i] = true
	}
	var cuts []control.Cut
	for i := range n.c.Agents {
		for j := range n.c.Agents {
			if i != j && in[i] != in[j] {
				cuts = append(cuts, control.Cut{From: i, To: j, Class: class})
			}
		}
	}
	return cuts
}

func cutsString(cs []control.Cut) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.String())
	}
	return strings.Join(s, " ")
}

// restart launches the given agents and waits (bounded) until ready. While
// another fault of a mixed rotation is still active (network cuts, or
// other agents still killed) an agent may rightly be unable to become
// ready, so it is launched without waiting; the final heal and read phase
// checks that every agent converges.
func (n *Nemesis) restart(idx []int) (time.Duration, error) {
	t0 := time.Now()
	var firstErr error
	for _, i := range idx {
		if n.c.Running(i) {
			continue
		}
		if err := n.c.Launch(i); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	n.mu.Lock()
	blocked := len(n.cuts) > 0
	n.mu.Unlock()
	for i := range n.c.Agents {
		if !n.c.Running(i) {
			blocked = true
		}
	}
	if blocked {
		return time.Since(t0), firstErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	for _, i := range idx {
		if err := n.c.WaitReady(ctx, i); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s not ready after restart: %w", n.c.Agents[i].ID, err)
		}
	}
	return time.Since(t0), firstErr
}

func (n *Nemesis) kill(kind string, idx []int) (active, bool) {
	targets := n.ids(idx)
	n.recordKill(idx, targets)
	return active{kind: kind, targets: targets, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		var d time.Duration
		err := n.record("restart", targets, func() error {
			var err error
			d, err = n.restart(idx)
			return err
		})
		return d, err
	}}, true
}

// recordKill SIGKILLs the agents idx (named targets) as one history action.
func (n *Nemesis) recordKill(idx []int, targets []string) {
	_ = n.record("kill", targets, func() error {
		for _, i := range idx {
			n.c.Kill(i)
			n.cfg.OnPaused(i, false)
		}
		return nil
	})
}

func (n *Nemesis) cut(kind string, key string, cuts []control.Cut, targets []string) (active, bool) {
	err := n.record(kind+" "+cutsString(cuts), targets, func() error { return n.setCuts(key, cuts) })
	if err != nil {
		_ = n.setCuts(key, nil)
		return active{}, false
	}
	return active{kind: kind, targets: targets, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		return 0, n.record("heal "+kind, targets, func() error { return n.setCuts(key, nil) })
	}}, true
}

func (n *Nemesis) start(ctx context.Context, kind string) (active, bool) {
	key := fmt.Sprintf("%s-%d", kind, n.rng.Int64())
	switch kind {
	case KillOne, KillLeader, KillPartitionLeader, KillMajority, KillAll:
		return n.kill(kind, n.killTargets(ctx, kind))
	case PartitionOne, PartitionLeader, PartitionHalves, PartitionAsym, CutGossip, CutRaft:
		cuts, idx := n.cutsFor(kind)
		return n.cut(kind, key, cuts, n.ids(idx))
	case Pause:
		return n.pause()
	case S3Outage:
		return n.s3Outage()
	case PGOutage:
		return n.pgOutage()
	case ClockSkew:
		return n.clockSkew(kind)
	case WipeKill:
		return n.wipeKill(ctx)
	case KillMajorityWipe:
		return n.killMajorityWipe()
	case DiskFull:
		return n.diskFull()
	case Wipe:
		return n.wipe()
	}
	n.log.Warn("unknown fault kind", "kind", kind)
	return active{}, false
}

// killTargets picks the agents a kill kind kills.
func (n *Nemesis) killTargets(ctx context.Context, kind string) []int {
	switch kind {
	case KillOne:
		return []int{n.randomAgent()}
	case KillLeader:
		return []int{n.leaderIndex()}
	case KillPartitionLeader:
		return []int{n.partitionLeaderIndex(ctx)}
	case KillMajority:
		return n.majority()
	}
	all := make([]int, len(n.c.Agents))
	for i := range all {
		all[i] = i
	}
	return all
}

// cutsFor picks the network cuts of a partition kind and the agents they
// isolate.
func (n *Nemesis) cutsFor(kind string) ([]control.Cut, []int) {
	switch kind {
	case PartitionOne:
		i := n.randomAgent()
		return n.isolate([]int{i}, control.ClassAll), []int{i}
	case PartitionLeader:
		i := n.leaderIndex()
		return n.isolate([]int{i}, control.ClassAll), []int{i}
	case PartitionHalves:
		maj := n.majority()
		return n.isolate(maj, control.ClassAll), maj
	case PartitionAsym:
		// One agent (the leader half the time) stops receiving from, or
		// stops reaching, every other agent.
		i := n.agentOrLeader()
		inbound := n.rng.IntN(2) == 0
		return asymmetricCuts(len(n.c.Agents), i, inbound), []int{i}
	case CutGossip:
		i := n.randomAgent()
		return n.isolate([]int{i}, control.ClassGossip), []int{i}
	}
	// CutRaft
	i := n.agentOrLeader()
	return n.isolate([]int{i}, control.ClassPeer), []int{i}
}

// asymmetricCuts cuts agent i (of agents) off from every other agent in
// one direction: inbound, i stops receiving; otherwise it stops reaching.
func asymmetricCuts(agents, i int, inbound bool) []control.Cut {
	var cuts []control.Cut
	for j := range agents {
		if j == i {
			continue
		}
		if inbound {
			cuts = append(cuts, control.Cut{From: j, To: i, Class: control.ClassAll})
		} else {
			cuts = append(cuts, control.Cut{From: i, To: j, Class: control.ClassAll})
		}
	}
	return cuts
}

// pause stops one agent (the leader half the time) with SIGSTOP.
func (n *Nemesis) pause() (active, bool) {
	i := n.agentOrLeader()
	if !n.c.Running(i) || n.c.Paused(i) {
		return active{}, false
	}
	targets := n.ids([]int{i})
	_ = n.record("pause", targets, func() error { n.cfg.OnPaused(i, true); n.c.Pause(i); return nil })
	return active{kind: Pause, targets: targets, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		return 0, n.record("resume", targets, func() error { n.c.Resume(i); n.cfg.OnPaused(i, false); return nil })
	}}, true
}

func (n *Nemesis) s3Outage() (active, bool) {
	_ = n.record("stop minio", nil, func() error { n.c.MinIO.Stop(); return nil })
	return active{kind: S3Outage, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		return 0, n.record("start minio", nil, n.c.MinIO.Start)
	}}, true
}

func (n *Nemesis) pgOutage() (active, bool) {
	if err := n.record("stop postgres", nil, n.c.PG.Stop); err != nil {
		return active{}, false
	}
	return active{kind: PGOutage, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		return 0, n.record("start postgres", nil, n.c.PG.Restart)
	}}, true
}

// wipe kills one agent and deletes its data dir; the undo restarts it and
// waits until it caught up.
func (n *Nemesis) wipe() (active, bool) {
	i := n.randomAgent()
	targets := n.ids([]int{i})
	_ = n.record("kill and wipe data dir", targets, func() error {
		n.c.Kill(i)
		n.cfg.OnPaused(i, false)
		return n.c.Wipe(i)
	})
	return active{kind: Wipe, targets: targets, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		return n.restartAndCatchUp("restart wiped (rejoin)", []int{i}, i)
	}}, true
}

// waitCaughtUp waits (bounded) until agent i is a voter again and has
// applied what the leader had committed, so a later fault on another agent
// cannot take the last copy of anything.
func (n *Nemesis) waitCaughtUp(i int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		lst, err1 := n.c.Status(n.leaderIndex())
		st, err2 := n.c.Status(i)
		if err1 == nil && err2 == nil && slices.Contains(lst.Voters, n.c.Agents[i].ID) && st.AppliedIndex >= lst.CommitIndex {
			return nil
		}
		time.Sleep(250 * time.Millisecond) // polling the cluster
	}
	return fmt.Errorf("%s did not catch up within 60s", n.c.Agents[i].ID)
}

func (n *Nemesis) stop(a active) {
	d, err := a.undo(context.Background())
	ev := Event{Kind: a.kind, Targets: a.targets, Start: a.start, Healed: n.now(), RestartReady: d}
	if err != nil {
		ev.Err = err.Error()
	}
	n.mu.Lock()
	n.Events = append(n.Events, ev)
	n.mu.Unlock()
}
