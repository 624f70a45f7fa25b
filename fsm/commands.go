package fsm

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"unicode/utf8"
)

// CommandType is the first byte of every Raft log entry this FSM applies.
type CommandType uint8

// Command types. ONLY ADD TO THE END: the values are stored in the Raft log.
const (
	cmdInvalid CommandType = iota
	CmdCreateTopic
	CmdDeleteTopic
	CmdAppendBatch
	CmdCommitSegment
	CmdAssignLeader
	CmdTrimPartition
	CmdObjectsDeleted
	CmdCommitOffsets
	CmdDeleteGroup
	CmdInitProducer
	CmdClockTick
	CmdAlterTopicConfig
	CmdCreatePartitions
)

func (c CommandType) String() string {
	switch c {
	case CmdCreateTopic:
		return "CreateTopic"
	case CmdDeleteTopic:
		return "DeleteTopic"
	case CmdAppendBatch:
		return "AppendBatch"
	case CmdCommitSegment:
		return "CommitSegment"
	case CmdAssignLeader:
		return "AssignLeader"
	case CmdTrimPartition:
		return "TrimPartition"
	case CmdObjectsDeleted:
		return "ObjectsDeleted"
	case CmdCommitOffsets:
		return "CommitOffsets"
	case CmdDeleteGroup:
		return "DeleteGroup"
	case CmdInitProducer:
		return "InitProducer"
	case CmdClockTick:
		return "ClockTick"
	case CmdAlterTopicConfig:
		return "AlterTopicConfig"
	case CmdCreatePartitions:
		return "CreatePartitions"
	case CmdAppendBatches:
		return "AppendBatches"
	case CmdRegisterBroker:
		return "RegisterBroker"
	case CmdGroupJoin:
		return "GroupJoin"
	case CmdGroupSync:
		return "GroupSync"
	case CmdGroupRemoveMembers:
		return "GroupRemoveMembers"
	}
	return fmt.Sprintf("CommandType(%d)", uint8(c))
}

// Command is a typed, encodable state-machine command. Every encoded command
// is: type byte, payload version byte, payload.
type Command interface {
	Type() CommandType
	version() uint8
	encode(e *enc)
}

// Encode serialises a command for proposal through Raft.
func Encode(c Command) []byte {
	n := 64
	if s, ok := c.(sizeHinter); ok {
		n = s.sizeHint()
	}
	e := enc{b: make([]byte, 0, n)}
	e.u8(uint8(c.Type()))
	e.u8(c.version())
	c.encode(&e)
	return e.b
}

// sizeHinter is a command whose encoding is mostly record bytes: Encode
// allocates its buffer once, at least as large as the encoding, instead of
// growing it by doubling (a 1,000-record batch is ~110 KB).
type sizeHinter interface {
	sizeHint() int
}

type decoderFunc func(version uint8, d *dec) (Command, error)

// decoders is the registration table: one entry per command type.
var decoders = map[CommandType]decoderFunc{
	CmdCreateTopic:      decodeCreateTopic,
	CmdDeleteTopic:      decodeDeleteTopic,
	CmdAppendBatch:      decodeAppendBatch,
	CmdCommitSegment:    decodeCommitSegment,
	CmdAssignLeader:     decodeAssignLeader,
	CmdTrimPartition:    decodeTrimPartition,
	CmdObjectsDeleted:   decodeObjectsDeleted,
	CmdCommitOffsets:    decodeCommitOffsets,
	CmdDeleteGroup:      decodeDeleteGroup,
	CmdInitProducer:     decodeInitProducer,
	CmdClockTick:        decodeClockTick,
	CmdAlterTopicConfig: decodeAlterTopicConfig,
	CmdCreatePartitions: decodeCreatePartitions,
	CmdAppendBatches:    decodeAppendBatches,
	CmdRegisterBroker:   decodeRegisterBroker,

	CmdGroupJoin:          decodeGroupJoin,
	CmdGroupSync:          decodeGroupSync,
	CmdGroupRemoveMembers: decodeGroupRemoveMembers,
}

