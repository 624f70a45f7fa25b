package fsm

import (
	"fmt"
	"io"
	"sort"
)

// Image is a point-in-time copy of the replicated metadata that matters for
// recovery: what pgsync checkpoints to PostgreSQL and what a DR restore
// loads back. It holds no record data (unflushed batches are not part of
// the system of record) and no derived state.
type Image struct {
	// LastApplied is the Raft index the image reflects; RaftTerm its term
	// (filled by the caller that knows it).
	LastApplied uint64
	RaftTerm    uint64
	Topics      []Topic     // ordered by name
	Partitions  []Partition // ordered by topic ID then index; Segments included
	Groups      []GroupOffsetEntry
	Producers   []ProducerEntry
	// PendingDeletes are objects no longer referenced, still to be deleted.
	PendingDeletes []string
	// The DR-restore lineage (restore_state.go).
	Unreadable          []UnreadableObject // by key
	ProducerGeneration  uint64
	MaxUnflushedRecords int64
	// Clock is the cluster clock (clock.go; unix ms, 0 = not started).
	Clock int64
}

// GroupOffsetEntry is one consumer group's committed offset in one partition.
type GroupOffsetEntry struct {
	Group       string
	TopicID     uint64
	Partition   int32
	Offset      int64 // the next offset the group will consume (Kafka semantics)
	Metadata    string
	CommittedAt int64 // unix ms, from the command
}

// ProducerEntry is an idempotent producer's state.
type ProducerEntry struct {
	ID       uint64 // Raft index of the InitProducer command that created it
	Epoch    uint32
	LastSeen int64  // unix ms of its last init or append, from the commands
	Owner    string // the API key name that created it; "" = none
	// Sequences are the producer's most recent batches per partition.
	Sequences []ProducerSequence
	// PartitionEpochs are the partitions whose epoch a local bump raised
	// above Epoch, by topic ID and partition.
	PartitionEpochs []ProducerEpoch
}

// ProducerEpoch is a producer's own epoch in one partition.
type ProducerEpoch struct {
	TopicID   uint64
	Partition int32
	Epoch     uint32
}

// MaxEpoch is the producer's largest epoch in any partition (what the
// Postgres checkpoint stores, and what a restore fences above).
func (e *ProducerEntry) MaxEpoch() uint32 {
	m := e.Epoch
	for _, pe := range e.PartitionEpochs {
		m = max(m, pe.Epoch)
	}
	return m
}

// ProducerSequence is one recent batch of a producer in one partition,
// kept so that a retried batch returns its original offsets.
type ProducerSequence struct {
	TopicID    uint64
	Partition  int32
	BaseSeq    int64
	Count      int32
	BaseOffset int64
}

// IsGap reports whether a segment ref is a recorded hole: offsets that were
// assigned before a disaster but whose records were never flushed and could
// not be recovered. Gaps have no object; readers skip them.
func (r *SegmentRef) IsGap() bool { return r.ObjectKey == "" }

func (s *State) groupEntries() []GroupOffsetEntry {
	var out []GroupOffsetEntry
	for name, g := range s.Groups {
		for k, o := range g {
			out = append(out, GroupOffsetEntry{Group: name, TopicID: k.TopicID, Partition: k.Partition,
				Offset: o.Offset, Metadata: o.Metadata, CommittedAt: o.CommittedAt})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.TopicID != b.TopicID {
			return a.TopicID < b.TopicID
		}
		return a.Partition < b.Partition
	})
	return out
}

func (s *State) addGroupEntry(g GroupOffsetEntry) {
	m := s.Groups[g.Group]
	if m == nil {
		m = map[PartitionKey]GroupOffset{}
		s.Groups[g.Group] = m
	}
	m[PartitionKey{g.TopicID, g.Partition}] = GroupOffset{Offset: g.Offset, Metadata: g.Metadata, CommittedAt: g.CommittedAt}
}

