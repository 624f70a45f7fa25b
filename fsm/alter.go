package fsm

// Apply of the topic-changing commands that came after creation:
// AlterTopicConfig and CreatePartitions (DESIGN.md, "Commands").

func (f *FSM) applyAlterTopicConfig(c *AlterTopicConfig) (*Result, bool) {
	t, ok := f.state.Topics[c.Topic]
	if !ok || (c.TopicID != 0 && c.TopicID != t.ID) {
		return fail(CodeTopicNotFound, "topic %q not found", c.Topic), false
	}
	if len(c.Set) == 0 {
		return fail(CodeInvalid, "no config keys to change"), false
	}
	cfg, err := t.Config.WithUpdates(c.Set)
	if err != nil {
		return fail(CodeInvalid, "%v", err), false
	}
	t.Config = cfg // Topics and TopicsByID share the pointer
	return &Result{TopicID: t.ID}, true
}

func (f *FSM) applyCreatePartitions(c *CreatePartitions) (*Result, bool) {
	s := f.state
	t, ok := s.Topics[c.Topic]
	if !ok || (c.TopicID != 0 && c.TopicID != t.ID) {
		return fail(CodeTopicNotFound, "topic %q not found", c.Topic), false
	}
	if c.Count <= t.Partitions {
		return fail(CodeInvalid, "topic %q has %d partitions; the count can only be raised (asked for %d)", c.Topic, t.Partitions, c.Count), false
	}
	if err := ValidatePartitionCount(c.Count); err != nil {
		return fail(CodeInvalid, "%v", err), false
	}
	if len(c.Leaders) > int(c.Count) {
		return fail(CodeInvalid, "%d leaders for %d partitions", len(c.Leaders), c.Count), false
	}
	if res := s.checkLimits(ClusterLimits{MaxPartitions: c.Limits.MaxPartitions}, 0, int64(c.Count-t.Partitions)); res != nil {
		return res, false
	}
	first := c.Count - int32(len(c.Leaders)) // Leaders[i] is for partition first+i
	for i := t.Partitions; i < c.Count; i++ {
		p := &Partition{TopicID: t.ID, Index: i}
		if i >= first && c.Leaders[i-first] != "" {
			p.Leader = c.Leaders[i-first]
			p.LeaderEpoch = 1
		}
		s.Partitions[PartitionKey{t.ID, i}] = p
	}
	t.Partitions = c.Count
	return &Result{TopicID: t.ID}, true
}
