package partition

import (
	"context"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// Proposer replicates an encoded fsm command and returns its apply result
// (implemented by cluster.Node). Errors wrap fsm.ErrUnavailable or
// fsm.ErrOutcomeUnknown.
type Proposer interface {
	Propose(ctx context.Context, cmd []byte) (*fsm.Result, error)
}

// orderedProposer is a Proposer that can start a proposal and return
// before its outcome is known (implemented by cluster.Node). Commands
// started one after another by one goroutine are applied in that order
// unless an earlier one fails; the returned wait gives the apply result,
// with Propose's error classes.
type orderedProposer interface {
	StartPropose(ctx context.Context, cmd []byte) (wait func() (*fsm.Result, error))
}

// sequencer is the one seam that decides how a partition's sealed batches
// reach the replicated log (implemented by the coalescer over the Proposer:
// every partition of this agent through its one Raft group; a router over
// several groups when partitions are spread over groups). Sequence queues b
// behind every batch queued before it and returns at once; the call's wait
// gives b's own apply result. Errors of Sequence (nothing queued) wrap
// fsm.ErrUnavailable.
type sequencer interface {
	Sequence(ctx context.Context, b *fsm.AppendBatch) (*appendCall, error)
}

// Metadata is the read side of the replicated state (implemented by *fsm.FSM).
type Metadata interface {
	Topic(name string) (fsm.Topic, bool)
	TopicByID(id uint64) (fsm.Topic, bool)
	Topics() []fsm.Topic
	Partition(topicID uint64, part int32) (fsm.PartitionInfo, bool)
	Partitions(topicID uint64) []fsm.PartitionInfo
	AllPartitions() []fsm.PartitionInfo
	SegmentFor(topicID uint64, part int32, offset int64) (fsm.SegmentRef, bool)
	Changed() <-chan struct{}
	LastApplied() uint64
	Segments(topicID uint64, part int32) []fsm.SegmentRef
	PendingDeletes() []string
	ObjectReferenced(key string) bool
	GroupOffsets(group string) (map[fsm.PartitionKey]fsm.GroupOffset, bool)
	GroupNames() []string
	// Membership and Memberships read the consumer groups' replicated
	// membership (fsm/membership.go).
	Membership(group string) (fsm.GroupMembership, bool)
	Memberships() []fsm.GroupMembership
	// Clock is the cluster clock (unix ms): the Raft leader's time as the
	// applied log carries it, never decreasing (fsm/clock.go).
	Clock() int64
}

// SegmentPart is one partition's records for a segment object.
type SegmentPart struct {
	TopicID     uint64
	Topic       string
	Partition   int32
	Compression string
	Records     []fsm.FetchedRecord // dense ascending offsets
}

// SegmentStore writes and reads segment objects (implemented over s3seg by
// the agent's wiring).
type SegmentStore interface {
	// WriteSegment encodes parts into one new object and stores it. refs[i]
	// describes parts[i] (ObjectKey set to the new key). commitBy (cluster
	// time, unix ms) is written into the key, so ListObjects can report it
	// for garbage collection without reading the object; 0 = no bound (a
	// key without it, never collected as an orphan).
	WriteSegment(ctx context.Context, parts []SegmentPart, commitBy int64) (key string, refs []fsm.SegmentRef, err error)
	// ReadSegment returns the records of one committed partition block. The
	// slice may be shared with other readers (a decoded-block cache): callers
	// must not modify it.
	ReadSegment(ctx context.Context, topicID uint64, partition int32, ref fsm.SegmentRef) ([]fsm.FetchedRecord, error)
	// Prefetch warms the cache with a block expected to be read next.
	Prefetch(ctx context.Context, topicID uint64, partition int32, ref fsm.SegmentRef)
	// ListObjects lists segment objects (for garbage collection).
	ListObjects(ctx context.Context) ([]ObjectInfo, error)
	// DeleteObject deletes one segment object; a missing object is not an error.
	DeleteObject(ctx context.Context, key string) error
}

// ObjectInfo describes a stored segment object.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time
	// CommitBy is the cluster time after which no CommitSegment can make
	// the object authoritative (from its key); 0 for keys written before
	// keys carried it, which garbage collection never deletes.
	CommitBy int64
}

