package fsm

import (
	"fmt"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// AppendedBatch is a committed batch with its assigned offsets, handed to
// the Sink by Apply.
type AppendedBatch struct {
	Index      uint64 // Raft index of the AppendBatch command
	TopicID    uint64
	Partition  int32
	BaseOffset int64
	Count      int32
	Timestamp  int64
	Records    []byte // AppendRecords encoding; may alias the Raft log entry
}

// Sink is local storage for committed record batches (implemented by the
// partition store over the WAL). Materialize is called from Apply, in Raft
// index order, once per entry with the batches that entry appended (one for
// AppendBatch, one or more for AppendBatches; all with the entry's Index, in
// entry order), and must be idempotent under replay: batches whose Index is
// not above what the sink already holds must be ignored. A failed call must
// have stored none of them.
type Sink interface {
	Materialize(bs []*AppendedBatch) error
	// SnapshotBatches returns the batches holding offsets >= from[key] of
	// each listed partition, pinned against truncation until Release.
	SnapshotBatches(from map[PartitionKey]int64) (BatchSnapshot, error)
}

// BatchSnapshot streams pinned batches in ascending Raft index order.
type BatchSnapshot interface {
	Each(fn func(*AppendedBatch) error) error
	Release()
}

// FSM is the replicated state machine. It implements raft.FSM and
// raft.BatchingFSM.
type FSM struct {
	sink Sink

	mu    sync.RWMutex
	state *State

	changeMu sync.Mutex
	changed  chan struct{}

	stall *stallState // retrying an entry the Sink could not store (stall.go)
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an FSM with empty state that materialises records into sink.
func New(sink Sink) *FSM {
	return &FSM{sink: sink, state: newState(), changed: make(chan struct{}), stall: newStallState()}
}

// Changed returns a channel that is closed at the next metadata change
// (topics, leadership, flushed offsets; not every appended batch).
func (f *FSM) Changed() <-chan struct{} {
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	return f.changed
}

func (f *FSM) notify() {
	f.changeMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.changeMu.Unlock()
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM. When the Sink cannot store a
// committed batch (a full disk), the entry is neither skipped nor fatal:
// ApplyBatch releases the lock, waits (StallPolicy) and applies the same
// entry again, so hashicorp/raft's FSM goroutine blocks here until local
// storage takes it or Halt is called (see DESIGN.md, "Failure behaviour").
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	metaChanged, attempts := false, 0
	for i := 0; i < len(logs); {
		n, meta, err := f.applyUntilStall(logs[i:], out[i:])
		metaChanged = metaChanged || meta
		if n > 0 && attempts > 0 {
			f.resumed(logs[i].Index, attempts)
			attempts = 0
		}
		i += n
		if err == nil {
			continue
		}
		if metaChanged {
			f.notify() // readers see what was applied before the stall
			metaChanged = false
		}
		attempts++
		if !f.waitRetry(logs[i].Index, attempts, err) {
			for j := i; j < len(logs); j++ {
				out[j] = haltedResult(logs[j].Index)
			}
			break
		}
	}
	if metaChanged {
		f.notify()
	}
	return out
}

// applyUntilStall applies logs in order under f.mu until one cannot be
// stored by the Sink. It returns how many were applied, whether metadata
// changed, and the Sink error (the entry at position n changed nothing).
func (f *FSM) applyUntilStall(logs []*raft.Log, out []interface{}) (int, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	meta := false
	for i, l := range logs {
		if f.isHalted() {
			out[i] = haltedResult(l.Index)
			continue
		}
		if l.Type != raft.LogCommand {
			continue
		}
		res, m, err := f.applyOne(l.Index, l.Data)
		if err != nil {
			return i, meta, err
		}
		if l.Index > f.state.LastApplied {
			f.state.LastApplied = l.Index
		}
		res.Index = l.Index
		out[i] = res
		meta = meta || m
	}
	return len(logs), meta, nil
}

// applyOne applies one command under f.mu. It returns the result and whether
// metadata readers should be notified, or a *sinkError (and no change at
// all) when the Sink could not store a committed batch.
func (f *FSM) applyOne(index uint64, data []byte) (*Result, bool, error) {
	cmd, err := Decode(data)
	if err != nil {
		// An undecodable committed entry means a bug or corruption of the
		// replicated log: continuing would diverge from peers.
		panic(fmt.Sprintf("fsm: undecodable command at index %d: %v", index, err))
	}
	switch c := cmd.(type) {
	case *AppendBatch:
		return f.applyAppendBatch(index, c)
	case *AppendBatches:
		return f.applyAppendBatches(index, c)
	case *CommitOffsets:
		res := f.applyCommitOffsets(c)
		return res, res.Code == CodeOK, nil
	case *DeleteGroup:
		res := f.applyDeleteGroup(c)
		return res, res.Code == CodeOK, nil
	case *InitProducer:
		return f.applyInitProducer(index, c), false, nil
	case *GroupJoin:
		res := f.applyGroupJoin(c)
		return res, res.Code == CodeOK, nil
	case *GroupSync:
		res := f.applyGroupSync(c)
		return res, res.Code == CodeOK, nil
	case *GroupRemoveMembers:
		res := f.applyGroupRemoveMembers(c)
		return res, res.Code == CodeOK, nil
	}
	res, meta := f.applyMeta(index, cmd)
	return res, meta, nil
}

// applyMeta applies the topic, segment and leadership commands.
func (f *FSM) applyMeta(index uint64, cmd Command) (*Result, bool) {
	switch c := cmd.(type) {
	case *CreateTopic:
		return f.applyCreateTopic(index, c)
	case *DeleteTopic:
		return f.applyDeleteTopic(c)
	case *CommitSegment:
		return f.applyCommitSegment(c)
	case *AssignLeader:
		return f.applyAssignLeader(c)
	case *TrimPartition:
		return f.applyTrimPartition(c)
	case *ObjectsDeleted:
		return f.applyObjectsDeleted(c)
	case *ClockTick:
		return f.applyClockTick(c), false
	case *AlterTopicConfig:
		return f.applyAlterTopicConfig(c)
	case *CreatePartitions:
		return f.applyCreatePartitions(c)
	case *RegisterBroker:
		return f.applyRegisterBroker(c)
	}
	panic(fmt.Sprintf("fsm: command type %s has a decoder but no apply", cmd.Type()))
}

func (f *FSM) applyCreateTopic(index uint64, c *CreateTopic) (*Result, bool) {
	s := f.state
	if err := ValidateTopicName(c.Name); err != nil {
		return fail(CodeInvalid, "%v", err), false
	}
	if err := ValidatePartitionCount(c.Partitions); err != nil {
		return fail(CodeInvalid, "%v", err), false
	}
	if err := ValidateCompression(c.Config.Compression); err != nil {
		return fail(CodeInvalid, "%v", err), false
	}
	if c.Config.RetentionMs < 0 || c.Config.RetentionBytes < 0 {
		return fail(CodeInvalid, "retention must not be negative"), false
	}
	if m := c.Config.MaxMessageBytes; m < 0 || m > MaxMessageBytesLimit {
		return fail(CodeInvalid, "max message bytes %d outside 0..%d", m, MaxMessageBytesLimit), false
	}
	if len(c.Leaders) != 0 && len(c.Leaders) != int(c.Partitions) {
		return fail(CodeInvalid, "%d leaders for %d partitions", len(c.Leaders), c.Partitions), false
	}
	if _, ok := s.Topics[c.Name]; ok {
		return fail(CodeTopicExists, "topic %q already exists", c.Name), false
	}
	if res := s.checkLimits(c.Limits, 1, int64(c.Partitions)); res != nil {
		return res, false
	}
	t := &Topic{ID: index, Name: c.Name, Partitions: c.Partitions, Config: c.Config, CreatedAt: c.Timestamp}
	if t.Config.Compression == "" {
		t.Config.Compression = "zstd"
	}
	s.Topics[t.Name] = t
	s.TopicsByID[t.ID] = t
	for i := int32(0); i < c.Partitions; i++ {
		p := &Partition{TopicID: t.ID, Index: i}
		if len(c.Leaders) > 0 && c.Leaders[i] != "" {
			p.Leader = c.Leaders[i]
			p.LeaderEpoch = 1
		}
		s.Partitions[PartitionKey{t.ID, i}] = p
	}
	return &Result{TopicID: t.ID}, true
}

func (f *FSM) applyDeleteTopic(c *DeleteTopic) (*Result, bool) {
	s := f.state
	t, ok := s.Topics[c.Name]
	if !ok {
		return fail(CodeTopicNotFound, "topic %q not found", c.Name), false
	}
	for i := int32(0); i < t.Partitions; i++ {
		k := PartitionKey{t.ID, i}
		if p, ok := s.Partitions[k]; ok {
			for _, r := range p.Segments {
				s.deref(r.ObjectKey)
			}
		}
		delete(s.Partitions, k)
	}
	delete(s.Topics, t.Name)
	delete(s.TopicsByID, t.ID)
	s.dropTopicFromGroups(t.ID)
	return &Result{TopicID: t.ID}, true
}

// applyAppendBatch applies one batch (see appendOne). The Sink stores it
// before the change is kept: if the Sink cannot hold it (disk full), the
// change is undone and ApplyBatch retries the same entry.
func (f *FSM) applyAppendBatch(index uint64, c *AppendBatch) (*Result, bool, error) {
	undo := f.state.saveAppends([]*AppendBatch{c})
	res, b := f.appendOne(index, c)
	if b == nil {
		return res, false, nil
	}
	if err := f.materialize(index, []*AppendedBatch{b}); err != nil {
		undo.restore(f.state)
		return nil, false, err
	}
	return res, false, nil
}

func (f *FSM) partitionFor(topicID uint64, part int32) (*Partition, *Result) {
	if _, ok := f.state.TopicsByID[topicID]; !ok {
		return nil, fail(CodeTopicNotFound, "topic id %d not found", topicID)
	}
	p, ok := f.state.Partitions[PartitionKey{topicID, part}]
	if !ok {
		return nil, fail(CodePartitionInvalid, "partition %d does not exist", part)
	}
	return p, nil
}

func (f *FSM) applyCommitSegment(c *CommitSegment) (*Result, bool) {
	res := &Result{Accepted: make([]bool, len(c.Entries))}
	if f.state.uploadExpired(c) {
		// Orphan GC may already have deleted (or may delete) the object.
		return &Result{Accepted: res.Accepted, Code: CodeUploadExpired,
			Message: fmt.Sprintf("object %s was to be committed by cluster time %d, the clock is at %d", c.ObjectKey, c.CommitBy, f.state.Clock)}, false
	}
	accepted := false
	for i := range c.Entries {
		x := &c.Entries[i]
		p, bad := f.partitionFor(x.TopicID, x.Partition)
		if bad != nil {
			continue
		}
		r := x.Ref
		switch {
		case x.LeaderEpoch != p.LeaderEpoch:
			continue
		case r.BaseOffset != p.FlushedOffset:
			continue
		case r.LastOffset < r.BaseOffset || r.LastOffset >= p.NextOffset:
			continue
		case int64(r.RecordCount) != r.LastOffset-r.BaseOffset+1:
			continue
		}
		r.ObjectKey = c.ObjectKey
		r.CommittedAt = f.state.commitTime(c)
		p.Segments = append(p.Segments, r)
		f.state.ObjectRefs[c.ObjectKey]++
		delete(f.state.PendingDeletes, c.ObjectKey)
		p.FlushedOffset = r.LastOffset + 1
		res.Accepted[i] = true
		accepted = true
	}
	if !accepted && len(c.Entries) > 0 {
		res.Code = CodeNotContiguous
		res.Message = "no entry of the segment could be committed (stale epoch or not contiguous)"
	}
	return res, accepted
}

func (f *FSM) applyAssignLeader(c *AssignLeader) (*Result, bool) {
	p, res := f.partitionFor(c.TopicID, c.Partition)
	if res != nil {
		return res, false
	}
	if p.LeaderEpoch != c.ExpectedEpoch {
		return fail(CodeStaleEpoch, "expected epoch %d, partition is at epoch %d", c.ExpectedEpoch, p.LeaderEpoch), false
	}
	p.Leader = c.Leader
	p.LeaderEpoch++
	return &Result{Epoch: p.LeaderEpoch}, true
}

func (f *FSM) applyTrimPartition(c *TrimPartition) (*Result, bool) {
	p, res := f.partitionFor(c.TopicID, c.Partition)
	if res != nil {
		return res, false
	}
	if c.Before <= p.LowWatermark {
		return &Result{}, false // already trimmed that far: idempotent
	}
	if c.Before > p.FlushedOffset {
		return fail(CodeInvalid, "cannot trim to %d: only offsets below %d are flushed", c.Before, p.FlushedOffset), false
	}
	drop := 0
	for drop < len(p.Segments) && p.Segments[drop].LastOffset < c.Before {
		drop++
	}
	boundary := p.FlushedOffset
	if drop < len(p.Segments) {
		boundary = p.Segments[drop].BaseOffset
	}
	if c.Before != boundary {
		return fail(CodeInvalid, "trim point %d is not a segment boundary (next boundary %d)", c.Before, boundary), false
	}
	if !c.Unfenced {
		if res := f.state.trimFence(c, p); res != nil {
			return res, false
		}
	}
	for _, r := range p.Segments[:drop] {
		f.state.deref(r.ObjectKey)
	}
	p.Segments = append([]SegmentRef(nil), p.Segments[drop:]...)
	p.LowWatermark = c.Before
	return &Result{}, true
}

func (f *FSM) applyObjectsDeleted(c *ObjectsDeleted) (*Result, bool) {
	for _, k := range c.Keys {
		delete(f.state.PendingDeletes, k)
	}
	return &Result{}, false
}

// ---- read API (copies; safe for concurrent use) ----

// LastApplied is the Raft index of the last applied command.
func (f *FSM) LastApplied() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.LastApplied
}

// Topic returns a topic by name.
func (f *FSM) Topic(name string) (Topic, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.state.Topics[name]
	if !ok {
		return Topic{}, false
	}
	return *t, true
}

// TopicByID returns a topic by ID.
func (f *FSM) TopicByID(id uint64) (Topic, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.state.TopicsByID[id]
	if !ok {
		return Topic{}, false
	}
	return *t, true
}

// Topics returns all topics ordered by name.
func (f *FSM) Topics() []Topic {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ts := f.state.sortedTopics()
	out := make([]Topic, len(ts))
	for i, t := range ts {
		out[i] = *t
	}
	return out
}

// PartitionInfo is a partition's state without its segment list.
type PartitionInfo struct {
	TopicID       uint64
	Topic         string
	Partition     int32
	Leader        string
	LeaderEpoch   uint64
	NextOffset    int64
	FlushedOffset int64
	LowWatermark  int64
	Segments      int
	// SegmentBytes is the size of the partition's blocks in segment
	// objects (what it occupies in the object store).
	SegmentBytes int64
}

func (f *FSM) info(p *Partition) PartitionInfo {
	name := ""
	if t, ok := f.state.TopicsByID[p.TopicID]; ok {
		name = t.Name
	}
	return PartitionInfo{
		TopicID: p.TopicID, Topic: name, Partition: p.Index, Leader: p.Leader,
		LeaderEpoch: p.LeaderEpoch, NextOffset: p.NextOffset, FlushedOffset: p.FlushedOffset,
		LowWatermark: p.LowWatermark, Segments: len(p.Segments), SegmentBytes: segmentBytes(p.Segments),
	}
}

// Partition returns one partition's info.
func (f *FSM) Partition(topicID uint64, part int32) (PartitionInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.state.Partitions[PartitionKey{topicID, part}]
	if !ok {
		return PartitionInfo{}, false
	}
	return f.info(p), true
}

// Partitions returns every partition of a topic, by index.
func (f *FSM) Partitions(topicID uint64) []PartitionInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.state.TopicsByID[topicID]
	if !ok {
		return nil
	}
	out := make([]PartitionInfo, 0, t.Partitions)
	for i := int32(0); i < t.Partitions; i++ {
		if p, ok := f.state.Partitions[PartitionKey{topicID, i}]; ok {
			out = append(out, f.info(p))
		}
	}
	return out
}

