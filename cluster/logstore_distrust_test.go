package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
)

// checkNoEntry fails unless the log reports index as absent.
func checkNoEntry(t *testing.T, s raft.LogStore, index uint64) {
	t.Helper()
	var l raft.Log
	if err := s.GetLog(index, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry %d: got term %d, err %v; want ErrLogNotFound", index, l.Term, err)
	}
}

// checkEmpty fails unless the log holds no entry.
func checkEmpty(t *testing.T, s raft.LogStore) {
	t.Helper()
	first, last, err := logBounds(s)
	if err != nil || first != 0 || last != 0 {
		t.Fatalf("log holds %d-%d (%v), want it empty", first, last, err)
	}
}

// A StoreLogs whose fsync failed leaves its entries readable although they
// may never reach the disk. If the process dies before the retry rewrites
// them, the next start must not take them as stored: Raft would build its
// last index — the votes it grants, the appends it acknowledges — on
// them. The store records the untrusted tail durably before it returns
// the error, drops it on open, and forgets the record once the tail is
// rewritten (a stale record would drop acknowledged entries later).
func TestWALLogDistrustsAFailedWriteAcrossARestart(t *testing.T) {
	dir := t.TempDir()
	l, _, first := eioStore(t, dir)
	checkEntries(t, l, first)
	checkNoEntry(t, l, 15)
	_ = l.Close() // the process dies before any retry

	vfs := &eioFS{FS: fs.New()}
	l, err := openWALLog(dir, testHCLog(), vfs)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, l, first)
	checkNoEntry(t, l, 15)
	next := testEntries(11, 10, 1000)
	vfs.setFailing(false)
	if err := l.StoreLogs(next); err != nil {
		t.Fatalf("StoreLogs after the restart: %v", err)
	}
	if written, synced := vfs.counts(); written < 10*1000 || synced == 0 {
		t.Fatalf("after the restart the batch was written %d bytes, fsynced %d times; want it rewritten and fsynced", written, synced)
	}
	want := append(first, next...)
	checkEntriesAcrossReopen(t, l, dir, want)
}

// failMeta is raft-wal's meta store whose commits — the commit point of
// every segment list change: a roll, a truncation — fail while fail > 0
// (each failure counts it down; -1 fails until reset). Term and vote
// writes (SetStable) are not affected.
type failMeta struct {
	types.MetaStore
	mu     sync.Mutex
	fail   int
	failed int // commits failed so far
}

func (m *failMeta) set(n int) { m.mu.Lock(); m.fail = n; m.mu.Unlock() }

func (m *failMeta) failures() int { m.mu.Lock(); defer m.mu.Unlock(); return m.failed }

func (m *failMeta) CommitState(s types.PersistentState) error {
	m.mu.Lock()
	failing := m.fail != 0
	if m.fail > 0 {
		m.fail--
	}
	if failing {
		m.failed++
	}
	m.mu.Unlock()
	if failing {
		return syscall.EIO
	}
	return m.MetaStore.CommitState(s)
}

// openFaultyWAL opens a raft-wal log in dir whose meta commits fail on
// demand (meta) and whose segment files can be made full (vfs).
func openFaultyWAL(t *testing.T, dir string) (*walLog, *failMeta, *fullFS) {
	t.Helper()
	meta, vfs := &failMeta{}, &fullFS{FS: fs.New()}
	l, err := openWALLogWith(dir, testHCLog(), walDeps{vfs: vfs, meta: func(b *metadb.BoltMetaDB) types.MetaStore {
		meta.MetaStore = b
		return meta
	}})
	if err != nil {
		t.Fatal(err)
	}
	return l, meta, vfs
}

