package transport

import (
	"net/http"
	"strconv"
)

// Durability reports where this agent's records stand on their way to
// durable storage (implemented by the agent's wiring over
// partition.Service). Both calls must be cheap and bounded: the console
// polls them. The checkpoint half comes from LocalHealth.
type Durability interface {
	// Durability is this agent's flush backlog (Checkpoint left nil).
	Durability() DurabilityStatus
	// PartitionStorage describes partitions [from, from+count) of topic
	// (the implementation may return fewer; fsm.ErrTopicNotFound when the
	// topic does not exist).
	PartitionStorage(topic string, from, count int32) ([]PartitionStorage, error)
}

// DurabilityCheckpoint is the agent's last Postgres checkpoint.
type DurabilityCheckpoint struct {
	Connected bool `json:"connected"`
	// Leader: this agent is the Raft leader, the one that writes them.
	Leader bool `json:"leader"`
	// LastAt is when the last checkpoint this agent wrote was taken (unix
	// ms; 0: none yet).
	LastAt        int64  `json:"last_at_ms"`
	LastRaftIndex uint64 `json:"last_raft_index"`
	// LagMs: on the leader, the age of the newest state known to be in
	// Postgres (streamhouse_checkpoint_lag_seconds); 0 elsewhere.
	LagMs               int64  `json:"lag_ms"`
	ConsecutiveFailures int    `json:"consecutive_failures"`
	FailuresTotal       int64  `json:"failures_total"`
	LastError           string `json:"last_error,omitempty"`
}

// DurabilityStatus is one agent's answer of GET /api/v1/durability.
type DurabilityStatus struct {
	NodeID string `json:"node_id"`
	// Ready and NotReadyReason are the agent's /ready answer.
	Ready          bool   `json:"ready"`
	NotReadyReason string `json:"not_ready_reason,omitempty"`
	// Partitions this agent leads, i.e. uploads.
	LedPartitions       int   `json:"led_partitions"`
	UnflushedRecords    int64 `json:"unflushed_records"`
	UnflushedPartitions int   `json:"unflushed_partitions"`
	LedUnflushedBytes   int64 `json:"led_unflushed_bytes"`
	// UnflushedBytes is the local store's size (streamhouse_unflushed_bytes).
	UnflushedBytes int64 `json:"unflushed_bytes"`
	// ClusterUnflushedRecords: over every partition (every agent agrees).
	ClusterUnflushedRecords int64 `json:"cluster_unflushed_records"`
	// OldestUnflushedMs is the timestamp of the oldest record this agent
	// has still to upload (0: none); OldestUnflushedAgeMs its age.
	OldestUnflushedMs    int64 `json:"oldest_unflushed_ms"`
	OldestUnflushedAgeMs int64 `json:"oldest_unflushed_age_ms"`
	// LastSegmentCommitMs: the newest commit time of the last flushed
	// segment of a partition this agent leads (0: none).
	LastSegmentCommitMs int64 `json:"last_segment_commit_ms"`
	NowMs               int64 `json:"now_ms"`
	// SegmentsWritten and UploadFailures are this agent's counters
	// (streamhouse_segment_writes_total, _upload_failures_total).
	SegmentsWritten int64 `json:"segments_written"`
	UploadFailures  int64 `json:"upload_failures"`
	// Checkpoint is nil when DATABASE_URL is not set (no DR from Postgres).
	Checkpoint *DurabilityCheckpoint `json:"checkpoint"`
}

// PartitionStorage is one partition's storage state.
type PartitionStorage struct {
	Partition           int32  `json:"partition"`
	Leader              string `json:"leader"`
	LeaderEpoch         uint64 `json:"leader_epoch"`
	LowWatermark        int64  `json:"low_watermark"`
	HighWatermark       int64  `json:"high_watermark"`
	FlushedOffset       int64  `json:"flushed_offset"`
	UnflushedRecords    int64  `json:"unflushed_records"`
	UnflushedBytes      int64  `json:"unflushed_bytes"`
	OldestUnflushedMs   int64  `json:"oldest_unflushed_ms"`
	Segments            int    `json:"segments"`
	Objects             int    `json:"objects"`
	SegmentBytes        int64  `json:"segment_bytes"`
	LastSegmentCommitMs int64  `json:"last_segment_commit_ms"`
}

// RecoveryPoint is what a disaster restore from Postgres and the bucket
// would lose if every agent's disk were lost now: the records not yet in
// a segment object (restore resumes after what S3 and Postgres evidence).
type RecoveryPoint struct {
	RecordsAtRisk int64 `json:"records_at_risk"`
	// WindowMs is the age of the oldest record at risk (0: nothing at risk).
	WindowMs int64 `json:"window_ms"`
	// RestoreCommand rebuilds a cluster's state in an empty DATA_DIR.
	RestoreCommand string `json:"restore_command"`
}

// DurabilityResponse is the body of GET /api/v1/durability.
type DurabilityResponse struct {
	Agents        []DurabilityAgent `json:"agents"`
	RecoveryPoint RecoveryPoint     `json:"recovery_point"`
}

