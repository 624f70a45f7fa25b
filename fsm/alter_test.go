package fsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"testing"
)

func TestAlterCommandsCodecRoundTrip(t *testing.T) {
	assertCodecRoundTrip(t, []Command{
		&AlterTopicConfig{Topic: "orders", Set: []ConfigEntry{{ConfigCompressionType, "lz4"}, {ConfigRetentionMs, "3600000"}}},
		&AlterTopicConfig{Topic: "orders", TopicID: 7, Set: []ConfigEntry{{ConfigRetentionMs, "1"}}},
		&CreatePartitions{Topic: "orders", TopicID: 7, Count: 6, Leaders: []string{"a", "", "c"}, Limits: ClusterLimits{MaxPartitions: 100}},
		&CreatePartitions{Topic: "orders", Count: 2},
		&CreateTopic{Name: "t", Partitions: 1, Config: TopicConfig{MaxMessageBytes: 1024}},
		&CreateTopic{Name: "t", Partitions: 1, Config: TopicConfig{MaxMessageBytes: 1024}, Limits: ClusterLimits{MaxTopics: 3}},
	})
	for _, c := range []Command{&AlterTopicConfig{Topic: "t", TopicID: 1}, &CreatePartitions{Topic: "t", Count: 2}} {
		b := Encode(c)
		b[1]++ // a payload version this agent does not know
		if _, err := Decode(b); !errors.Is(err, ErrDecode) {
			t.Errorf("%s v%d: want ErrDecode, got %v", c.Type(), b[1], err)
		}
	}
	if v := (&CreateTopic{Name: "t", Partitions: 1}).version(); v != 1 {
		t.Fatalf("a plain CreateTopic is written as version %d, want 1 (older agents read it)", v)
	}
	if CmdAlterTopicConfig != 12 || CmdCreatePartitions != 13 {
		t.Fatalf("command numbers moved: %d %d", CmdAlterTopicConfig, CmdCreatePartitions)
	}
}

// AlterTopicConfig version 1 (no topic ID), as agents before version 2
// wrote it, still decodes; a command without a topic ID is still written
// as version 1, and one with an ID as version 2.
func TestAlterTopicConfigVersions(t *testing.T) {
	v1, err := hex.DecodeString("0c010174010c726574656e74696f6e2e6d730431303030")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Decode(v1)
	if err != nil {
		t.Fatal(err)
	}
	want := &AlterTopicConfig{Topic: "t", Set: []ConfigEntry{{ConfigRetentionMs, "1000"}}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("v1 decoded as %+v", c)
	}
	if !bytes.Equal(Encode(want), v1) {
		t.Fatalf("without a topic ID: %x, want the v1 payload", Encode(want))
	}
	if b := Encode(&AlterTopicConfig{Topic: "t", TopicID: 5}); b[1] != 2 {
		t.Fatalf("with a topic ID: version %d, want 2", b[1])
	}
	bad := Encode(&AlterTopicConfig{Topic: "t", TopicID: 5, Set: []ConfigEntry{{ConfigRetentionMs, "1"}}})
	bad[4] = 0 // the topic ID: type, version, name length, name, then the ID
	if _, err := Decode(bad); !errors.Is(err, ErrDecode) {
		t.Fatalf("v2 with topic ID 0: want ErrDecode, got %v", err)
	}
}

