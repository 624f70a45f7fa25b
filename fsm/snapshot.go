package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// Snapshot stream format, every item length-prefixed (uvarint):
//
//	magic "SHSNAP04"
//	state item    (LastApplied, topics, partitions with segments, pending
//	               deletes; version 2 adds consumer groups and producers;
//	               version 3 adds the cluster clock and the owners of
//	               producers that have one; version 4 adds the topics'
//	               max.message.bytes where set)
//	lineage item  (tag 2, optional: the DR-restore lineage, restore_state.go)
//	brokers item  (tag 3, optional: Kafka broker IDs, brokers.go; a
//	               section version byte first)
//	producer-epochs item (tag 4, optional: written once a batch allowing a
//	               local epoch bump was applied; the producers' partition
//	               epochs, epochs.go; a section version byte first)
//	membership item (tag 16, optional: consumer-group memberships with their
//	               own version byte, membership_apply.go)
//	batch items   (tag 1 + AppendedBatch), ascending Raft index
//	end item      (tag 0)
//
// Every state is written in the lowest version that holds it
// (stateVersion), so agents of the previous versions can still install
// snapshots during a rolling upgrade: "SHSNAP02" when the cluster clock has
// not started and no producer has an owner (its encoding is version 3's
// without the clock and owner sections), "SHSNAP03" when no topic sets
// max.message.bytes, else "SHSNAP04".
// Restore reads "SHSNAP01" to "SHSNAP04"; versions before 3 restore with
// the cluster clock at 0 (the next leader tick sets it).
const (
	snapshotMagic   = "SHSNAP04"
	snapshotMagicV3 = "SHSNAP03"
	snapshotMagicV2 = "SHSNAP02"
	snapshotMagicV1 = "SHSNAP01"
)

// snapshotVersion is the state item version snapshotMagic announces.
const snapshotVersion = 4

// stateVersion is the lowest state item version that holds st: 4 when a
// topic sets max.message.bytes, 3 when the cluster clock has started or a
// producer has an owner, else 2.
func stateVersion(st *State) int {
	for _, t := range st.Topics {
		if t.Config.MaxMessageBytes != 0 {
			return 4
		}
	}
	if st.Clock != 0 {
		return 3
	}
	for _, p := range st.Producers {
		if p.Owner != "" {
			return 3
		}
	}
	return 2
}

// snapshotMagics maps each state item version to its stream magic.
var snapshotMagics = map[int]string{1: snapshotMagicV1, 2: snapshotMagicV2, 3: snapshotMagicV3, 4: snapshotMagic}

const (
	itemEnd     = 0
	itemBatch   = 1
	itemLineage = 2 // restore_state.go; right after the state item, optional
	itemBrokers = 3 // brokers.go; after the state and lineage items, optional
	// itemProducerEpochs: epochs.go; after the state item, optional
	itemProducerEpochs = 4
)

// maxSnapshotItem bounds one item so a corrupt length cannot exhaust memory.
const maxSnapshotItem = 1 << 30

type fsmSnapshot struct {
	state   *State
	batches BatchSnapshot
}

// Snapshot implements raft.FSM. It runs on the FSM goroutine, copies the
// metadata and pins the unflushed batches in the sink; Persist streams them.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if f.isHalted() {
		// Raft would label the snapshot with an index this state has not
		// reached, and compact away the unapplied entry.
		return nil, ErrHalted
	}
	f.mu.RLock()
	st := f.state.clone()
	f.mu.RUnlock()
	snap := &fsmSnapshot{state: st}
	if f.sink != nil {
		from := make(map[PartitionKey]int64, len(st.Partitions))
		for k, p := range st.Partitions {
			if p.NextOffset > p.FlushedOffset {
				from[k] = p.FlushedOffset
			}
		}
		bs, err := f.sink.SnapshotBatches(from)
		if err != nil {
			return nil, fmt.Errorf("fsm snapshot: %w", err)
		}
		snap.batches = bs
	}
	return snap, nil
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	err := writeSnapshot(w, s.state, s.batches)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {
	if s.batches != nil {
		s.batches.Release()
	}
}

