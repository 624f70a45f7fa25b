package fsm

import "sort"

// ---- consumer groups ----

func (f *FSM) applyCommitOffsets(c *CommitOffsets) *Result {
	s := f.state
	if err := ValidateGroupName(c.Group); err != nil {
		return fail(CodeInvalid, "%v", err)
	}
	if len(c.Offsets) == 0 {
		return fail(CodeInvalid, "no offsets to commit")
	}
	// Validate everything first: the commit is all or nothing.
	for _, o := range c.Offsets {
		p, res := f.partitionFor(o.TopicID, o.Partition)
		if res != nil {
			return res
		}
		if o.Offset < 0 {
			return fail(CodeInvalid, "offset %d is negative", o.Offset)
		}
		if o.Offset > p.NextOffset {
			return fail(CodeInvalid, "offset %d is past the high watermark %d of partition %d",
				o.Offset, p.NextOffset, o.Partition)
		}
	}
	if res := s.checkCommitMember(c); res != nil {
		return res
	}
	g := s.Groups[c.Group]
	if g == nil {
		if n := int64(len(s.groupNameSet())); c.MaxGroups > 0 && n >= c.MaxGroups && s.Memberships[c.Group] == nil {
			return fail(CodeLimitExceeded, "the cluster holds %d consumer groups and the limit (MAX_GROUPS) is %d: delete unused groups or raise the limit", n, c.MaxGroups)
		}
		g = map[PartitionKey]GroupOffset{}
		s.Groups[c.Group] = g
	}
	for _, o := range c.Offsets {
		g[PartitionKey{o.TopicID, o.Partition}] = GroupOffset{Offset: o.Offset, Metadata: o.Metadata, CommittedAt: c.Timestamp}
	}
	return &Result{}
}

// applyDeleteGroup removes a group's offsets and membership; a group with
// members is not deleted (CodeGroupNotEmpty).
func (f *FSM) applyDeleteGroup(c *DeleteGroup) *Result {
	_, hasOffsets := f.state.Groups[c.Group]
	m, hasMembership := f.state.Memberships[c.Group]
	if !hasOffsets && !hasMembership {
		return fail(CodeGroupNotFound, "consumer group %q not found", c.Group)
	}
	if hasMembership && len(m.Members) > 0 {
		return fail(CodeGroupNotEmpty, "consumer group %q has %d active members: stop them first", c.Group, len(m.Members))
	}
	delete(f.state.Groups, c.Group)
	delete(f.state.Memberships, c.Group)
	return &Result{}
}

// dropTopicFromGroups removes a deleted topic's committed offsets and
// producer sequences.
func (s *State) dropTopicFromGroups(topicID uint64) {
	for name, g := range s.Groups {
		for k := range g {
			if k.TopicID == topicID {
				delete(g, k)
			}
		}
		if len(g) == 0 {
			delete(s.Groups, name)
		}
	}
	for _, p := range s.Producers {
		for k := range p.Recent {
			if k.TopicID == topicID {
				delete(p.Recent, k)
			}
		}
		for k := range p.Epochs {
			if k.TopicID == topicID {
				delete(p.Epochs, k)
			}
		}
	}
}

// GroupOffsets returns a group's committed offsets (nil, false if the group
// does not exist).
func (f *FSM) GroupOffsets(group string) (map[PartitionKey]GroupOffset, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	g, ok := f.state.Groups[group]
	if !ok {
		return nil, false
	}
	out := make(map[PartitionKey]GroupOffset, len(g))
	for k, v := range g {
		out[k] = v
	}
	return out, true
}