func TestConfigEntriesValidate(t *testing.T) {
	good, err := ConfigEntries(map[string]string{ConfigRetentionMs: "-1", ConfigCompressionType: "uncompressed",
		ConfigMaxMessageBytes: "1024", ConfigCleanupPolicy: "delete", ConfigRetentionBytes: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(good) != 5 || good[0].Key != ConfigCleanupPolicy || good[4].Key != ConfigRetentionMs {
		t.Fatalf("entries not sorted: %+v", good)
	}
	cfg, err := TopicConfig{RetentionMs: 5, Compression: "zstd"}.WithUpdates(good)
	if err != nil || cfg != (TopicConfig{Compression: "none", MaxMessageBytes: 1024}) {
		t.Fatalf("config = %+v, %v", cfg, err)
	}
	for name, set := range map[string]map[string]string{
		"empty":              {},
		"unknown key":        {"segment.ms": "1"},
		"retention text":     {ConfigRetentionMs: "1h"},
		"retention -2":       {ConfigRetentionBytes: "-2"},
		"compression gzip":   {ConfigCompressionType: "gzip"},
		"compression empty":  {ConfigCompressionType: ""},
		"message too large":  {ConfigMaxMessageBytes: "67108865"},
		"message negative":   {ConfigMaxMessageBytes: "-1"},
		"compact":            {ConfigCleanupPolicy: "compact"},
		"one bad among good": {ConfigRetentionMs: "10", ConfigCleanupPolicy: "compact,delete"},
	} {
		_, err := ConfigEntries(set)
		var ce *ConfigError
		if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: want a *ConfigError wrapping ErrInvalidArgument, got %v", name, err)
		}
	}
}

func TestConfigDescribeAndRecordLimit(t *testing.T) {
	got := TopicConfig{}.Describe(1 << 20)
	want := []ConfigValue{{ConfigCleanupPolicy, "delete", true}, {ConfigCompressionType, "zstd", true},
		{ConfigMaxMessageBytes, "1048576", true}, {ConfigRetentionBytes, "-1", true}, {ConfigRetentionMs, "-1", true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults = %+v", got)
	}
	got = TopicConfig{RetentionMs: 60000, Compression: "lz4", MaxMessageBytes: 100}.Describe(1 << 20)
	if got[1] != (ConfigValue{ConfigCompressionType, "lz4", false}) || got[2] != (ConfigValue{ConfigMaxMessageBytes, "100", false}) ||
		got[4] != (ConfigValue{ConfigRetentionMs, "60000", false}) {
		t.Fatalf("set values = %+v", got)
	}
	for _, c := range []struct{ topic, agent, want int }{{0, 1000, 1000}, {100, 1000, 100}, {5000, 1000, 1000}, {100, 0, 100}, {0, 0, 0}} {
		if got := (TopicConfig{MaxMessageBytes: int64(c.topic)}).RecordLimit(c.agent); got != c.want {
			t.Errorf("RecordLimit(topic %d, agent %d) = %d, want %d", c.topic, c.agent, got, c.want)
		}
	}
}

func TestApplyAlterTopicConfig(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Config: TopicConfig{RetentionBytes: 500, Compression: "lz4"}})
	ch := h.f.Changed()
	h.mustOK(&AlterTopicConfig{Topic: "t", Set: []ConfigEntry{{ConfigMaxMessageBytes, "2048"}, {ConfigRetentionMs, "3600000"}}})
	select {
	case <-ch:
	default:
		t.Fatal("an altered config did not notify metadata watchers")
	}
	tp, _ := h.f.Topic("t")
	if tp.Config != (TopicConfig{RetentionMs: 3600000, RetentionBytes: 500, Compression: "lz4", MaxMessageBytes: 2048}) {
		t.Fatalf("config after alter = %+v (keys not named must keep their value)", tp.Config)
	}
	if byID, _ := h.f.TopicByID(tp.ID); byID.Config != tp.Config {
		t.Fatal("TopicByID disagrees with Topic")
	}
	for name, c := range map[string]*AlterTopicConfig{
		"bad value":   {Topic: "t", Set: []ConfigEntry{{ConfigRetentionMs, "x"}, {ConfigCompressionType, "none"}}},
		"unknown key": {Topic: "t", Set: []ConfigEntry{{"flush.ms", "1"}}},
		"no keys":     {Topic: "t"},
	} {
		if err := h.apply(c).Err(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: want invalid, got %v", name, err)
		}
	}
	if after, _ := h.f.Topic("t"); after.Config != tp.Config {
		t.Fatalf("a refused alter changed the config: %+v", after.Config)
	}
	if err := h.apply(&AlterTopicConfig{Topic: "nope", Set: []ConfigEntry{{ConfigRetentionMs, "1"}}}).Err(); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("unknown topic: %v", err)
	}
	// A deleted and re-created namesake (a new topic ID) is not altered by
	// a command meant for the old topic; one naming its ID is.
	h.mustOK(&DeleteTopic{Name: "t"})
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1})
	again, _ := h.f.Topic("t")
	if err := h.apply(&AlterTopicConfig{Topic: "t", TopicID: tp.ID, Set: []ConfigEntry{{ConfigRetentionMs, "1"}}}).Err(); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("alter of the deleted topic's ID: want not found, got %v", err)
	}
	if now, _ := h.f.Topic("t"); now.Config != again.Config {
		t.Fatalf("the namesake was altered: %+v", now.Config)
	}
	h.mustOK(&AlterTopicConfig{Topic: "t", TopicID: again.ID, Set: []ConfigEntry{{ConfigRetentionMs, "1"}}})
	if now, _ := h.f.Topic("t"); now.Config.RetentionMs != 1 {
		t.Fatalf("alter by the topic's own ID not applied: %+v", now.Config)
	}
}

