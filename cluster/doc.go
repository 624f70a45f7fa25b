// Package cluster makes agents one cluster: hashicorp/raft (raft-boltdb/v2,
// file snapshots) over the shared peer port, memberlist gossip for
// discovery and failure detection, bootstrap, the Raft leader's loop
// (membership reconciliation and the partition-leadership controller) and
// proposal forwarding that keeps the write-outcome class across the hop.
// See DESIGN.md.
package cluster