// Leadership tells whether this agent runs the cluster-wide loops
// (implemented by cluster.Node). LeaderReady is true only on the Raft
// leader after its barrier: its state machine has applied every entry of
// earlier terms, so it is at least as new as anything committed.
type Leadership interface {
	LeaderReady() bool
}

// Syncer gives a read a linearizable point: SyncRead returns once this
// agent has applied everything committed before the call (implemented by
// cluster.Node). Errors wrap fsm.ErrUnavailable.
type Syncer interface {
	SyncRead(ctx context.Context) error
}

// ReadBarrier holds a read of partition state (records, watermarks) until
// it includes every produce this agent acknowledged (implemented by
// cluster.Node, which answers a forwarded produce entry once the Raft
// leader applied it, before its own state machine does). When nothing is
// outstanding it returns at once. Errors wrap fsm.ErrUnavailable (this
// agent did not apply an acknowledged entry within its apply timeout) or
// are ctx's.
type ReadBarrier interface {
	AwaitAcked(ctx context.Context) error
}

// Placement picks leaders for new partitions (implemented by cluster.Node).
type Placement interface {
	Placement(count int32) []string
}

// Forwarder sends a produce request to the agent that leads the records'
// partitions (every record has an explicit partition). The receiving agent
// does not forward again. Errors wrap fsm.ErrUnavailable when the request
// definitely was not applied and fsm.ErrOutcomeUnknown when it may have been.
type Forwarder interface {
	ForwardProduce(ctx context.Context, nodeID, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error)
	ForwardIdempotent(ctx context.Context, nodeID string, b fsm.IdempotentBatch) (fsm.IdempotentResult, error)
}

// Admission can refuse a produce request before anything is proposed
// (implemented by *DiskGuard, and by stallAdmission: an agent stalled on
// local storage). Errors wrap fsm.ErrUnavailable: definitely not written.
type Admission interface {
	Admit() error
}

// State is the replicated state machine as the service uses it
// (implemented by *fsm.FSM): the metadata, and the stall on local storage
// (a full disk) that refuses produce and is retried when space is back.
type State interface {
	Metadata
	Stalled() (fsm.StallStatus, bool)
	RetryNow()
}

// Levels tells whether every member of the Raft group applies an
// fsm.FeatureLevel, so this agent may propose what that level added
// (implemented by cluster.Node).
type Levels interface {
	MembersAt(level int) bool
}

// Node is this agent's member of the Raft group (implemented by
// cluster.Node): it proposes, confirms reads, holds reads until they see
// what it acknowledged, places and leads, reports
// whether it can serve, and reclaims Raft log space while the disk is low.
type Node interface {
	Proposer
	Syncer
	ReadBarrier
	Placement
	Leadership
	Levels
	// LeaderID is the Raft leader's node ID as this node knows it ("" when
	// none is known): the group coordinator others are sent to.
	LeaderID() string
	// Ready reports whether the node can serve (leader known, log applied),
	// with the reason /ready gives when not.
	Ready() (bool, string)
	// ReclaimDisk tells the node that free disk space is below (true) or
	// back above the floor: it hands Raft leadership away and compacts the
	// Raft log, on its own goroutine. It never blocks.
	ReclaimDisk(low bool)
	// StorageStall reports that nothing new can apply on this agent until
	// its disk takes a write: the FSM's stall on local storage, or this
	// agent's own write of Raft log entries it led failing or hung.
	StorageStall() (fsm.StallStatus, bool)
}

// ObjectChecker checks that the object store is reachable, its bucket
// exists and the credentials are valid (implemented by s3seg.ObjectStore).
type ObjectChecker interface {
	Check(ctx context.Context) error
}
