package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Layout of DATA_DIR/raft (DESIGN.md, "Log store"):
//
//	raft.db         Bolt: the stable store (term, vote); the Raft log too
//	                in agents from before raft-wal, until migrated
//	wal/            raft-wal: the Raft log. Its existence is the commit
//	                point of the migration: with it, it is authoritative
//	                and raft.db's log is leftover; without it, raft.db's
//	                log is.
//	wal.migrating/  a migration in progress (deleted and redone on start)
//	raft.db.compact raft.db being rewritten without its log (deleted on start)
const (
	walDirName     = "wal"
	walTmpDirName  = "wal.migrating"
	boltFileName   = "raft.db"
	boltCompactExt = ".compact"
)

// migrateHook is called after each step of the migration (tests stop it
// there to simulate a crash). Steps: "batch" (one batch copied),
// "copied" (all entries in wal.migrating), "committed" (renamed to wal),
// "compacting" (raft.db.compact written, not yet renamed).
var migrateHook = func(step string) error { return nil }

// openLogStores opens dir's stable store (Bolt) and Raft log (raft-wal),
// moving a log that Bolt still holds into raft-wal first. A crash at any
// point leaves one of the two authoritative (see the layout above).
func openLogStores(dir string, hl hclog.Logger) (*raftboltdb.BoltStore, *walLog, error) {
	_ = os.RemoveAll(filepath.Join(dir, boltFileName+boltCompactExt))
	bolt, err := openBoltStore(filepath.Join(dir, boltFileName))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: open raft stable store: %w", err)
	}
	walDir := filepath.Join(dir, walDirName)
	if _, err := os.Stat(walDir); errors.Is(err, fs.ErrNotExist) {
		if err := checkNoLostLog(bolt, walDir); err != nil {
			_ = bolt.Close()
			return nil, nil, err
		}
		if err := migrateBoltLog(bolt, dir, hl); err != nil {
			_ = bolt.Close()
			return nil, nil, err
		}
	}
	logs, err := openWALLog(walDir, hl, nil)
	if err != nil {
		_ = bolt.Close()
		return nil, nil, err
	}
	err = checkNoLostTerm(bolt, logs, dir, hl)
	if err == nil {
		bolt, err = dropBoltLog(bolt, dir, hl)
	}
	if err == nil {
		err = setLogStoreKey(bolt) // agents migrated before the key existed
	}
	if err != nil {
		_ = logs.Close()
		if bolt != nil {
			_ = bolt.Close()
		}
		return nil, nil, err
	}
	return bolt, logs, nil
}

// logStoreKey, in raft.db, says the Raft log lives in wal/ (set at every
// start once it does). Term and vote live in raft.db and the log in wal/,
// so losing only wal/ would otherwise look like an agent with an empty
// log that keeps its identity and votes (DESIGN.md, "Amnesia").
var logStoreKey = []byte("StreamhouseLogStore")

func checkNoLostLog(bolt *raftboltdb.BoltStore, walDir string) error {
	v, err := bolt.Get(logStoreKey)
	switch {
	case errors.Is(err, raftboltdb.ErrKeyNotFound) || (err == nil && len(v) == 0):
		return nil
	case err != nil:
		return fmt.Errorf("cluster: read raft stable store: %w", err)
	}
	return fmt.Errorf("%w (%s): this agent must not vote without it; move DATA_DIR/raft away to rejoin as a new instance", ErrRaftLogLost, walDir)
}

// checkNoLostTerm refuses a raft.db without a current term next to Raft
// state it must have had one for: a log in wal/ or a snapshot (Raft
// persists the term before it stores an entry or a snapshot of that term).
// Such a raft.db was lost or replaced, and with it the vote this agent gave
// in its term: starting would let it vote again (DESIGN.md, "Split files
// and amnesia"). A raft.db that still holds a log of its own is the one
// being migrated, whatever it holds.
func checkNoLostTerm(bolt *raftboltdb.BoltStore, logs *walLog, dir string, hl hclog.Logger) error {
	term, err := bolt.GetUint64(keyCurrentTerm)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return fmt.Errorf("cluster: read raft stable store: %w", err)
	}
	if term != 0 {
		return nil
	}
	_, boltLast, err := logBounds(bolt)
	if err != nil || boltLast != 0 {
		return err
	}
	first, last, err := logBounds(logs)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("%s holds raft log entries %d-%d", filepath.Join(dir, walDirName), first, last)
	if last == 0 {
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
		if err != nil {
			return fmt.Errorf("cluster: snapshot store: %w", err)
		}
		if list, err := snaps.List(); err != nil || len(list) == 0 {
			return err
		}
		what = fmt.Sprintf("%s holds a raft snapshot", filepath.Join(dir, "snapshots"))
	}
	return fmt.Errorf("%w: %s has no current term but %s, so this agent could vote twice in one term; "+
		"put back the raft.db that belongs to it, or move DATA_DIR/raft away to rejoin as a new instance",
		ErrRaftStateLost, filepath.Join(dir, boltFileName), what)
}

