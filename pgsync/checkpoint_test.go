package pgsync

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/streamhouse/streamhouse/fsm"
)

const (
	cluster = "cluster-A"
	node    = "node-1"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	img := fixture(t)
	before := time.Now().Add(-time.Millisecond)
	info, err := db.WriteCheckpoint(ctx, img, cluster, node)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{RaftIndex: 100, RaftTerm: 3, TakenAt: info.TakenAt, Topics: 2, Partitions: 3, Segments: 5,
		SegmentsWritten: 5, ClusterID: cluster, NodeID: node}
	if info != want {
		t.Fatalf("info = %+v, want %+v", info, want)
	}
	if info.TakenAt.Before(before) || info.TakenAt.After(time.Now()) {
		t.Fatalf("TakenAt %v not during the call", info.TakenAt)
	}

	got, gotInfo, err := db.LoadLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertImage(t, got, img)
	if gotInfo != info {
		t.Fatalf("LoadLatest info = %+v, want %+v", gotInfo, info)
	}
	if latest, err := db.LatestInfo(ctx); err != nil || latest != info {
		t.Fatalf("LatestInfo = %+v, %v; want %+v", latest, err, info)
	}
	if err := fsm.ValidateImage(got); err != nil {
		t.Fatalf("loaded image does not restore: %v", err)
	}
	// The gap survives as a gap.
	if g := got.Partitions[0].Segments[1]; !g.IsGap() || g.BaseOffset != 10 {
		t.Fatalf("segment 1 of 3/0 = %+v, want the gap at 10", g)
	}
	// Plain tables an operator can query.
	if n := queryInt(t, db, "SELECT count(*) FROM streamhouse_segments WHERE object_key = ''"); n != 1 {
		t.Fatalf("%d gap rows, want 1", n)
	}
	if n := queryInt(t, db, "SELECT crc FROM streamhouse_segments WHERE topic_id = 3 AND partition = 0 AND base_offset = 20"); n != 0xF0000000+20 {
		t.Fatalf("crc = %#x", n)
	}
	// Loaded images share nothing with each other.
	again, _, err := db.LoadLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again.Partitions[0].Segments[0].ObjectKey = "changed"
	assertImage(t, got, img)
}

// TestRoundTripCarriesTheClock: the cluster clock survives a checkpoint,
// so a DR restore does not start its clock from 0 (or from the new
// leader's wall clock).
func TestRoundTripCarriesTheClock(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	img := fixture(t)
	if _, err := db.WriteCheckpoint(ctx, img, cluster, node); err != nil {
		t.Fatal(err)
	}
	got, _, err := db.LoadLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Clock != img.Clock {
		t.Fatalf("loaded clock %d, checkpointed %d", got.Clock, img.Clock)
	}
	if n := queryInt(t, db, "SELECT cluster_clock_ms FROM streamhouse_checkpoint_guard"); n != img.Clock {
		t.Fatalf("cluster_clock_ms = %d", n)
	}
	bad := fixture(t)
	bad.LastApplied++
	bad.Clock = -1
	if _, err := db.WriteCheckpoint(ctx, bad, cluster, node); err == nil {
		t.Fatal("a negative clock was checkpointed")
	}
}

// TestCheckpointStoresTheLargestProducerEpoch: a producer's partition
// epochs (a Kafka client's local bumps) are stored as its epoch when they
// are larger, so a restore, which fences every producer above its stored
// epoch, fences every session of it.
func TestCheckpointStoresTheLargestProducerEpoch(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	img := fixture(t)
	p := &img.Producers[0]
	p.PartitionEpochs = []fsm.ProducerEpoch{{TopicID: 3, Partition: 0, Epoch: p.Epoch + 5}}
	if _, err := db.WriteCheckpoint(ctx, img, cluster, node); err != nil {
		t.Fatal(err)
	}
	got, _, err := db.LoadLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g := got.Producers[0]; g.ID != p.ID || g.Epoch != p.Epoch+5 || len(g.PartitionEpochs) != 0 {
		t.Fatalf("loaded producer %+v, want epoch %d", g, p.Epoch+5)
	}
}