// Decode parses an encoded command.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: command of %d bytes", ErrDecode, len(b))
	}
	t := CommandType(b[0])
	fn, ok := decoders[t]
	if !ok {
		return nil, fmt.Errorf("%w: unknown command type %d", ErrDecode, b[0])
	}
	d := &dec{b: b[2:]}
	c, err := fn(b[1], d)
	if err != nil {
		return nil, err
	}
	if err := d.done(t.String()); err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes in %s", ErrDecode, len(d.b), t)
	}
	return c, nil
}

func checkVersion(t CommandType, got, max uint8) error {
	if got == 0 || got > max {
		return fmt.Errorf("%w: %s payload version %d not supported (max %d)", ErrDecode, t, got, max)
	}
	return nil
}

// MaxPartitions bounds the partition count of one topic.
const MaxPartitions = 10000

var topicNameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// ValidateTopicName applies Kafka's topic naming rules.
func ValidateTopicName(name string) error {
	if !topicNameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("invalid topic name %q: use 1-249 characters from [a-zA-Z0-9._-], not \".\" or \"..\"", name)
	}
	return nil
}

// ValidatePartitionCount checks a topic's partition count.
func ValidatePartitionCount(n int32) error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("invalid partition count %d: must be between 1 and %d", n, MaxPartitions)
	}
	return nil
}

// ValidateCompression checks a compression codec name ("" means the default).
func ValidateCompression(c string) error {
	switch c {
	case "", "zstd", "lz4", "none":
		return nil
	}
	return fmt.Errorf("invalid compression %q: use zstd, lz4 or none", c)
}

// ClusterLimits bound the cluster's totals; 0 means unlimited. They travel
// inside the command that could exceed them (the proposer's configured
// values), so every agent applies the same decision to the same entry.
type ClusterLimits struct {
	MaxTopics     int64 // topics in the cluster (MAX_TOPICS)
	MaxPartitions int64 // partitions over all topics (MAX_PARTITIONS)
}

// CreateTopic creates a topic with its initial partition leaders.
// Version 2 added Limits (a version-1 entry applies without limits);
// version 3 adds Config.MaxMessageBytes (written when set).
type CreateTopic struct {
	Name       string
	Partitions int32
	Config     TopicConfig
	// Leaders has one node ID per partition, chosen by the proposer.
	Leaders   []string
	Timestamp int64
	Limits    ClusterLimits
}

// Type implements Command.
func (*CreateTopic) Type() CommandType { return CmdCreateTopic }
func (c *CreateTopic) version() uint8 {
	if c.Config.MaxMessageBytes != 0 {
		return 3
	}
	if c.Limits != (ClusterLimits{}) {
		return 2
	}
	return 1 // readable by agents that predate limits
}

func (c *CreateTopic) encode(e *enc) {
	e.str(c.Name)
	e.iv(int64(c.Partitions))
	e.iv(c.Config.RetentionMs)
	e.iv(c.Config.RetentionBytes)
	e.str(c.Config.Compression)
	e.uv(uint64(len(c.Leaders)))
	for _, l := range c.Leaders {
		e.str(l)
	}
	e.iv(c.Timestamp)
	if c.version() >= 2 {
		e.iv(c.Limits.MaxTopics)
		e.iv(c.Limits.MaxPartitions)
	}
	if c.version() >= 3 {
		e.iv(c.Config.MaxMessageBytes)
	}
}

func decodeCreateTopic(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdCreateTopic, v, 3); err != nil {
		return nil, err
	}
	c := &CreateTopic{}
	c.Name = d.str()
	c.Partitions = d.i32()
	c.Config.RetentionMs = d.iv()
	c.Config.RetentionBytes = d.iv()
	c.Config.Compression = d.str()
	c.Leaders = decodeSlice(d, 1, func(l *string) { *l = d.str() })
	c.Timestamp = d.iv()
	if v >= 2 {
		c.Limits.MaxTopics = d.iv()
		c.Limits.MaxPartitions = d.iv()
	}
	if v >= 3 {
		c.Config.MaxMessageBytes = d.iv()
		if c.Config.MaxMessageBytes == 0 {
			d.fail("create topic v3 without max message bytes")
		}
	}
	return c, nil
}

// DeleteTopic removes a topic and its partitions.
type DeleteTopic struct {
	Name string
}