func writeItem(w io.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func writeSnapshot(w io.Writer, st *State, batches BatchSnapshot) error {
	version := stateVersion(st)
	if _, err := io.WriteString(w, snapshotMagics[version]); err != nil {
		return err
	}
	if err := writeItem(w, encodeState(st, version)); err != nil {
		return err
	}
	if st.hasLineage() {
		if err := writeItem(w, encodeLineage(st)); err != nil {
			return err
		}
	}
	if len(st.Brokers) > 0 {
		if err := writeItem(w, encodeBrokers(st)); err != nil {
			return err
		}
	}
	if st.EpochBumps {
		if err := writeItem(w, encodeProducerEpochs(st)); err != nil {
			return err
		}
	}
	if len(st.Memberships) > 0 {
		if err := writeItem(w, encodeMemberships(st)); err != nil {
			return err
		}
	}
	if batches != nil {
		buf := make([]byte, 0, 1<<16)
		err := batches.Each(func(b *AppendedBatch) error {
			e := enc{b: buf[:0]}
			e.u8(itemBatch)
			encodeBatch(&e, b)
			buf = e.b
			return writeItem(w, e.b)
		})
		if err != nil {
			return fmt.Errorf("fsm snapshot: batches: %w", err)
		}
	}
	return writeItem(w, []byte{itemEnd})
}

// encodeState writes the state item in version 2, 3 or 4 (stateVersion;
// version 1 only for tests of old snapshots).
func encodeState(st *State, version int) []byte {
	e := enc{}
	e.uv(st.LastApplied)
	topics := st.sortedTopics()
	e.uv(uint64(len(topics)))
	for _, t := range topics {
		e.uv(t.ID)
		e.str(t.Name)
		e.iv(int64(t.Partitions))
		e.iv(t.Config.RetentionMs)
		e.iv(t.Config.RetentionBytes)
		e.str(t.Config.Compression)
		e.iv(t.CreatedAt)
	}
	keys := st.sortedPartitionKeys()
	e.uv(uint64(len(keys)))
	for _, k := range keys {
		p := st.Partitions[k]
		e.uv(p.TopicID)
		e.iv(int64(p.Index))
		e.str(p.Leader)
		e.uv(p.LeaderEpoch)
		e.iv(p.NextOffset)
		e.iv(p.FlushedOffset)
		e.iv(p.LowWatermark)
		e.uv(uint64(len(p.Segments)))
		for i := range p.Segments {
			r := &p.Segments[i]
			e.str(r.ObjectKey)
			encodeRefBody(&e, r)
			e.iv(r.CommittedAt)
		}
	}
	pending := st.sortedPendingDeletes()
	e.uv(uint64(len(pending)))
	for _, k := range pending {
		e.str(k)
	}
	var producers []ProducerEntry
	if version >= 2 {
		groups := st.groupEntries()
		e.uv(uint64(len(groups)))
		for _, g := range groups {
			e.str(g.Group)
			e.uv(g.TopicID)
			e.iv(int64(g.Partition))
			e.iv(g.Offset)
			e.str(g.Metadata)
			e.iv(g.CommittedAt)
		}
		producers = st.producerEntries()
		e.uv(uint64(len(producers)))
		for _, p := range producers {
			e.uv(p.ID)
			e.uv(uint64(p.Epoch))
			e.iv(p.LastSeen)
			e.uv(uint64(len(p.Sequences)))
			for _, q := range p.Sequences {
				e.uv(q.TopicID)
				e.iv(int64(q.Partition))
				e.iv(q.BaseSeq)
				e.iv(int64(q.Count))
				e.iv(q.BaseOffset)
			}
		}
	}
	if version >= 3 {
		e.iv(st.Clock)
		encodeProducerOwners(&e, producers)
	}
	if version >= 4 {
		encodeTopicLimits(&e, topics)
	}
	return e.b
}

// encodeTopicLimits writes the version-4 section: the topics that set
// max.message.bytes, as (id, bytes) pairs in name order.
func encodeTopicLimits(e *enc, topics []*Topic) {
	n := 0
	for _, t := range topics {
		if t.Config.MaxMessageBytes != 0 {
			n++
		}
	}
	e.uv(uint64(n))
	for _, t := range topics {
		if t.Config.MaxMessageBytes != 0 {
			e.uv(t.ID)
			e.iv(t.Config.MaxMessageBytes)
		}
	}
}

// decodeTopicLimits reads the version-4 section into st's topics.
func decodeTopicLimits(d *dec, st *State) {
	d.each(2, func() {
		id, n := d.uv(), d.iv()
		t, ok := st.TopicsByID[id]
		if d.err == nil && (!ok || n <= 0 || n > MaxMessageBytesLimit) {
			d.fail("topic max message bytes (of an unknown topic, or out of range)")
			return
		}
		if ok {
			t.Config.MaxMessageBytes = n
		}
	})
}

// encodeProducerOwners writes the version-3 section: the producers that
// have an owner, as (id, owner) pairs in id order.
func encodeProducerOwners(e *enc, producers []ProducerEntry) {
	n := 0
	for _, p := range producers {
		if p.Owner != "" {
			n++
		}
	}
	e.uv(uint64(n))
	for _, p := range producers {
		if p.Owner != "" {
			e.uv(p.ID)
			e.str(p.Owner)
		}
	}
}

// decodeProducerOwners reads the version-3 section into st's producers.
func decodeProducerOwners(d *dec, st *State) {
	d.each(2, func() {
		id, owner := d.uv(), d.str()
		p, ok := st.Producers[id]
		if d.err == nil && (!ok || owner == "") {
			d.fail("producer owner (of an unknown producer, or empty)")
			return
		}
		if ok {
			p.Owner = owner
		}
	})
}

func decodeState(b []byte, version int) (*State, error) {
	d := &dec{b: b}
	st := newState()
	st.LastApplied = d.uv()
	d.each(4, func() {
		t := &Topic{}
		t.ID = d.uv()
		t.Name = d.str()
		t.Partitions = d.i32()
		t.Config.RetentionMs = d.iv()
		t.Config.RetentionBytes = d.iv()
		t.Config.Compression = d.str()
		t.CreatedAt = d.iv()
		st.Topics[t.Name] = t
		st.TopicsByID[t.ID] = t
	})
	d.each(8, func() {
		p := &Partition{}
		p.TopicID = d.uv()
		p.Index = d.i32()
		p.Leader = d.str()
		p.LeaderEpoch = d.uv()
		p.NextOffset = d.iv()
		p.FlushedOffset = d.iv()
		p.LowWatermark = d.iv()
		p.Segments = decodeSlice(d, 12, func(r *SegmentRef) {
			r.ObjectKey = d.str()
			decodeRefBody(d, r)
			r.CommittedAt = d.iv()
		})
		st.Partitions[PartitionKey{p.TopicID, p.Index}] = p
	})
	d.each(1, func() { st.PendingDeletes[d.str()] = true })
	if version >= 2 {
		decodeGroupsAndProducers(d, st)
	}
	if version >= 3 {
		st.Clock = d.iv()
		decodeProducerOwners(d, st)
	}
	if version >= 4 {
		decodeTopicLimits(d, st)
	}
	st.rebuildRefs()
	if err := d.done("snapshot state"); err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes in snapshot state", ErrDecode)
	}
	return st, nil
}

