package fsm

import (
	"encoding/binary"
	"fmt"
)

// CmdAppendBatches is one Raft entry carrying several AppendBatch commands
// (group commit across partitions and requests: an agent's proposal
// coalescer gathers the batches that are ready while its previous entry is
// in flight). Declared outside the iota block: its value is fixed.
const CmdAppendBatches CommandType = 14

// MaxBatchesPerEntry bounds the batches one AppendBatches entry may carry.
const MaxBatchesPerEntry = 4096

// AppendBatches applies each of Batches exactly as an AppendBatch entry of
// its own would be applied, in order, at the same Raft index: each has its
// own epoch check, producer check, unflushed bound and offsets, and its own
// Result (Result.Batches[i]). A refused batch does not fail its neighbours.
//
// Payload version 1: the batch count, then per batch the AppendBatch
// payload version byte and that payload (so every AppendBatch version can
// travel inside).
type AppendBatches struct {
	Batches []*AppendBatch
}

// Type implements Command.
func (*AppendBatches) Type() CommandType { return CmdAppendBatches }
func (*AppendBatches) version() uint8    { return 1 }

func (c *AppendBatches) encode(e *enc) {
	e.uv(uint64(len(c.Batches)))
	for _, b := range c.Batches {
		e.u8(b.version())
		b.encode(e)
	}
}

func (c *AppendBatches) sizeHint() int {
	n := 2 + binary.MaxVarintLen64
	for _, b := range c.Batches {
		n += b.sizeHint()
	}
	return n
}

// minAppendBatchSize is the fewest bytes an encoded batch (with its version
// byte) takes: version, six varints and an empty record blob.
const minAppendBatchSize = 7

func decodeAppendBatches(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdAppendBatches, v, 1); err != nil {
		return nil, err
	}
	c := &AppendBatches{}
	n := d.count(minAppendBatchSize)
	if d.err == nil && (n == 0 || n > MaxBatchesPerEntry) {
		d.fail(fmt.Sprintf("append batches count %d (1..%d)", n, MaxBatchesPerEntry))
	}
	for i := 0; i < n && d.err == nil; i++ {
		bv := d.u8()
		if d.err != nil {
			break
		}
		b, err := decodeAppendBatch(bv, d)
		if err != nil {
			return nil, fmt.Errorf("batch %d: %w", i, err)
		}
		c.Batches = append(c.Batches, b.(*AppendBatch))
	}
	return c, nil
}

func (f *FSM) applyAppendBatches(index uint64, c *AppendBatches) (*Result, bool, error) {
	undo := f.state.saveAppends(c.Batches)
	res := &Result{Batches: make([]Result, len(c.Batches))}
	var stored []*AppendedBatch
	for i, b := range c.Batches {
		r, ab := f.appendOne(index, b)
		r.Index = index
		res.Batches[i] = *r
		if ab != nil {
			stored = append(stored, ab)
		}
	}
	if err := f.materialize(index, stored); err != nil {
		undo.restore(f.state)
		return nil, false, err
	}
	return res, false, nil
}

// materialize hands the batches one entry appended to the Sink (one call
// per entry: they share its index).
func (f *FSM) materialize(index uint64, bs []*AppendedBatch) error {
	if f.sink == nil || len(bs) == 0 {
		return nil
	}
	if err := f.sink.Materialize(bs); err != nil {
		return &sinkError{fmt.Errorf("materialising committed batches at index %d: %w", index, err)}
	}
	return nil
}