// AllPartitions returns every partition, ordered by topic ID and index.
func (f *FSM) AllPartitions() []PartitionInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	keys := f.state.sortedPartitionKeys()
	out := make([]PartitionInfo, len(keys))
	for i, k := range keys {
		out[i] = f.info(f.state.Partitions[k])
	}
	return out
}

// SegmentFor returns the committed segment holding offset, if any.
func (f *FSM) SegmentFor(topicID uint64, part int32, offset int64) (SegmentRef, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.state.Partitions[PartitionKey{topicID, part}]
	if !ok {
		return SegmentRef{}, false
	}
	segs := p.Segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].LastOffset >= offset })
	if i == len(segs) || segs[i].BaseOffset > offset {
		return SegmentRef{}, false
	}
	return segs[i], true
}

// Segments returns a copy of a partition's committed segments.
func (f *FSM) Segments(topicID uint64, part int32) []SegmentRef {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.state.Partitions[PartitionKey{topicID, part}]
	if !ok {
		return nil
	}
	return append([]SegmentRef(nil), p.Segments...)
}

// PendingDeletes returns the objects queued for deletion, sorted.
func (f *FSM) PendingDeletes() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.sortedPendingDeletes()
}

// ObjectReferenced reports whether a committed segment references key, it
// is queued for deletion, or a DR restore could not read it (either way the
// garbage collector keeps off it).
func (f *FSM) ObjectReferenced(key string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, unreadable := f.state.Unreadable[key]
	return f.state.ObjectRefs[key] > 0 || f.state.PendingDeletes[key] || unreadable
}

// segmentBytes sums the blocks' lengths.
func segmentBytes(segs []SegmentRef) int64 {
	var n int64
	for _, s := range segs {
		n += s.ByteLength
	}
	return n
}