func TestEmptyImageRoundTrip(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	if _, _, err := db.LoadLatest(ctx); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("LoadLatest on a new database: err = %v, want ErrNoCheckpoint", err)
	}
	if _, err := db.LatestInfo(ctx); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("LatestInfo on a new database: err = %v, want ErrNoCheckpoint", err)
	}
	empty := &fsm.Image{LastApplied: 1, RaftTerm: 1}
	if _, err := db.WriteCheckpoint(ctx, empty, cluster, node); err != nil {
		t.Fatal(err)
	}
	got, info, err := db.LoadLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertImage(t, got, empty)
	if info.Topics != 0 || info.Segments != 0 || info.RaftIndex != 1 {
		t.Fatalf("info = %+v", info)
	}
	// A full image after an empty one, then empty again: tables emptied.
	if _, err := db.WriteCheckpoint(ctx, fixture(t), cluster, node); err != nil {
		t.Fatal(err)
	}
	empty2 := &fsm.Image{LastApplied: 200, RaftTerm: 4}
	if _, err := db.WriteCheckpoint(ctx, empty2, cluster, node); err != nil {
		t.Fatal(err)
	}
	assertLatest(t, db, empty2)
	for _, table := range []string{"topics", "partitions", "segments", "consumer_group_offsets", "producers", "producer_sequences", "pending_deletes"} {
		if n := queryInt(t, db, "SELECT count(*) FROM streamhouse_"+table); n != 0 {
			t.Errorf("streamhouse_%s has %d rows after an empty checkpoint", table, n)
		}
	}
}

func TestMonotonic(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	img10 := withIndex(fixture(t), 110)
	if _, err := db.WriteCheckpoint(ctx, img10, cluster, node); err != nil {
		t.Fatal(err)
	}
	older := withIndex(fixture(t), 105)
	older.Topics[0].Name = "renamed"
	_, err := db.WriteCheckpoint(ctx, older, cluster, node)
	if !errors.Is(err, ErrStaleCheckpoint) {
		t.Fatalf("older checkpoint: err = %v, want ErrStaleCheckpoint", err)
	}
	if !strings.Contains(err.Error(), "105") || !strings.Contains(err.Error(), "110") {
		t.Errorf("error %q does not name both indexes", err)
	}
	if _, err := db.WriteCheckpoint(ctx, withIndex(older, 110), cluster, node); !errors.Is(err, ErrStaleCheckpoint) {
		t.Fatalf("same index again: err = %v, want ErrStaleCheckpoint", err)
	}
	got, info, err := db.LoadLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.RaftIndex != 110 {
		t.Fatalf("latest index %d, want 110", info.RaftIndex)
	}
	assertImage(t, got, img10)
	if n := queryInt(t, db, "SELECT count(*) FROM streamhouse_checkpoints"); n != 1 {
		t.Fatalf("%d history rows, want 1", n)
	}
}

func TestConcurrentWritersNeverRegress(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	base := fixture(t)
	const writers, each = 8, 6
	indexes := rand.Perm(writers * each)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		successes []uint64
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range indexes[w*each : (w+1)*each] {
				idx := uint64(100 + i)
				img := withIndex(base, idx)
				appendSegments(&img.Partitions[1], i%4, "seg/w"+strconv.Itoa(w))
				_, err := db.WriteCheckpoint(ctx, img, cluster, "node-"+strconv.Itoa(w))
				switch {
				case err == nil:
					mu.Lock()
					successes = append(successes, idx)
					mu.Unlock()
				case !errors.Is(err, ErrStaleCheckpoint):
					t.Errorf("writer %d at %d: %v", w, idx, err)
				}
			}
		}()
	}
	wg.Wait()
	maxIdx := uint64(100 + writers*each - 1)
	info, err := db.LatestInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.RaftIndex != maxIdx {
		t.Fatalf("final index %d, want the maximum %d", info.RaftIndex, maxIdx)
	}
	history := queryInts(t, db, "SELECT raft_index FROM streamhouse_checkpoints ORDER BY id")
	if !slices.IsSorted(history) || len(slices.Compact(slices.Clone(history))) != len(history) {
		t.Fatalf("history in commit order is not strictly increasing: %v", history)
	}
	if len(history) != len(successes) {
		t.Fatalf("%d history rows, %d successful writes", len(history), len(successes))
	}
	// The stored image is exactly the winner's.
	want := withIndex(base, maxIdx)
	w := slices.Index(indexes, int(maxIdx-100)) / each
	appendSegments(&want.Partitions[1], int(maxIdx-100)%4, "seg/w"+strconv.Itoa(w))
	assertLatest(t, db, want)
}

