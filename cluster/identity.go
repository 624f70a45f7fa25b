package cluster

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/raft"
)

// identityFile is the name, inside DATA_DIR/raft, of the file holding this
// incarnation's identity.
const identityFile = "instance"

// identity says which incarnation of the agent's data this is. Instance is
// random and created together with the Raft state, so a wiped data dir
// means a new instance. Admitted is set once a Raft leader has seen this
// instance as a member (it added it as a non-voter, or it bootstrapped it):
// a voter whose current instance is not admitted lost its Raft state and
// must be re-added. Cluster is the ID of the Raft group the instance
// belongs to; a leader never adds an agent of another cluster.
//
// Legacy marks an identity whose cluster ID may not be the one every
// agent of its group holds: Raft state from before identity files (each
// voter that led named the group itself, and voters are never admitted,
// so one group can hold several), an identity an earlier release wrote
// (Version 0: it cannot say which), and agents a leader with a legacy
// identity admitted. A legacy agent names no cluster on Raft connections,
// and membership never takes a legacy member for another cluster's
// (DESIGN.md, "Identity"). Version is identityVersion for an identity this
// release wrote. Founding says a bootstrap is under way: Cluster is set,
// Admitted not yet, until BootstrapCluster has written the Raft state.
type identity struct {
	Instance string `json:"instance"`
	Cluster  string `json:"cluster,omitempty"`
	Admitted bool   `json:"admitted"`
	Legacy   bool   `json:"legacy,omitempty"`
	Version  int    `json:"version,omitempty"`
	Founding bool   `json:"founding,omitempty"`
}

// identityVersion: identities written since cluster IDs are checked on
// Raft connections; an older file is legacy.
const identityVersion = 1

// raftCluster is the cluster ID this identity names on Raft connections:
// none for a legacy one.
func (id identity) raftCluster() string {
	if id.Legacy {
		return ""
	}
	return id.Cluster
}

func randomID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("cluster: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// loadIdentity reads the identity in dir. Without Raft state the node is a
// new incarnation, unless the file holds an instance that was never
// admitted and belongs to no cluster, or was founding: that one never took
// part in Raft, so it is kept, without a cluster (a founder restarted
// before it bootstrapped derives the same cluster ID as its co-founders).
// With Raft state, a founding identity is admitted (its BootstrapCluster
// completed), and without a file (data written before identities existed)
// the node is taken as admitted (and legacy).
func loadIdentity(dir string, hasRaftState bool) (identity, error) {
	if !hasRaftState {
		if id, err := readIdentity(dir); err == nil && !id.Admitted && (id.Cluster == "" || id.Founding) {
			// Never admitted: its gate never opened. A founding one stopped
			// before BootstrapCluster wrote anything plans again.
			id.Cluster, id.Founding, id.Legacy = "", false, false
			id.Version = identityVersion // it names a cluster only once this release gives it one
			return id, id.save(dir)
		}
		id := identity{Instance: randomID(), Version: identityVersion}
		return id, id.save(dir)
	}
	id, err := readIdentity(dir)
	if errors.Is(err, fs.ErrNotExist) {
		id := identity{Instance: randomID(), Admitted: true, Legacy: true, Version: identityVersion}
		return id, id.save(dir)
	}
	if err == nil && id.Founding {
		// BootstrapCluster wrote its log entry (a partial one was
		// discarded before): the bootstrap is done but for this.
		id.Admitted, id.Founding = true, false
		return id, id.save(dir)
	}
	if err == nil && id.Version < identityVersion {
		id.Legacy, id.Version = id.Legacy || id.Admitted || id.Cluster != "", identityVersion
		return id, id.save(dir)
	}
	return id, err
}

// readIdentity reads the identity file in dir (fs.ErrNotExist: none).
func readIdentity(dir string) (identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return identity{}, err
	}
	if err != nil {
		return identity{}, fmt.Errorf("cluster: read identity: %w", err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil || id.Instance == "" {
		return identity{}, fmt.Errorf("cluster: identity file %s is corrupt: move %s away so that the agent rejoins as a new member (deleting only this file would leave an agent that a cluster of this release no longer takes back): %v",
			filepath.Join(dir, identityFile), dir, err)
	}
	return id, nil
}

// save writes the identity atomically: temp file, fsync, rename, dir fsync.
func (id identity) save(dir string) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, identityFile+".tmp*")
	if err != nil {
		return fmt.Errorf("cluster: write identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("cluster: write identity: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("cluster: sync identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cluster: write identity: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, identityFile)); err != nil {
		return fmt.Errorf("cluster: write identity: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cluster: sync raft dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cluster: sync raft dir: %w", err)
	}
	return nil
}

// bootstrapClusterID derives the cluster ID from the bootstrap set, so that
// every agent bootstrapping the same set computes the same ID without
// talking to the others.
func bootstrapClusterID(members []nodeMeta) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = m.ID + "/" + m.Instance
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, ",")))
	return hex.EncodeToString(sum[:8])
}

// keyCurrentTerm is the stable-store key of Raft's persisted term.
var keyCurrentTerm = []byte("CurrentTerm")

// discardUnfinishedBootstrap undoes the Raft state a BootstrapCluster
// stopped between its two writes leaves behind — the term, without a log
// entry or a snapshot — for an identity that was founding: its gate was
// closed throughout, so the term is all it ever wrote, and with it the
// agent could never campaign (no configuration) nor bootstrap again
// (state exists). It reports whether it discarded the term.
func discardUnfinishedBootstrap(dir string, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) (bool, error) {
	id, err := readIdentity(dir)
	if err != nil || !id.Founding || id.Admitted {
		return false, nil
	}
	last, err := logs.LastIndex()
	if err != nil || last != 0 {
		return false, err
	}
	if list, err := snaps.List(); err != nil || len(list) > 0 {
		return false, err
	}
	if term, err := stable.GetUint64(keyCurrentTerm); err != nil || term == 0 {
		return false, nil
	}
	if err := stable.SetUint64(keyCurrentTerm, 0); err != nil {
		return false, fmt.Errorf("cluster: discard an unfinished bootstrap: %w", err)
	}
	return true, nil
}