// clearFaults are the two ways the clear of the whole log after a
// snapshot install can fail: before its commit point (raft-wal's meta
// store cannot commit: nothing is deleted) or after it (the new segment
// file cannot be created on a full disk: the segments are gone, and
// raft-wal cannot be reopened until space is back).
var clearFaults = map[string]struct {
	inject, heal func(m *failMeta, f *fullFS)
}{
	"meta commit fails": {
		inject: func(m *failMeta, _ *fullFS) { m.set(-1) },
		heal:   func(m *failMeta, _ *fullFS) { m.set(0) },
	},
	"disk full": {
		inject: func(_ *failMeta, f *fullFS) { f.set(true) },
		heal:   func(_ *failMeta, f *fullFS) { f.set(false) },
	},
}

// After installing a snapshot (here at index 15) Raft clears the whole log,
// whose entries may disagree with the snapshot (another leader's
// uncommitted suffix), and ignores a failure of that clear. Entries left
// below the snapshot index would be served to lagging followers as if
// committed, and after a restart taken as this agent's log. A failed clear
// is therefore treated like a failed write: what it should have deleted is
// no longer read, the deletion is recorded durably and redone before the
// next append or on the next open.
func TestWALLogDistrustsAFailedClearAfterASnapshot(t *testing.T) {
	for name, fault := range clearFaults {
		for _, restart := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "", true: ", restart"}[restart], func(t *testing.T) {
				dir := t.TempDir()
				l, meta, vfs := openFaultyWAL(t, dir)
				if err := l.StoreLogs(testEntries(1, 20, 500)); err != nil {
					t.Fatal(err)
				}
				fault.inject(meta, vfs)
				if err := l.DeleteRange(1, 20); err == nil {
					t.Fatal("clear with the fault injected succeeded")
				}
				fault.heal(meta, vfs)
				checkEmpty(t, l)
				checkNoEntry(t, l, 5)
				if restart {
					_ = l.Close()
					var err error
					if l, err = openWALLog(dir, testHCLog(), nil); err != nil {
						t.Fatal(err)
					}
					checkEmpty(t, l)
				}
				defer func() { _ = l.Close() }()
				after := testEntries(16, 3, 500)
				for _, e := range after {
					e.Term = 7
				}
				if err := l.StoreLogs(after); err != nil {
					t.Fatalf("append after the snapshot: %v", err)
				}
				checkEntries(t, l, after)
				_ = l.Close()
				var err error
				if l, err = openWALLog(dir, testHCLog(), nil); err != nil {
					t.Fatal(err)
				}
				checkEntries(t, l, after)
				checkNoEntry(t, l, 5)
			})
		}
	}
}

// A follower retries a failed clear, as it retries a failed write, until
// it succeeds: Raft goes on after a failed clear as if the log were empty.
// A leader gets the error at once.
func TestFollowerRetriesAFailedClear(t *testing.T) {
	for name, fault := range clearFaults {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l, meta, vfs := openFaultyWAL(t, dir)
			defer l.Close()
			if err := l.StoreLogs(testEntries(1, 20, 500)); err != nil {
				t.Fatal(err)
			}
			halt := make(chan struct{})
			defer close(halt)
			var leader atomic.Bool
			leader.Store(true)
			rl := &retryingLogs{LogStore: l, log: discardLogger(), leader: leader.Load,
				min: time.Millisecond, max: 5 * time.Millisecond, haltCh: halt}
			fault.inject(meta, vfs)
			if err := rl.DeleteRange(1, 20); err == nil {
				t.Fatal("a leader's failed clear returned no error")
			}
			leader.Store(false)
			before := meta.failures() + vfs.refusals()
			done := make(chan error, 1)
			go func() { done <- rl.DeleteRange(1, 20) }()
			waitFor(t, 10*time.Second, "the follower's clear retried or returned", func() bool {
				return meta.failures()+vfs.refusals() >= before+3 || len(done) > 0
			})
			if len(done) > 0 {
				t.Fatalf("the follower's failed clear returned %v instead of retrying", <-done)
			}
			fault.heal(meta, vfs)
			if err := <-done; err != nil {
				t.Fatalf("follower's clear: %v", err)
			}
			_ = l.Close()
			l2, err := openWALLog(dir, testHCLog(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			checkEmpty(t, l2)
		})
	}
}