func TestApplyCreatePartitions(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n2"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a"))
	h.mustOK(&CreatePartitions{Topic: "t", TopicID: id, Count: 5, Leaders: []string{"n3", "", "n1"}})
	tp, _ := h.f.Topic("t")
	ps := h.f.Partitions(id)
	if tp.Partitions != 5 || len(ps) != 5 {
		t.Fatalf("topic %+v, %d partitions", tp, len(ps))
	}
	if ps[0].NextOffset != 1 || ps[1].Leader != "n2" || ps[2].Leader != "n3" || ps[2].LeaderEpoch != 1 ||
		ps[3].Leader != "" || ps[3].LeaderEpoch != 0 || ps[4].Leader != "n1" {
		t.Fatalf("partitions = %+v", ps)
	}
	if r := h.mustOK(appendCmd(id, 4, 1, "x", "y")); r.BaseOffset != 0 {
		t.Fatalf("a new partition starts at %d", r.BaseOffset)
	}
	// Leaders for partitions that already exist when it applies are skipped.
	h.mustOK(&CreatePartitions{Topic: "t", Count: 6, Leaders: []string{"n9", "n2"}})
	if p, _ := h.f.Partition(id, 4); p.Leader != "n1" {
		t.Fatalf("an existing partition's leader changed: %+v", p)
	}
	if p, _ := h.f.Partition(id, 5); p.Leader != "n2" {
		t.Fatalf("partition 5 = %+v", p)
	}
	for name, c := range map[string]*CreatePartitions{
		"lower":         {Topic: "t", Count: 3},
		"equal":         {Topic: "t", Count: 6},
		"too many":      {Topic: "t", Count: MaxPartitions + 1},
		"extra leaders": {Topic: "t", Count: 7, Leaders: make([]string, 8)},
	} {
		if err := h.apply(c).Err(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: want invalid, got %v", name, err)
		}
	}
	if err := h.apply(&CreatePartitions{Topic: "t", TopicID: id + 1, Count: 9}).Err(); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("another topic's id: %v", err)
	}
	// The limit counts every partition of the cluster: 6 + 1 more > 6.
	if err := h.apply(&CreatePartitions{Topic: "t", Count: 7, Limits: ClusterLimits{MaxTopics: 1, MaxPartitions: 6}}).Err(); !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("past MAX_PARTITIONS: %v", err)
	}
	// MaxTopics is not what adding partitions checks (a lowered limit
	// never blocks the topics that exist).
	h.mustOK(&CreateTopic{Name: "u", Partitions: 1})
	h.mustOK(&CreatePartitions{Topic: "t", Count: 7, Limits: ClusterLimits{MaxTopics: 1, MaxPartitions: 8}})
	if tp, _ := h.f.Topic("t"); tp.Partitions != 7 {
		t.Fatalf("count = %d", tp.Partitions)
	}
}