// Type implements Command.
func (*DeleteTopic) Type() CommandType { return CmdDeleteTopic }
func (*DeleteTopic) version() uint8    { return 1 }
func (c *DeleteTopic) encode(e *enc)   { e.str(c.Name) }

func decodeDeleteTopic(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdDeleteTopic, v, 1); err != nil {
		return nil, err
	}
	return &DeleteTopic{Name: d.str()}, nil
}

// AppendBatch appends records to one partition. Apply assigns the offsets.
// A batch from an idempotent producer (ProducerID != 0) also carries the
// producer's epoch and the sequence number of its first record; Apply
// checks them atomically with the append (see applyAppendBatch).
type AppendBatch struct {
	TopicID     uint64
	Partition   int32
	LeaderEpoch uint64
	Timestamp   int64 // proposer's clock when the batch was sealed
	Count       int32
	// Records is the AppendRecords encoding of Count records.
	Records []byte

	ProducerID    uint64 // 0: not idempotent
	ProducerEpoch uint32
	BaseSequence  int64
	// ProducerOwner is the API key name of the caller; when set, Apply
	// refuses the batch unless the producer has no owner or this one.
	// "" = not checked (no API keys).
	ProducerOwner string

	// MaxUnflushed (> 0) refuses the batch with CodeUnflushedLimit if the
	// partition would then hold more unflushed records than this (the
	// proposer's MAX_UNFLUSHED_RECORDS); 0 = no bound.
	MaxUnflushed int64

	// AllowEpochBump lets an idempotent batch at an epoch above its
	// partition's start that epoch there (sequence 0 only; a KIP-360 local
	// bump, see checkSequence). Written (payload v5) only once every member
	// applies FeatureLevel 4; without it a newer epoch is refused as the
	// previous version did.
	AllowEpochBump bool
}

// Type implements Command.
func (*AppendBatch) Type() CommandType { return CmdAppendBatch }

// version 1 has no producer fields; version 2 adds them; version 3 adds
// the producer owner; version 4 carries the producer fields (0 when none),
// the owner (possibly empty) and MaxUnflushed. Each batch is written in the
// lowest version that holds it; version 5 adds flags (bit 0:
// AllowEpochBump), written when a flag is set.
func (c *AppendBatch) version() uint8 {
	switch {
	case c.AllowEpochBump:
		return 5
	case c.MaxUnflushed != 0:
		return 4
	case c.ProducerID != 0 && c.ProducerOwner != "":
		return 3
	case c.ProducerID != 0:
		return 2
	}
	return 1
}

func (c *AppendBatch) encode(e *enc) {
	e.uv(c.TopicID)
	e.iv(int64(c.Partition))
	e.uv(c.LeaderEpoch)
	e.iv(c.Timestamp)
	e.iv(int64(c.Count))
	e.bytes(c.Records)
	v := c.version()
	if v >= 2 {
		e.uv(c.ProducerID)
		e.uv(uint64(c.ProducerEpoch))
		e.iv(c.BaseSequence)
	}
	if v >= 3 {
		e.str(c.ProducerOwner)
	}
	if v >= 4 {
		e.iv(c.MaxUnflushed)
	}
	if v >= 5 {
		e.uv(appendFlagEpochBump) // the only flag: version 5 is written when it is set
	}
}

// maxAppendBatchFixed bounds an encoded AppendBatch's type and version
// bytes plus every field but the records and the owner's bytes (twelve
// varints, length prefixes included).
const maxAppendBatchFixed = 2 + 12*binary.MaxVarintLen64

func (c *AppendBatch) sizeHint() int {
	return maxAppendBatchFixed + len(c.ProducerOwner) + len(c.Records)
}

// appendFlagEpochBump is AppendBatch v5's flag bit for AllowEpochBump.
const appendFlagEpochBump = 1

