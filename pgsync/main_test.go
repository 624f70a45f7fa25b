package pgsync

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/pgsync/pgtest"
)

// The shared test helpers, under the names this package's tests use.
var waitFor = testkit.WaitFor

// srv is the PostgreSQL server shared by the package's tests; each test
// gets its own database (openDB). Tests that stop the server start their
// own.
var srv *pgtest.Server

func TestMain(m *testing.M) { testkit.Main(m, testkit.Setup(startServer)) }

// startServer starts the shared server; its teardown prints the server's
// log tail if a test failed and removes the server.
func startServer() (func(failed bool) error, error) {
	var err error
	if srv, err = pgtest.StartTemp("pgsync-test-"); err != nil {
		return nil, fmt.Errorf("pgsync tests need a real PostgreSQL server: %w", err)
	}
	return func(failed bool) error {
		if failed {
			fmt.Fprintf(os.Stderr, "PostgreSQL log tail (%s):\n%s\n", srv.LogPath, srv.LogTail(8<<10))
		}
		return srv.Close()
	}, nil
}

// openDB opens a fresh database on the shared server (or on s if given),
// closed in t.Cleanup.
func openDB(t testing.TB, s ...*pgtest.Server) *DB {
	t.Helper()
	server := srv
	if len(s) > 0 {
		server = s[0]
	}
	return openURL(t, server.NewDatabase(t))
}

