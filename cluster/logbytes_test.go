package cluster

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logDiskBytes is the disk the files in a raft-wal dir take; a file
// unlinked meanwhile (lazyDeleteFS) counts as gone.
func logDiskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range entries {
		fi, err := e.Info()
		if errors.Is(err, iofs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
	}
	return total
}

func TestParseSegmentName(t *testing.T) {
	s, ok := parseSegmentName(fmt.Sprintf("%020d-%016x.wal", 12345, 0xabc))
	if !ok || s != (walSegment{id: 0xabc, base: 12345}) {
		t.Fatalf("parsed %+v, %v", s, ok)
	}
	for _, bad := range []string{"wal-meta.db", "", "1.wal", "x-1.wal", "1-x.wal", "00001-0001.walx"} {
		if _, ok := parseSegmentName(bad); ok {
			t.Errorf("%q parsed as a segment", bad)
		}
	}
}

// A segment a tail truncation replaced is not part of the log while its
// file waits for the lazy unlink; a compacted one still takes disk.
func TestLiveChainDropsReplacedSegments(t *testing.T) {
	segs := []walSegment{{4, 150}, {1, 1}, {3, 201}, {2, 101}, {5, 150}}
	got := liveChain(segs)
	want := []walSegment{{1, 1}, {2, 101}, {5, 150}}
	if !slices.Equal(got, want) {
		t.Fatalf("chain %v, want %v", got, want)
	}
}

func TestLogUseBytesAfter(t *testing.T) {
	u := logUse{segs: []walSegment{{1, 1}, {2, 101}, {3, 201}}, last: 250}
	for _, c := range []struct{ index, segs uint64 }{{0, 3}, {99, 3}, {100, 2}, {150, 2}, {200, 1}, {249, 1}, {250, 0}, {300, 0}} {
		if got := u.bytesAfter(c.index); got != c.segs*walSegmentSize {
			t.Errorf("bytesAfter(%d) = %d segments, want %d", c.index, got/walSegmentSize, c.segs)
		}
	}
	if u.bytes() != 3*walSegmentSize {
		t.Errorf("bytes = %d", u.bytes())
	}
}

func TestLogUseTrailingLogs(t *testing.T) {
	const mib = 1 << 20
	// Sealed segments of 100 entries (~164 KiB each), then 200: the
	// smallest entries (200 per segment) set the count.
	u := logUse{segs: []walSegment{{1, 1}, {2, 101}, {3, 201}, {4, 401}}, last: 450}
	for _, c := range []struct{ budget, most, want uint64 }{
		{16 * mib, 1024, 200},  // one segment's worth
		{32 * mib, 1024, 400},  // two
		{64 * mib, 1024, 800},  // four
		{1 * mib, 1024, 64},    // never below lowDiskTrailingLogs
		{64 * mib, 500, 500},   // never above TrailingLogs
		{1 * mib, 16, 16},      // a TrailingLogs below the floor wins
		{0, 1024, 1024},        // no budget
		{16 * mib, 1024, 1024}, // (below: one segment, nothing sealed)
	} {
		v := u
		if c.want == 1024 && c.budget == 16*mib {
			v = logUse{segs: []walSegment{{1, 1}}, last: 100_000}
		}
		if got := v.trailingLogs(c.budget, c.most); got != c.want {
			t.Errorf("trailingLogs(%d MiB, %d) = %d, want %d", c.budget/mib, c.most, got, c.want)
		}
	}
}

// A tail truncation (a conflicting suffix after an election, a distrusted
// tail) seals a short segment; the entry size must not be judged from it,
// or a log of small entries would keep a few milliseconds of entries.
func TestLogUseTrailingLogsIgnoresShortSegments(t *testing.T) {
	const mib = 1 << 20
	// 16,000 entries of ~1 KiB per full segment, then four segments of 10
	// entries each that truncations sealed.
	u := logUse{segs: []walSegment{{1, 1}, {2, 16_001}, {3, 16_011}, {4, 16_021}, {5, 16_031}, {6, 16_041}}, last: 16_050}
	if got := u.trailingLogs(64*mib, 100_000); got < 16_000 {
		t.Fatalf("trailingLogs = %d; want at least the 16,000 entries of one full segment", got)
	}
}

// An old segment of small entries (a quiet period) must not decide the
// count once large entries fill the newest segments: it would keep
// TrailingLogs entries of the large ones.
func TestLogUseTrailingLogsFollowsTheNewestSegments(t *testing.T) {
	const mib = 1 << 20
	// One segment of 16,000 small entries, then 20 segments of 4 entries
	// (4 MiB each).
	segs := []walSegment{{1, 1}}
	base := uint64(16_001)
	for id := uint64(2); id <= 22; id++ {
		segs = append(segs, walSegment{id, base})
		base += 4
	}
	u := logUse{segs: segs, last: base}
	if got := u.trailingLogs(256*mib, 1024); got != 64 {
		t.Fatalf("trailingLogs = %d; want 64 (256 MiB of 4 MiB entries), not a count from the old small entries", got)
	}
}