func decodeAppendBatch(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdAppendBatch, v, 5); err != nil {
		return nil, err
	}
	c := &AppendBatch{}
	c.TopicID = d.uv()
	c.Partition = d.i32()
	c.LeaderEpoch = d.uv()
	c.Timestamp = d.iv()
	c.Count = d.i32()
	c.Records = d.bytes()
	if v >= 2 {
		c.ProducerID = d.uv()
		c.ProducerEpoch = d.u32()
		c.BaseSequence = d.iv()
		if c.ProducerID == 0 && v == 2 {
			d.fail("append batch v2 without producer id")
		}
	}
	if v >= 3 {
		c.ProducerOwner = d.str()
		if c.ProducerOwner == "" && v == 3 {
			d.fail("append batch v3 producer owner (empty)")
		}
	}
	if v >= 4 {
		c.MaxUnflushed = d.iv()
		if c.MaxUnflushed < 0 || (v == 4 && c.MaxUnflushed == 0) {
			d.fail("append batch v4 without a positive unflushed bound")
		}
	}
	if v >= 5 {
		if flags := d.uv(); flags != appendFlagEpochBump {
			d.fail("append batch v5 flags (unknown bits, or no flag set)")
		}
		c.AllowEpochBump = true
	}
	return c, nil
}

// CommitEntry is one partition's part of a committed segment object.
type CommitEntry struct {
	TopicID     uint64
	Partition   int32
	LeaderEpoch uint64
	Ref         SegmentRef // ObjectKey and CommittedAt are filled from the command
}

// CommitSegment makes an uploaded segment object authoritative for the
// partitions it holds. Each entry is accepted or rejected on its own.
//
// CommitBy (payload version 2) is the cluster time (see State.Clock) after
// which the object may no longer be committed; the uploader also writes it
// into the object key, and orphan garbage collection deletes an
// unreferenced object only once the cluster clock has passed it. A commit
// applied when the clock is past CommitBy is rejected as a whole, so a
// commit and the deletion of its object can never both happen. Version 1
// commands (CommitBy 0) carry no bound and are applied as before.
type CommitSegment struct {
	Node      string
	ObjectKey string
	Timestamp int64
	Entries   []CommitEntry
	CommitBy  int64
}

// Type implements Command.
func (*CommitSegment) Type() CommandType { return CmdCommitSegment }

func (c *CommitSegment) version() uint8 {
	if c.CommitBy != 0 {
		return 2
	}
	return 1
}

func (c *CommitSegment) encode(e *enc) {
	e.str(c.Node)
	e.str(c.ObjectKey)
	e.iv(c.Timestamp)
	if c.CommitBy != 0 {
		e.iv(c.CommitBy)
	}
	e.uv(uint64(len(c.Entries)))
	for i := range c.Entries {
		x := &c.Entries[i]
		e.uv(x.TopicID)
		e.iv(int64(x.Partition))
		e.uv(x.LeaderEpoch)
		encodeRefBody(e, &x.Ref)
	}
}

func encodeRefBody(e *enc, r *SegmentRef) {
	e.iv(r.ByteOffset)
	e.iv(r.ByteLength)
	e.iv(r.BaseOffset)
	e.iv(r.LastOffset)
	e.iv(int64(r.RecordCount))
	e.iv(r.MinTimestamp)
	e.iv(r.MaxTimestamp)
	e.u8(r.Compression)
	e.uv(uint64(r.CRC))
	e.iv(r.UncompressedSize)
}

func decodeRefBody(d *dec, r *SegmentRef) {
	r.ByteOffset = d.iv()
	r.ByteLength = d.iv()
	r.BaseOffset = d.iv()
	r.LastOffset = d.iv()
	r.RecordCount = d.i32()
	r.MinTimestamp = d.iv()
	r.MaxTimestamp = d.iv()
	r.Compression = d.u8()
	r.CRC = uint32(d.uv())
	r.UncompressedSize = d.iv()
}

func decodeCommitSegment(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdCommitSegment, v, 2); err != nil {
		return nil, err
	}
	c := &CommitSegment{}
	c.Node = d.str()
	c.ObjectKey = d.str()
	c.Timestamp = d.iv()
	if v >= 2 {
		c.CommitBy = d.iv()
		if c.CommitBy == 0 {
			d.fail("commit segment v2 without a commit-by time")
		}
	}
	c.Entries = decodeSlice(d, 8, func(x *CommitEntry) {
		x.TopicID = d.uv()
		x.Partition = d.i32()
		x.LeaderEpoch = d.uv()
		decodeRefBody(d, &x.Ref)
	})
	return c, nil
}

