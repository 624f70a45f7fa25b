package main

import "github.com/streamhouse/streamhouse/transport"

// agentHealth gives GetClusterStatus the agent's unflushed backlog and its
// checkpointing (transport.LocalHealth).
type agentHealth struct{ a *agent }

func (h agentHealth) LocalHealth() transport.LocalHealthStatus {
	out := transport.LocalHealthStatus{UnflushedBytes: h.a.store.Bytes()}
	if cp := h.a.checkpoints; cp != nil {
		st := cp.Status()
		out.Checkpoint = transport.CheckpointStatus{
			Configured: true, Connected: st.Connected, Leader: st.Leader, Lag: st.Lag,
			ConsecutiveFailures: st.ConsecutiveFailures, LastError: st.LastError,
			LastRaftIndex: st.Last.RaftIndex, LastTakenAt: st.Last.TakenAt,
		}
	}
	return out
}
