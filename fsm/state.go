package fsm

import (
	"sort"
)

// TopicConfig holds per-topic settings.
type TopicConfig struct {
	RetentionMs    int64  // 0 = keep forever
	RetentionBytes int64  // 0 = unlimited
	Compression    string // "zstd" (default), "lz4", "none"
	// MaxMessageBytes bounds one record (0: the agent's MAX_RECORD_BYTES;
	// see RecordLimit). Set by AlterTopicConfig or CreateTopic v3.
	MaxMessageBytes int64
}

// Topic is a topic as the replicated state knows it.
type Topic struct {
	ID         uint64 // Raft index of the CreateTopic command; never reused
	Name       string
	Partitions int32
	Config     TopicConfig
	CreatedAt  int64 // unix ms, from the command
}

// SegmentRef locates one partition's block inside a committed segment object.
type SegmentRef struct {
	ObjectKey        string
	ByteOffset       int64
	ByteLength       int64
	BaseOffset       int64
	LastOffset       int64
	RecordCount      int32
	MinTimestamp     int64
	MaxTimestamp     int64
	Compression      uint8
	CRC              uint32
	UncompressedSize int64
	CommittedAt      int64 // unix ms, from the command
}

// Partition is the replicated state of one partition.
type Partition struct {
	TopicID     uint64
	Index       int32
	Leader      string // node ID of the partition leader (the sequencer and uploader)
	LeaderEpoch uint64 // bumped on every leadership change
	// NextOffset is the high watermark: the offset the next record gets.
	NextOffset int64
	// FlushedOffset: every offset below it is in a committed segment.
	FlushedOffset int64
	// LowWatermark is the first offset still readable (moves with retention).
	LowWatermark int64
	// Segments are the committed segments, ascending and contiguous.
	Segments []SegmentRef
}

// PartitionKey identifies a partition across the state.
type PartitionKey struct {
	TopicID   uint64
	Partition int32
}

// State is the in-memory metadata held by every agent (the embedded
// metadata cache). It is only mutated by Apply/Restore under the FSM lock;
// readers get copies.
type State struct {
	Topics     map[string]*Topic
	TopicsByID map[uint64]*Topic
	Partitions map[PartitionKey]*Partition
	// LastApplied is the Raft index of the last applied command.
	LastApplied uint64
	// ObjectRefs counts, per object key, the committed segments (partition
	// blocks) that reference it. Derived from Partitions; not snapshotted.
	ObjectRefs map[string]int
	// PendingDeletes are objects no longer referenced by any partition
	// (retention, topic deletion), to be deleted from the object store.
	PendingDeletes map[string]bool
	// Groups are the consumer groups' committed offsets, by group name.
	Groups map[string]map[PartitionKey]GroupOffset
	// Memberships are the consumer groups' members and generations
	// (membership.go), by group name; a group may have offsets, a
	// membership or both.
	Memberships map[string]*GroupMembership
	// Producers are the idempotent producers, by ID.
	Producers map[uint64]*Producer
	// Clock is the cluster clock (unix ms): the largest ClockTick time
	// applied so far, never decreasing (see clock.go).
	Clock int64
	// The DR-restore lineage (restore_state.go): objects a restore could
	// not read, the producer-ID generation and the largest unflushed-record
	// bound an applied batch carried.
	Unreadable          map[string]uint64
	ProducerGeneration  uint64
	MaxUnflushedRecords int64
	// Brokers are the Kafka broker IDs by node ID (brokers.go).
	Brokers map[string]int32
	// EpochBumps is set (for good) once a batch allowing a local producer
	// epoch bump (AppendBatch payload v5, FeatureLevel 4) was applied: from
	// then on every member must apply that level.
	EpochBumps bool
}

// GroupOffset is a group's committed position in one partition.
type GroupOffset struct {
	Offset      int64
	Metadata    string
	CommittedAt int64
}

// ProducerExpiryMs is how long an idempotent producer may stay idle before
// its state is dropped (Kafka's transactional.id.expiration.ms default).
const ProducerExpiryMs = 7 * 24 * 3600 * 1000

// MaxProducerBatches is how many recent batches per partition are kept per
// producer to answer retries (Kafka keeps 5 in-flight batches).
const MaxProducerBatches = 5

// Producer is an idempotent producer's replicated state.
type Producer struct {
	ID       uint64
	Epoch    uint32
	LastSeen int64
	// Owner is who created it (InitProducer.Owner); never changes.
	Owner string
	// Recent holds the newest batches per partition, oldest first, all of
	// the partition's current epoch (epochOf).
	Recent map[PartitionKey][]ProducerBatch
	// Epochs are the partitions whose epoch a local bump (an AppendBatch
	// with AllowEpochBump at a newer epoch, sequence 0; Kafka's KIP-360)
	// raised above Epoch; only entries above Epoch are kept. nil: none.
	Epochs map[PartitionKey]uint32
}

// epochOf is the producer's epoch in partition k: the larger of the
// producer-wide epoch and k's own.
func (p *Producer) epochOf(k PartitionKey) uint32 {
	return max(p.Epoch, p.Epochs[k])
}

// MaxProducerEpoch is the largest epoch a producer may reach: a local bump
// past it is refused, and InitProducer refuses to bump a producer that
// reached it (the client asks for a new producer id), so an epoch never
// wraps to 0 and un-fences an old session. Kafka's epochs are int16 and
// stay far below it.
const MaxProducerEpoch uint32 = 1<<31 - 1

// maxEpoch is the largest epoch of the producer in any partition.
func (p *Producer) maxEpoch() uint32 {
	e := p.Epoch
	for _, pe := range p.Epochs {
		e = max(e, pe)
	}
	return e
}

