package pgsync

import "errors"

// Sentinel errors. They come back wrapped with details; test with
// errors.Is.
var (
	// ErrStaleCheckpoint: the image's Raft index is not newer than the
	// latest checkpoint in the database (another leader got further, this
	// leader's state is behind, or the same index was already written). The
	// database is unchanged. For the Checkpointer this is not a failure.
	ErrStaleCheckpoint = errors.New("checkpoint is not newer than the stored one")
	// ErrClusterMismatch: the database belongs to another cluster.
	ErrClusterMismatch = errors.New("database belongs to another StreamHouse cluster")
	// ErrNoCheckpoint: the database holds no checkpoint yet.
	ErrNoCheckpoint = errors.New("no checkpoint in the database")
	// ErrSchemaTooNew: the database schema was migrated by a newer
	// StreamHouse than this binary; upgrade the binary.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")
	// ErrNotLeader: the Source reported that this agent is not the Raft
	// leader, so there is nothing to checkpoint.
	ErrNotLeader = errors.New("not the Raft leader")
	// ErrInvalidImage: the image cannot be stored (duplicate keys,
	// segments out of order, values out of range, text PostgreSQL cannot
	// hold). The database is unchanged.
	ErrInvalidImage = errors.New("invalid image")
)