// AssignLeader moves a partition's leadership. It applies only if the
// partition's epoch still equals ExpectedEpoch (compare-and-set), and bumps
// the epoch.
type AssignLeader struct {
	TopicID       uint64
	Partition     int32
	Leader        string
	ExpectedEpoch uint64
}

// Type implements Command.
func (*AssignLeader) Type() CommandType { return CmdAssignLeader }
func (*AssignLeader) version() uint8    { return 1 }
func (c *AssignLeader) encode(e *enc) {
	e.uv(c.TopicID)
	e.iv(int64(c.Partition))
	e.str(c.Leader)
	e.uv(c.ExpectedEpoch)
}

func decodeAssignLeader(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdAssignLeader, v, 1); err != nil {
		return nil, err
	}
	c := &AssignLeader{}
	c.TopicID = d.uv()
	c.Partition = d.i32()
	c.Leader = d.str()
	c.ExpectedEpoch = d.uv()
	return c, nil
}

// TrimPartition applies retention: it drops the committed segments of a
// partition that end below Before and moves the low watermark to Before,
// which must be a segment boundary at or below the flushed offset. Objects
// left without any reference are queued for deletion.
//
// Versions: 1 = topic, partition, before, timestamp, applied without a
// retention check (Unfenced; what old log entries decode to, so replaying
// them gives the state the old code produced); 2 = the same fields, and
// Apply refuses the trim (CodeRetentionChanged) unless the topic's config
// at apply time expires everything below Before at Timestamp (the cluster
// clock the proposer read; see trimFence).
type TrimPartition struct {
	TopicID   uint64
	Partition int32
	Before    int64
	Timestamp int64
	// Unfenced selects version 1: no check against the topic's retention.
	Unfenced bool
}

// Type implements Command.
func (*TrimPartition) Type() CommandType { return CmdTrimPartition }

func (c *TrimPartition) version() uint8 {
	if c.Unfenced {
		return 1
	}
	return 2
}

func (c *TrimPartition) encode(e *enc) {
	e.uv(c.TopicID)
	e.iv(int64(c.Partition))
	e.iv(c.Before)
	e.iv(c.Timestamp)
}

func decodeTrimPartition(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdTrimPartition, v, 2); err != nil {
		return nil, err
	}
	c := &TrimPartition{Unfenced: v == 1}
	c.TopicID = d.uv()
	c.Partition = d.i32()
	c.Before = d.iv()
	c.Timestamp = d.iv()
	return c, nil
}

// ObjectsDeleted records that queued objects were deleted from the store.
type ObjectsDeleted struct {
	Keys []string
}

// Type implements Command.
func (*ObjectsDeleted) Type() CommandType { return CmdObjectsDeleted }
func (*ObjectsDeleted) version() uint8    { return 1 }
func (c *ObjectsDeleted) encode(e *enc) {
	e.uv(uint64(len(c.Keys)))
	for _, k := range c.Keys {
		e.str(k)
	}
}

func decodeObjectsDeleted(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdObjectsDeleted, v, 1); err != nil {
		return nil, err
	}
	c := &ObjectsDeleted{}
	c.Keys = decodeSlice(d, 1, func(k *string) { *k = d.str() })
	return c, nil
}

// OffsetCommit is one partition's committed offset in CommitOffsets.
type OffsetCommit struct {
	TopicID   uint64
	Partition int32
	Offset    int64
	Metadata  string
}

// CommitOffsets records a consumer group's committed offsets. It is applied
// all or nothing: every entry must name an existing partition and an offset
// in [0, high watermark].
//
// Version 2 adds MaxGroups, the proposer's MAX_GROUPS (0 = unlimited): a
// commit that would create a group past it is refused. It is written only
// when set, so older agents still decode plain commits.
//
// Version 3 adds the committing member: MemberID and Generation (written
// when MemberID is set, with MaxGroups). Apply refuses it unless the member
// is in the group's current generation (CodeIllegalGeneration,
// CodeUnknownMember; membership.go). A commit without a member (versions
// 1 and 2) is refused while the group has members (CodeUnknownMember).
type CommitOffsets struct {
	Group     string
	Timestamp int64
	Offsets   []OffsetCommit
	MaxGroups int64
	MemberID  string
	// Generation is the member's generation (only with MemberID).
	Generation int32
}

