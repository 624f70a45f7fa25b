// Package fsm is StreamHouse's replicated state machine: typed commands, a
// deterministic Apply, the in-memory metadata every agent serves from, and
// snapshots that carry the not-yet-flushed record batches. See DESIGN.md.
package fsm