// ProducerBatch is one batch an idempotent producer appended.
type ProducerBatch struct {
	BaseSeq    int64
	Count      int32
	BaseOffset int64
}

func (p *Producer) clone() *Producer {
	c := *p
	c.Recent = make(map[PartitionKey][]ProducerBatch, len(p.Recent))
	for k, v := range p.Recent {
		c.Recent[k] = append([]ProducerBatch(nil), v...)
	}
	if p.Epochs != nil {
		c.Epochs = make(map[PartitionKey]uint32, len(p.Epochs))
		for k, e := range p.Epochs {
			c.Epochs[k] = e
		}
	}
	return &c
}

func newState() *State {
	return &State{
		Topics:         map[string]*Topic{},
		TopicsByID:     map[uint64]*Topic{},
		Partitions:     map[PartitionKey]*Partition{},
		ObjectRefs:     map[string]int{},
		PendingDeletes: map[string]bool{},
		Groups:         map[string]map[PartitionKey]GroupOffset{},
		Memberships:    map[string]*GroupMembership{},
		Producers:      map[uint64]*Producer{},
		Unreadable:     map[string]uint64{},
		Brokers:        map[string]int32{},
	}
}

// deref drops one reference to an object; the last one queues it for
// deletion.
func (s *State) deref(key string) {
	if key == "" {
		return // a gap: no object
	}
	s.ObjectRefs[key]--
	if s.ObjectRefs[key] <= 0 {
		delete(s.ObjectRefs, key)
		s.PendingDeletes[key] = true
	}
}

// rebuildRefs recomputes ObjectRefs from the partitions' segments.
func (s *State) rebuildRefs() {
	s.ObjectRefs = map[string]int{}
	for _, p := range s.Partitions {
		for _, r := range p.Segments {
			if !r.IsGap() {
				s.ObjectRefs[r.ObjectKey]++
			}
		}
	}
}

func (s *State) sortedPendingDeletes() []string {
	out := make([]string, 0, len(s.PendingDeletes))
	for k := range s.PendingDeletes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (t *Topic) clone() *Topic { c := *t; return &c }

func (p *Partition) clone() *Partition {
	c := *p
	c.Segments = append([]SegmentRef(nil), p.Segments...)
	return &c
}

// snapshotSegments shares a segment list with a snapshot. Apply never
// writes an element of a list in place: it appends (fsm.go, CommitSegment)
// or builds a new list (retention), and the capacity is clipped so an
// append never writes where the snapshot reads.
func snapshotSegments(segs []SegmentRef) []SegmentRef {
	return segs[:len(segs):len(segs)]
}

// clone returns a copy for Snapshot, which runs on Raft's FSM goroutine
// (no Apply meanwhile), so its cost is added to the apply latency of every
// waiting produce. It is deep except for the partitions' segment lists,
// which it shares (snapshotSegments): O(partitions + objects), not
// O(segments).
func (s *State) clone() *State {
	c := newState()
	c.LastApplied = s.LastApplied
	c.Clock = s.Clock
	for name, t := range s.Topics {
		tc := t.clone()
		c.Topics[name] = tc
		c.TopicsByID[tc.ID] = tc
	}
	for k, p := range s.Partitions {
		pc := *p
		pc.Segments = snapshotSegments(p.Segments)
		c.Partitions[k] = &pc
	}
	for k, n := range s.ObjectRefs {
		c.ObjectRefs[k] = n
	}
	for k := range s.PendingDeletes {
		c.PendingDeletes[k] = true
	}
	for g, offs := range s.Groups {
		m := make(map[PartitionKey]GroupOffset, len(offs))
		for k, v := range offs {
			m[k] = v
		}
		c.Groups[g] = m
	}
	for g, m := range s.Memberships {
		c.Memberships[g] = m.clone()
	}
	for id, p := range s.Producers {
		c.Producers[id] = p.clone()
	}
	for k, v := range s.Unreadable {
		c.Unreadable[k] = v
	}
	c.ProducerGeneration, c.MaxUnflushedRecords = s.ProducerGeneration, s.MaxUnflushedRecords
	c.EpochBumps = s.EpochBumps
	for n, id := range s.Brokers {
		c.Brokers[n] = id
	}
	return c
}

// sortedTopics returns topics ordered by name.
func (s *State) sortedTopics() []*Topic {
	out := make([]*Topic, 0, len(s.Topics))
	for _, t := range s.Topics {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sortedPartitionKeys returns partition keys ordered by topic ID then index.
func (s *State) sortedPartitionKeys() []PartitionKey {
	keys := make([]PartitionKey, 0, len(s.Partitions))
	for k := range s.Partitions {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].TopicID != keys[j].TopicID {
			return keys[i].TopicID < keys[j].TopicID
		}
		return keys[i].Partition < keys[j].Partition
	})
	return keys
}

// checkLimits refuses adding topics and partitions past lim. Deterministic:
// it reads only the state and the command.
func (s *State) checkLimits(lim ClusterLimits, topics, partitions int64) *Result {
	if n := int64(len(s.Topics)); lim.MaxTopics > 0 && n+topics > lim.MaxTopics {
		return fail(CodeLimitExceeded, "the cluster holds %d topics and the limit (MAX_TOPICS) is %d: delete topics or raise the limit", n, lim.MaxTopics)
	}
	if n := int64(len(s.Partitions)); lim.MaxPartitions > 0 && n+partitions > lim.MaxPartitions {
		return fail(CodeLimitExceeded, "the cluster holds %d partitions, %d more would pass the limit (MAX_PARTITIONS) of %d: delete topics, use fewer partitions or raise the limit",
			n, partitions, lim.MaxPartitions)
	}
	return nil
}