func TestHistoryKeepsNewest(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	img := &fsm.Image{RaftTerm: 1}
	for i := 1; i <= historyRows+7; i++ {
		img.LastApplied = uint64(i)
		if _, err := db.WriteCheckpoint(ctx, img, cluster, node); err != nil {
			t.Fatal(err)
		}
	}
	history := queryInts(t, db, "SELECT raft_index FROM streamhouse_checkpoints ORDER BY id")
	if len(history) != historyRows || history[0] != 8 || history[len(history)-1] != historyRows+7 {
		t.Fatalf("history holds %d rows from %d to %d; want %d rows from 8 to %d",
			len(history), history[0], history[len(history)-1], historyRows, historyRows+7)
	}
}

func segmentCount(t testing.TB, db *DB, topicID uint64, part int32) int64 {
	t.Helper()
	return queryInt(t, db, "SELECT count(*) FROM streamhouse_segments WHERE topic_id = $1 AND partition = $2", int64(topicID), part)
}

func TestIncrementalSegments(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	write := func(img *fsm.Image, wantWritten int) {
		t.Helper()
		if err := fsm.ValidateImage(img); err != nil {
			t.Fatalf("test image incoherent: %v", err)
		}
		info, err := db.WriteCheckpoint(ctx, img, cluster, node)
		if err != nil {
			t.Fatal(err)
		}
		if info.SegmentsWritten != wantWritten {
			t.Fatalf("checkpoint %d wrote %d segment rows, want %d", img.LastApplied, info.SegmentsWritten, wantWritten)
		}
		assertLatest(t, db, img)
	}

	img1 := fixture(t)
	write(img1, 5)

	// A marker on a stored row that is not the tail: an incremental write
	// leaves it alone, a rewrite would erase it.
	const marked = "SELECT committed_at_ms FROM streamhouse_segments WHERE topic_id = 3 AND partition = 0 AND base_offset = 0"
	execSQL(t, db, "UPDATE streamhouse_segments SET committed_at_ms = -1 WHERE topic_id = 3 AND partition = 0 AND base_offset = 0")

	// More segments: only the new ones are inserted.
	img2 := withIndex(img1, 120)
	appendSegments(partition(t, img2, 3, 0), 2, "seg/d")
	appendSegments(partition(t, img2, 3, 1), 1, "seg/e")
	info, err := db.WriteCheckpoint(ctx, img2, cluster, node)
	if err != nil {
		t.Fatal(err)
	}
	if info.SegmentsWritten != 3 || info.Segments != 8 {
		t.Fatalf("second checkpoint: %+v, want 3 of 8 segments written", info)
	}
	if v := queryInt(t, db, marked); v != -1 {
		t.Fatalf("old segment row was rewritten (marker %d)", v)
	}
	execSQL(t, db, "UPDATE streamhouse_segments SET committed_at_ms = $1 WHERE topic_id = 3 AND partition = 0 AND base_offset = 0",
		img1.Partitions[0].Segments[0].CommittedAt)
	assertLatest(t, db, img2)

	// Retention: the low watermark passes two segments; their rows go.
	img3 := withIndex(img2, 130)
	trim(partition(t, img3, 3, 0), 25) // drops [0,9] and the gap [10,19]; [20,29] straddles 25
	write(img3, 0)
	if n := segmentCount(t, db, 3, 0); n != 3 {
		t.Fatalf("3/0 holds %d segment rows after trimming, want 3", n)
	}

	// Topic 7 deleted: its partitions, segments, group offsets and
	// producer sequences go.
	img4 := withIndex(img3, 140)
	img4.Topics = img4.Topics[:1]
	img4.Partitions = img4.Partitions[:2]
	img4.Groups = slices.DeleteFunc(img4.Groups, func(g fsm.GroupOffsetEntry) bool { return g.TopicID == 7 })
	img4.Producers[0].Sequences = img4.Producers[0].Sequences[:2]
	img4.PendingDeletes = append(img4.PendingDeletes, "seg/c-0", "seg/c-10")
	slices.Sort(img4.PendingDeletes)
	write(img4, 0)
	for _, table := range []string{"partitions", "segments", "consumer_group_offsets", "producer_sequences"} {
		if n := queryInt(t, db, "SELECT count(*) FROM streamhouse_"+table+" WHERE topic_id = 7"); n != 0 {
			t.Errorf("streamhouse_%s holds %d rows of the deleted topic", table, n)
		}
	}
	if n := queryInt(t, db, "SELECT count(*) FROM streamhouse_topics WHERE id = 7"); n != 0 {
		t.Errorf("deleted topic still in streamhouse_topics")
	}

	// The stored tail differs from the state's segment at that offset (the
	// segment list was rewritten): the partition is rewritten in full.
	img5 := withIndex(img4, 150)
	p := partition(t, img5, 3, 0)
	p.Segments[len(p.Segments)-1].ObjectKey = "seg/merged-40"
	write(img5, len(p.Segments))

	// Everything stored lies below the new first segment (retention passed
	// it all while new segments arrived).
	img6 := withIndex(img5, 160)
	p = partition(t, img6, 3, 1)
	appendSegments(p, 3, "seg/f")
	trim(p, p.Segments[2].BaseOffset) // stored: [0,9]; image: [20,29], [30,39]
	write(img6, 2)
	if n := segmentCount(t, db, 3, 1); n != 2 {
		t.Fatalf("3/1 holds %d rows, want 2", n)
	}

	// A partition whose segments all expired keeps no rows.
	img7 := withIndex(img6, 170)
	p = partition(t, img7, 3, 1)
	trim(p, p.FlushedOffset)
	write(img7, 0)
	if n := segmentCount(t, db, 3, 1); n != 0 {
		t.Fatalf("3/1 holds %d rows, want 0", n)
	}
}

