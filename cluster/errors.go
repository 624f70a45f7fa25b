package cluster

import "errors"

// Sentinel errors of the cluster package. Write-outcome errors are the fsm
// package's (fsm.ErrUnavailable, fsm.ErrOutcomeUnknown): Propose wraps one
// of them whenever it fails, locally or across a forwarding hop.
var (
	// ErrConfig: the Config cannot work (missing field, contradictory
	// bootstrap settings).
	ErrConfig = errors.New("cluster: invalid configuration")
	// ErrNotStarted: the node has not been started (or failed to start).
	ErrNotStarted = errors.New("cluster: node not started")
	// ErrClosed: the node has been closed.
	ErrClosed = errors.New("cluster: node closed")
	// ErrRaftLogLost: DATA_DIR/raft/raft.db says the Raft log is in
	// raft/wal, which is missing; the agent refuses to start.
	ErrRaftLogLost = errors.New("cluster: the raft log directory is missing although raft.db says it held the log")
	// ErrRaftStateLost: DATA_DIR/raft/wal holds a Raft log but raft.db
	// has no term (it was lost or replaced); the agent refuses to start.
	ErrRaftStateLost = errors.New("cluster: raft.db has lost the term and vote of the raft log next to it")
	// ErrRaftLogSyncFailed: an fsync of the Raft log failed when the
	// agent started (DATA_DIR/raft/wal/sync-failed records it); the agent
	// refuses to start, since which entries the disk lost is unknown.
	ErrRaftLogSyncFailed = errors.New("cluster: an fsync of the raft log failed at an earlier start; what it held may never have reached the disk")
	// errLeaderChanged is the cause of a forward cut short because this
	// agent observed another Raft leader than the one it forwarded to
	// (forwards.go). It is wrapped next to the outcome class, never
	// instead of it.
	errLeaderChanged = errors.New("the raft leader changed while the forward was in flight")
)