// migrateBoltLog creates dir/wal holding Bolt's log (its gapless run
// ending at the last entry, contiguousFrom): copied into wal.migrating
// (raft-wal fsyncs each batch), checked, then renamed and the directory
// fsynced, then logStoreKey set in raft.db before anything drops Bolt's
// log. A new agent (empty Bolt log) just gets the directory and the key.
func migrateBoltLog(bolt *raftboltdb.BoltStore, dir string, hl hclog.Logger) error {
	first, last, err := logBounds(bolt)
	if err != nil {
		return fmt.Errorf("cluster: read raft log bounds: %w", err)
	}
	walDir, tmp := filepath.Join(dir, walDirName), filepath.Join(dir, walTmpDirName)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("cluster: remove unfinished raft log migration: %w", err)
	}
	if last == 0 {
		if err := os.Mkdir(walDir, 0o750); err != nil {
			return fmt.Errorf("cluster: raft log dir: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return err
		}
		return setLogStoreKey(bolt)
	}
	if first, err = contiguousFrom(bolt, first, last); err != nil {
		return fmt.Errorf("cluster: read raft log: %w", err)
	}
	hl.Info("moving the raft log from raft.db to raft-wal", "first", first, "last", last)
	if err := os.Mkdir(tmp, 0o750); err != nil {
		return fmt.Errorf("cluster: raft log migration dir: %w", err)
	}
	if err := copyLogsTo(tmp, bolt, first, last, hl); err != nil {
		return fmt.Errorf("cluster: migrate raft log to raft-wal: %w", err)
	}
	if err := migrateHook("copied"); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, walDir); err != nil {
		return fmt.Errorf("cluster: commit raft log migration: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := setLogStoreKey(bolt); err != nil {
		return err
	}
	return migrateHook("committed")
}

// setLogStoreKey records in raft.db that the log lives in wal/.
func setLogStoreKey(bolt *raftboltdb.BoltStore) error {
	if err := bolt.Set(logStoreKey, []byte(walDirName)); err != nil {
		return fmt.Errorf("cluster: raft stable store: %w", err)
	}
	return nil
}

// logBounds is Bolt's first and last log index (0, 0 when empty).
func logBounds(s raft.LogStore) (uint64, uint64, error) {
	first, err := s.FirstIndex()
	if err != nil {
		return 0, 0, err
	}
	last, err := s.LastIndex()
	return first, last, err
}

// contiguousFrom is the first index of the gapless run of src's entries
// that ends at last. raft 1.7.3 appended past a gap in a non-monotonic
// store (Bolt) after installing a snapshot (e.g. 1..5 then 10..12); the
// entries below the gap are covered by that snapshot, and raft-wal holds
// no gaps, so only the run from the gap up is migrated.
func contiguousFrom(src raft.LogStore, first, last uint64) (uint64, error) {
	var l raft.Log
	for i := last; i > first; i-- {
		err := src.GetLog(i-1, &l)
		if errors.Is(err, raft.ErrLogNotFound) {
			return i, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read entry %d: %w", i-1, err)
		}
	}
	return first, nil
}

// copyLogsTo copies src's entries first..last into a new raft-wal in dir,
// in batches of up to 4 MiB, and checks the result's bounds.
func copyLogsTo(dir string, src raft.LogStore, first, last uint64, hl hclog.Logger) error {
	dst, err := openWALLog(dir, hl, nil)
	if err != nil {
		return err
	}
	defer dst.Close()
	var batch []*raft.Log
	size := 0
	for i := first; i <= last; i++ {
		l := new(raft.Log)
		if err := src.GetLog(i, l); err != nil {
			return fmt.Errorf("read entry %d: %w", i, err)
		}
		batch, size = append(batch, l), size+len(l.Data)
		if size < 4<<20 && len(batch) < 1024 && i < last {
			continue
		}
		if err := dst.StoreLogs(batch); err != nil {
			return fmt.Errorf("write entries %d-%d: %w", batch[0].Index, i, err)
		}
		if err := migrateHook("batch"); err != nil {
			return err
		}
		batch, size = batch[:0], 0
	}
	gotFirst, gotLast, err := logBounds(dst)
	if err != nil {
		return err
	}
	if gotFirst != first || gotLast != last {
		return fmt.Errorf("copied log holds %d-%d, want %d-%d", gotFirst, gotLast, first, last)
	}
	return dst.Close()
}

// dropBoltLog deletes what raft.db still holds of the Raft log once wal/
// is authoritative, and rewrites the file without it when it is larger
// than a stable store ever gets (boltLeftover; Bolt never shrinks a file):
// compacted into raft.db.compact, renamed over raft.db. It returns the
// store to use (reopened when rewritten).
func dropBoltLog(bolt *raftboltdb.BoltStore, dir string, hl hclog.Logger) (*raftboltdb.BoltStore, error) {
	first, last, err := logBounds(bolt)
	if err != nil {
		return bolt, err
	}
	if last != 0 {
		if err := bolt.DeleteRange(first, last); err != nil {
			return bolt, fmt.Errorf("cluster: drop migrated raft log from raft.db: %w", err)
		}
	}
	path := filepath.Join(dir, boltFileName)
	if fi, err := os.Stat(path); err != nil || fi.Size() <= boltLeftover {
		return bolt, err
	}
	if err := bolt.Close(); err != nil {
		return nil, err
	}
	if err := compactBolt(path); err != nil {
		// raft.db is intact and still right (its log is empty now).
		hl.Warn("cannot rewrite raft.db without the migrated log; it keeps its size", "err", err)
	}
	return openBoltStore(path)
}

// boltLeftover: a raft.db larger than this held a Raft log (the stable
// store alone is a few pages).
const boltLeftover = 1 << 20

// compactBolt rewrites the Bolt file at path through path+".compact".
func compactBolt(path string) error {
	tmp := path + boltCompactExt
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return err
	}
	if err := bbolt.Compact(dst, src, 1<<20); err != nil {
		_ = dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := migrateHook("compacting"); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cluster: fsync %s: %w", dir, err)
	}
	return nil
}