func TestInvalidImageRefused(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	for name, mutate := range map[string]func(*fsm.Image){
		"duplicate topic name": func(img *fsm.Image) { img.Topics[1].Name = img.Topics[0].Name },
		"duplicate partition":  func(img *fsm.Image) { img.Partitions[1].Index = 0 },
		"segments unordered": func(img *fsm.Image) {
			s := img.Partitions[0].Segments
			s[0], s[1] = s[1], s[0]
		},
		"index out of range":        func(img *fsm.Image) { img.LastApplied = 1 << 63 },
		"group name not UTF-8":      func(img *fsm.Image) { img.Groups[0].Group = "bad\xff" },
		"object key with NUL":       func(img *fsm.Image) { img.Partitions[0].Segments[0].ObjectKey = "a\x00b" },
		"duplicate pending delete":  func(img *fsm.Image) { img.PendingDeletes[1] = img.PendingDeletes[0] },
		"duplicate producer":        func(img *fsm.Image) { img.Producers[1].ID = img.Producers[0].ID },
		"duplicate group partition": func(img *fsm.Image) { img.Groups[2].Partition = 0 },
	} {
		img := fixture(t)
		mutate(img)
		if _, err := db.WriteCheckpoint(ctx, img, cluster, node); !errors.Is(err, ErrInvalidImage) {
			t.Errorf("%s: err = %v, want ErrInvalidImage", name, err)
		}
	}
	if _, err := db.WriteCheckpoint(ctx, nil, cluster, node); !errors.Is(err, ErrInvalidImage) {
		t.Errorf("nil image: err = %v", err)
	}
	if _, err := db.WriteCheckpoint(ctx, fixture(t), "", node); err == nil {
		t.Errorf("empty cluster ID accepted")
	}
	if _, err := db.LatestInfo(ctx); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("a refused image left a checkpoint: %v", err)
	}
}