// Snapshots carry the unflushed records. While the object store is down
// those grow without bound; a snapshot is then worth taking only once the
// log past the last one is larger than that snapshot (otherwise every
// 256 MiB of log would rewrite gigabytes of snapshot), and the log keeps
// at least a snapshot's worth of entries, so a follower that installs the
// latest snapshot still finds the entries after it.
func TestLogBytesFollowTheSnapshotSize(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		past, snap uint64
		want       bool
	}{
		{300 * mib, 10 * mib, true},
		{200 * mib, 10 * mib, false},
		{300 * mib, 1000 * mib, false},
		{1100 * mib, 1000 * mib, true},
	} {
		if got := snapshotDue(c.past, 256*mib, c.snap); got != c.want {
			t.Errorf("snapshotDue(%d MiB past, snapshot %d MiB) = %v, want %v", c.past/mib, c.snap/mib, got, c.want)
		}
	}
	if got := trailingBudget(256*mib, 10*mib); got != 256*mib {
		t.Errorf("trailingBudget with a small snapshot = %d MiB, want 256", got/mib)
	}
	if got := trailingBudget(256*mib, 1000*mib); got != 1000*mib {
		t.Errorf("trailingBudget with a 1000 MiB snapshot = %d MiB, want 1000", got/mib)
	}
}

// With large entries the Raft log is bounded in bytes: far below
// SnapshotThreshold entries, a snapshot is taken once the entries past the
// last one exceed logSnapshotBytes, and it keeps about logTrailingBytes of
// entries rather than TrailingLogs.
func TestRaftLogBoundedInBytes(t *testing.T) {
	const snapBytes, trailBytes, entry = 32 << 20, 16 << 20, 100 << 10
	c := newTestCluster(t)
	a := c.start("a", "", func(cfg *Config) {
		cfg.Bootstrap = true
		cfg.TrailingLogs = 4000
		cfg.SnapshotThreshold = 1 << 20 // Raft's own entry-count trigger never fires here
		cfg.logSnapshotBytes, cfg.logTrailingBytes = snapBytes, trailBytes
	})
	c.waitLeader(10 * time.Second)
	topicID := createTopic(t, a, "t", 1)
	big := strings.Repeat("x", entry)
	walDir := filepath.Join(a.dir, "raft", walDirName)
	var peak int64
	for i := range 3 * snapBytes / entry {
		if _, err := propose(t, a, appendOne(topicID, big+fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if i%32 == 0 {
			peak = max(peak, logDiskBytes(t, walDir))
		}
	}
	r := a.node.r()
	bound := int64(trailBytes + snapBytes + 2*walSegmentSize)
	waitFor(t, 20*time.Second, "a snapshot by bytes and the log within the bound", func() bool {
		snap, _ := lastSnapshotIndex(r)
		return snap > 0 && logDiskBytes(t, walDir) <= bound
	})
	t.Logf("raft log: peak %d MiB while writing %d MiB; %d MiB after the snapshot by bytes",
		peak>>20, 3*snapBytes>>20, logDiskBytes(t, walDir)>>20)

	perSegment := uint64(walSegmentSize / entry)
	var trailing uint64
	waitFor(t, 10*time.Second, "TrailingLogs set by bytes", func() bool {
		trailing = r.ReloadableConfig().TrailingLogs
		return trailing < 4000
	})
	if want := uint64(trailBytes / entry); trailing < want*3/4 || trailing > want*5/4 {
		t.Fatalf("TrailingLogs = %d, want about %d (%d bytes of %d-byte entries)", trailing, want, trailBytes, entry)
	}
	// An explicit snapshot compacts to the trailing bytes plus segment rounding.
	if _, err := propose(t, a, appendOne(topicID, "small")); err != nil {
		t.Fatal(err)
	}
	if err := a.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "log compacted to the trailing bytes", func() bool {
		return logDiskBytes(t, walDir) <= int64(trailBytes+2*walSegmentSize)
	})
	first, _ := a.node.logStore.FirstIndex()
	last, _ := a.node.logStore.LastIndex()
	if kept := last - first + 1; kept > trailing+perSegment+1 {
		t.Fatalf("log keeps %d..%d (%d entries), want at most %d + a segment (%d)", first, last, kept, trailing, perSegment)
	}
}

// With small entries the log keeps Config.TrailingLogs and takes no
// snapshot of its own; a low disk still wins (lowDiskTrailingLogs).
func TestRaftLogSmallEntriesKeepTrailingLogs(t *testing.T) {
	c := newTestCluster(t)
	a := c.start("a", "", func(cfg *Config) {
		cfg.Bootstrap = true
		cfg.TrailingLogs = 300
		cfg.SnapshotThreshold = 1 << 20
		cfg.logSnapshotBytes, cfg.logTrailingBytes = 2*walSegmentSize, 1<<20
	})
	c.waitLeader(10 * time.Second)
	topicID := createTopic(t, a, "t", 1)
	for i := range 500 {
		if _, err := propose(t, a, appendOne(topicID, fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	r := a.node.r()
	trailing := func() uint64 { return r.ReloadableConfig().TrailingLogs }
	if err := a.node.boundLogBytes(); err != nil {
		t.Fatal(err)
	}
	if got := trailing(); got != 300 {
		t.Fatalf("TrailingLogs = %d with small entries, want Config.TrailingLogs 300", got)
	}
	if snap, _ := lastSnapshotIndex(r); snap != 0 {
		t.Fatalf("snapshot at %d: the log is one segment, below the byte bound", snap)
	}
	if err := a.node.SetLowDisk(true); err != nil {
		t.Fatal(err)
	}
	if err := a.node.boundLogBytes(); err != nil {
		t.Fatal(err)
	}
	if got := trailing(); got != lowDiskTrailingLogs {
		t.Fatalf("TrailingLogs = %d on a low disk after a byte check, want %d", got, lowDiskTrailingLogs)
	}
	if err := a.node.SetLowDisk(false); err != nil {
		t.Fatal(err)
	}
	if got := trailing(); got != 300 {
		t.Fatalf("TrailingLogs = %d after the low disk, want 300", got)
	}
}
