package partition

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/wal"
)

// directProposer applies commands to the FSM in order, like a single-node
// Raft group without the network: each Propose gets the next log index.
type directProposer struct {
	mu        sync.Mutex
	f         *fsm.FSM
	index     uint64
	proposals atomic.Int64
	// fail, when set, is returned instead of applying.
	fail error
	// log holds every applied command, at index position+1.
	log [][]byte
}

func (d *directProposer) Propose(_ context.Context, cmd []byte) (*fsm.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return nil, d.fail
	}
	d.proposals.Add(1)
	d.index++
	d.log = append(d.log, cmd)
	out := d.f.Apply(&raft.Log{Index: d.index, Type: raft.LogCommand, Data: cmd})
	return out.(*fsm.Result), nil
}

func (d *directProposer) Placement(n int32) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "n1"
	}
	return out
}

// memSegments is an in-memory SegmentStore for unit tests of the flush and
// read paths (the real s3seg adapter is exercised by the agent's tests).
type memSegments struct {
	mu       sync.Mutex
	objects  map[string][]SegmentPart
	modified map[string]time.Time
	commitBy map[string]int64
	puts     int
	reads    int // ReadSegment calls
	now      func() time.Time
	fail     error
}

func (m *memSegments) WriteSegment(_ context.Context, parts []SegmentPart, commitBy int64) (string, []fsm.SegmentRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return "", nil, m.fail
	}
	m.puts++
	key := fmt.Sprintf("obj-%d", m.puts)
	if m.objects == nil {
		m.objects = map[string][]SegmentPart{}
	}
	m.objects[key] = parts
	if m.modified == nil {
		m.modified = map[string]time.Time{}
	}
	m.modified[key] = time.Now()
	if m.commitBy == nil {
		m.commitBy = map[string]int64{}
	}
	m.commitBy[key] = commitBy
	if m.now != nil {
		m.modified[key] = m.now()
	}
	refs := make([]fsm.SegmentRef, len(parts))
	for i, p := range parts {
		minTS, maxTS := p.Records[0].Timestamp, p.Records[0].Timestamp
		for _, r := range p.Records {
			minTS, maxTS = min(minTS, r.Timestamp), max(maxTS, r.Timestamp)
		}
		refs[i] = fsm.SegmentRef{ObjectKey: key, ByteOffset: int64(i), BaseOffset: p.Records[0].Offset,
			LastOffset: p.Records[len(p.Records)-1].Offset, RecordCount: int32(len(p.Records)),
			MinTimestamp: minTS, MaxTimestamp: maxTS, ByteLength: 100}
	}
	return key, refs, nil
}

func (m *memSegments) ReadSegment(_ context.Context, topicID uint64, part int32, ref fsm.SegmentRef) ([]fsm.FetchedRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	obj, ok := m.objects[ref.ObjectKey]
	if !ok || ref.ByteOffset >= int64(len(obj)) {
		return nil, fmt.Errorf("object not found: %s", ref.ObjectKey)
	}
	p := obj[ref.ByteOffset]
	if p.TopicID != topicID || p.Partition != part {
		return nil, fmt.Errorf("wrong block")
	}
	return p.Records, nil
}

func (m *memSegments) Prefetch(context.Context, uint64, int32, fsm.SegmentRef) {}

func (m *memSegments) ListObjects(context.Context) ([]ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ObjectInfo
	for k := range m.objects {
		out = append(out, ObjectInfo{Key: k, LastModified: m.modified[k], CommitBy: m.commitBy[k]})
	}
	return out, nil
}

func (m *memSegments) DeleteObject(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	return nil
}

// testNode is the Node of a single-agent test: proposals go to the env's
// current directProposer (replaced when the env reopens), reads are in sync
// unless sync says otherwise, and it leads when leader is set.
type testNode struct {
	e      *env
	sync   Syncer // nil: every read is already in sync
	leader bool
	// leaderID is what LeaderID answers.
	leaderID string
	gate     *proposeGate // set before producing: holds proposals
	// level is the fsm.FeatureLevel every member applies (MembersAt);
	// newEnv sets fsm.FeatureLevel.
	level int
	// barrier, when set, is what AwaitAcked answers.
	barrier func(context.Context) error
	// stall, when set, is what StorageStall answers (else the FSM's stall).
	stall *fsm.StallStatus

	mu          sync.Mutex
	lastStarted chan struct{} // closed once the last started command applied
}

func (n *testNode) Propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	return n.StartPropose(ctx, cmd)()
}

// StartPropose models Raft on the leader: commands are applied in the
// order they were started, each once the gate (if any) is open.
func (n *testNode) StartPropose(ctx context.Context, cmd []byte) func() (*fsm.Result, error) {
	n.mu.Lock()
	prev, done := n.lastStarted, make(chan struct{})
	n.lastStarted = done
	n.mu.Unlock()
	gate := n.gate
	if gate != nil {
		gate.entered.Add(1)
	}
	return func() (*fsm.Result, error) {
		defer close(done)
		if gate != nil {
			<-gate.release
		}
		if prev != nil {
			<-prev
		}
		return n.e.prop.Propose(ctx, cmd)
	}
}

// proposeGate holds every proposal until open is called (a Raft commit
// that takes as long as the test wants).
type proposeGate struct {
	entered atomic.Int32
	release chan struct{}
	once    sync.Once
}