func TestClusterMismatchAndAdopt(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	if id, err := db.ClusterID(ctx); err != nil || id != "" {
		t.Fatalf("ClusterID of a new database = %q, %v", id, err)
	}
	img := fixture(t)
	if _, err := db.WriteCheckpoint(ctx, img, "cluster-A", node); err != nil {
		t.Fatal(err)
	}
	if id, err := db.ClusterID(ctx); err != nil || id != "cluster-A" {
		t.Fatalf("ClusterID = %q, %v; want cluster-A", id, err)
	}
	for _, idx := range []uint64{101, 50} { // newer or older: the cluster check comes first
		_, err := db.WriteCheckpoint(ctx, withIndex(img, idx), "cluster-B", node)
		if !errors.Is(err, ErrClusterMismatch) {
			t.Fatalf("index %d from another cluster: err = %v, want ErrClusterMismatch", idx, err)
		}
		if !strings.Contains(err.Error(), `"cluster-A"`) || !strings.Contains(err.Error(), `"cluster-B"`) {
			t.Errorf("error %q does not name both clusters", err)
		}
	}
	if info, err := db.LatestInfo(ctx); err != nil || info.RaftIndex != 100 || info.ClusterID != "cluster-A" {
		t.Fatalf("LatestInfo = %+v, %v", info, err)
	}

	// DR restore: cluster B takes the database over and continues above
	// the checkpoint it restored from.
	if err := db.AdoptCluster(ctx, "cluster-B"); err != nil {
		t.Fatal(err)
	}
	if id, _ := db.ClusterID(ctx); id != "cluster-B" {
		t.Fatalf("ClusterID after adoption = %q", id)
	}
	var prev string
	if err := db.pool.QueryRow(ctx, "SELECT previous_cluster_id FROM streamhouse_cluster").Scan(&prev); err != nil || prev != "cluster-A" {
		t.Fatalf("previous_cluster_id = %q, %v", prev, err)
	}
	if _, err := db.WriteCheckpoint(ctx, withIndex(img, 100), "cluster-B", node); !errors.Is(err, ErrStaleCheckpoint) {
		t.Fatalf("adoption reset the guard: err = %v", err)
	}
	if _, err := db.WriteCheckpoint(ctx, withIndex(img, 101), "cluster-B", node); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteCheckpoint(ctx, withIndex(img, 102), "cluster-A", node); !errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("old cluster after adoption: err = %v, want ErrClusterMismatch", err)
	}
	// Adopting again is a no-op.
	if err := db.AdoptCluster(ctx, "cluster-B"); err != nil {
		t.Fatal(err)
	}
	if err := db.pool.QueryRow(ctx, "SELECT previous_cluster_id FROM streamhouse_cluster").Scan(&prev); err != nil || prev != "cluster-A" {
		t.Fatalf("previous_cluster_id after re-adopting = %q, %v", prev, err)
	}

	// Adopting a database nobody claimed claims it.
	db2 := openDB(t)
	if err := db2.AdoptCluster(ctx, "cluster-C"); err != nil {
		t.Fatal(err)
	}
	if id, _ := db2.ClusterID(ctx); id != "cluster-C" {
		t.Fatalf("ClusterID = %q, want cluster-C", id)
	}
	if err := db2.AdoptCluster(ctx, ""); err == nil {
		t.Fatal("empty cluster ID adopted")
	}
}