// TestSnapshotCarriesAlteredTopics: snapshots and images carry the new
// partitions and configs; a state without max.message.bytes is written in
// the version older agents read.
func TestSnapshotCarriesAlteredTopics(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	h.mustOK(&CreatePartitions{Topic: "t", Count: 3, Leaders: []string{"n1", "n2"}})
	h.mustOK(appendCmd(id, 2, 1, "a"))
	h.mustOK(&AlterTopicConfig{Topic: "t", Set: []ConfigEntry{{ConfigRetentionMs, "1000"}}})
	if magic := snapshotMagicOf(t, h); magic != snapshotMagicV2 {
		t.Fatalf("without max.message.bytes the snapshot is %q, want %q", magic, snapshotMagicV2)
	}
	h2 := snapshotRoundTrip(t, h)
	if tp, _ := h2.f.Topic("t"); tp.Partitions != 3 || tp.Config.RetentionMs != 1000 {
		t.Fatalf("restored topic = %+v", tp)
	}
	h.mustOK(&AlterTopicConfig{Topic: "t", Set: []ConfigEntry{{ConfigMaxMessageBytes, "4096"}}})
	if magic := snapshotMagicOf(t, h); magic != snapshotMagic {
		t.Fatalf("with max.message.bytes the snapshot is %q, want %q", magic, snapshotMagic)
	}
	h2 = snapshotRoundTrip(t, h)
	if tp, _ := h2.f.Topic("t"); tp.Config.MaxMessageBytes != 4096 {
		t.Fatalf("restored topic = %+v", tp)
	}
	if r := h2.mustOK(appendCmd(id, 2, 1, "b")); r.BaseOffset != 1 {
		t.Fatalf("restored new partition continues at %d", r.BaseOffset)
	}
	// Images (Postgres checkpoints, DR seeds) carry them too.
	var img bytes.Buffer
	if err := WriteImageSnapshot(&img, h.f.Image()); err != nil {
		t.Fatal(err)
	}
	h3 := newHarness(t)
	if err := h3.f.Restore(io.NopCloser(&img)); err != nil {
		t.Fatal(err)
	}
	if tp, _ := h3.f.Topic("t"); tp.Partitions != 3 || tp.Config.MaxMessageBytes != 4096 || len(h3.f.Partitions(id)) != 3 {
		t.Fatalf("topic from image = %+v", tp)
	}
}

// TestRestoreReadsVersion3Snapshots: a stream the previous version wrote
// (SHSNAP03: clock, no topic limits section) still restores.
func TestRestoreReadsVersion3Snapshots(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Config: TopicConfig{RetentionMs: 9}})
	h.mustOK(&ClockTick{Time: 5000})
	var buf bytes.Buffer
	buf.WriteString(snapshotMagicV3)
	_ = writeItem(&buf, encodeState(h.f.state, 3))
	_ = writeItem(&buf, []byte{itemEnd})
	if magic := snapshotMagicOf(t, h); magic != snapshotMagicV3 {
		t.Fatalf("the same state is now written as %q", magic)
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if tp, _ := h2.f.Topic("t"); tp.Config.RetentionMs != 9 || h2.f.Clock() != 5000 {
		t.Fatalf("restored %+v clock %d", tp, h2.f.Clock())
	}
	// A truncated version-4 section is corrupt.
	st := h.f.state.clone()
	st.Topics["t"].Config.MaxMessageBytes = 10
	b := encodeState(st, 4)
	if _, err := decodeState(b[:len(b)-1], 4); !errors.Is(err, ErrDecode) {
		t.Fatalf("truncated v4 section: %v", err)
	}
}

func snapshotMagicOf(t *testing.T, h *harness) string {
	t.Helper()
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, h.f.state, nil); err != nil {
		t.Fatal(err)
	}
	return buf.String()[:len(snapshotMagic)]
}