// appendOne applies one batch's checks and, when they pass, its state
// change (offsets, producer sequence, the remembered unflushed bound). It
// returns the batch's result and the batch to store (nil when refused or a
// duplicate). The caller stores it and undoes the change if storing fails.
func (f *FSM) appendOne(index uint64, c *AppendBatch) (*Result, *AppendedBatch) {
	if c.AllowEpochBump {
		f.state.EpochBumps = true // whatever the outcome: the level is in use
	}
	p, res := f.partitionFor(c.TopicID, c.Partition)
	if res != nil {
		return res, nil
	}
	if c.Count <= 0 {
		return fail(CodeInvalid, "empty batch"), nil
	}
	k := PartitionKey{c.TopicID, c.Partition}
	if c.ProducerID != 0 {
		// Before the epoch check: a retry of an applied batch gets its
		// original offsets whoever leads the partition now.
		if res := f.checkSequence(k, c); res != nil {
			return res, nil
		}
	}
	if c.LeaderEpoch != p.LeaderEpoch {
		return fail(CodeStaleEpoch, "batch for epoch %d, partition is at epoch %d", c.LeaderEpoch, p.LeaderEpoch), nil
	}
	if res := f.state.checkUnflushedBound(p, c); res != nil {
		return res, nil
	}
	f.state.MaxUnflushedRecords = max(f.state.MaxUnflushedRecords, c.MaxUnflushed)
	b := &AppendedBatch{
		Index: index, TopicID: c.TopicID, Partition: c.Partition,
		BaseOffset: p.NextOffset, Count: c.Count, Timestamp: c.Timestamp, Records: c.Records,
	}
	p.NextOffset += int64(c.Count)
	if c.ProducerID != 0 {
		f.recordSequence(k, c, b.BaseOffset)
	}
	return &Result{BaseOffset: b.BaseOffset, Count: b.Count}, b
}

// appendUndo is what appendOne may change, saved before an entry's batches
// apply, so a Sink failure leaves the state exactly as before the entry
// (ApplyBatch then retries the whole entry).
type appendUndo struct {
	maxUnflushed int64
	epochBumps   bool
	next         map[*Partition]int64
	recent       map[recentKey]savedRecent
	lastSeen     map[*Producer]int64
}

type recentKey struct {
	p *Producer
	k PartitionKey
}

type savedRecent struct {
	batches []ProducerBatch
	present bool
	// The partition's own epoch (Producer.Epochs), which a local bump sets.
	epoch    uint32
	hasEpoch bool
}

// saveAppends records the state that applying bs may change.
func (s *State) saveAppends(bs []*AppendBatch) *appendUndo {
	u := &appendUndo{maxUnflushed: s.MaxUnflushedRecords, epochBumps: s.EpochBumps, next: map[*Partition]int64{}}
	for _, c := range bs {
		k := PartitionKey{c.TopicID, c.Partition}
		if p, ok := s.Partitions[k]; ok {
			if _, seen := u.next[p]; !seen {
				u.next[p] = p.NextOffset
			}
		}
		if c.ProducerID == 0 {
			continue
		}
		pr, ok := s.Producers[c.ProducerID]
		if !ok {
			continue
		}
		if u.recent == nil {
			u.recent, u.lastSeen = map[recentKey]savedRecent{}, map[*Producer]int64{}
		}
		if _, seen := u.recent[recentKey{pr, k}]; !seen {
			r, present := pr.Recent[k]
			e, hasEpoch := pr.Epochs[k]
			u.recent[recentKey{pr, k}] = savedRecent{batches: r, present: present, epoch: e, hasEpoch: hasEpoch}
		}
		if _, seen := u.lastSeen[pr]; !seen {
			u.lastSeen[pr] = pr.LastSeen
		}
	}
	return u
}

// restore puts the saved values back. Restoring a Recent slice header is
// exact: recordSequence only appends past its length or copies.
func (u *appendUndo) restore(s *State) {
	s.MaxUnflushedRecords = u.maxUnflushed
	s.EpochBumps = u.epochBumps
	for p, next := range u.next {
		p.NextOffset = next
	}
	for rk, r := range u.recent {
		if r.present {
			rk.p.Recent[rk.k] = r.batches
		} else {
			delete(rk.p.Recent, rk.k)
		}
		if r.hasEpoch {
			rk.p.Epochs[rk.k] = r.epoch
		} else {
			delete(rk.p.Epochs, rk.k) // a no-op on a nil map
		}
	}
	for pr, seen := range u.lastSeen {
		pr.LastSeen = seen
	}
}
