package fsm

import (
	"fmt"
	"sort"
)

// DR-restore lineage: the state a disaster restore plants and later
// restores read back (pgsync checkpoints it with the rest of the image).
//
//   - Unreadable: objects a restore listed but could not read, and that the
//     operator chose to restore without (--allow-unreadable). Each maps to
//     the Raft index of the checkpoint that restore started from. Nothing
//     deletes them (ObjectReferenced reports them), so a later restore, or
//     an operator, can still read them.
//   - ProducerGeneration: producer IDs are ProducerGeneration<<44 | Raft
//     index of the InitProducer command. Every restore takes a new
//     generation, so the restored cluster's IDs can never equal one the old
//     cluster issued, however far its log ran past the last checkpoint.
//   - MaxUnflushedRecords: the largest MaxUnflushed bound carried by an
//     applied AppendBatch. With every batch bounded, no partition ever held
//     more unflushed records than this, so a restore knows how many offsets
//     may have been acknowledged beyond its evidence.

// ProducerIndexBits is how many low bits of a producer ID hold the Raft
// index of its InitProducer; the bits above hold the generation.
const ProducerIndexBits = 44

// MaxProducerGeneration bounds the generation so that IDs stay below 2^63
// (Postgres bigint).
const MaxProducerGeneration = 1<<(63-ProducerIndexBits) - 1

// UnreadableObject is an object a DR restore could not read.
type UnreadableObject struct {
	Key string
	// RestoredFrom is the Raft index of the checkpoint the restore that
	// could not read it started from: topics this object holds with an ID
	// at or below it that the checkpoint did not have had been deleted.
	RestoredFrom uint64
}

// producerID returns the ID a new producer created at index gets, or an
// error result when the index no longer fits below the generation bits.
func (s *State) producerID(index uint64) (uint64, *Result) {
	if index >= 1<<ProducerIndexBits {
		return 0, fail(CodeInvalid, "raft index %d is beyond the producer-id space (2^%d)", index, ProducerIndexBits)
	}
	return s.ProducerGeneration<<ProducerIndexBits | index, nil
}

// checkUnflushedBound refuses a batch that would leave the partition with
// more unflushed records than the batch's bound, and otherwise remembers
// the bound.
func (s *State) checkUnflushedBound(p *Partition, c *AppendBatch) *Result {
	if c.MaxUnflushed <= 0 {
		return nil
	}
	if held := p.NextOffset - p.FlushedOffset; held+int64(c.Count) > c.MaxUnflushed {
		return fail(CodeUnflushedLimit, "partition %d/%d holds %d unflushed records; %d more would exceed %d (segment uploads are behind)",
			p.TopicID, p.Index, held, c.Count, c.MaxUnflushed)
	}
	return nil
}

func (s *State) unreadableEntries() []UnreadableObject {
	out := make([]UnreadableObject, 0, len(s.Unreadable))
	for k, from := range s.Unreadable {
		out = append(out, UnreadableObject{Key: k, RestoredFrom: from})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// imageLineage copies the lineage into an image.
func (s *State) imageLineage(img *Image) {
	if u := s.unreadableEntries(); len(u) > 0 {
		img.Unreadable = u
	}
	img.ProducerGeneration, img.MaxUnflushedRecords = s.ProducerGeneration, s.MaxUnflushedRecords
}

// lineageFromImage copies an image's lineage into state.
func (s *State) lineageFromImage(img *Image) error {
	if img.ProducerGeneration > MaxProducerGeneration {
		return fmt.Errorf("image: producer generation %d above %d", img.ProducerGeneration, MaxProducerGeneration)
	}
	if img.MaxUnflushedRecords < 0 {
		return fmt.Errorf("image: negative unflushed-record bound %d", img.MaxUnflushedRecords)
	}
	for _, u := range img.Unreadable {
		if u.Key == "" {
			return fmt.Errorf("image: unreadable object without a key")
		}
		s.Unreadable[u.Key] = u.RestoredFrom
	}
	s.ProducerGeneration, s.MaxUnflushedRecords = img.ProducerGeneration, img.MaxUnflushedRecords
	return nil
}

func (s *State) hasLineage() bool {
	return len(s.Unreadable) > 0 || s.ProducerGeneration != 0 || s.MaxUnflushedRecords != 0
}

// The lineage travels in its own snapshot item (tag itemLineage), written
// after the state item only when there is any, so snapshots of clusters
// that never restored or bounded a batch stay byte-identical to before.
func encodeLineage(s *State) []byte {
	e := enc{}
	e.u8(itemLineage)
	e.uv(s.ProducerGeneration)
	e.iv(s.MaxUnflushedRecords)
	u := s.unreadableEntries()
	e.uv(uint64(len(u)))
	for _, o := range u {
		e.str(o.Key)
		e.uv(o.RestoredFrom)
	}
	return e.b
}

func decodeLineage(b []byte, s *State) error {
	d := &dec{b: b}
	s.ProducerGeneration = d.uv()
	s.MaxUnflushedRecords = d.iv()
	d.each(2, func() {
		k := d.str()
		s.Unreadable[k] = d.uv()
	})
	if err := d.done("snapshot lineage"); err != nil {
		return err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: trailing bytes in snapshot lineage", ErrDecode)
	}
	if s.ProducerGeneration > MaxProducerGeneration || s.MaxUnflushedRecords < 0 {
		return fmt.Errorf("%w: snapshot lineage out of range", ErrDecode)
	}
	return nil
}