// Type implements Command.
func (*CommitOffsets) Type() CommandType { return CmdCommitOffsets }
func (c *CommitOffsets) version() uint8 {
	switch {
	case c.MemberID != "":
		return 3
	case c.MaxGroups != 0:
		return 2
	}
	return 1
}

func (c *CommitOffsets) encode(e *enc) {
	e.str(c.Group)
	e.iv(c.Timestamp)
	e.uv(uint64(len(c.Offsets)))
	for _, o := range c.Offsets {
		e.uv(o.TopicID)
		e.iv(int64(o.Partition))
		e.iv(o.Offset)
		e.str(o.Metadata)
	}
	if c.version() >= 2 {
		e.iv(c.MaxGroups)
	}
	if c.version() >= 3 {
		e.str(c.MemberID)
		e.iv(int64(c.Generation))
	}
}

func decodeCommitOffsets(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdCommitOffsets, v, 3); err != nil {
		return nil, err
	}
	c := &CommitOffsets{}
	c.Group = d.str()
	c.Timestamp = d.iv()
	c.Offsets = decodeSlice(d, 4, func(o *OffsetCommit) {
		o.TopicID = d.uv()
		o.Partition = d.i32()
		o.Offset = d.iv()
		o.Metadata = d.str()
	})
	if v >= 2 {
		c.MaxGroups = d.iv()
	}
	if v >= 3 {
		c.MemberID = d.str()
		c.Generation = d.i32()
		if c.MemberID == "" {
			d.fail("commit offsets v3 without a member id")
		}
	}
	return c, nil
}

// DeleteGroup removes a consumer group and all its committed offsets.
type DeleteGroup struct {
	Group string
}

// Type implements Command.
func (*DeleteGroup) Type() CommandType { return CmdDeleteGroup }
func (*DeleteGroup) version() uint8    { return 1 }
func (c *DeleteGroup) encode(e *enc)   { e.str(c.Group) }

func decodeDeleteGroup(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdDeleteGroup, v, 1); err != nil {
		return nil, err
	}
	return &DeleteGroup{Group: d.str()}, nil
}

// InitProducer issues an idempotent producer session. ProducerID 0 asks for
// a new producer (its ID is the Raft index of this command); a known ID gets
// its epoch bumped, which fences the previous session and resets its
// sequences. Producers idle for longer than ProducerExpiryMs are expired
// when this command applies: payload versions 2 and 3 measure idleness with
// the cluster clock (State.Clock, the Raft leader's time) unless the v3 flag
// says otherwise; version 1 (old log entries) uses the command's own
// Timestamp, as before.
//
// Owner is who asks (the API key's name; "" without API keys). A new
// producer records it; bumping an existing producer's epoch needs the same
// owner, so a caller cannot fence a producer it did not create.
//
// Versions: 1 = id, timestamp (expiry by timestamp); 2 = the same fields,
// expiry by the cluster clock; 3 = id, timestamp, owner, flags (bit 0:
// expiry by timestamp). Each command is written in the lowest version that
// holds it, so clusters without API keys keep the older encodings.
type InitProducer struct {
	ProducerID uint64
	Timestamp  int64
	// ExpireByTimestamp selects expiry judged by the command's Timestamp:
	// what old log entries decode to, and what a proposer writes while the
	// cluster clock has not started (agents of an older version may still
	// be members; see FeatureLevel).
	ExpireByTimestamp bool
	Owner             string
}

// Type implements Command.
func (*InitProducer) Type() CommandType { return CmdInitProducer }

func (c *InitProducer) version() uint8 {
	if c.Owner != "" {
		return 3
	}
	if c.ExpireByTimestamp {
		return 1
	}
	return 2
}

func (c *InitProducer) encode(e *enc) {
	e.uv(c.ProducerID)
	e.iv(c.Timestamp)
	if c.Owner != "" {
		e.str(c.Owner)
		flags := uint64(0)
		if c.ExpireByTimestamp {
			flags = 1
		}
		e.uv(flags)
	}
}

