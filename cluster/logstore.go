package cluster

import (
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// openLogStore opens the Bolt file that holds the Raft log and stable
// store. Every commit is still fsynced (NoSync stays false: an entry is
// durable before this agent acknowledges it to the leader). Two Bolt
// options cut the per-commit cost, which profiles showed was mostly
// freelist bookkeeping once snapshots start deleting old entries:
//   - NoFreelistSync: the freelist is not written on every commit; Bolt
//     rebuilds it by scanning the file on open (crash-safe by design).
//   - FreelistMapType: a hashmap freelist instead of a sorted array, so
//     allocating and releasing pages does not merge and copy large slices.
func openLogStore(path string) (*raftboltdb.BoltStore, error) {
	return raftboltdb.New(raftboltdb.Options{
		Path: path,
		BoltOptions: &bbolt.Options{
			Timeout:        5 * time.Second,
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
}