func openURL(t testing.TB, url string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// queryInt runs a query returning one integer.
func queryInt(t testing.TB, db *DB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.pool.QueryRow(ctxT(t), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func queryInts(t testing.TB, db *DB, sql string, args ...any) []int64 {
	t.Helper()
	rows, err := db.pool.Query(ctxT(t), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func execSQL(t testing.TB, db *DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.pool.Exec(ctxT(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// ---- images ----

// seg returns a segment of offsets [base, last] in object key, every field
// set to a distinct value so that a column mix-up shows.
func seg(base, last int64, key string) fsm.SegmentRef {
	return fsm.SegmentRef{
		ObjectKey:        key,
		ByteOffset:       base*7 + 1,
		ByteLength:       (last-base+1)*100 + 3,
		BaseOffset:       base,
		LastOffset:       last,
		RecordCount:      int32(last - base + 1),
		MinTimestamp:     1_700_000_000_000 + base,
		MaxTimestamp:     1_700_000_000_000 + last,
		Compression:      uint8(1 + base%3),
		CRC:              0xF0000000 + uint32(base), // above 2^31: must survive bigint
		UncompressedSize: (last-base+1)*250 + 5,
		CommittedAt:      1_700_000_100_000 + base,
	}
}

// appendSegments adds n segments of 10 offsets each to p at its flushed
// offset, the i-th in object prefix-<base>.
func appendSegments(p *fsm.Partition, n int, prefix string) {
	for range n {
		base := p.FlushedOffset
		key := fmt.Sprintf("%s-%d", prefix, base)
		if prefix == "" {
			key = "" // a gap
		}
		p.Segments = append(p.Segments, seg(base, base+9, key))
		p.FlushedOffset = base + 10
		p.NextOffset = max(p.NextOffset, p.FlushedOffset)
	}
}

// trim moves p's low watermark to low, dropping segments wholly below it.
func trim(p *fsm.Partition, low int64) {
	i := 0
	for i < len(p.Segments) && p.Segments[i].LastOffset < low {
		i++
	}
	p.Segments = append([]fsm.SegmentRef(nil), p.Segments[i:]...)
	if len(p.Segments) == 0 {
		p.Segments = nil
	}
	p.LowWatermark = low
}

// fixture is a coherent image (fsm.ValidateImage accepts it) with two
// topics, segments including a gap, groups, producers with sequences and
// pending deletes.
func fixture(t testing.TB) *fsm.Image {
	img := &fsm.Image{
		LastApplied: 100,
		RaftTerm:    3,
		Topics: []fsm.Topic{ // by name, bytewise: upper case first
			{ID: 3, Name: "Orders", Partitions: 2, Config: fsm.TopicConfig{Compression: "zstd"}, CreatedAt: 1_700_000_000_001},
			{ID: 7, Name: "audit.log", Partitions: 1, Config: fsm.TopicConfig{RetentionMs: 86_400_000, RetentionBytes: 1 << 30, Compression: "lz4", MaxMessageBytes: 4096}, CreatedAt: 1_700_000_000_002},
		},
		Partitions: []fsm.Partition{
			{TopicID: 3, Index: 0, Leader: "node-1", LeaderEpoch: 4},
			{TopicID: 3, Index: 1, Leader: "node-2", LeaderEpoch: 1, NextOffset: 5},
			{TopicID: 7, Index: 0, Leader: "node-1", LeaderEpoch: 2},
		},
		Groups: []fsm.GroupOffsetEntry{
			{Group: "Billing", TopicID: 3, Partition: 0, Offset: 12, Metadata: "bin\x00\xffary", CommittedAt: 1_700_000_200_000},
			{Group: "billing", TopicID: 3, Partition: 0, Offset: 30, Metadata: "", CommittedAt: 1_700_000_200_001},
			{Group: "billing", TopicID: 3, Partition: 1, Offset: 2, Metadata: "ünïcode", CommittedAt: 1_700_000_200_002},
			{Group: "billing", TopicID: 7, Partition: 0, Offset: 7, Metadata: "m", CommittedAt: 1_700_000_200_003},
		},
		Producers: []fsm.ProducerEntry{
			{ID: 9, Epoch: 0xFFFFFFF0, LastSeen: 1_700_000_300_000, Sequences: []fsm.ProducerSequence{
				{TopicID: 3, Partition: 0, BaseSeq: 0, Count: 5, BaseOffset: 0},
				{TopicID: 3, Partition: 0, BaseSeq: 5, Count: 5, BaseOffset: 5},
				{TopicID: 7, Partition: 0, BaseSeq: 0, Count: 3, BaseOffset: 10},
			}},
			{ID: 40, Epoch: 2, LastSeen: 1_700_000_300_001, Owner: "tenant-a"},
		},
		PendingDeletes:      []string{"segments/000001.seg", "segments/000002.seg"},
		Unreadable:          []fsm.UnreadableObject{{Key: "segments/Unread.seg", RestoredFrom: 60}, {Key: "segments/unread.seg", RestoredFrom: 61}},
		ProducerGeneration:  2,
		MaxUnflushedRecords: 1_000_000,
		Clock:               1_700_000_400_000,
	}
	p := &img.Partitions
	appendSegments(&(*p)[0], 1, "seg/a")
	appendSegments(&(*p)[0], 1, "") // a gap: records lost before a disaster
	appendSegments(&(*p)[0], 1, "seg/b")
	(*p)[0].NextOffset = 35
	appendSegments(&(*p)[2], 2, "seg/c")
	if err := fsm.ValidateImage(img); err != nil {
		t.Fatalf("fixture is incoherent: %v", err)
	}
	return img
}

// cloneImage deep-copies img.
func cloneImage(img *fsm.Image) *fsm.Image {
	c := *img
	c.Topics = append([]fsm.Topic(nil), img.Topics...)
	c.Partitions = nil
	for _, p := range img.Partitions {
		p.Segments = append([]fsm.SegmentRef(nil), p.Segments...)
		c.Partitions = append(c.Partitions, p)
	}
	c.Groups = append([]fsm.GroupOffsetEntry(nil), img.Groups...)
	c.Producers = nil
	for _, p := range img.Producers {
		p.Sequences = append([]fsm.ProducerSequence(nil), p.Sequences...)
		c.Producers = append(c.Producers, p)
	}
	c.PendingDeletes = append([]string(nil), img.PendingDeletes...)
	c.Unreadable = append([]fsm.UnreadableObject(nil), img.Unreadable...)
	return &c
}

// withIndex returns a copy of img at Raft index i.
func withIndex(img *fsm.Image, i uint64) *fsm.Image {
	c := cloneImage(img)
	c.LastApplied = i
	return c
}

// partition returns img's partition topicID/index.
func partition(t testing.TB, img *fsm.Image, topicID uint64, index int32) *fsm.Partition {
	t.Helper()
	for i := range img.Partitions {
		if p := &img.Partitions[i]; p.TopicID == topicID && p.Index == index {
			return p
		}
	}
	t.Fatalf("no partition %d/%d", topicID, index)
	return nil
}

// assertImage fails the test unless got equals want exactly, naming the
// first difference.
func assertImage(t testing.TB, got, want *fsm.Image) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	if got == nil || want == nil {
		t.Fatalf("image: got %v, want %v", got, want)
	}
	gv, wv := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			t.Fatalf("image differs in %s:\n got: %+v\nwant: %+v", name, gv.Field(i).Interface(), wv.Field(i).Interface())
		}
	}
	t.Fatalf("images differ")
}

// assertLatest checks that the latest checkpoint in db is want.
func assertLatest(t testing.TB, db *DB, want *fsm.Image) {
	t.Helper()
	got, _, err := db.LoadLatest(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	assertImage(t, got, want)
}

// ---- checkpointer fakes ----

// fakeSource is a Source whose leadership and image the test sets.
type fakeSource struct {
	mu     sync.Mutex
	img    *fsm.Image
	leader bool
	calls  int
	panics bool
}

func (s *fakeSource) CheckpointImage() (*fsm.Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.panics {
		panic("source exploded")
	}
	if !s.leader {
		return nil, false
	}
	return s.img, true
}

func (s *fakeSource) set(img *fsm.Image, leader bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img != nil {
		s.img = cloneImage(img)
	}
	s.leader = leader
}

func (s *fakeSource) setPanics(p bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.panics = p
}

func (s *fakeSource) numCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// waitCalls waits until the source has been asked n more times.
func (s *fakeSource) waitCalls(t testing.TB, n int) {
	t.Helper()
	target := s.numCalls() + n
	waitFor(t, 10*time.Second, fmt.Sprintf("%d more source calls", n), func() bool { return s.numCalls() >= target })
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