// decodeGroupsAndProducers reads the version 2 sections of the state item.
func decodeGroupsAndProducers(d *dec, st *State) {
	d.each(6, func() {
		var g GroupOffsetEntry
		g.Group = d.str()
		g.TopicID = d.uv()
		g.Partition = d.i32()
		g.Offset = d.iv()
		g.Metadata = d.str()
		g.CommittedAt = d.iv()
		st.addGroupEntry(g)
	})
	d.each(4, func() {
		var p ProducerEntry
		p.ID = d.uv()
		p.Epoch = d.u32()
		p.LastSeen = d.iv()
		d.each(5, func() {
			var q ProducerSequence
			q.TopicID = d.uv()
			q.Partition = d.i32()
			q.BaseSeq = d.iv()
			q.Count = d.i32()
			q.BaseOffset = d.iv()
			p.Sequences = append(p.Sequences, q)
		})
		st.addProducerEntry(p)
	})
}

func encodeBatch(e *enc, b *AppendedBatch) {
	e.uv(b.Index)
	e.uv(b.TopicID)
	e.iv(int64(b.Partition))
	e.iv(b.BaseOffset)
	e.iv(int64(b.Count))
	e.iv(b.Timestamp)
	e.bytes(b.Records)
}

func decodeBatch(d *dec) *AppendedBatch {
	b := &AppendedBatch{}
	b.Index = d.uv()
	b.TopicID = d.uv()
	b.Partition = d.i32()
	b.BaseOffset = d.iv()
	b.Count = d.i32()
	b.Timestamp = d.iv()
	b.Records = d.bytes()
	return b
}