// GroupNames returns every consumer group name (with offsets, a
// membership or both), sorted.
func (f *FSM) GroupNames() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]string, 0, len(f.state.Groups)+len(f.state.Memberships))
	for g := range f.state.groupNameSet() {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// ---- idempotent producers ----

func (f *FSM) applyInitProducer(index uint64, c *InitProducer) *Result {
	s := f.state
	// Expire idle producers, deterministically from the cluster clock (the
	// command's own time for version 1 entries).
	now := s.Clock
	if c.ExpireByTimestamp {
		now = c.Timestamp
	}
	for id, p := range s.Producers {
		if now-p.LastSeen > ProducerExpiryMs && id != c.ProducerID {
			delete(s.Producers, id)
		}
	}
	seen := max(c.Timestamp, s.Clock)
	if c.ProducerID == 0 {
		id, res := s.producerID(index)
		if res != nil {
			return res
		}
		p := &Producer{ID: id, Epoch: 0, LastSeen: seen, Owner: c.Owner, Recent: map[PartitionKey][]ProducerBatch{}}
		s.Producers[p.ID] = p
		return &Result{ProducerID: p.ID, ProducerEpoch: p.Epoch}
	}
	p, ok := s.Producers[c.ProducerID]
	if !ok {
		return fail(CodeUnknownProducer, "producer id %d is unknown or expired", c.ProducerID)
	}
	if p.Owner != c.Owner {
		// The owner's name is not told: it would leak another tenant's key.
		return fail(CodeProducerNotOwned, "producer id %d was issued to another API key; only that key may bump its epoch (call InitProducer without a producer id for a new one)", c.ProducerID)
	}
	// Past every partition's epoch: the bump fences every older session
	// everywhere (without local bumps this is Epoch+1, as before). It never
	// wraps to 0, which would un-fence them (MaxProducerEpoch).
	if p.maxEpoch() >= MaxProducerEpoch {
		return fail(CodeInvalid, "producer id %d has used its last epoch; call InitProducer without a producer id for a new one", c.ProducerID)
	}
	p.Epoch = p.maxEpoch() + 1
	p.Epochs = nil
	if c.ExpireByTimestamp {
		p.LastSeen = c.Timestamp // what version 1 always did
	} else {
		p.LastSeen = max(p.LastSeen, seen)
	}
	p.Recent = map[PartitionKey][]ProducerBatch{}
	return &Result{ProducerID: p.ID, ProducerEpoch: p.Epoch}
}

// checkSequence decides what to do with an idempotent batch: a nil result
// means append it (starting a new epoch in the partition when the batch's
// epoch is above the partition's: a local bump); a duplicate returns the
// original offsets. The epoch is the partition's (Producer.epochOf), as
// Kafka's brokers keep it: a bump on one partition leaves the others, and
// the retries of their batches at the old epoch, untouched.
func (f *FSM) checkSequence(k PartitionKey, c *AppendBatch) (res *Result) {
	p, ok := f.state.Producers[c.ProducerID]
	if !ok {
		return fail(CodeUnknownProducer, "producer id %d is unknown or expired", c.ProducerID)
	}
	if c.ProducerOwner != "" && p.Owner != "" && c.ProducerOwner != p.Owner {
		return fail(CodeProducerNotOwned, "producer id %d was issued to another API key; produce with a producer id of your own (call InitProducer)", c.ProducerID)
	}
	cur := p.epochOf(k)
	if c.ProducerEpoch < cur {
		return fail(CodeProducerFenced, "producer %d epoch %d is fenced by epoch %d in partition %d", c.ProducerID, c.ProducerEpoch, cur, c.Partition)
	}
	if c.ProducerEpoch > cur && !c.AllowEpochBump {
		// What the previous version answered (the command says so).
		return fail(CodeUnknownProducer, "producer %d has no epoch %d (current %d)", c.ProducerID, c.ProducerEpoch, cur)
	}
	if c.BaseSequence < 0 {
		return fail(CodeInvalid, "negative sequence number %d", c.BaseSequence)
	}
	if c.ProducerEpoch > cur {
		if c.ProducerEpoch > MaxProducerEpoch {
			return fail(CodeInvalid, "producer %d epoch %d is above the largest epoch %d (call InitProducer without a producer id for a new one)",
				c.ProducerID, c.ProducerEpoch, MaxProducerEpoch)
		}
		if c.BaseSequence != 0 {
			return fail(CodeSequenceGap, "producer %d partition %d: invalid sequence %d for new epoch %d (a new epoch starts at 0)",
				c.ProducerID, c.Partition, c.BaseSequence, c.ProducerEpoch)
		}
		return nil
	}
	recent := p.Recent[k]
	for _, b := range recent {
		if b.BaseSeq == c.BaseSequence && b.Count == c.Count {
			return &Result{BaseOffset: b.BaseOffset, Count: b.Count, Duplicate: true}
		}
	}
	var next int64
	if n := len(recent); n > 0 {
		next = recent[n-1].BaseSeq + int64(recent[n-1].Count)
	}
	if c.BaseSequence != next {
		code := CodeOutOfOrderSequence
		if c.BaseSequence > next {
			code = CodeSequenceGap // the batches between may still arrive
		}
		return fail(code, "producer %d partition %d: sequence %d, expected %d",
			c.ProducerID, c.Partition, c.BaseSequence, next)
	}
	return nil
}

// recordSequence remembers an appended idempotent batch; a batch at a
// newer epoch (checkSequence allowed the bump) first moves the partition
// to that epoch, forgetting the old epoch's batches there.
func (f *FSM) recordSequence(k PartitionKey, c *AppendBatch, base int64) {
	p := f.state.Producers[c.ProducerID]
	if c.ProducerEpoch > p.epochOf(k) {
		if p.Epochs == nil {
			p.Epochs = map[PartitionKey]uint32{}
		}
		p.Epochs[k] = c.ProducerEpoch
		delete(p.Recent, k)
	}
	recent := append(p.Recent[k], ProducerBatch{BaseSeq: c.BaseSequence, Count: c.Count, BaseOffset: base})
	if len(recent) > MaxProducerBatches {
		recent = append([]ProducerBatch(nil), recent[len(recent)-MaxProducerBatches:]...)
	}
	p.Recent[k] = recent
	// The later of the proposer's time and the cluster clock: a proposer
	// whose clock is behind never makes a producer look idle early.
	p.LastSeen = max(p.LastSeen, c.Timestamp, f.state.Clock)
}

// EpochBumps reports whether a batch allowing a local producer epoch bump
// was ever applied (State.EpochBumps): every member must then apply
// FeatureLevel 4.
func (f *FSM) EpochBumps() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.EpochBumps
}

// Producer returns an idempotent producer's identity.
func (f *FSM) Producer(id uint64) (ProducerIdentity, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.state.Producers[id]
	if !ok {
		return ProducerIdentity{}, false
	}
	return ProducerIdentity{ID: p.ID, Epoch: p.Epoch}, true
}
