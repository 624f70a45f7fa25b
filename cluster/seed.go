package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// ErrHasState is returned by SeedRestoredState when the data dir already
// holds Raft state: a restore never overwrites a live agent.
var ErrHasState = errors.New("cluster: the data dir already holds Raft state")

// SeedConfig describes the Raft state a DR restore plants in an empty data
// dir.
type SeedConfig struct {
	DataDir  string
	NodeID   string
	PeerAddr string // advertised peer host:port of this agent
	// Snapshot is an FSM snapshot stream (fsm.WriteImageSnapshot) and Index
	// the Raft index it is taken at. Index must exceed every ID (topic,
	// producer) in the image: they are Raft indexes, and the restored
	// cluster numbers its new entries from Index+1.
	Snapshot []byte
	Index    uint64
}

// SeedRestoredState plants a snapshot at cfg.Index (term 1) whose Raft
// configuration is this agent alone, plus a new cluster identity. When the
// agent starts, Raft restores the FSM from the snapshot and the agent elects
// itself; other agents join it as usual. It returns the new cluster ID.
func SeedRestoredState(cfg SeedConfig) (string, error) {
	if cfg.NodeID == "" || cfg.PeerAddr == "" || cfg.Index == 0 || len(cfg.Snapshot) == 0 {
		return "", fmt.Errorf("%w: seed needs a node ID, peer address, index and snapshot", ErrConfig)
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("cluster: raft dir: %w", err)
	}
	hl := newHCLogger("raft", slog.New(slog.DiscardHandler))
	store, logs, err := openLogStores(dir, hl)
	if err != nil {
		return "", err
	}
	defer store.Close()
	defer logs.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		return "", fmt.Errorf("cluster: snapshot store: %w", err)
	}
	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return "", fmt.Errorf("cluster: inspect raft state: %w", err)
	}
	if existing {
		return "", fmt.Errorf("%w (%s); restore only into an empty data dir", ErrHasState, dir)
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(cfg.PeerAddr),
	}}}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.PeerAddr)) // only encodes peers for the snapshot metadata
	sink, err := snaps.Create(raft.SnapshotVersionMax, cfg.Index, 1, conf, cfg.Index, trans)
	if err != nil {
		return "", fmt.Errorf("cluster: create snapshot: %w", err)
	}
	if _, err := bytes.NewReader(cfg.Snapshot).WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return "", fmt.Errorf("cluster: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return "", fmt.Errorf("cluster: write snapshot: %w", err)
	}
	// Raft's persisted term must not be below the snapshot's.
	if err := store.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		return "", fmt.Errorf("cluster: write term: %w", err)
	}
	id := identity{Instance: randomID(), Cluster: randomID(), Admitted: true}
	if err := id.save(dir); err != nil {
		return "", err
	}
	return id.Cluster, nil
}

// ClusterID returns the ID of the Raft group this agent belongs to ("" until
// it has bootstrapped or been admitted).
func (n *Node) ClusterID() string { return n.identity().Cluster }