// A leader whose write failed steps down with its last index below what
// the write left; the next leader's entries conflict with its earlier
// ones, and Raft deletes the suffix it knows (8-10). The untrusted
// leftover (11-20) goes with it; raft-wal alone refuses the deletion as
// neither a prefix nor a suffix of its log, so the follower never caught
// up.
func TestWALLogDeletesAConflictingSuffixBelowAFailedWrite(t *testing.T) {
	dir := t.TempDir()
	l, _, first := eioStore(t, dir)
	defer l.Close()
	if err := l.DeleteRange(8, 10); err != nil {
		t.Fatalf("conflicting suffix: %v", err)
	}
	next := testEntries(8, 5, 500)
	for _, e := range next {
		e.Term = 7
	}
	if err := l.StoreLogs(next); err != nil {
		t.Fatalf("the new leader's entries: %v", err)
	}
	checkEntriesAcrossReopen(t, l, dir, append(first[:7:7], next...))
}

// Term and vote (raft.db) and the log (wal/) are separate files: an agent
// that lost only raft.db would start at term 0 with its log, its identity
// and its vote, and could vote a second time in a term it already voted
// in. It refuses to start. A new agent (neither file) starts, also after
// a crash that left only an empty wal/ behind, and so does an agent whose
// log still is in raft.db (the migration) — see
// TestLogMigrationSurvivesACrashAtEveryStep.
func TestLostStableStoreIsRefused(t *testing.T) {
	dir := t.TempDir()
	bolt, logs, err := openLogStores(dir, testHCLog())
	if err != nil {
		t.Fatal(err)
	}
	_ = logs.Close()
	_ = bolt.Close()
	if err := os.Remove(filepath.Join(dir, boltFileName)); err != nil {
		t.Fatal(err)
	}
	// Empty log: a new agent that crashed after creating wal/.
	bolt, logs, err = openLogStores(dir, testHCLog())
	if err != nil {
		t.Fatalf("new agent without raft.db but with an empty wal/: %v", err)
	}
	if err := bolt.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := logs.StoreLogs(testEntries(1, 3, 100)); err != nil {
		t.Fatal(err)
	}
	_ = logs.Close()
	_ = bolt.Close()
	if bolt, logs, err = openLogStores(dir, testHCLog()); err != nil {
		t.Fatalf("restart with both files: %v", err)
	}
	_ = logs.Close()
	_ = bolt.Close()
	if err := os.Remove(filepath.Join(dir, boltFileName)); err != nil {
		t.Fatal(err)
	}
	_, _, err = openLogStores(dir, testHCLog())
	if !errors.Is(err, ErrRaftStateLost) {
		t.Fatalf("open without raft.db = %v, want ErrRaftStateLost", err)
	}
	for _, want := range []string{boltFileName, walDirName, "move DATA_DIR/raft away"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, _, err := openLogStores(dir, testHCLog()); !errors.Is(err, ErrRaftStateLost) {
		t.Fatalf("second open without raft.db = %v, want ErrRaftStateLost", err)
	}
}

// A snapshot is Raft state too: after installing one the log can be empty.
func TestLostStableStoreNextToASnapshotIsRefused(t *testing.T) {
	dir := t.TempDir()
	bolt, logs, err := openLogStores(dir, testHCLog())
	if err != nil {
		t.Fatal(err)
	}
	_ = logs.Close()
	_ = bolt.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, testHCLog())
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("a")
	sink, err := snaps.Create(raft.SnapshotVersionMax, 10, 2, raft.Configuration{}, 10, trans)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, boltFileName)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openLogStores(dir, testHCLog()); !errors.Is(err, ErrRaftStateLost) || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("open without raft.db next to a snapshot = %v, want ErrRaftStateLost naming the snapshot", err)
	}
}