func (s *State) producerEntries() []ProducerEntry {
	out := make([]ProducerEntry, 0, len(s.Producers))
	for _, p := range s.Producers {
		e := ProducerEntry{ID: p.ID, Epoch: p.Epoch, LastSeen: p.LastSeen, Owner: p.Owner}
		for k, bs := range p.Recent {
			for _, b := range bs {
				e.Sequences = append(e.Sequences, ProducerSequence{TopicID: k.TopicID, Partition: k.Partition,
					BaseSeq: b.BaseSeq, Count: b.Count, BaseOffset: b.BaseOffset})
			}
		}
		sort.Slice(e.Sequences, func(i, j int) bool {
			a, b := e.Sequences[i], e.Sequences[j]
			if a.TopicID != b.TopicID {
				return a.TopicID < b.TopicID
			}
			if a.Partition != b.Partition {
				return a.Partition < b.Partition
			}
			return a.BaseSeq < b.BaseSeq
		})
		e.PartitionEpochs = p.partitionEpochs()
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// addProducerEntry adds a producer; its sequences must be in ascending
// order per partition (as producerEntries writes them).
func (s *State) addProducerEntry(e ProducerEntry) {
	p := &Producer{ID: e.ID, Epoch: e.Epoch, LastSeen: e.LastSeen, Owner: e.Owner, Recent: map[PartitionKey][]ProducerBatch{}}
	for _, q := range e.Sequences {
		k := PartitionKey{q.TopicID, q.Partition}
		p.Recent[k] = append(p.Recent[k], ProducerBatch{BaseSeq: q.BaseSeq, Count: q.Count, BaseOffset: q.BaseOffset})
	}
	p.setPartitionEpochs(e.PartitionEpochs)
	s.Producers[p.ID] = p
}

// partitionEpochs lists p.Epochs by topic ID and partition (nil if none).
func (p *Producer) partitionEpochs() []ProducerEpoch {
	var out []ProducerEpoch
	for k, e := range p.Epochs {
		out = append(out, ProducerEpoch{TopicID: k.TopicID, Partition: k.Partition, Epoch: e})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].TopicID != out[j].TopicID {
			return out[i].TopicID < out[j].TopicID
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// setPartitionEpochs sets p.Epochs from es, keeping only epochs above the
// producer-wide one (the others change nothing).
func (p *Producer) setPartitionEpochs(es []ProducerEpoch) {
	for _, pe := range es {
		if pe.Epoch <= p.Epoch {
			continue
		}
		if p.Epochs == nil {
			p.Epochs = map[PartitionKey]uint32{}
		}
		p.Epochs[PartitionKey{pe.TopicID, pe.Partition}] = pe.Epoch
	}
}

// Image returns a copy of the committed metadata for a checkpoint.
func (f *FSM) Image() *Image {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.image()
}

func (s *State) image() *Image {
	img := &Image{LastApplied: s.LastApplied}
	for _, t := range s.sortedTopics() {
		img.Topics = append(img.Topics, *t)
	}
	for _, k := range s.sortedPartitionKeys() {
		img.Partitions = append(img.Partitions, *s.Partitions[k].clone())
	}
	img.Groups = s.groupEntries()
	if ps := s.producerEntries(); len(ps) > 0 {
		img.Producers = ps
	}
	if pd := s.sortedPendingDeletes(); len(pd) > 0 {
		img.PendingDeletes = pd
	}
	s.imageLineage(img)
	img.Clock = s.Clock
	return img
}

// StateFromImage builds state from an image, checking that it is coherent:
// unique topic IDs and names, partitions of known topics within their
// count, segments ascending and contiguous up to the flushed offset, and
// offsets ordered low <= flushed <= next.
func stateFromImage(img *Image) (*State, error) {
	st := newState()
	st.LastApplied = img.LastApplied
	if img.Clock < 0 {
		return nil, fmt.Errorf("image: negative cluster clock %d", img.Clock)
	}
	st.Clock = img.Clock
	for i := range img.Topics {
		t := img.Topics[i]
		if t.ID == 0 || t.ID > img.LastApplied {
			return nil, fmt.Errorf("image: topic %q has id %d outside 1..%d", t.Name, t.ID, img.LastApplied)
		}
		if _, dup := st.Topics[t.Name]; dup {
			return nil, fmt.Errorf("image: topic %q twice", t.Name)
		}
		if _, dup := st.TopicsByID[t.ID]; dup {
			return nil, fmt.Errorf("image: topic id %d twice", t.ID)
		}
		if m := t.Config.MaxMessageBytes; m < 0 || m > MaxMessageBytesLimit {
			return nil, fmt.Errorf("image: topic %q has max message bytes %d outside 0..%d", t.Name, m, MaxMessageBytesLimit)
		}
		st.Topics[t.Name] = &t
		st.TopicsByID[t.ID] = &t
	}
	for i := range img.Partitions {
		p := img.Partitions[i].clone()
		t, ok := st.TopicsByID[p.TopicID]
		if !ok || p.Index < 0 || p.Index >= t.Partitions {
			return nil, fmt.Errorf("image: partition %d of unknown topic id %d", p.Index, p.TopicID)
		}
		if !(p.LowWatermark <= p.FlushedOffset && p.FlushedOffset <= p.NextOffset) {
			return nil, fmt.Errorf("image: partition %d/%d offsets out of order (low %d, flushed %d, next %d)",
				p.TopicID, p.Index, p.LowWatermark, p.FlushedOffset, p.NextOffset)
		}
		at := p.LowWatermark
		if len(p.Segments) > 0 {
			at = p.Segments[0].BaseOffset
			if at > p.LowWatermark {
				return nil, fmt.Errorf("image: partition %d/%d: first segment starts at %d, above the low watermark %d",
					p.TopicID, p.Index, at, p.LowWatermark)
			}
		}
		for _, r := range p.Segments {
			if r.BaseOffset != at || r.LastOffset < r.BaseOffset {
				return nil, fmt.Errorf("image: partition %d/%d: segment [%d,%d] does not continue at %d",
					p.TopicID, p.Index, r.BaseOffset, r.LastOffset, at)
			}
			at = r.LastOffset + 1
		}
		if at != p.FlushedOffset && !(len(p.Segments) == 0 && p.FlushedOffset == p.LowWatermark) {
			return nil, fmt.Errorf("image: partition %d/%d: segments end at %d, flushed offset is %d",
				p.TopicID, p.Index, at, p.FlushedOffset)
		}
		st.Partitions[PartitionKey{p.TopicID, p.Index}] = p
	}
	for _, t := range st.Topics {
		for i := int32(0); i < t.Partitions; i++ {
			if _, ok := st.Partitions[PartitionKey{t.ID, i}]; !ok {
				return nil, fmt.Errorf("image: topic %q lacks partition %d", t.Name, i)
			}
		}
	}
	for _, g := range img.Groups {
		if _, ok := st.Partitions[PartitionKey{g.TopicID, g.Partition}]; ok {
			st.addGroupEntry(g)
		}
	}
	for _, p := range img.Producers {
		st.addProducerEntry(p)
		// Partition epochs exist only where bumps were allowed: the
		// snapshot must carry them (and the level they need).
		st.EpochBumps = st.EpochBumps || len(st.Producers[p.ID].Epochs) > 0
	}
	for _, k := range img.PendingDeletes {
		st.PendingDeletes[k] = true
	}
	if err := st.lineageFromImage(img); err != nil {
		return nil, err
	}
	st.rebuildRefs()
	for k := range st.ObjectRefs {
		delete(st.PendingDeletes, k)
	}
	return st, nil
}

// WriteImageSnapshot writes img as a snapshot stream that Restore accepts
// (no unflushed batches). DR restore seeds a fresh agent's Raft snapshot
// store with it.
func WriteImageSnapshot(w io.Writer, img *Image) error {
	st, err := stateFromImage(img)
	if err != nil {
		return err
	}
	return writeSnapshot(w, st, nil)
}

// ValidateImage reports whether img is coherent enough to restore from.
func ValidateImage(img *Image) error {
	_, err := stateFromImage(img)
	return err
}
