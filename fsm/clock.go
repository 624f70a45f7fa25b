package fsm

// The cluster clock.
//
// Time-based decisions (orphan garbage collection, retention, producer
// expiry, the lateness of forwarded commands) must not depend on one
// agent's wall clock: clocks jump and drift, and two agents' clocks
// disagree. The Raft leader therefore proposes a ClockTick with its own
// time periodically; State.Clock is the largest tick time applied so far.
// It is part of the replicated state: every agent has the same value at the
// same log index, it never goes backwards, and it only moves through the
// log, so a decision that reads it is ordered with every command around it.

// FeatureLevel is the command set this code applies: 2 adds ClockTick,
// CommitSegment payload version 2 and InitProducer payload version 2 to
// level 1. Agents advertise it; the Raft leader starts the cluster clock
// only once every member applies level 2, and proposers use the level-2
// payloads only once the clock has started (Clock() > 0), so agents of an
// older version never see a command they cannot decode during a rolling
// upgrade. Level 3 adds RegisterBroker (brokers.go); the Raft leader
// proposes it only once every member advertises level 3. Level 4 adds
// AppendBatch payload version 5 (AllowEpochBump: per-partition producer
// epochs, DESIGN.md); proposers write it only once every member applies
// level 4 (cluster.Node.MembersAt). Level 5 adds no command: an agent at
// level 5 refuses, as Raft leader, a forward sent to the leader of another
// term, and agents cut forwards to a replaced leader early only once every
// member advertises it (cluster, "A forward ends when its leader is
// replaced"). Level 6 adds no command: an agent at level 6 names its
// cluster on every Raft connection and refuses one from another cluster;
// agents dial an agent gossip shows below level 6 the older way (cluster,
// "Identity"; transport/PEER.md).
const FeatureLevel = 6

// FeatureRaftCluster is the FeatureLevel whose agents name their cluster on
// Raft connections.
const FeatureRaftCluster = 6

// FeatureForwardTerm is the FeatureLevel whose leaders refuse forwards of
// another Raft term.
const FeatureForwardTerm = 5

// FeatureEpochBump is the FeatureLevel that applies AppendBatch payload
// version 5 (AllowEpochBump).
const FeatureEpochBump = 4

// ClockTick carries the Raft leader's time (unix ms) into the state
// machine. Apply keeps the maximum: a tick older than the clock is a no-op.
type ClockTick struct {
	Time int64
}

// Type implements Command.
func (*ClockTick) Type() CommandType { return CmdClockTick }
func (*ClockTick) version() uint8    { return 1 }
func (c *ClockTick) encode(e *enc)   { e.iv(c.Time) }

func decodeClockTick(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdClockTick, v, 1); err != nil {
		return nil, err
	}
	return &ClockTick{Time: d.iv()}, nil
}

func (f *FSM) applyClockTick(c *ClockTick) *Result {
	if c.Time > f.state.Clock {
		f.state.Clock = c.Time
	}
	return &Result{}
}

// Clock returns the cluster clock: the largest leader time applied so far
// (unix ms; 0 before the first tick).
func (f *FSM) Clock() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Clock
}

// commitTime is a segment's commit time: the command's timestamp (the
// uploader's wall clock), but never below the cluster clock, so an
// uploader whose clock is behind cannot make a segment look committed
// long ago. Retention ages segments from it (RetentionPoint, retention.go).
func (s *State) commitTime(c *CommitSegment) int64 {
	return max(c.Timestamp, s.Clock)
}

// NewestKnownTime returns the latest time the state holds: the cluster
// clock, and the commit times of segments, group offsets and producers
// (all from commands; record timestamps, which clients may choose, do not
// count). 0 for a state that holds none. A leader caps the first tick of a
// clock at 0 with it (cluster/clock.go).
func (f *FSM) NewestKnownTime() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t := f.state.Clock
	for _, p := range f.state.Partitions {
		for i := range p.Segments {
			t = max(t, p.Segments[i].CommittedAt)
		}
	}
	for _, g := range f.state.Groups {
		for _, o := range g {
			t = max(t, o.CommittedAt)
		}
	}
	for _, p := range f.state.Producers {
		t = max(t, p.LastSeen)
	}
	return t
}

// uploadExpired reports whether a segment commit arrives after its
// commit-by time. Version 1 commits (CommitBy 0) have no bound.
func (s *State) uploadExpired(c *CommitSegment) bool {
	return c.CommitBy != 0 && s.Clock > c.CommitBy
}