func TestLoadLatestDetectsTampering(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	if _, err := db.WriteCheckpoint(ctx, fixture(t), cluster, node); err != nil {
		t.Fatal(err)
	}
	execSQL(t, db, "DELETE FROM streamhouse_segments WHERE base_offset = 10 AND topic_id = 3")
	if _, _, err := db.LoadLatest(ctx); err == nil || !strings.Contains(err.Error(), "inconsistent") {
		t.Fatalf("LoadLatest with a segment row missing: err = %v", err)
	}
}

// TestSchemaCoversFSM fails when an fsm type that pgsync stores gains or
// loses a field: the schema, WriteCheckpoint and LoadLatest must follow
// (with a new migration).
func TestSchemaCoversFSM(t *testing.T) {
	stored := map[reflect.Type][]string{
		reflect.TypeFor[fsm.Image]():            {"LastApplied", "RaftTerm", "Topics", "Partitions", "Groups", "Producers", "PendingDeletes", "Unreadable", "ProducerGeneration", "MaxUnflushedRecords", "Clock"},
		reflect.TypeFor[fsm.UnreadableObject](): {"Key", "RestoredFrom"},
		reflect.TypeFor[fsm.Topic]():            {"ID", "Name", "Partitions", "Config", "CreatedAt"},
		reflect.TypeFor[fsm.TopicConfig]():      {"RetentionMs", "RetentionBytes", "Compression", "MaxMessageBytes"},
		reflect.TypeFor[fsm.Partition]():        {"TopicID", "Index", "Leader", "LeaderEpoch", "NextOffset", "FlushedOffset", "LowWatermark", "Segments"},
		reflect.TypeFor[fsm.SegmentRef]():       {"ObjectKey", "ByteOffset", "ByteLength", "BaseOffset", "LastOffset", "RecordCount", "MinTimestamp", "MaxTimestamp", "Compression", "CRC", "UncompressedSize", "CommittedAt"},
		reflect.TypeFor[fsm.GroupOffsetEntry](): {"Group", "TopicID", "Partition", "Offset", "Metadata", "CommittedAt"},
		// PartitionEpochs are folded into the stored epoch (MaxEpoch):
		// TestCheckpointStoresTheLargestProducerEpoch.
		reflect.TypeFor[fsm.ProducerEntry]():    {"ID", "Epoch", "LastSeen", "Owner", "Sequences", "PartitionEpochs"},
		reflect.TypeFor[fsm.ProducerSequence](): {"TopicID", "Partition", "BaseSeq", "Count", "BaseOffset"},
	}
	for typ, want := range stored {
		var got []string
		for f := range typ.Fields() {
			got = append(got, f.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("fsm.%s has fields %v; pgsync stores %v: update the schema (new migration), WriteCheckpoint, LoadLatest and this list",
				typ.Name(), got, want)
		}
	}
}

// TestRoundTripLinguisticCollation runs the round trip in a database whose
// default collation is not bytewise (ICU en-US sorts "audit.log" before
// "Orders"), so LoadLatest must order text keys as Go does itself.
func TestRoundTripLinguisticCollation(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const name = "pgsync_icu_en_us"
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"); err != nil {
		t.Fatalf("creating a database with an ICU collation (needs PostgreSQL >= 15 built with ICU): %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, srv.URL()); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	db := openURL(t, srv.DatabaseURL(name))
	if bytewise := queryInt(t, db, "SELECT ('Orders' < 'audit.log')::int"); bytewise != 0 {
		t.Fatal("the database collation sorts bytewise; the test would prove nothing")
	}
	img := fixture(t)
	img.PendingDeletes = []string{"Seg/Z", "seg/a", "seg_b"}
	if _, err := db.WriteCheckpoint(ctx, img, cluster, node); err != nil {
		t.Fatal(err)
	}
	assertLatest(t, db, img)
}