// DurabilityAgent is one agent's row: its status, or why it did not answer.
type DurabilityAgent struct {
	*DurabilityStatus
	ID    string `json:"id"`
	Error string `json:"error,omitempty"`
}

// restoreCommand is what the DR page shows (cmd/streamhouse/CLI.md).
const restoreCommand = "DATA_DIR=/empty/dir DATABASE_URL=... S3_BUCKET=... streamhouse restore && streamhouse agent"

// handleDurability serves GET /api/v1/durability: every agent's status
// (this one's directly, the other admitted agents' over the peer channel,
// in parallel, each bounded by peerTimeout: peerread.go), with
// scope=local only this agent's.
func (s *HTTPServer) handleDurability(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Durability == nil {
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: "durability status is not available on this agent"}
	}
	local := s.localDurability()
	if r.URL.Query().Get("scope") == "local" {
		writeJSON(w, http.StatusOK, local)
		return nil
	}
	agents := []DurabilityAgent{{DurabilityStatus: &local, ID: local.NodeID}}
	for _, res := range s.fromPeers(r, PeerDurabilityPath, local.NodeID) {
		a := DurabilityAgent{ID: res.id, Error: res.err}
		if res.err == "" {
			var st DurabilityStatus
			if err := decodePeerJSON(res.body, &st); err != nil {
				a.Error = err.Error()
			} else {
				a.DurabilityStatus = &st
			}
		}
		agents = append(agents, a)
	}
	writeJSON(w, http.StatusOK, DurabilityResponse{Agents: agents, RecoveryPoint: recoveryPoint(agents)})
	return nil
}

// localDurability is this agent's status with the counters from its own
// registry (so the page shows what /metrics shows).
func (s *HTTPServer) localDurability() DurabilityStatus {
	st := s.cfg.Durability.Durability()
	st.Ready, st.NotReadyReason = s.ready.Ready()
	if st.OldestUnflushedMs > 0 {
		st.OldestUnflushedAgeMs = max(st.NowMs-st.OldestUnflushedMs, 0)
	}
	m := gatherScalars(s.cfg.Gatherer, nil)
	st.SegmentsWritten = int64(m["streamhouse_segment_writes_total"])
	st.UploadFailures = int64(m["streamhouse_segment_upload_failures_total"])
	if s.cfg.LocalHealth != nil {
		if cp := s.cfg.LocalHealth.LocalHealth().Checkpoint; cp.Configured {
			st.Checkpoint = &DurabilityCheckpoint{Connected: cp.Connected, Leader: cp.Leader,
				LastRaftIndex: cp.LastRaftIndex, LagMs: cp.Lag.Milliseconds(),
				ConsecutiveFailures: cp.ConsecutiveFailures, LastError: cp.LastError,
				FailuresTotal: int64(m["streamhouse_checkpoint_failures_total"])}
			if !cp.LastTakenAt.IsZero() {
				st.Checkpoint.LastAt = cp.LastTakenAt.UnixMilli()
			}
		}
	}
	return st
}

// recoveryPoint: every agent holds the same replicated state, so the
// cluster-wide unflushed count of any answering agent is the records at
// risk; the window is the oldest unflushed record over the uploaders.
func recoveryPoint(agents []DurabilityAgent) RecoveryPoint {
	rp := RecoveryPoint{RestoreCommand: restoreCommand}
	for _, a := range agents {
		if a.DurabilityStatus == nil {
			continue
		}
		rp.RecordsAtRisk = max(rp.RecordsAtRisk, a.ClusterUnflushedRecords)
		rp.WindowMs = max(rp.WindowMs, a.OldestUnflushedAgeMs)
	}
	return rp
}

// maxStoragePage bounds GET /api/v1/topics/{name}/storage.
const maxStoragePage = 200

// handlePartitionStorage serves GET /api/v1/topics/{name}/storage?from=&count=.
func (s *HTTPServer) handlePartitionStorage(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.authorize(r, ScopeRead, name); err != nil {
		return err
	}
	if s.cfg.Durability == nil {
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: "partition storage is not available on this agent"}
	}
	from, err := intParam(r, "from", 0)
	if err != nil {
		return err
	}
	count, err := intParam(r, "count", 50)
	if err != nil {
		return err
	}
	if count > maxStoragePage {
		return badRequest("count: at most %d partitions per request", maxStoragePage)
	}
	t, err := s.topics.Topic(name)
	if err != nil {
		return err
	}
	ps, err := s.cfg.Durability.PartitionStorage(name, int32(from), int32(count))
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []PartitionStorage{}
	}
	writeJSON(w, http.StatusOK, StorageResponse{Topic: s.toTopicJSON(t), From: from, Partitions: ps})
	return nil
}

// StorageResponse is the body of GET /api/v1/topics/{name}/storage.
type StorageResponse struct {
	Topic      TopicJSON          `json:"topic"`
	From       int                `json:"from"`
	Partitions []PartitionStorage `json:"partitions"`
}

// intParam parses a non-negative 32-bit query parameter (def when absent).
func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return 0, badRequest("%s: expected an integer >= 0, got %q", name, clip(v))
	}
	return int(n), nil
}
