package partition

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestAlterTopicConfigIsReadByEveryConsumer: retention (janitor),
// compression (flusher) and max.message.bytes (producer) follow an altered
// config at once; keys not named keep their value.
func TestAlterTopicConfigIsReadByEveryConsumer(t *testing.T) {
	e := newEnv(t, ProducerConfig{MaxRecordBytes: 100, MaxUnflushedBytes: 1 << 20})
	ctx := context.Background()
	e.topic("t", 1)
	tp, err := e.admin.AlterTopicConfig(ctx, "t", map[string]string{fsm.ConfigCompressionType: "lz4", fsm.ConfigMaxMessageBytes: "20"})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Config != (fsm.TopicConfig{Compression: "lz4", MaxMessageBytes: 20}) {
		t.Fatalf("returned config = %+v", tp.Config)
	}
	big := []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte(strings.Repeat("x", 30))}}}
	if _, err := e.prod.Produce(ctx, "t", big); !errors.Is(err, fsm.ErrRecordTooLarge) || !strings.Contains(err.Error(), "max.message.bytes") {
		t.Fatalf("a 30-byte record under max.message.bytes=20: %v", err)
	}
	e.produce("t", 0, "a", "b")
	e.flushAll()
	if parts := e.segs.objects["obj-1"]; len(parts) != 1 || parts[0].Compression != "lz4" {
		t.Fatalf("flushed parts = %+v, want lz4", parts)
	}
	// Back to the agent's limit; retention by age now expires the segment.
	if _, err := e.admin.AlterTopicConfig(ctx, "t", map[string]string{fsm.ConfigMaxMessageBytes: "0", fsm.ConfigRetentionMs: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.prod.Produce(ctx, "t", big); err != nil {
		t.Fatalf("a 30-byte record under the agent's 100: %v", err)
	}
	if now, _ := e.fsm.Topic("t"); now.Config.Compression != "lz4" || now.Config.RetentionMs != 1 {
		t.Fatalf("config = %+v", now.Config)
	}
	e.runJanitor(e.janitor(e.fsm, true), time.Now().UnixMilli()+10_000)
	if p, _ := e.fsm.Partition(tp.ID, 0); p.LowWatermark != 2 {
		t.Fatalf("low watermark %d after retention.ms=1, want 2", p.LowWatermark)
	}
}

func TestAlterTopicConfigRefusesBadInput(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	e.topic("t", 1)
	before := e.prop.proposals.Load()
	for name, set := range map[string]map[string]string{
		"unknown key": {"segment.bytes": "1"},
		"bad value":   {fsm.ConfigRetentionMs: "soon"},
		"compact":     {fsm.ConfigCleanupPolicy: "compact"},
		"nothing":     {},
	} {
		_, err := e.admin.AlterTopicConfig(ctx, "t", set)
		var ce *fsm.ConfigError
		if !errors.As(err, &ce) || !errors.Is(err, fsm.ErrInvalidArgument) {
			t.Errorf("%s: want *fsm.ConfigError, got %v", name, err)
		}
	}
	if n := e.prop.proposals.Load(); n != before {
		t.Fatalf("%d proposals for refused changes", n-before)
	}
	if _, err := e.admin.AlterTopicConfig(ctx, "nope", map[string]string{fsm.ConfigRetentionMs: "1"}); !errors.Is(err, fsm.ErrTopicNotFound) {
		t.Fatalf("unknown topic: %v", err)
	}
}

// TestCreatePartitions: the new partitions get leaders, take records,
// are read, and keyed records hash over the new count.
func TestCreatePartitions(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.cfg.Limits = fsm.ClusterLimits{MaxPartitions: 5}
	e.build()
	ctx := context.Background()
	e.topic("t", 2)
	tp, err := e.admin.CreatePartitions(ctx, "t", 4)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := e.admin.Partitions("t")
	if tp.Partitions != 4 || len(ps) != 4 || ps[3].Leader != "n1" || ps[3].LeaderEpoch != 1 {
		t.Fatalf("topic %+v partitions %+v", tp, ps)
	}
	e.produce("t", 3, "x", "y")
	if got := e.readAll("t", 3); strings.Join(got, ",") != "x,y" {
		t.Fatalf("partition 3 holds %v", got)
	}
	key := []byte("some-key")
	offs, err := e.prod.Produce(ctx, "t", []fsm.ProduceRecord{{Partition: -1, Record: fsm.Record{Key: key, Value: []byte("v")}}})
	if err != nil || offs[0].Partition != fsm.KeyPartition(key, 4) {
		t.Fatalf("keyed record went to %+v (%v), want partition %d", offs, err, fsm.KeyPartition(key, 4))
	}
	for name, n := range map[string]int32{"lower": 3, "same": 4, "zero": 0, "too many": fsm.MaxPartitions + 1} {
		if _, err := e.admin.CreatePartitions(ctx, "t", n); !errors.Is(err, fsm.ErrInvalidArgument) {
			t.Errorf("%s (%d): want invalid argument, got %v", name, n, err)
		}
	}
	if _, err := e.admin.CreatePartitions(ctx, "t", 6); !errors.Is(err, fsm.ErrLimitExceeded) {
		t.Fatalf("past MAX_PARTITIONS=5: %v", err)
	}
	if _, err := e.admin.CreatePartitions(ctx, "nope", 6); !errors.Is(err, fsm.ErrTopicNotFound) {
		t.Fatalf("unknown topic: %v", err)
	}
}

// racingProposer deletes and re-creates topic name (a namesake with a new
// ID) just before the first command it is given applies.
type racingProposer struct {
	e    *env
	name string
	done bool
}

func (r *racingProposer) Propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	if !r.done {
		r.done = true
		for _, c := range []fsm.Command{&fsm.DeleteTopic{Name: r.name}, &fsm.CreateTopic{Name: r.name, Partitions: 1}} {
			if res, err := r.e.prop.Propose(ctx, fsm.Encode(c)); err != nil || res.Err() != nil {
				r.e.t.Fatalf("%s: %v %v", c.Type(), err, res.Err())
			}
		}
	}
	return r.e.prop.Propose(ctx, cmd)
}

// TestAlterTopicConfigSparesARecreatedNamesake: a topic deleted and
// re-created between the lookup and the apply of a config change is not
// altered; the change fails with "topic not found".
func TestAlterTopicConfigSparesARecreatedNamesake(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	old := e.topic("t", 1)
	e.admin.proposer = &racingProposer{e: e, name: "t"}
	_, err := e.admin.AlterTopicConfig(context.Background(), "t", map[string]string{fsm.ConfigRetentionMs: "1"})
	if !errors.Is(err, fsm.ErrTopicNotFound) {
		t.Fatalf("alter across a delete and re-create: want topic not found, got %v", err)
	}
	if now, _ := e.fsm.Topic("t"); now.ID == old.ID || now.Config.RetentionMs == 1 {
		t.Fatalf("the re-created namesake (ID %d, was %d) was altered: %+v", now.ID, old.ID, now.Config)
	}
}