// newProposeGate installs a closed gate on e's node; it opens at the end of
// the test at the latest, so a failed test does not hang in Close.
func newProposeGate(e *env) *proposeGate {
	g := &proposeGate{release: make(chan struct{})}
	e.node.gate = g
	e.t.Cleanup(g.open)
	return g
}

func (g *proposeGate) open() { g.once.Do(func() { close(g.release) }) }

func (n *testNode) Placement(count int32) []string { return n.e.prop.Placement(count) }
func (n *testNode) LeaderReady() bool              { return n.leader }
func (n *testNode) LeaderID() string               { return n.leaderID }
func (n *testNode) Ready() (bool, string)          { return true, "" }
func (n *testNode) ReclaimDisk(bool)               {}
func (n *testNode) StorageStall() (fsm.StallStatus, bool) {
	if n.stall != nil {
		return *n.stall, true
	}
	return n.e.fsm.Stalled()
}
func (n *testNode) MembersAt(level int) bool { return level <= n.level }

// AwaitAcked: proposals apply before they answer, so nothing is
// outstanding unless the test sets barrier.
func (n *testNode) AwaitAcked(ctx context.Context) error {
	if n.barrier == nil {
		return nil
	}
	return n.barrier(ctx)
}
func (n *testNode) SyncRead(ctx context.Context) error {
	if n.sync == nil {
		return nil
	}
	return n.sync.SyncRead(ctx)
}

type env struct {
	t     *testing.T
	fs    *wal.MemFS
	wal   *wal.WAL
	store *Store
	fsm   *fsm.FSM
	prop  *directProposer
	node  *testNode
	segs  *memSegments
	cfg   Config
	clock func() time.Time // nil: time.Now
	fwd   Forwarder
	// tasks runs the current components' goroutines (build replaces it).
	tasks *group
	prod  *Producer
	fetch *Fetcher
	flush *Flusher
	admin *Admin
}

func newEnv(t *testing.T, pc ProducerConfig) *env {
	t.Helper()
	e := &env{t: t, fs: wal.NewMemFS(), segs: &memSegments{},
		cfg: Config{NodeID: "n1", Producer: pc, Flusher: FlusherConfig{MaxBytes: 1 << 20, MaxAge: time.Hour}}}
	e.node = &testNode{e: e, level: fsm.FeatureLevel}
	e.open()
	t.Cleanup(func() {
		e.tasks.Close()
		_ = e.wal.Close()
	})
	return e
}

// deps are the env's current dependencies.
func (e *env) deps() Deps {
	return Deps{FSM: e.fsm, Store: e.store, Node: e.node, Segments: e.segs, Forwarder: e.fwd, Clock: e.clock}
}

// build (re)creates the components over the current state, stopping the
// previous ones' goroutines; admits are the producer's admission checks.
func (e *env) build(admits ...Admission) {
	e.stop()
	e.tasks = newGroup()
	d := e.deps()
	e.prod = newProducer(e.cfg, d, e.tasks, admits...)
	e.tasks.Go("sweeper", e.prod.sweepLoop)
	if err := e.prod.coalescer.start(); err != nil {
		e.t.Fatal(err)
	}
	e.fetch = newFetcher(e.cfg, d)
	e.flush = newFlusher(e.cfg, d)
	e.admin = newAdmin(e.cfg, d)
}

// stop stops the components' goroutines (pending produce fails).
func (e *env) stop() {
	if e.tasks != nil {
		e.tasks.Close()
	}
}

// open opens the WAL, the store and a fresh FSM over e.fs, and builds the
// components over them.
func (e *env) open() {
	w, err := wal.Open(wal.Options{Dir: "/wal", FS: e.fs, SegmentMaxBytes: 4 << 10})
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := OpenStore(w, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.wal, e.store = w, s
	e.fsm = fsm.New(s)
	idx := uint64(0)
	var log [][]byte
	if e.prop != nil {
		idx, log = e.prop.index, e.prop.log
	}
	e.prop = &directProposer{f: e.fsm, index: idx, log: log}
	e.build()
}

func (e *env) topic(name string, parts int32) fsm.Topic {
	e.t.Helper()
	t, err := e.admin.CreateTopic(context.Background(), name, parts, fsm.TopicConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

func (e *env) produce(topic string, part int32, vals ...string) []fsm.RecordOffset {
	e.t.Helper()
	recs := make([]fsm.ProduceRecord, len(vals))
	for i, v := range vals {
		recs[i] = fsm.ProduceRecord{Partition: part, Record: fsm.Record{Key: []byte("k"), Value: []byte(v)}}
	}
	out, err := e.prod.Produce(context.Background(), topic, recs)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) readAll(topic string, part int32) []string {
	e.t.Helper()
	var vals []string
	off := int64(0)
	for {
		res, err := e.fetch.Fetch(context.Background(), fsm.FetchRequest{Topic: topic, Partition: part, Offset: off, MaxRecords: 7})
		if err != nil {
			e.t.Fatal(err)
		}
		for i, r := range res.Records {
			if r.Offset != off+int64(i) {
				e.t.Fatalf("offset %d at position %d", r.Offset, off+int64(i))
			}
			vals = append(vals, string(r.Value))
		}
		if len(res.Records) == 0 || res.NextOffset >= res.HighWatermark {
			return vals
		}
		off = res.NextOffset
	}
}

func sortedInts(m map[int64]bool) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