// scriptedMeta is raft-wal's meta store whose writes of the untrusted
// record (set or delete) follow a script, one step a write: "ok" commits,
// "lie" commits and then reports EIO (a Bolt commit whose final fsync
// failed after its pages reached the disk), "fail" reports EIO without
// committing. Writes past the script commit. Segment list commits fail
// like failMeta's.
type scriptedMeta struct {
	failMeta
	script []string
}

func (m *scriptedMeta) SetStable(k, v []byte) error {
	if string(k) != string(untrustedKey) {
		return m.MetaStore.SetStable(k, v)
	}
	m.mu.Lock()
	step := "ok"
	if len(m.script) > 0 {
		step, m.script = m.script[0], m.script[1:]
	}
	m.mu.Unlock()
	if step == "fail" {
		return syscall.EIO
	}
	if err := m.MetaStore.SetStable(k, v); err != nil || step == "ok" {
		return err
	}
	return syscall.EIO
}

// retryStep is how a retried StoreLogs fares.
type retryStep int

const (
	retryOK          retryStep = iota
	retryFsyncFails            // its write's fsync fails
	retryCommitFails           // deleting the untrusted tail first fails
)

// The record of an untrusted tail is written and deleted through Bolt
// commits, which can reach the disk and still report an error. The store
// must act on what may be on disk, not on what the call reported: a
// record that may exist is deleted before anything is written at its
// index (else the next open drops acknowledged entries), and a record
// that may be gone is written again when a later write fails (else the
// next open trusts a tail that never became durable). Each case stores
// 1-10, fails 11-20 (fsync EIO), then runs its steps; after a restart the
// log must hold exactly want.
func TestWALLogUntrustedRecordSurvivesCommitsThatLie(t *testing.T) {
	cases := map[string]struct {
		script []string    // the untrusted record's writes
		steps  []retryStep // StoreLogs(11-30) calls
		want   uint64      // last index after the restart
	}{
		"mark commits but errs, retry succeeds":  {[]string{"lie"}, []retryStep{retryOK}, 30},
		"mark fails, retry fails":                {[]string{"fail"}, []retryStep{retryFsyncFails}, 10},
		"mark fails, retry cannot delete":        {[]string{"fail"}, []retryStep{retryCommitFails}, 10},
		"delete commits but errs, retry fails":   {[]string{"ok", "lie"}, []retryStep{retryOK, retryFsyncFails}, 10},
		"delete commits but errs, then succeeds": {[]string{"ok", "lie"}, []retryStep{retryOK, retryOK}, 30},
		"delete fails, retry succeeds":           {[]string{"ok", "fail"}, []retryStep{retryOK, retryOK}, 30},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			vfs, meta := &eioFS{FS: fs.New()}, &scriptedMeta{script: c.script}
			l, err := openWALLogWith(dir, testHCLog(), walDeps{vfs: vfs, meta: func(b *metadb.BoltMetaDB) types.MetaStore {
				meta.MetaStore = b
				return meta
			}})
			if err != nil {
				t.Fatal(err)
			}
			first := testEntries(1, 10, 100)
			if err := l.StoreLogs(first); err != nil {
				t.Fatal(err)
			}
			vfs.setFailing(true)
			if err := l.StoreLogs(testEntries(11, 10, 100)); !errors.Is(err, syscall.EIO) {
				t.Fatalf("StoreLogs with a failing fsync = %v, want EIO", err)
			}
			next := testEntries(11, 20, 100)
			for _, step := range c.steps {
				vfs.setFailing(step == retryFsyncFails)
				if step == retryCommitFails {
					meta.set(1) // the deletion of the untrusted tail
				}
				_ = l.StoreLogs(next) // a retry; some fail by design
				meta.set(0)
			}
			_ = l.Close()
			if l, err = openWALLog(dir, testHCLog(), nil); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			checkEntries(t, l, append(first, next...)[:c.want])
			checkNoEntry(t, l, c.want+1)
		})
	}
}
