package transport

import "time"

// LocalHealth reports the facts of this agent that a cluster health check
// needs besides readiness and the cluster view (gRPC GetClusterStatus).
type LocalHealth interface {
	LocalHealth() LocalHealthStatus
}

// LocalHealthStatus is one agent's own health facts.
type LocalHealthStatus struct {
	// UnflushedBytes is the agent's unflushed backlog: bytes in its local
	// store not yet in a committed segment.
	UnflushedBytes int64
	Checkpoint     CheckpointStatus
}

// CheckpointStatus is an agent's Postgres checkpointing.
type CheckpointStatus struct {
	Configured          bool // DATABASE_URL is set
	Connected           bool
	Leader              bool          // this agent writes the checkpoints
	Lag                 time.Duration // on the leader: age of the newest state in Postgres
	ConsecutiveFailures int
	LastError           string
	LastRaftIndex       uint64
	LastTakenAt         time.Time
}
