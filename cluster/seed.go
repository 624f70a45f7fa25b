package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
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

// seedingFile, inside DATA_DIR/raft, marks a seed in progress: it is
// written (fsynced) before anything else and removed after everything else,
// so a seed that was killed or failed halfway is recognised as such.
const seedingFile = "restore-unfinished"

// ErrSeedUnfinished is returned when DATA_DIR/raft holds what a DR restore
// that did not finish left: the agent refuses to start on it, and running
// the restore again redoes it.
var ErrSeedUnfinished = errors.New("cluster: a restore into this data dir did not finish")

// seedStep, in tests, runs after each step of a seed; an error stops the
// seed there as a kill or a failed write would.
type seedStep func(step string) error

// SeedRestoredState plants a snapshot at cfg.Index (term 1) whose Raft
// configuration is this agent alone, plus a new cluster identity. When the
// agent starts, Raft restores the FSM from the snapshot and the agent elects
// itself; other agents join it as usual. It returns the new cluster ID.
// A seed that did not finish (seedingFile) is discarded and redone.
func SeedRestoredState(cfg SeedConfig) (string, error) {
	return seedRestoredState(cfg, func(string) error { return nil })
}

func seedRestoredState(cfg SeedConfig, after seedStep) (string, error) {
	if cfg.NodeID == "" || cfg.PeerAddr == "" || cfg.Index == 0 || len(cfg.Snapshot) == 0 {
		return "", fmt.Errorf("%w: seed needs a node ID, peer address, index and snapshot", ErrConfig)
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := discardUnfinishedSeed(dir); err != nil {
		return "", err
	}
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
	return plantSeed(cfg, dir, store, snaps, after)
}

// plantSeed writes the seed into the empty raft dir: the in-progress mark,
// the term (first, as raft.BootstrapCluster does: Raft's persisted term
// must never be below a snapshot's or entry's), the snapshot, the identity,
// then removes the mark.
func plantSeed(cfg SeedConfig, dir string, store raft.StableStore, snaps raft.SnapshotStore, after seedStep) (string, error) {
	if err := writeSeedingFile(dir); err != nil {
		return "", err
	}
	if err := after("mark"); err != nil {
		return "", err
	}
	if err := store.SetUint64(keyCurrentTerm, 1); err != nil {
		return "", fmt.Errorf("cluster: write term: %w", err)
	}
	if err := after("term"); err != nil {
		return "", err
	}
	if err := writeSeedSnapshot(cfg, snaps); err != nil {
		return "", err
	}
	if err := after("snapshot"); err != nil {
		return "", err
	}
	id := identity{Instance: randomID(), Cluster: randomID(), Admitted: true, Version: identityVersion}
	if err := id.save(dir); err != nil {
		return "", err
	}
	if err := after("identity"); err != nil {
		return "", err
	}
	if err := os.Remove(filepath.Join(dir, seedingFile)); err != nil {
		return "", fmt.Errorf("cluster: finish restore: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("cluster: finish restore: %w", err)
	}
	return id.Cluster, nil
}

// writeSeedSnapshot writes cfg's snapshot at cfg.Index, term 1, with this
// agent as the only voter.
func writeSeedSnapshot(cfg SeedConfig, snaps raft.SnapshotStore) error {
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(cfg.PeerAddr),
	}}}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.PeerAddr)) // only encodes peers for the snapshot metadata
	sink, err := snaps.Create(raft.SnapshotVersionMax, cfg.Index, 1, conf, cfg.Index, trans)
	if err != nil {
		return fmt.Errorf("cluster: create snapshot: %w", err)
	}
	if _, err := bytes.NewReader(cfg.Snapshot).WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	return nil
}

// writeSeedingFile creates the in-progress mark and makes it durable.
func writeSeedingFile(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, seedingFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err == nil {
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("cluster: start restore: %w", err)
	}
	return nil
}

// seedMarked reports whether the raft dir holds the marker of a seed that
// did not finish.
func seedMarked(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, seedingFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("cluster: inspect raft dir: %w", err)
}

// discardUnfinishedSeed empties the raft dir when a seed that did not
// finish left it: only that seed wrote there (it starts in an empty dir,
// and the agent refuses to start on it).
func discardUnfinishedSeed(dir string) error {
	marked, err := seedMarked(dir)
	if err != nil || !marked {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cluster: discard the unfinished restore in %s: %w", dir, err)
	}
	return nil
}

// SeedUnfinished reports whether dataDir holds only what a seed that did
// not finish left: such a dir is no agent's Raft state, and
// SeedRestoredState redoes the seed in it.
func SeedUnfinished(dataDir string) bool {
	marked, _ := seedMarked(filepath.Join(dataDir, "raft"))
	return marked
}

// checkNoUnfinishedSeed refuses to start on a raft dir a seed that did not
// finish left (DESIGN.md, "DR restore").
func checkNoUnfinishedSeed(dir string) error {
	marked, err := seedMarked(dir)
	if err != nil || !marked {
		return err
	}
	return fmt.Errorf("%w (%s is there): run the restore again, which redoes it; the agent does not start on a half-planted state",
		ErrSeedUnfinished, filepath.Join(dir, seedingFile))
}

// ClusterID returns the ID of the Raft group this agent belongs to ("" until
// it has bootstrapped or been admitted).
func (n *Node) ClusterID() string { return n.identity().Cluster }