func decodeInitProducer(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdInitProducer, v, 3); err != nil {
		return nil, err
	}
	c := &InitProducer{ProducerID: d.uv(), Timestamp: d.iv(), ExpireByTimestamp: v == 1}
	if v >= 3 {
		c.Owner = d.str()
		if c.Owner == "" {
			d.fail("InitProducer owner (empty in version 3)")
		}
		c.ExpireByTimestamp = d.uv()&1 == 1
	}
	return c, nil
}

// MaxGroupNameLen bounds consumer group names.
const MaxGroupNameLen = 255

// ValidateGroupName checks a consumer group name: 1-255 bytes of printable
// characters without '/' (group names appear in URL paths).
func ValidateGroupName(name string) error {
	if name == "" || len(name) > MaxGroupNameLen {
		return fmt.Errorf("group name must be 1-%d bytes", MaxGroupNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("group name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '/' {
			return fmt.Errorf("group name %q contains a control character or '/'", name)
		}
	}
	return nil
}

// AlterTopicConfig changes some of a topic's configuration (incremental:
// keys not named keep their value). Set is sorted by key, one entry per key,
// values in Kafka's string form (topicconfig.go); Apply validates them with
// the same pure function the proposer used. TopicID, when set, must be the
// topic's (a deleted and re-created namesake is not altered by mistake).
// Version 1: Topic, Set. Version 2 (written when TopicID is set): Topic,
// TopicID, Set.
type AlterTopicConfig struct {
	Topic   string
	TopicID uint64
	Set     []ConfigEntry
}

// Type implements Command.
func (*AlterTopicConfig) Type() CommandType { return CmdAlterTopicConfig }

// version keeps a command without a topic ID at version 1, which agents
// that predate version 2 read.
func (c *AlterTopicConfig) version() uint8 {
	if c.TopicID != 0 {
		return 2
	}
	return 1
}

func (c *AlterTopicConfig) encode(e *enc) {
	e.str(c.Topic)
	if c.TopicID != 0 {
		e.uv(c.TopicID)
	}
	e.uv(uint64(len(c.Set)))
	for _, x := range c.Set {
		e.str(x.Key)
		e.str(x.Value)
	}
}

func decodeAlterTopicConfig(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdAlterTopicConfig, v, 2); err != nil {
		return nil, err
	}
	c := &AlterTopicConfig{Topic: d.str()}
	if v >= 2 {
		c.TopicID = d.uv()
		if c.TopicID == 0 {
			d.fail("topic id of alter topic config v2")
		}
	}
	c.Set = decodeSlice(d, 2, func(x *ConfigEntry) {
		x.Key = d.str()
		x.Value = d.str()
	})
	return c, nil
}

// CreatePartitions raises a topic's partition count to Count (never
// lowers it). TopicID, when set, must be the topic's (a deleted and
// re-created namesake is not grown by mistake). Leaders are the proposer's
// choice for the highest len(Leaders) partitions of the new count (those
// that already exist when it applies are skipped; partitions without a
// leader are assigned by the controller). Limits.MaxPartitions as in
// CreateTopic (MaxTopics is not checked).
// Version 1.
type CreatePartitions struct {
	Topic   string
	TopicID uint64
	Count   int32
	Leaders []string
	Limits  ClusterLimits
}

// Type implements Command.
func (*CreatePartitions) Type() CommandType { return CmdCreatePartitions }
func (*CreatePartitions) version() uint8    { return 1 }
func (c *CreatePartitions) encode(e *enc) {
	e.str(c.Topic)
	e.uv(c.TopicID)
	e.iv(int64(c.Count))
	e.uv(uint64(len(c.Leaders)))
	for _, l := range c.Leaders {
		e.str(l)
	}
	e.iv(c.Limits.MaxTopics)
	e.iv(c.Limits.MaxPartitions)
}

func decodeCreatePartitions(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdCreatePartitions, v, 1); err != nil {
		return nil, err
	}
	c := &CreatePartitions{Topic: d.str(), TopicID: d.uv(), Count: d.i32()}
	c.Leaders = decodeSlice(d, 1, func(l *string) { *l = d.str() })
	c.Limits.MaxTopics = d.iv()
	c.Limits.MaxPartitions = d.iv()
	return c, nil
}