// EncodeBatch serialises an AppendedBatch (used by the WAL-backed store).
func EncodeBatch(dst []byte, b *AppendedBatch) []byte {
	e := enc{b: dst}
	encodeBatch(&e, b)
	return e.b
}

// DecodeBatch parses what EncodeBatch wrote. Records alias b.
func DecodeBatch(b []byte) (*AppendedBatch, error) {
	d := &dec{b: b}
	out := decodeBatch(d)
	if err := d.done("batch"); err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes in batch", ErrDecode)
	}
	return out, nil
}

func readItem(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxSnapshotItem {
		return nil, fmt.Errorf("%w: snapshot item of %d bytes", ErrDecode, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// restoreItems reads the items after the state up to the end item: the
// lineage into st, the batches into the sink. Batches of one Raft entry
// (an AppendBatches entry holds several, all with its index) are handed to
// the sink together, as Apply did.
func (f *FSM) restoreItems(r *bufio.Reader, st *State) error {
	var entry []*AppendedBatch
	flush := func() error {
		if f.sink == nil || len(entry) == 0 {
			return nil
		}
		err := f.sink.Materialize(entry)
		if err != nil {
			err = fmt.Errorf("fsm restore: materialise batches of entry %d: %w", entry[0].Index, err)
		}
		entry = entry[:0]
		return err
	}
	for {
		item, err := readItem(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("fsm restore: %w", err)
		}
		if len(item) == 0 {
			return fmt.Errorf("%w: empty snapshot item", ErrDecode)
		}
		switch item[0] {
		case itemEnd:
			return flush()
		case itemLineage:
			if err := decodeLineage(item[1:], st); err != nil {
				return err
			}
			continue
		case itemBrokers:
			if err := decodeBrokers(item[1:], st); err != nil {
				return err
			}
			continue
		case itemProducerEpochs:
			if err := decodeProducerEpochs(item[1:], st); err != nil {
				return err
			}
			continue
		case itemMembership:
			if err := decodeMemberships(item[1:], st); err != nil {
				return err
			}
			continue
		case itemBatch:
		default:
			return fmt.Errorf("%w: unknown snapshot item tag %d", ErrDecode, item[0])
		}
		d := &dec{b: item[1:]}
		b := decodeBatch(d)
		if err := d.done("snapshot batch"); err != nil {
			return err
		}
		if len(entry) > 0 && entry[0].Index != b.Index {
			if err := flush(); err != nil {
				return err
			}
		}
		entry = append(entry, b)
	}
}

// Restore implements raft.FSM: it builds a new state from the stream, hands
// the carried batches to the sink (idempotently) and swaps the state in.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if f.isHalted() {
		return ErrHalted
	}
	r := bufio.NewReaderSize(rc, 1<<20)
	magic := make([]byte, len(snapshotMagic))
	version := 0
	if _, err := io.ReadFull(r, magic); err == nil {
		for v, m := range snapshotMagics {
			if string(magic) == m {
				version = v
			}
		}
	}
	if version == 0 {
		return fmt.Errorf("%w: not a StreamHouse snapshot", ErrDecode)
	}
	item, err := readItem(r)
	if err != nil {
		return fmt.Errorf("fsm restore: state: %w", err)
	}
	st, err := decodeState(item, version)
	if err != nil {
		return err
	}
	if err := f.restoreItems(r, st); err != nil {
		return err
	}
	f.mu.Lock()
	f.state = st
	f.mu.Unlock()
	f.notify()
	return nil
}
