// Package cluster runs the agent's Raft membership (hashicorp/raft with
// raft-boltdb/v2 and file snapshots), tracks readiness and turns proposals
// into applied results with a clear write outcome. See DESIGN.md.
package cluster
